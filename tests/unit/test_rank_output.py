"""The ranks of a job share one stdout: each line must leave a worker in one write.

Under PYTHONUNBUFFERED=1 (how the launcher and torchrun start workers) print writes the
text and the newline apart, and another rank's line lands between them: CI saw
``...again[signal] stopping at step 11`` on one line of a 4-rank job.
"""

import io
import sys

from sm_toolkit.train import app


class _Writes(io.RawIOBase):
    """An unbuffered byte stream that keeps each write it was given."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        return len(data)


def test_a_worker_writes_each_line_whole(monkeypatch):
    out_raw, err_raw = _Writes(), _Writes()
    out = io.TextIOWrapper(out_raw, write_through=True)  # what PYTHONUNBUFFERED=1 gives
    err = io.TextIOWrapper(err_raw, write_through=True)
    print("[train] step 1", file=out)
    assert out_raw.chunks == [b"[train] step 1", b"\n"]  # the split another rank gets into
    out_raw.chunks.clear()

    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    app._whole_line_writes()
    print("[signal] stopping at step 10")
    print("[job] stopped early", "(SIGTERM)")
    print("[dist] rank 1/4 backend=gloo", file=sys.stderr)
    print("no newline yet", end="")
    assert out_raw.chunks == [b"[signal] stopping at step 10\n", b"[job] stopped early (SIGTERM)\n"]
    assert err_raw.chunks == [b"[dist] rank 1/4 backend=gloo\n"]
    sys.stdout.flush()  # what the job does before it exits
    assert out_raw.chunks[-1] == b"no newline yet"


def test_streams_that_are_not_text_wrappers_are_left_alone(monkeypatch):
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    app._whole_line_writes()  # no reconfigure on a StringIO: nothing raised
    print("kept")
    assert sys.stdout.getvalue() == "kept\n"
