"""Replay: a training job that ran (on AWS, or on any endpoint) as a new CreateTrainingJob.

``sm-toolkit run --from-job NAME --local`` reads DescribeTrainingJob of NAME with the user's
own AWS settings and turns the document into a request for the local engine. What the
request keeps is decided by botocore's service model, as data: every member of
CreateTrainingJob's input shape, at every depth, that the description carries. What is not
in that shape (status, times, ARNs, metrics, artifacts, the warm pool, the tuning job's
ARN) is dropped, and so is what DescribeTrainingJob does not return (Tags). The job gets a
new name, so the original stays as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sm_toolkit.aws.limits import operation_input
from sm_toolkit.errors import ConfigError

_NOT_FOUND = ("ValidationException", "ResourceNotFound")


@dataclass(frozen=True)
class Replay:
    """The request to run, and the top-level members of the description left out of it."""

    request: dict[str, Any]
    dropped: tuple[str, ...]


def _keep(value: Any, shape) -> Any:
    """``value`` cut to ``shape``: structures keep only the members the shape has."""
    if shape.type_name == "structure":
        return {k: _keep(v, shape.members[k]) for k, v in value.items() if k in shape.members}
    if shape.type_name == "list":
        return [_keep(v, shape.member) for v in value]
    if shape.type_name == "map":
        return {k: _keep(v, shape.value) for k, v in value.items()}
    return value


def replay_request(description: dict[str, Any], name: str) -> Replay:
    """The CreateTrainingJob request for a DescribeTrainingJob document, named ``name``."""
    shape = operation_input("CreateTrainingJob")
    doc = {k: v for k, v in description.items() if k != "ResponseMetadata"}
    request = _keep(doc, shape)
    request["TrainingJobName"] = name
    dropped = tuple(sorted(k for k in doc if k not in shape.members))
    return Replay(request, dropped)


def describe_job(name: str, session=None) -> dict[str, Any]:
    """DescribeTrainingJob of ``name`` with the user's AWS settings (a plain boto3 session:
    the region chain, profiles, ``AWS_ENDPOINT_URL`` all apply). A job that does not exist
    is the user's mistake: one line."""
    import boto3
    from botocore.exceptions import ClientError

    session = session or boto3.Session()
    client = session.client("sagemaker")
    try:
        return client.describe_training_job(TrainingJobName=name)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") in _NOT_FOUND:
            raise ConfigError(
                "--from-job",
                name,
                f"a training job in region {client.meta.region_name} that your AWS settings "
                f"can describe ({error.get('Code')}: {error.get('Message', '')})",
            ) from None
        raise
