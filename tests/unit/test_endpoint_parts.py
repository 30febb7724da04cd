"""The endpoint's pure parts: the SQLite store, listing, and botocore-model checks."""

from __future__ import annotations

import pytest

from sm_toolkit.endpoint.errors import ResourceInUse, ValidationError
from sm_toolkit.endpoint.listing import paginate, sort_documents
from sm_toolkit.endpoint.shapes import conform_output, validate_input
from sm_toolkit.endpoint.store import Store


def _doc(name: str, status: str = "InProgress", created: float = 1.0) -> dict:
    return {
        "TrainingJobName": name,
        "TrainingJobStatus": status,
        "CreationTime": created,
        "SecondaryStatusTransitions": [{"Status": "Training", "StartTime": created}],
    }


def test_store_keeps_records_across_opens_and_ends_orphans(tmp_path):
    store = Store(tmp_path)
    store.add_training("a", "arn:a", {"TrainingJobName": "a"}, _doc("a", "Completed"))
    store.add_training("b", "arn:b", {"TrainingJobName": "b"}, _doc("b"))
    with pytest.raises(ResourceInUse):
        store.add_training("a", "arn:a", {}, {})
    store.add_tags("arn:a", [{"Key": "k", "Value": "v"}])
    store.close()

    again = Store(tmp_path)
    assert again.end_orphans("server gone") == ["b"]
    b = again.training("b")
    assert (b["TrainingJobStatus"], b["SecondaryStatus"]) == ("Stopped", "Stopped")
    assert b["SecondaryStatusTransitions"][-1]["StatusMessage"] == "server gone"
    assert "EndTime" in b["SecondaryStatusTransitions"][0]
    assert again.training("a")["TrainingJobStatus"] == "Completed"
    assert again.tags("arn:a") == [{"Key": "k", "Value": "v"}]
    assert again.arn_exists("arn:b") and not again.arn_exists("arn:c")


def test_sort_missing_values_last_and_pages():
    docs = [{"n": "b", "t": 2}, {"n": "a"}, {"n": "c", "t": 1}]
    ordered = sort_documents(docs, {"SortOrder": "Descending"}, keys={"T": "t"}, default="T")
    assert [d["n"] for d in ordered] == ["b", "c", "a"]
    page = paginate(ordered, {"MaxResults": 2}, list_key="X")
    assert [d["n"] for d in page["X"]] == ["b", "c"]
    rest = paginate(ordered, {"MaxResults": 2, "NextToken": page["NextToken"]}, list_key="X")
    assert [d["n"] for d in rest["X"]] == ["a"] and "NextToken" not in rest
    with pytest.raises(ValidationError, match="nextToken"):
        paginate(ordered, {"NextToken": "garbage!"}, list_key="X")


def test_validation_uses_the_model_limits():
    with pytest.raises(ValidationError, match="less than or equal to 63"):
        validate_input("DescribeTrainingJob", {"TrainingJobName": "x" * 64})
    with pytest.raises(ValidationError, match="enum value set"):
        validate_input("ListTrainingJobs", {"SortBy": "Size"})
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        validate_input("ListTrainingJobs", {"MaxResults": 101})
    validate_input("ListTrainingJobs", {"SortBy": "Name", "MaxResults": 100})


def test_conform_output_drops_unknown_members_and_writes_epoch_seconds():
    import datetime as dt

    when = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
    out = conform_output(
        "ListTrainingJobs",
        {
            "TrainingJobSummaries": [
                {
                    "TrainingJobName": "a",
                    "TrainingJobArn": "arn",
                    "CreationTime": when,
                    "TrainingJobStatus": "Completed",
                    "HyperParameters": {"x": "1"},
                }
            ]
        },
    )
    summary = out["TrainingJobSummaries"][0]
    assert "HyperParameters" not in summary
    assert summary["CreationTime"] == when.timestamp()
