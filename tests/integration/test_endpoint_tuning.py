"""Tuning jobs through ``sm-toolkit serve`` with boto3: the local tuner runs the request,
its trials are the endpoint's training jobs, Describe has the counters and the best trial,
and the endpoint's MLflow store has the tuning job as a parent run of its trials' runs.
"""

from __future__ import annotations

import boto3
import pytest
from endpoint_support import ROLE, USERSCRIPT, running_endpoint, wait_for

pytestmark = pytest.mark.integration


METRIC = "train:loss"


def tuning_request(name: str, bucket: str, *, jobs: int = 3, parallel: int = 2) -> dict:
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Random",
            "RandomSeed": 7,
            "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": METRIC},
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs": jobs,
                "MaxParallelTrainingJobs": parallel,
            },
            "ParameterRanges": {
                "ContinuousParameterRanges": [
                    {"Name": "scale", "MinValue": "0.5", "MaxValue": "5", "ScalingType": "Linear"}
                ]
            },
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": {
                "mode": '"ok"',
                "epochs": "2",
                "sagemaker_program": '"train.py"',
                "sagemaker_submit_directory": f'"file://{USERSCRIPT}"',
            },
            "AlgorithmSpecification": {
                "TrainingImage": "sm-toolkit:latest",
                "TrainingInputMode": "File",
                "MetricDefinitions": [{"Name": METRIC, "Regex": METRIC + r"=([0-9.]+)"}],
            },
            "RoleArn": ROLE,
            "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/tuning"},
            "ResourceConfig": {
                "InstanceType": "ml.m5.large",
                "InstanceCount": 1,
                "VolumeSizeInGB": 1,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        },
    }


@pytest.fixture(scope="module")
def serve_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def sm(serve_dir):
    with running_endpoint(serve_dir) as served:
        boto3.client("s3", region_name="us-east-1", endpoint_url=served.url).create_bucket(
            Bucket="tune-bucket"
        )
        yield boto3.client("sagemaker", region_name="us-east-1", endpoint_url=served.url)


def test_tuning_job_runs_trials_and_reports_the_best(sm, serve_dir):
    arn = sm.create_hyper_parameter_tuning_job(**tuning_request("ep-tune", "tune-bucket"))[
        "HyperParameterTuningJobArn"
    ]
    assert arn.endswith(":hyper-parameter-tuning-job/ep-tune")
    doc = wait_for(
        lambda: (
            (d := sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="ep-tune"))[
                "HyperParameterTuningJobStatus"
            ]
            != "InProgress"
            and d
        ),
        timeout=300,
        every=1,
    )
    assert doc["HyperParameterTuningJobStatus"] == "Completed", doc.get("FailureReason")
    assert doc["TrainingJobStatusCounters"]["Completed"] == 3
    assert doc["ObjectiveStatusCounters"]["Succeeded"] == 3
    trials = sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="ep-tune",
        SortBy="FinalObjectiveMetricValue",
        SortOrder="Ascending",
    )["TrainingJobSummaries"]
    assert len(trials) == 3
    values = [t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for t in trials]
    assert values == sorted(values)
    assert doc["BestTrainingJob"]["TrainingJobName"] == trials[0]["TrainingJobName"]
    assert set(trials[0]["TunedHyperParameters"]) == {"scale"}
    # the trials are ordinary training jobs of the endpoint
    listed = {
        s["TrainingJobName"]
        for s in sm.list_training_jobs(NameContains="ep-tune-")["TrainingJobSummaries"]
    }
    assert listed == {t["TrainingJobName"] for t in trials}
    summaries = sm.list_hyper_parameter_tuning_jobs(NameContains="ep-tune")[
        "HyperParameterTuningJobSummaries"
    ]
    assert [s["HyperParameterTuningJobName"] for s in summaries] == ["ep-tune"]
    assert summaries[0]["Strategy"] == "Random"
    with pytest.raises(sm.exceptions.ResourceInUse):
        sm.create_hyper_parameter_tuning_job(**tuning_request("ep-tune", "tune-bucket"))
    _assert_tracked_as_parent_and_children(serve_dir, "ep-tune", trials, doc)


