"""A rendered request made local, the way SageMaker local mode makes it.

``render`` produces the request a launch sends: the code as ``s3://.../sourcedir.tar.gz``
and local input folders as the S3 prefixes a launch would upload them to. For a run on this
machine nothing is uploaded; as in SageMaker local mode (``instance_type="local"``), the
code is named by ``sagemaker_submit_directory = "\\"file:///abs/source_dir\\""`` and each
local channel by ``S3Uri = file:///abs/path``. Works on both request shapes:
CreateTrainingJob (``HyperParameters``) and CreateHyperParameterTuningJob
(``TrainingJobDefinition.StaticHyperParameters``). Pure: returns a new dict.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from sm_toolkit.spec import JobSpec

SUBMIT_DIRECTORY = "sagemaker_submit_directory"


def file_uri(path: str | Path) -> str:
    """``file:///abs/path`` as local mode writes it (no percent-encoding)."""
    return "file://" + str(Path(path).resolve())


def localize_request(request: dict[str, Any], spec: JobSpec) -> dict[str, Any]:
    """``request`` with the spec's local code and local input folders as file:// URIs."""
    out = copy.deepcopy(request)
    job = out.get("TrainingJobDefinition", out)  # the tuning shape nests the training job
    hyperparameters = job.get("StaticHyperParameters", job.get("HyperParameters"))
    if spec.source_dir is not None and hyperparameters is not None:
        # Framework hyperparameters are JSON-encoded strings: the URI in quotes.
        hyperparameters[SUBMIT_DIRECTORY] = json.dumps(file_uri(spec.source_dir))
    local_inputs = {ch: uri for ch, uri in spec.inputs.items() if not uri.startswith("s3://")}
    for channel in job.get("InputDataConfig") or []:
        source = local_inputs.get(channel["ChannelName"])
        s3 = channel.get("DataSource", {}).get("S3DataSource")
        if source is not None and s3 is not None:
            s3["S3Uri"] = file_uri(source)
    return out
