"""Pure parts of the docker backend: the local-mode estimator and the compose-log splitter."""

from __future__ import annotations

from pathlib import Path

from sm_toolkit.aws.sdk_v2 import build_local_estimator
from sm_toolkit.local.docker import _compose_log, offline_local_session
from sm_toolkit.spec import load_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_local_estimator_leaves_spot_and_checkpoints_to_sm_toolkit():
    spec = load_spec(EXAMPLES / "cnn-spot.yaml")
    assert spec.spot is not None and spec.checkpoint is not None
    estimator = build_local_estimator(spec, offline_local_session(), "sm-toolkit:test")
    assert (estimator.instance_type, estimator.image_uri) == ("local", "sm-toolkit:test")
    # Local mode raises ValueError on either of these; sm-toolkit mounts and syncs itself.
    assert not estimator.use_spot_instances
    assert estimator.checkpoint_s3_uri is None and estimator.checkpoint_local_path is None
    assert estimator.environment["SM_CHECKPOINT_DIR"] == spec.checkpoint.local_path
    assert estimator.hyperparameters()["checkpoint_every"] == "50"  # as SageMaker sends it


def test_compose_log_lines_arrive_whole_and_without_colours():
    lines: list[str] = []
    with _compose_log(lines.append):
        print("\x1b[36malgo-1-abcde |\x1b[0m [metrics] epoch=1 ", end="")
        print("val:loss=0.5\r")
        print("tail without newline", end="")
    assert lines == ["algo-1-abcde | [metrics] epoch=1 val:loss=0.5", "tail without newline"]
