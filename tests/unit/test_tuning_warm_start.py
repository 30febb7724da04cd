"""Warm start from local parents (results store) and from SageMaker parents (botocore Stubber:
moto 5.2.5 does not implement ListTrainingJobsForHyperParameterTuningJob)."""

import datetime as dt
import sys
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from optuna.trial import TrialState

from sm_toolkit.errors import ConfigError
from sm_toolkit.local.tuning import run_local_tuning, search
from sm_toolkit.local.tuning.warm_start import (
    ParentJob,
    ParentTrial,
    load_sagemaker_parent,
    to_frozen_trial,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "quadratic"))
from quadratic_support import FakeRunner, make_config, make_request  # noqa: E402

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _tune(tmp_path, **kwargs):
    return run_local_tuning(
        make_request(**kwargs), workdir=tmp_path, run_job=FakeRunner(), log=lambda line: None
    )


def test_identical_warm_start_from_a_local_parent_feeds_the_sampler(tmp_path):
    parent = _tune(tmp_path, job_name="parent", max_jobs=8, max_parallel_jobs=2)
    child = _tune(
        tmp_path,
        job_name="child",
        strategy="Bayesian",
        max_jobs=4,
        max_parallel_jobs=1,
        warm_start={"type": "IdenticalDataAndAlgorithm", "parents": ["parent"]},
    )
    assert child.warm_start_trials == 8
    assert len(child.trials) == 4 and all(t.name.startswith("child-") for t in child.trials)
    # The parent's trials count as the GP's startup trials, so the child's very first trial is
    # already modelled: it lands closer to the optimum than the parent's median trial did.
    parent_losses = sorted(t.objective for t in parent.trials)
    assert child.trials[0].objective < parent_losses[len(parent_losses) // 2]


def _parent(trials, *, tuned=("x", "y", "optimizer"), static=None):
    return ParentJob(
        name="p",
        source="local",
        objective_metric="val:loss",
        objective_type="Minimize",
        tuned_names=frozenset(tuned),
        static_hyperparameters=static or {"epochs": 4, "sleep": 0.0},
        trials=tuple(trials),
    )


def test_identical_adds_only_trials_fully_inside_the_new_ranges():
    config = make_config(
        ranges={
            "x": {"type": "continuous", "min": 0.0, "max": 1.0},
            "y": {"type": "integer", "min": 0, "max": 5},
            "optimizer": {"type": "categorical", "values": ["sgd", "adam"]},
        }
    )
    space = search.build_space(config.ranges)
    inside = ParentTrial(
        "p-001", {"x": 0.5, "y": 2, "optimizer": "adam"}, "Completed", 1.0, (3.0, 2.0, 1.0)
    )
    outside = ParentTrial("p-002", {"x": 2.5, "y": 2, "optimizer": "adam"}, "Completed", 3.0)
    failed = ParentTrial("p-003", {"x": 0.5, "y": 2, "optimizer": "adam"}, "Failed", None)
    stopped = ParentTrial("p-004", {"x": 0.2, "y": 1, "optimizer": "sgd"}, "Stopped", 5.0, (5.0,))
    static = {"epochs": 4, "sleep": 0.0}
    frozen = [
        to_frozen_trial(t, _parent([]), space, identical=True, static_now=static)
        for t in (inside, outside, failed, stopped)
    ]
    assert frozen[1] is None and frozen[2] is None
    assert frozen[0].state == TrialState.COMPLETE and frozen[0].value == 1.0
    assert frozen[0].intermediate_values == {1: 3.0, 2: 2.0, 3: 1.0}
    assert frozen[0].params == {"x": 0.5, "y": 2, "optimizer": '"adam"'}
    assert frozen[3].state == TrialState.PRUNED


def test_transfer_learning_drops_params_outside_the_new_ranges_and_static_ones():
    # x was tuned in the parent and is static now; z is new and was static in the parent.
    config = make_config(
        ranges={
            "y": {"type": "integer", "min": 0, "max": 3},
            "z": {"type": "continuous", "min": 0.0, "max": 1.0},
        }
    )
    space = search.build_space(config.ranges)
    parent = _parent([], tuned=("x", "y"), static={"z": 0.25})
    keep = ParentTrial("p-001", {"x": 1.0, "y": 2}, "Completed", 1.0, (2.0, 1.0))
    partial = ParentTrial("p-002", {"x": 1.0, "y": 5}, "Completed", 2.0)
    tl = [
        to_frozen_trial(t, parent, space, identical=False, static_now={"x": 0.0})
        for t in (keep, partial)
    ]
    assert tl[0].params == {"y": 2, "z": 0.25} and tl[0].intermediate_values == {}
    assert tl[1].params == {"z": 0.25}
    # Identical would refuse both: x was tuned then but is static at another value now.
    assert to_frozen_trial(keep, parent, space, identical=True, static_now={"x": 0.0}) is None


def test_transfer_learning_from_a_local_parent_with_other_ranges(tmp_path):
    _tune(tmp_path, job_name="wide", max_jobs=6, max_parallel_jobs=2)
    child = _tune(
        tmp_path,
        job_name="narrow",
        max_jobs=2,
        max_parallel_jobs=1,
        ranges={
            "x": {"type": "continuous", "min": 0.5, "max": 1.5},
            "optimizer": {"type": "categorical", "values": ["adam", "sgd"]},
        },
        warm_start={"type": "TransferLearning", "parents": ["wide"]},
    )
    assert 1 <= child.warm_start_trials <= 6 and len(child.trials) == 2


def test_identical_refuses_a_parent_with_other_hyperparameter_names(tmp_path):
    _tune(tmp_path, job_name="parent", max_jobs=2)
    with pytest.raises(ConfigError, match="IdenticalDataAndAlgorithm needs the same"):
        _tune(
            tmp_path,
            job_name="child",
            max_jobs=2,
            ranges={"x": {"type": "continuous", "min": 0.0, "max": 1.0}},
            warm_start={"type": "IdenticalDataAndAlgorithm", "parents": ["parent"]},
        )


def test_a_parent_with_another_objective_is_refused(tmp_path):
    _tune(tmp_path, job_name="parent", max_jobs=2)
    with pytest.raises(ConfigError, match="same objective"):
        _tune(
            tmp_path,
            job_name="child",
            max_jobs=2,
            objective={"metric": "val:loss", "type": "Maximize"},
            warm_start={"type": "TransferLearning", "parents": ["parent"]},
        )


def _stubbed_client():
    client = boto3.client(
        "sagemaker",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    stubber = Stubber(client)
    stubber.add_response(
        "describe_hyper_parameter_tuning_job",
        {
            "HyperParameterTuningJobName": "cloudtune",
            "HyperParameterTuningJobArn": "arn:aws:sagemaker:us-east-1:123456789012:"
            "hyper-parameter-tuning-job/cloudtune",
            "HyperParameterTuningJobConfig": {
                "Strategy": "Bayesian",
                "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "val:loss"},
                "ResourceLimits": {"MaxParallelTrainingJobs": 2, "MaxNumberOfTrainingJobs": 3},
                "ParameterRanges": {
                    "ContinuousParameterRanges": [{"Name": "x", "MinValue": "-2", "MaxValue": "3"}],
                    "IntegerParameterRanges": [{"Name": "y", "MinValue": "0", "MaxValue": "5"}],
                    "CategoricalParameterRanges": [
                        {"Name": "optimizer", "Values": ['"sgd"', '"adam"']}
                    ],
                },
            },
            "TrainingJobDefinition": {
                "StaticHyperParameters": {
                    "epochs": "4",
                    "sleep": "0.0",
                    "sagemaker_program": '"train.py"',
                    "_tuning_objective_metric": '"val:loss"',
                },
                "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": "img"},
                "RoleArn": "arn:aws:iam::123456789012:role/SageMakerTrainingRole",
                "OutputDataConfig": {"S3OutputPath": "s3://b/o"},
                "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
            },
            "HyperParameterTuningJobStatus": "Completed",
            "CreationTime": NOW,
            "TrainingJobStatusCounters": {},
            "ObjectiveStatusCounters": {},
        },
        {"HyperParameterTuningJobName": "cloudtune"},
    )

    def summary(name, hps, status, value=None):
        item = {
            "TrainingJobName": name,
            "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
            "CreationTime": NOW,
            "TrainingJobStatus": status,
            "TunedHyperParameters": hps,
        }
        if value is not None:
            item["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "MetricName": "val:loss",
                "Value": value,
            }
            item["ObjectiveStatus"] = "Succeeded"
        return item

    page = {"HyperParameterTuningJobName": "cloudtune", "MaxResults": 100}
    stubber.add_response(
        "list_training_jobs_for_hyper_parameter_tuning_job",
        {
            "TrainingJobSummaries": [
                summary(
                    "cloudtune-001-aaaaaaaa",
                    {"x": "1.0", "y": "2", "optimizer": '"adam"'},
                    "Completed",
                    2.5,
                ),
                summary(
                    "cloudtune-002-bbbbbbbb",
                    {"x": "-1.5", "y": "4", "optimizer": '"sgd"'},
                    "Failed",
                ),
            ],
            "NextToken": "page2",
        },
        page,
    )
    stubber.add_response(
        "list_training_jobs_for_hyper_parameter_tuning_job",
        {
            "TrainingJobSummaries": [
                summary(
                    "cloudtune-003-cccccccc",
                    {"x": "0.5", "y": "1", "optimizer": '"sgd"'},
                    "Completed",
                    3.75,
                )
            ]
        },
        {**page, "NextToken": "page2"},
    )
    stubber.activate()
    return client, stubber


def test_sagemaker_parent_is_read_with_describe_and_paged_list():
    client, stubber = _stubbed_client()
    parent = load_sagemaker_parent("cloudtune", client)
    stubber.assert_no_pending_responses()
    assert parent.source == "sagemaker" and parent.objective_metric == "val:loss"
    assert parent.tuned_names == {"x", "y", "optimizer"}
    assert parent.static_hyperparameters == {"epochs": 4, "sleep": 0.0}
    assert [t.status for t in parent.trials] == ["Completed", "Failed", "Completed"]
    assert parent.trials[0].objective == 2.5 and parent.trials[1].objective is None
    space = search.build_space(make_config().ranges)
    frozen = to_frozen_trial(
        parent.trials[0], parent, space, identical=True, static_now={"epochs": 4, "sleep": 0.0}
    )
    assert frozen.params == {"x": 1.0, "y": 2, "optimizer": '"adam"'} and frozen.value == 2.5


def test_warm_start_from_a_sagemaker_parent_in_a_local_tuning_job(tmp_path):
    client, stubber = _stubbed_client()
    result = run_local_tuning(
        make_request(
            job_name="child",
            strategy="Bayesian",
            max_jobs=2,
            max_parallel_jobs=1,
            warm_start={"type": "IdenticalDataAndAlgorithm", "parents": ["cloudtune"]},
        ),
        workdir=tmp_path,
        run_job=FakeRunner(),
        sagemaker_client_factory=lambda: client,
        log=lambda line: None,
    )
    stubber.assert_no_pending_responses()
    assert result.warm_start_trials == 2 and len(result.trials) == 2


def test_an_unknown_parent_names_the_field_and_both_places_looked(tmp_path):
    client = boto3.client(
        "sagemaker",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    stubber = Stubber(client)
    stubber.add_client_error(
        "describe_hyper_parameter_tuning_job",
        "ResourceNotFound",
        "Amazon SageMaker can't find a tuning job named nope",
    )
    stubber.activate()
    with pytest.raises(
        ConfigError, match=r"^WarmStartConfig.ParentHyperParameterTuningJobs: 'nope'.*can't find"
    ):
        run_local_tuning(
            make_request(
                max_jobs=1,
                max_parallel_jobs=1,
                warm_start={"type": "TransferLearning", "parents": ["nope"]},
            ),
            workdir=tmp_path,
            run_job=FakeRunner(),
            sagemaker_client_factory=lambda: client,
            log=lambda line: None,
        )
