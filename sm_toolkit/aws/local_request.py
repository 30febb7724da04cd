"""A rendered request made runnable on this machine, as SageMaker local mode does it.

``render`` gives the request a launch would send: its code is ``sourcedir.tar.gz`` under
``output_path`` and its local inputs are uploaded first. For a local run nothing needs to be
uploaded: the code location becomes ``file://<source_dir>`` and a local input's channel URI
``file://<path>`` (SageMaker local mode's ``local_code`` convention, which the local engine
reads). Everything else of the request is left exactly as the SDK built it. Pure.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from sm_toolkit import contract
from sm_toolkit.spec import JobSpec


def localize_request(request: dict[str, Any], spec: JobSpec) -> dict[str, Any]:
    """A CreateTrainingJob or CreateHyperParameterTuningJob request with local code/inputs."""
    out = copy.deepcopy(request)
    job = out.get("TrainingJobDefinition", out)  # a tuning request carries the job inside
    hps = job.get("StaticHyperParameters" if "TrainingJobDefinition" in out else "HyperParameters")
    if hps is not None and contract.HP_SUBMIT_DIRECTORY in hps and spec.source_dir:
        hps[contract.HP_SUBMIT_DIRECTORY] = json.dumps(f"file://{spec.source_dir}")
    local = {ch: uri for ch, uri in spec.inputs.items() if not uri.startswith("s3://")}
    for channel in job.get("InputDataConfig", []):
        if channel["ChannelName"] in local:
            source = channel["DataSource"]["S3DataSource"]
            source["S3Uri"] = f"file://{local[channel['ChannelName']]}"
    return out


def local_training_request(
    spec: JobSpec, job_name: str, overrides: dict[str, Any] | None = None, *, sdk: str | None = None
) -> dict[str, Any]:
    """The spec's CreateTrainingJob request as the SDK builds it (with hyperparameter
    ``overrides``, encoded by the SDK like the rest), made local."""
    hps = {**spec.hyperparameters, **(overrides or {})}
    single = spec.model_copy(update={"tuning": None, "hyperparameters": hps})
    return localize_request(render_for_local(single, job_name, sdk), single)


def render_for_local(spec: JobSpec, job_name: str | None, sdk: str | None) -> dict[str, Any]:
    """The request of a local run. Under SDK v3 the code and its ``sm_drivers`` channel are
    made by the SDK itself, so they are uploaded for real (your AWS settings; a moto on
    127.0.0.1 under AWS_ENDPOINT_URL stays local); under v2 nothing needs uploading."""
    from sm_toolkit.aws import generation
    from sm_toolkit.aws.render import render  # the SDK is heavy: only when a spec is rendered

    sdk = generation.resolve(sdk)
    session = None
    if sdk == "v3":
        import boto3

        session = boto3.Session(region_name=spec.region)
    return render(spec, job_name=job_name, boto_session=session, sdk=sdk).request