def _assert_tracked_as_parent_and_children(serve_dir, name: str, trials, doc) -> None:
    """One parent run for the tuning job; each trial's run its child, tagged as AMT says."""
    mlflow = pytest.importorskip("mlflow")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{serve_dir}/mlflow/mlflow.db")
    experiment = client.get_experiment_by_name("sm-toolkit")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    (parent,) = [r for r in runs if r.info.run_name == name]
    children = {
        r.info.run_name: r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert set(children) == {t["TrainingJobName"] for t in trials}
    assert parent.info.status == "FINISHED"
    assert {c.data.tags["sm-toolkit.trial_status"] for c in children.values()} == {"Completed"}
    best = doc["BestTrainingJob"]
    assert parent.data.tags["sm-toolkit.best_trial"] == best["TrainingJobName"]
    objective = best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
    assert parent.data.metrics["best_objective"] == pytest.approx(objective, rel=1e-6)


def test_refused_tuning_request_and_unknown_job(sm):
    bad = tuning_request("ep-tune-bad", "tune-bucket")
    bad["HyperParameterTuningJobConfig"]["Strategy"] = "Grid"  # Grid takes categorical only
    with pytest.raises(sm.exceptions.ClientError, match="ValidationException"):
        sm.create_hyper_parameter_tuning_job(**bad)
    with pytest.raises(sm.exceptions.ResourceNotFound):
        sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="ep-none")
    with pytest.raises(sm.exceptions.ResourceNotFound):
        sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="ep-none")


def test_stopping_a_tuning_job_stops_its_trials(sm):
    request = tuning_request("ep-tune-stop", "tune-bucket", jobs=4, parallel=2)
    request["TrainingJobDefinition"]["StaticHyperParameters"]["mode"] = '"sleep"'
    sm.create_hyper_parameter_tuning_job(**request)

    def both_training() -> bool:  # both trials running their scripts, not just created
        trials = sm.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName="ep-tune-stop"
        )["TrainingJobSummaries"]
        return len(trials) == 2 and all(
            sm.describe_training_job(TrainingJobName=t["TrainingJobName"])["SecondaryStatus"]
            == "Training"
            for t in trials
        )

    wait_for(both_training, timeout=120)
    sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="ep-tune-stop")
    doc = wait_for(
        lambda: (
            (
                d := sm.describe_hyper_parameter_tuning_job(
                    HyperParameterTuningJobName="ep-tune-stop"
                )
            )["HyperParameterTuningJobStatus"]
            == "Stopped"
            and d
        ),
        timeout=120,
        every=0.5,
    )
    trials = sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="ep-tune-stop"
    )["TrainingJobSummaries"]
    seen = (
        doc["TrainingJobStatusCounters"],
        [(t["TrainingJobStatus"], t.get("FailureReason")) for t in trials],
    )
    assert doc["TrainingJobStatusCounters"]["Stopped"] == 2, seen
    assert doc["TrainingJobStatusCounters"]["InProgress"] == 0, seen
    assert len(trials) == 2  # no trial started after the stop
    with pytest.raises(sm.exceptions.ClientError, match="status Stopped"):
        sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="ep-tune-stop")


def test_sdk_v2_hyperparameter_tuner(sm, monkeypatch):
    """HyperparameterTuner(...).fit(), .best_training_job(), .analytics().dataframe()."""
    import sagemaker
    from sagemaker.pytorch import PyTorch
    from sagemaker.tuner import ContinuousParameter, HyperparameterTuner

    monkeypatch.setenv("AWS_ENDPOINT_URL", sm.meta.endpoint_url)
    session = sagemaker.Session(
        boto_session=boto3.Session(region_name="us-east-1"), default_bucket="tune-bucket"
    )
    estimator = PyTorch(
        entry_point="train.py",
        source_dir=str(USERSCRIPT),
        role=ROLE,
        image_uri="sm-toolkit:latest",
        instance_type="ml.m5.large",
        instance_count=1,
        hyperparameters={"epochs": 2},
        sagemaker_session=session,
        disable_profiler=True,
        debugger_hook_config=False,
    )
    tuner = HyperparameterTuner(
        estimator,
        objective_metric_name=METRIC,
        objective_type="Minimize",
        hyperparameter_ranges={"scale": ContinuousParameter(0.5, 5)},
        metric_definitions=[{"Name": METRIC, "Regex": METRIC + r"=([0-9.]+)"}],
        max_jobs=2,
        max_parallel_jobs=2,
        strategy="Random",
    )
    tuner.fit(wait=True, job_name="ep-sdk-tune")
    frame = tuner.analytics().dataframe()
    assert len(frame) == 2 and frame["TrainingJobStatus"].eq("Completed").all()
    best = frame.sort_values("FinalObjectiveValue").iloc[0]["TrainingJobName"]
    assert tuner.best_training_job() == best
