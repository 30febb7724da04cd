"""localize_request: a rendered request's code and local channels as file:// URIs, as SageMaker
local mode names them, for both request shapes."""

import json
import sys
from pathlib import Path

from sm_toolkit.aws.local_request import localize_request
from sm_toolkit.aws.render import render
from sm_toolkit.spec import parse_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "quadratic"))
from quadratic_support import FIXTURE_DIR, job_dict  # noqa: E402


def _spec(tmp_path, *, tuning=True):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    job = job_dict()
    if not tuning:
        job.pop("tuning")
    job["inputs"] = {"train": str(data_dir), "test": "s3://sm-toolkit-test/data/test"}
    return parse_spec(job, base_dir=FIXTURE_DIR), data_dir


def _channels(job):
    return {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]
    }


def test_tuning_request_gets_local_code_and_channels(tmp_path):
    spec, data_dir = _spec(tmp_path)
    rendered = render(spec).request
    local = localize_request(rendered, spec)
    static = local["TrainingJobDefinition"]["StaticHyperParameters"]
    assert static["sagemaker_submit_directory"] == json.dumps(f"file://{FIXTURE_DIR}")
    assert json.loads(static["sagemaker_submit_directory"]).startswith("file:///")
    channels = _channels(local["TrainingJobDefinition"])
    assert channels == {"train": f"file://{data_dir}", "test": "s3://sm-toolkit-test/data/test"}
    # Pure: the rendered request still names the S3 locations a launch uses.
    before = rendered["TrainingJobDefinition"]["StaticHyperParameters"]
    assert before["sagemaker_submit_directory"].startswith('"s3://')
    assert _channels(rendered["TrainingJobDefinition"])["train"].startswith("s3://")
    # Everything else is untouched.
    assert {k: v for k, v in static.items() if k != "sagemaker_submit_directory"} == {
        k: v for k, v in before.items() if k != "sagemaker_submit_directory"
    }


def test_training_request_gets_the_same(tmp_path):
    spec, data_dir = _spec(tmp_path, tuning=False)
    local = localize_request(render(spec).request, spec)
    assert local["HyperParameters"]["sagemaker_submit_directory"] == json.dumps(
        f"file://{FIXTURE_DIR}"
    )
    assert _channels(local)["train"] == f"file://{data_dir}"
