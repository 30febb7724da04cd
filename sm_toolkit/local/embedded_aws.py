"""An embedded AWS for local runs without an account: moto's server on 127.0.0.1.

The demo, the benchmarks and the tests start it the same way: a free loopback port, fake
credentials, and ``AWS_ENDPOINT_URL`` pointing every AWS client of this process (and of the
jobs it starts) at it. Nothing leaves the machine.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def start_moto(environ: MutableMapping[str, str] = os.environ):
    """Start moto on 127.0.0.1 (a free port) and point ``environ`` at it; returns the server
    (``server.stop()`` ends it) and its endpoint URL."""
    from moto.server import ThreadedMotoServer

    for name in ("werkzeug", "botocore", "moto"):  # request logs would drown the job's log
        logging.getLogger(name).setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    environ.update({"AWS_ENDPOINT_URL": endpoint, **FAKE_CREDENTIALS})
    return server, endpoint
