"""``sm-toolkit run --from-job NAME --local --backend docker --image IMAGE``: the recorded job
(moto on 127.0.0.1 as the user's AWS) reruns in the image and reproduces its failure. Run as
a user types it (no --quiet): the container's log is echoed, then the job's description."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from test_run_from_job import create_job_on_aws, run_from_job  # noqa: E402


def test_replay_in_the_image_reproduces_the_failure(image, s3, bucket, tmp_path):
    create_job_on_aws(s3, bucket, "failed-in-image", lr="7.5")
    done = run_from_job(
        "failed-in-image", tmp_path, "--local", "--backend", "docker", "--image", image
    )
    assert done.returncode == 1, done.stderr
    cut = done.stdout.rindex("\n{")  # the echoed log, then the description
    log, doc = done.stdout[:cut], json.loads(done.stdout[cut:])
    assert "lr=7.5 diverges" in log  # the script's own traceback, echoed from the container
    assert doc["TrainingJobStatus"] == "Failed"
    assert "lr=7.5 diverges: loss is nan after 3 rows" in doc["FailureReason"]
