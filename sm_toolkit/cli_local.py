"""The ``sm-toolkit`` commands that run here: ``run --local`` (a spec's request, ``--request``
or ``--from-job``), ``serve`` and ``ui``. ``cli.py`` parses the arguments and calls these;
the spec-side commands (validate, render, launch, tune) stay there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from sm_toolkit.errors import ConfigError, LocalRunError


def serve(args: argparse.Namespace) -> int:
    try:
        from sm_toolkit.endpoint.server import ServeOptions, serve
    except ImportError as exc:  # moto[server] is an extra
        raise LocalRunError(
            f"sm-toolkit serve needs moto[server] ({exc}); pip install 'sm-toolkit[serve]'"
        ) from None
    if not 0 <= args.port <= 65535:
        raise ConfigError("--port", args.port, "a TCP port, 0-65535 (0 picks a free one)")
    return serve(
        ServeOptions(
            port=args.port, backend=args.backend, workdir=args.workdir, s3=args.s3, image=args.image
        )
    )


def replay(args: argparse.Namespace) -> int:
    """``run --from-job NAME --local``: the job's description, as a new request, locally."""
    if not args.local:
        raise ConfigError("--from-job", args.from_job, "runs with --local (this machine)")
    if args.spec or args.request:
        raise ConfigError("--from-job", args.from_job, "on its own: not with a spec or --request")
    import boto3

    from sm_toolkit.aws.names import replay_name
    from sm_toolkit.aws.replay import describe_job, replay_request

    session = boto3.Session()
    replayed = replay_request(describe_job(args.from_job, session), replay_name(args.from_job))
    if session.region_name:  # the engine's S3 clients use the job's region
        os.environ.setdefault("AWS_DEFAULT_REGION", session.region_name)
    print(
        f"sm-toolkit: replaying {args.from_job} as "
        f"{args.job_name or replayed.request['TrainingJobName']} (left out, not in "
        f"CreateTrainingJob's input: {', '.join(replayed.dropped) or 'none'})",
        file=sys.stderr,
    )
    return run_local(replayed.request, args)


def ui(args: argparse.Namespace) -> int:
    """``mlflow server`` on the embedded store, until Ctrl-C."""
    import importlib.util
    import signal
    import subprocess

    from sm_toolkit.local import tracking

    if not 1 <= args.port <= 65535:
        raise ConfigError("--port", args.port, "a TCP port, 1-65535")
    store = args.workdir.resolve() / tracking.STORE_DIR / tracking.DB_FILE
    if not store.is_file():
        raise ConfigError(
            "--workdir", str(args.workdir), f"a work folder with local runs; no {store} yet"
        )
    if importlib.util.find_spec("mlflow") is None:
        raise LocalRunError("sm-toolkit ui needs mlflow; pip install 'sm-toolkit[tracking]'")
    print(f"sm-toolkit: MLflow UI of {store} at http://127.0.0.1:{args.port}", file=sys.stderr)
    proc = subprocess.Popen(tracking.ui_command(args.workdir, args.port))
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())  # the server ends with us
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the server too (same process group)
        return proc.wait()


def overrides(pairs: list[str]) -> dict[str, str]:
    from sm_toolkit.spec.overrides import parse_overrides

    return parse_overrides(pairs)


def read_request(path: str) -> dict:
    """A CreateTrainingJob request from a JSON file (or - for stdin)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise ConfigError("--request", path, f"a readable JSON file ({exc.strerror})") from None
    try:
        request = json.loads(text)
    except ValueError as exc:
        raise ConfigError(
            "--request", path, f"valid JSON ({exc.msg} at line {exc.lineno})"
        ) from None
    if not isinstance(request, dict):
        raise ConfigError("--request", path, "a JSON object: the CreateTrainingJob request")
    return request


def spec_request(spec, args: argparse.Namespace) -> dict:
    """The spec's CreateTrainingJob request, as the SDK builds it, made local."""
    from sm_toolkit.aws.local_request import local_training_request
    from sm_toolkit.aws.names import unique_name

    name = args.job_name or unique_name(spec.name, tuning=False)
    request = local_training_request(spec, name, sdk=getattr(args, "sdk", None))
    args.set = []  # already in the spec: the SDK encoded them with the rest
    return request


def run_local(request: dict, args: argparse.Namespace) -> int:
    import signal
    import threading

    from sm_toolkit.local.engine import run_training_job
    from sm_toolkit.local.record import to_json

    request = dict(request)
    if args.job_name:
        from sm_toolkit.spec.overrides import check_job_name  # the spec models: only when named

        check_job_name(args.job_name, tuning=False)
        request["TrainingJobName"] = args.job_name
    if args.set:
        request["HyperParameters"] = {**request.get("HyperParameters", {}), **overrides(args.set)}
    stop = threading.Event()

    def stop_job(signum, _frame) -> None:  # Ctrl-C or SIGTERM: StopTrainingJob, then report
        print(f"sm-toolkit: {signal.Signals(signum).name}: stopping the job", file=sys.stderr)
        stop.set()

    previous = {s: signal.signal(s, stop_job) for s in (signal.SIGINT, signal.SIGTERM)}
    echo = None if args.quiet else (lambda line: print(line, flush=True))
    try:
        doc = run_training_job(
            request,
            workdir=args.workdir,
            backend=args.backend,
            image=args.image,
            on_line=echo,
            stop_event=stop,
            interrupt_after=args.interrupt_after,
            network=args.network,
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(to_json(doc))
    return 0 if doc["TrainingJobStatus"] == "Completed" else 1
