"""Local tuning through the real engine: the SDK-rendered tuning request, made local
(code from the fixture folder), each trial's CreateTrainingJob request a real training job
(sagemaker-training launcher, relocated /opt/ml, artifacts uploaded to a moto S3 on
127.0.0.1) of the quadratic fixture script."""

import json
import sys
from pathlib import Path

import boto3
import pytest

from sm_toolkit.aws.local_request import localize_request
from sm_toolkit.aws.render import render
from sm_toolkit.local.tuning import run_local_tuning
from sm_toolkit.spec import parse_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "quadratic"))
from quadratic_support import (  # noqa: E402
    FIXTURE_DIR,
    FakeRunner,
    job_dict,
    make_request,
    make_spec,
    quadratic_train,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def moto_s3():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="sm-toolkit-test")
        yield s3
    server.stop()


@pytest.mark.slow
def test_parallel_trials_run_the_script_with_their_hyperparameters(tmp_path, moto_s3):
    spec = make_spec(max_jobs=2, max_parallel_jobs=2, epochs=2, sleep=0.05)
    request = localize_request(render(spec).request, spec)
    result = run_local_tuning(request, workdir=tmp_path, log=lambda line: None)
    assert [t.status for t in result.trials] == ["Completed", "Completed"]
    for trial in result.trials:
        hps = trial.hyperparameters
        # The script computed its loss from the values the tuner chose (-x/-y reached it).
        expected = quadratic_train.loss(hps["x"], hps["y"], hps["optimizer"], 2)
        assert trial.objective == pytest.approx(expected, abs=1e-5)
        assert len(trial.intermediate) == 2
        bucket, key = trial.model_artifacts[len("s3://") :].split("/", 1)
        assert moto_s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0
        job_dir = tmp_path / "tuning" / "quad" / "jobs" / trial.name
        assert trial.job_dir == str(job_dir) and (job_dir / "algo-1.log").is_file()
    assert result.best.objective == min(t.objective for t in result.trials)
    assert result.leaderboard_csv.is_file() and len(result.plots) == 3


@pytest.mark.slow
def test_early_stopping_stops_a_real_job_that_falls_behind(tmp_path, moto_s3):
    # Three good finished trials, made cheaply by the in-process fake, warm-start the child
    # (IdenticalDataAndAlgorithm keeps their per-epoch values): at epoch 1 their running
    # averages are about 2.0, so the child's real job, at f(x, y, opt) + 2 > 2.0 whatever
    # it draws, falls behind the median and must be stopped there.
    good = {
        "x": {"type": "categorical", "values": [0.9, 1.0, 1.1]},
        "y": {"type": "categorical", "values": [2]},
        "optimizer": {"type": "categorical", "values": ["adam"]},
    }
    parent = make_request(
        job_name="parent",
        strategy="Grid",
        max_jobs=None,
        max_parallel_jobs=1,
        epochs=6,
        sleep=0.5,
        ranges=good,
    )
    run_local_tuning(parent, workdir=tmp_path, run_job=FakeRunner(), log=lambda line: None)
    child_spec = make_spec(
        job_name="child",
        max_jobs=1,
        max_parallel_jobs=1,
        epochs=6,
        sleep=0.5,
        early_stopping="Auto",
        warm_start={"type": "IdenticalDataAndAlgorithm", "parents": ["parent"]},
    )
    lines: list[str] = []
    child = localize_request(render(child_spec).request, child_spec)
    result = run_local_tuning(child, workdir=tmp_path, log=lines.append)
    assert result.warm_start_trials == 3
    (trial,) = result.trials
    assert trial.intermediate[0] > 2.0
    assert trial.status == "Stopped" and trial.early_stopped
    # SIGTERM reached the job within an epoch or two of the decision, long before epoch 6.
    assert 1 <= trial.epochs <= 2
    assert "Stopped (early stopped)" in " ".join(lines)
    assert result.best is None and result.leaderboard[0]["status"] == "Stopped (early stopped)"


@pytest.mark.slow
def test_trials_run_without_the_warm_pool_and_rules_the_spec_has(tmp_path, moto_s3):
    # The spec keeps its hosts 10 minutes and evaluates a Debugger rule; a training job of it
    # would. A tuning request cannot carry either, so the trials neither keep a pool nor
    # evaluate rules, as on SageMaker.
    job = job_dict(max_jobs=1, max_parallel_jobs=1, epochs=1, sleep=0.0)
    job.update(warm_pool={"keep_alive_seconds": 600}, rules=["class_imbalance"])
    spec = parse_spec(job, base_dir=FIXTURE_DIR)
    training = render(spec.model_copy(update={"tuning": None})).request
    assert training["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 600
    assert training["DebugRuleConfigurations"]
    request = localize_request(render(spec).request, spec)
    (trial,) = run_local_tuning(request, workdir=tmp_path, log=lambda line: None).trials
    assert trial.status == "Completed"
    doc = json.loads((Path(trial.job_dir) / "describe.json").read_text())
    assert "KeepAlivePeriodInSeconds" not in doc["ResourceConfig"]
    assert doc.get("WarmPoolStatus") is None
    for absent in ("DebugRuleConfigurations", "DebugRuleEvaluationStatuses", "ProfilerConfig"):
        assert absent not in doc
    assert doc["HyperParameters"]["_tuning_objective_metric"] == "val:loss"
    assert not (tmp_path / "tuning" / "quad" / "warm-pools").exists()


@pytest.mark.slow
def test_a_two_host_trial_counts_each_epoch_once(tmp_path, moto_s3):
    """Every host of a 2-instance trial prints the objective; the pruner and the record see
    the first host's values, one per epoch, not both hosts' copies."""
    data = job_dict(max_jobs=1, max_parallel_jobs=1, epochs=3, sleep=0.05)
    data["instance"] = {"type": "ml.c5.xlarge", "count": 2}
    spec = parse_spec(data, base_dir=FIXTURE_DIR)
    request = localize_request(render(spec).request, spec)
    result = run_local_tuning(request, workdir=tmp_path, log=lambda line: None)
    (trial,) = result.trials
    assert trial.status == "Completed", trial.failure_reason
    logs = sorted((tmp_path / "tuning" / "quad" / "jobs" / trial.name).glob("algo-*.log"))
    assert [p.name for p in logs] == ["algo-1.log", "algo-2.log"]
    assert all(p.read_text().count("[metrics] epoch=") == 3 for p in logs)
    assert len(trial.intermediate) == 3
    hps = trial.hyperparameters
    assert trial.intermediate == pytest.approx(
        [quadratic_train.loss(hps["x"], hps["y"], hps["optimizer"], e) for e in (1, 2, 3)],
        abs=1e-5,
    )
