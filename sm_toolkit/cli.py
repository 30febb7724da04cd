"""``sm-toolkit``: validate, render, launch, run locally and tune one job spec.

The shell around the pure parts: parse arguments, load the spec once, call one function,
print the result. A user's mistake ends in one line and exit code 2, never a traceback.
The commands that run on this machine (run --local, serve, ui) are in ``cli_local.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from sm_toolkit import cli_local
from sm_toolkit.errors import MISSING, ConfigError, ToolkitError

DEFAULT_WORKDIR = Path(".sm-toolkit")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sm-toolkit", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="show the SDK's and botocore's INFO lines (quiet by default)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="check a spec and print what the SDK will change")
    v.add_argument("spec")
    _sdk_option(v)

    r = sub.add_parser(
        "render",
        help="print the exact CreateTrainingJob / CreateHyperParameterTuningJob request (offline)",
    )
    r.add_argument("spec")
    r.add_argument("--job-name")
    r.add_argument(
        "--upload",
        action="store_true",
        help="upload sourcedir.tar.gz and local inputs to S3 (your AWS settings), "
        "so the printed request runs as is with --cli-input-json",
    )
    _sdk_option(r)

    la = sub.add_parser("launch", help="submit the job (or tuning job) to SageMaker")
    la.add_argument("spec")
    la.add_argument("--job-name")
    la.add_argument("--wait", action="store_true")
    la.add_argument(
        "--region",
        help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION, then your profile's region)",
    )
    la.add_argument(
        "--unique-name",
        action="store_true",
        help="append a timestamp to the job name, as the SDK's base_job_name does "
        "(default: the name as given, which AWS refuses to reuse)",
    )
    _sdk_option(la)

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
        "--from-job",
        metavar="NAME",
        help="rerun a training job that ran on SageMaker (DescribeTrainingJob with your AWS "
        "settings) under a new name, with --local: its inputs, hyperparameters and image",
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
    ru.add_argument(
        "--network",
        help="docker backend: a Docker network of yours that the job's containers also "
        "join (where an MLflow server or another service of yours runs)",
    )
    ru.add_argument("--job-name")
    _sdk_option(ru)
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
    _sdk_option(t)
    t.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue a local tuning job that was killed: only the remaining "
        "trials run (its study is <workdir>/tuning/<job>/study.db)",
    )

    sub.add_parser("demo", help="train the CNN locally against an embedded S3 (no AWS)")

    ui = sub.add_parser(
        "ui",
        help="the MLflow UI of the local runs (the workdir's embedded store), on 127.0.0.1",
    )
    ui.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    ui.add_argument("--port", type=int, default=5000)

    se = sub.add_parser(
        "serve",
        help="a local SageMaker endpoint on 127.0.0.1: clients with "
        "AWS_ENDPOINT_URL set run their training and tuning jobs here",
    )
    se.add_argument("--port", type=int, default=8777, help="0 picks a free port")
    se.add_argument("--backend", choices=["process", "docker"], default="process")
    se.add_argument("--image", help="docker backend: run this image instead of TrainingImage")
    se.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    se.add_argument(
        "--s3",
        choices=["embedded", "aws"],
        default="embedded",
        help="embedded: S3 in this process (no AWS account); aws: your own AWS "
        "settings (clients set AWS_ENDPOINT_URL_SAGEMAKER only)",
    )
    return p


def _sdk_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sdk", choices=["v2", "v3"], help="SageMaker SDK generation (default: the one installed)"
    )


def main(argv: list[str] | None = None) -> int:
    # The v2 SDK is pinned on purpose; its deprecation banner and config chatter are noise.
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    # MLflow's usage telemetry goes to its own servers: off for what sm-toolkit runs (set the
    # variable to false to allow it), as the SageMaker SDK's is with a custom endpoint.
    from sm_toolkit.contract import MLFLOW_TELEMETRY_OPT_OUT_ENV

    os.environ.setdefault(MLFLOW_TELEMETRY_OPT_OUT_ENV, "true")
    args = _parser().parse_args(argv)
    _quiet_logs(args.verbose)
    try:
        return _dispatch(args)
    except ToolkitError as exc:
        if args.debug:
            raise
        _error(str(exc))
        return exc.exit_code
    except Exception as exc:  # the SDK's or AWS's own refusal: one line, not a traceback
        if args.debug:
            raise
        kind = "" if _is_service_error(exc) else "internal error (--debug shows where): "
        _error(f"{kind}{type(exc).__name__}: {exc}")
        return 1


def _error(message: str) -> None:
    from sm_toolkit.errors import elide

    print(elide(f"sm-toolkit: error: {message}", MAX_ERROR_LINE), file=sys.stderr)


MAX_ERROR_LINE = 300
# Loggers that print INFO lines (or the SDK's "No finished training job" warning on every
# tuning render) that a user did not ask for.
_NOISY_LOGGERS = ("sagemaker", "sagemaker.config", "botocore", "boto3", "urllib3", "s3transfer")


def _quiet_logs(verbose: bool) -> None:
    if verbose:  # the SDK's and botocore's own lines, with their logger names, on stderr
        logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s: %(message)s")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)


def _is_service_error(exc: Exception) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, ClientError | BotoCoreError | ValueError)


def _load(path: str):
    from sm_toolkit.spec import load_spec, notices

    spec = load_spec(path)
    for note in notices(spec):
        print(f"sm-toolkit: note: {note}", file=sys.stderr)
    return spec


def _checked_args(spec, args: argparse.Namespace):
    """--job-name and --set pass the same validation as the file; the spec with --set, and
    with the shell's MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_NAME when it has no tracking."""
    from sm_toolkit.spec.overrides import (
        apply_overrides,
        apply_tracking_environment,
        check_job_name,
    )

    if getattr(args, "job_name", None):
        tuning = spec.tuning is not None and args.command in ("render", "launch", "tune")
        check_job_name(args.job_name, tuning=tuning)
    spec = apply_overrides(spec, getattr(args, "set", None) or [])
    return apply_tracking_environment(spec, os.environ)


