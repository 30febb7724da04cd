"""``sm-toolkit serve``: the endpoint on 127.0.0.1, until SIGINT or SIGTERM.

The server binds the loopback address only. In the embedded mode (the default) this process
also points its own AWS clients (the engine's S3 staging and uploads, the user's script) at
the endpoint, so a job reads and writes the same buckets the client sees.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from sm_toolkit.endpoint.app import EndpointApp
from sm_toolkit.endpoint.operations import handlers
from sm_toolkit.endpoint.store import Store
from sm_toolkit.endpoint.training import TrainingJobs
from sm_toolkit.endpoint.tuning import TuningJobs
from sm_toolkit.errors import ConfigError

HOST = "127.0.0.1"  # never another address: the endpoint runs code for whoever reaches it
S3_MODES = ("embedded", "aws")


@dataclass(frozen=True)
class ServeOptions:
    """What ``sm-toolkit serve`` was asked for."""

    port: int = 8777
    backend: str = "process"
    workdir: Path = Path(".sm-toolkit")
    s3: str = "embedded"
    image: str | None = None


class Endpoint:
    """The running endpoint: HTTP server, store, training and tuning jobs."""

    def __init__(
        self,
        options: ServeOptions,
        *,
        job_factory: Callable[..., Any] | None = None,
        events_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.options = options
        self.store = Store(Path(options.workdir))
        orphans = self.store.end_orphans("the endpoint that ran this job stopped")
        if orphans:
            print(
                f"sm-toolkit serve: marked Stopped (their server had gone): {', '.join(orphans)}",
                file=sys.stderr,
            )
        self.trainings = TrainingJobs(
            self.store,
            workdir=Path(options.workdir),
            backend=options.backend,
            image=options.image,
            job_factory=job_factory,
            events_factory=events_factory,
        )
        self.tunings = TuningJobs(self.trainings)
        refuse = {}
        if options.s3 == "aws":
            refuse["s3"] = (
                "S3 is on your own AWS settings (sm-toolkit serve --s3 aws): set "
                "AWS_ENDPOINT_URL_SAGEMAKER, not AWS_ENDPOINT_URL, in the client"
            )
        app = EndpointApp(
            handlers(self.trainings, self.tunings),
            DomainDispatcherApplication(create_backend_app),
            account=DEFAULT_ACCOUNT_ID,
            refuse_services=refuse,
        )
        _check_port(options.port, self.store)
        self.server = make_server(
            HOST, options.port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self.url = f"http://{HOST}:{self.server.server_port}"

    def serve_forever(self) -> None:
        """Answer requests until :meth:`close` is called from another thread."""
        self.server.serve_forever(poll_interval=0.2)

    def close(self) -> None:
        """Stop running jobs as StopTrainingJob does, keep records, stop serving.

        The server keeps answering until the jobs have ended: a stopped job still uploads
        its model and checkpoints, to this endpoint's S3."""
        self.trainings.closing = True
        self.tunings.shutdown()
        self.trainings.shutdown()
        self.server.shutdown()
        self.store.close()


def _check_port(port: int, store: Store) -> None:
    """A port we cannot bind is the user's mistake: one line, not werkzeug's exit."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind((HOST, port))
        except OSError as exc:  # in use, or below 1024 without the right to it
            store.close()
            raise ConfigError(
                "--port",
                port,
                f"a port this user can bind on {HOST} ({exc.strerror}); --port 0 picks a free one",
            ) from None


def check_s3_is_elsewhere(url: str, environ: Mapping[str, str]) -> None:
    """Under ``--s3 aws`` the server's own S3 settings must not name this endpoint (say, an
    ``AWS_ENDPOINT_URL`` exported for the embedded mode): it refuses S3, so every job would
    fail in staging."""
    from urllib.parse import urlsplit

    own = urlsplit(url)
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        value = environ.get(name)
        if not value:
            continue
        target = urlsplit(value)
        if target.hostname in (own.hostname, "localhost") and target.port == own.port:
            raise ConfigError(
                name,
                value,
                "the S3 of your AWS settings under --s3 aws, not this endpoint (it serves "
                "no S3 then); unset it in the server's shell, or use --s3 embedded",
            )
        return  # the first one set is the one botocore uses for S3


def point_clients_here(url: str, s3: str) -> None:
    """Make this process's own AWS clients (and the scripts it starts) use the endpoint."""
    if s3 == "embedded":
        os.environ["AWS_ENDPOINT_URL"] = url
        # moto accepts any key; boto3 only needs one to sign with.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    else:
        os.environ["AWS_ENDPOINT_URL_SAGEMAKER"] = url


def serve(options: ServeOptions, **factories: Callable[..., Any]) -> int:
    """Run the endpoint in the foreground; SIGINT or SIGTERM ends it cleanly.

    ``factories`` (job_factory, events_factory) replace the engine's classes (tests only).
    """
    # One line per request from werkzeug would drown the jobs' own output.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    endpoint = Endpoint(options, **factories)
    if options.s3 == "aws":
        try:
            check_s3_is_elsewhere(endpoint.url, os.environ)
        except ConfigError:
            endpoint.server.server_close()
            endpoint.store.close()
            raise
    point_clients_here(endpoint.url, options.s3)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=endpoint.serve_forever, name="endpoint", daemon=True)
    thread.start()
    setting = "AWS_ENDPOINT_URL" if options.s3 == "embedded" else "AWS_ENDPOINT_URL_SAGEMAKER"
    print(
        f"sm-toolkit serve: listening on {endpoint.url} (backend {options.backend}, "
        f"S3 {options.s3}, workdir {options.workdir}); set {setting}={endpoint.url}",
        flush=True,
    )
    stop.wait()
    print("sm-toolkit serve: stopping running jobs", flush=True)
    endpoint.close()
    thread.join(timeout=5)
    return 0
