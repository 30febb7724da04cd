"""The SageMaker operations the endpoint serves, by name, and the tag operations."""

from __future__ import annotations

from sm_toolkit.endpoint.app import Handler
from sm_toolkit.endpoint.errors import ValidationError
from sm_toolkit.endpoint.listing import paginate
from sm_toolkit.endpoint.store import Store
from sm_toolkit.endpoint.training import Caller, TrainingJobs
from sm_toolkit.endpoint.tuning import TuningJobs


def handlers(trainings: TrainingJobs, tunings: TuningJobs | None = None) -> dict[str, Handler]:
    """Operation name -> handler(request, caller) -> response document."""
    store = trainings.store
    ops: dict[str, Handler] = {
        "CreateTrainingJob": trainings.create,
        "DescribeTrainingJob": lambda p, c: trainings.describe(p["TrainingJobName"]),
        "ListTrainingJobs": lambda p, c: trainings.list(p),
        "StopTrainingJob": lambda p, c: trainings.stop(p["TrainingJobName"]),
        "UpdateTrainingJob": lambda p, c: trainings.update(p["TrainingJobName"], p),
        "AddTags": lambda p, c: _add_tags(store, p),
        "ListTags": lambda p, c: _list_tags(store, p),
        "DeleteTags": lambda p, c: _delete_tags(store, p),
    }
    if tunings is not None:
        ops.update(
            {
                "CreateHyperParameterTuningJob": tunings.create,
                "DescribeHyperParameterTuningJob": lambda p, c: tunings.describe(
                    p["HyperParameterTuningJobName"]
                ),
                "ListHyperParameterTuningJobs": lambda p, c: tunings.list(p),
                "ListTrainingJobsForHyperParameterTuningJob": lambda p, c: tunings.list_trials(p),
                "StopHyperParameterTuningJob": lambda p, c: tunings.stop(
                    p["HyperParameterTuningJobName"]
                ),
            }
        )
    return ops


def _known(store: Store, arn: str) -> str:
    # Tags here belong to the jobs this endpoint runs; other resources live in moto.
    if not store.arn_exists(arn):
        raise ValidationError(
            f"Resource {arn} does not exist (this endpoint tags its training and tuning jobs)"
        )
    return arn


def _add_tags(store: Store, params: dict) -> dict:
    arn = _known(store, params["ResourceArn"])
    store.add_tags(arn, params["Tags"])
    return {"Tags": params["Tags"]}


def _list_tags(store: Store, params: dict) -> dict:
    return paginate(store.tags(_known(store, params["ResourceArn"])), params, list_key="Tags")


def _delete_tags(store: Store, params: dict) -> dict:
    store.delete_tags(_known(store, params["ResourceArn"]), params["TagKeys"])
    return {}


__all__ = ["Caller", "handlers"]