def _no_spec_command(args: argparse.Namespace) -> int | None:
    """The commands that take no job spec: their exit code, or None for the others."""
    if args.command == "demo":
        from sm_toolkit.local.demo import run_demo

        return run_demo()
    if args.command == "serve":
        return cli_local.serve(args)
    if args.command == "ui":
        return cli_local.ui(args)
    if args.command == "run" and args.from_job:
        return cli_local.replay(args)
    if args.command == "run" and args.request:
        if not args.local:
            raise ConfigError("--request", args.request, "runs with --local (this machine)")
        return cli_local.run_local(cli_local.read_request(args.request), args)
    if args.command == "run" and not args.spec:
        raise ConfigError(
            "spec", MISSING, "give a job spec, or --request FILE or --from-job NAME with --local"
        )
    return None


def _dispatch(args: argparse.Namespace) -> int:
    done = _no_spec_command(args)
    if done is not None:
        return done
    spec = _checked_args(_load(args.spec), args)  # --set applied, --job-name checked
    if args.command == "validate":
        return _validate(spec, args.spec, args.sdk)
    if args.command == "render":
        return _render(spec, args)
    if args.command == "launch" or (args.command == "run" and not args.local):
        return _launch(
            spec,
            args.job_name,
            wait=args.command == "run" or args.wait,
            region=getattr(args, "region", None),
            unique=getattr(args, "unique_name", False),
            sdk=args.sdk,
        )
    if args.sdk:  # run/tune --local render through the generation installed: say so if not
        from sm_toolkit.aws import generation

        generation.resolve(args.sdk)
    if args.command == "run":
        return cli_local.run_local(cli_local.spec_request(spec, args), args)
    return _tune(spec, args)


