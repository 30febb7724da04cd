"""``sm-toolkit serve`` refuses bad options in one line with exit code 2, no traceback.

Tried: a port above 65535, a port another server holds.
"""

from __future__ import annotations

import socket
import subprocess

import pytest
from endpoint_support import SM_TOOLKIT, server_env

pytestmark = pytest.mark.integration


def serve(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SM_TOOLKIT), "serve", *args],
        capture_output=True,
        text=True,
        env=server_env(),
        cwd=cwd,
        timeout=60,
    )


def test_port_out_of_range(tmp_path):
    done = serve("--port", "70000", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "sm-toolkit: error: --port: 70000 is not allowed; a TCP port, 0-65535 (0 picks a free one)"
    ]


def test_port_in_use(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = serve("--port", str(port), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sm-toolkit: error: --port: {port} is not")
    assert "--port 0 picks a free one" in lines[0] and "Traceback" not in done.stderr
