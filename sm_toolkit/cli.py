"""``sm-toolkit``: validate, render, launch, run locally and tune one job spec.

The shell around the pure parts: parse arguments, load the spec once, call one function,
print the result. A user's mistake ends in one line and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from sm_toolkit.errors import MISSING, ConfigError, ToolkitError

DEFAULT_WORKDIR = Path(".sm-toolkit")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sm-toolkit", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="check a spec and print what the SDK will change")
    v.add_argument("spec")

    r = sub.add_parser(
        "render",
        help="print the exact CreateTrainingJob / CreateHyperParameterTuningJob request (offline)",
    )
    r.add_argument("spec")
    r.add_argument("--job-name")

    la = sub.add_parser("launch", help="submit the job (or tuning job) to SageMaker")
    la.add_argument("spec")
    la.add_argument("--job-name")
    la.add_argument("--wait", action="store_true")

    ru = sub.add_parser("run", help="run the job: --local on this machine, else on SageMaker")
    ru.add_argument("spec", nargs="?", help="the job spec (or give --request)")
    ru.add_argument("--local", action="store_true")
    ru.add_argument(
        "--request",
        metavar="FILE",
        help="a CreateTrainingJob request as JSON (what `aws sagemaker "
        "create-training-job --cli-input-json` takes; - for stdin), run with --local",
    )
    ru.add_argument(
        "--backend",
        choices=["process", "docker"],
        default="process",
        help="process: this machine's Python; docker: the training image",
    )
    ru.add_argument(
        "--image",
        help="docker backend: run this image instead of the request's "
        "TrainingImage (e.g. sm-toolkit:latest from `make build`)",
    )
    ru.add_argument("--job-name")
    ru.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    ru.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a hyperparameter for this run",
    )
    ru.add_argument("--quiet", action="store_true", help="don't echo the training log")
    ru.add_argument(
        "--interrupt-after",
        type=float,
        metavar="SECONDS",
        help="simulate a spot reclaim: SIGTERM the job once its script has "
        "run SECONDS, then restart it (checkpoints restore from S3)",
    )

    t = sub.add_parser("tune", help="run the tuning section: --local on this machine")
    t.add_argument("spec")
    t.add_argument("--local", action="store_true")
    t.add_argument("--job-name")
    t.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    t.add_argument("--resume", action="store_true",
                   help="continue a local tuning job that was killed: only the remaining "
                   "trials run (its study is <workdir>/tuning/<job>/study.db)")

    sub.add_parser("demo", help="train the CNN locally against an embedded S3 (no AWS)")
    return p


def main(argv: list[str] | None = None) -> int:
    # The v2 SDK is pinned on purpose; its deprecation banner and config chatter are noise.
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    logging.getLogger("sagemaker.config").setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ToolkitError as exc:
        if args.debug:
            raise
        print(f"sm-toolkit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # the SDK's or AWS's own refusal: one line, not a traceback
        if args.debug or not _is_service_error(exc):
            raise
        print(f"sm-toolkit: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _is_service_error(exc: Exception) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, ClientError | BotoCoreError | ValueError)


def _load(path: str):
    from sm_toolkit.spec import load_spec, notices

    spec = load_spec(path)
    for note in notices(spec):
        print(f"sm-toolkit: note: {note}", file=sys.stderr)
    return spec


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from sm_toolkit.local.demo import run_demo

        return run_demo()
    if args.command == "run" and args.request:
        if not args.local:
            raise ConfigError("--request", args.request, "runs with --local (this machine)")
        return _run_local(_read_request(args.request), args)
    if args.command == "run" and not args.spec:
        raise ConfigError("spec", MISSING, "give a job spec, or --request FILE with --local")
    spec = _load(args.spec)
    if args.command == "validate":
        kind = "tuning job" if spec.tuning else "training job"
        print(f"{args.spec}: OK ({kind} {spec.tuning.job_name if spec.tuning else spec.name})")
        return 0
    if args.command == "render":
        from sm_toolkit.aws.render import render

        rendered = render(spec, job_name=args.job_name)
        print(
            json.dumps(
                {
                    "Operation": rendered.operation,
                    "Request": rendered.request,
                    "Uploads": rendered.uploads,
                },
                indent=2,
                sort_keys=True,
            )
        )
        return 0
    if args.command == "launch" or (args.command == "run" and not args.local):
        return _launch(spec, args.job_name, wait=args.command == "run" or args.wait)
    if args.command == "run":
        return _run_local(_spec_request(spec, args), args)
    return _tune(spec, args)


def _launch(spec, job_name: str | None, *, wait: bool) -> int:
    from sm_toolkit.aws.launch import launch

    launched = launch(spec, job_name=job_name, wait=wait)
    status_key = (
        "TrainingJobStatus" if launched.kind == "training" else "HyperParameterTuningJobStatus"
    )
    print(f"{launched.kind} job {launched.name}: {launched.description.get(status_key)}")
    return 0


def _overrides(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError("--set", pair, "KEY=VALUE, e.g. --set epochs=3")
        out[key] = value
    return out


def _read_request(path: str) -> dict:
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


def _spec_request(spec, args: argparse.Namespace) -> dict:
    """The spec's CreateTrainingJob request, as the SDK builds it, made local."""
    from sm_toolkit.aws.local_request import local_training_request

    request = local_training_request(
        spec, args.job_name or unique_name(spec.name), _overrides(args.set)
    )
    args.set = []  # applied: the SDK encoded them with the rest
    return request


def unique_name(base: str) -> str:
    """``base`` plus a timestamp, as the SDK's base_job_name makes names (63 at most)."""
    import datetime as dt

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d-%H-%M-%S-%f")[:-3]
    return f"{base[: 63 - len(stamp) - 1].rstrip('-')}-{stamp}"


def _run_local(request: dict, args: argparse.Namespace) -> int:
    import signal
    import threading

    from sm_toolkit.local.engine import run_training_job
    from sm_toolkit.local.record import to_json

    request = dict(request)
    if args.job_name:
        request["TrainingJobName"] = args.job_name
    if args.set:
        request["HyperParameters"] = {**request.get("HyperParameters", {}), **_overrides(args.set)}
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
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(to_json(doc))
    return 0 if doc["TrainingJobStatus"] == "Completed" else 1


def _tune(spec, args: argparse.Namespace) -> int:
    if spec.tuning is None:
        raise ConfigError("tuning", MISSING, "a tuning section is needed to tune (see examples/)")
    if args.job_name:  # re-validated: tuning job names have their own 32-character limit
        from sm_toolkit.spec import TuningSpec

        data = spec.tuning.model_dump()
        data["job_name"] = args.job_name
        try:
            tuning = TuningSpec.model_validate(data)
        except ValueError:
            raise ConfigError(
                "--job-name",
                args.job_name,
                "at most 32 letters, digits and hyphens (a tuning job name)",
            ) from None
        spec = spec.model_copy(update={"tuning": tuning})
    if not args.local:
        if args.resume:
            raise ConfigError("--resume", True, "only with --local (a local tuning job)")
        return _launch(spec, args.job_name, wait=False)
    from sm_toolkit.aws.local_request import localize_request
    from sm_toolkit.aws.render import render
    from sm_toolkit.local.tuning import run_local_tuning

    # The local side runs the request, never the spec: render it as a launch would, then
    # point code and local channels at this machine as SageMaker local mode does.
    request = localize_request(render(spec, job_name=args.job_name).request, spec)
    result = run_local_tuning(request, workdir=args.workdir, resume=args.resume)
    if result.best is None:
        print(f"sm-toolkit: tuning job {result.job_name}: no trial completed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