def _validate(spec, path: str, sdk: str | None) -> int:
    """The spec's own checks, what the SDK generation cannot express, then (with that
    generation installed) the request the SDK builds against the API's limits."""
    from sm_toolkit.aws import generation
    from sm_toolkit.aws.render import render
    from sm_toolkit.spec.rules import debugger_hook_note

    sdk = _check_generation(spec, sdk)
    if sdk is not None and sdk == generation.installed():
        render(spec, sdk=sdk)
    note = debugger_hook_note(spec)
    if note:
        print(f"sm-toolkit: note: {note}", file=sys.stderr)
    kind = "tuning job" if spec.tuning else "training job"
    name = spec.tuning.job_name if spec.tuning else spec.name
    print(f"{path}: OK ({kind} {name}{', SDK ' + sdk if sdk else ''})")
    return 0


def _check_generation(spec, sdk: str | None) -> str | None:
    """The generation a spec is checked against (``--sdk``, else the one installed, else
    none): v3 refuses what it cannot express, in one line."""
    from sm_toolkit.aws import generation, mapping

    sdk = sdk or generation.installed()
    if sdk == "v3":
        mapping.check_v3(spec)
    return sdk


def _render(spec, args: argparse.Namespace) -> int:
    """Print the bare request (JSON or nothing on stdout); uploads are listed on stderr."""
    from sm_toolkit.aws.render import render, upload_local_inputs

    session = None
    if args.upload:
        import boto3

        session = boto3.Session()
    rendered = render(spec, job_name=args.job_name, boto_session=session, sdk=args.sdk)
    text = json.dumps(rendered.request, indent=2, sort_keys=True, allow_nan=False)
    if session is not None:
        upload_local_inputs(spec, args.job_name or _default_name(spec), session)
    verb = "uploaded" if args.upload else "launch uploads (render --upload writes them)"
    for uri in rendered.uploads:
        print(f"sm-toolkit: {verb}: {uri}", file=sys.stderr)
    print(text)
    return 0


def _default_name(spec) -> str:
    return spec.tuning.job_name if spec.tuning is not None else spec.name


def _launch(
    spec,
    job_name: str | None,
    *,
    wait: bool,
    region: str | None = None,
    unique: bool = False,
    sdk: str | None = None,
) -> int:
    from sm_toolkit.aws.launch import launch, resolve_region
    from sm_toolkit.aws.names import unique_name

    region = resolve_region(spec, region)
    if unique:
        job_name = unique_name(job_name or _default_name(spec), tuning=spec.tuning is not None)
    print(
        f"sm-toolkit: launching {job_name or _default_name(spec)} in region {region}",
        file=sys.stderr,
    )
    launched = launch(spec, job_name=job_name, wait=wait, region=region, sdk=sdk)
    status_key = (
        "TrainingJobStatus" if launched.kind == "training" else "HyperParameterTuningJobStatus"
    )
    print(f"{launched.kind} job {launched.name}: {launched.description.get(status_key)}")
    return 0


def _tune(spec, args: argparse.Namespace) -> int:
    if spec.tuning is None:
        raise ConfigError("tuning", MISSING, "a tuning section is needed to tune (see examples/)")
    if args.job_name:  # checked as a tuning job name by _checked_args
        tuning = spec.tuning.model_copy(update={"job_name": args.job_name})
        spec = spec.model_copy(update={"tuning": tuning})
    if not args.local:
        if args.resume:
            raise ConfigError("--resume", True, "only with --local (a local tuning job)")
        return _launch(spec, args.job_name, wait=False, sdk=args.sdk)
    from sm_toolkit.aws.local_request import localize_request, render_for_local
    from sm_toolkit.local.tuning import run_local_tuning

    # The local side runs the request, never the spec: render it as a launch would, then
    # point code and local channels at this machine as SageMaker local mode does.
    request = localize_request(render_for_local(spec, args.job_name, args.sdk), spec)
    result = run_local_tuning(request, workdir=args.workdir, resume=args.resume)
    if result.best is None:
        print(f"sm-toolkit: tuning job {result.job_name}: no trial completed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
