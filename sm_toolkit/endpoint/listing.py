"""The List* operations' common parts: filters, sorting and NextToken pagination.

Documents here are stored ones (timestamps in epoch seconds). A NextToken is the offset of
the next item in the sorted, filtered list, so paging is stable while no job is created.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from sm_toolkit.endpoint.errors import ValidationError
from sm_toolkit.endpoint.shapes import epoch_seconds

DEFAULT_MAX_RESULTS = 10  # the service's default page size for the List* operations


def filter_documents(
    docs: list[dict], params: dict[str, Any], *, name_key: str, status_key: str
) -> list[dict]:
    """Apply the request's NameContains, StatusEquals and time-window filters."""
    windows = [
        ("CreationTimeAfter", "CreationTime", 1),
        ("CreationTimeBefore", "CreationTime", -1),
        ("LastModifiedTimeAfter", "LastModifiedTime", 1),
        ("LastModifiedTimeBefore", "LastModifiedTime", -1),
    ]
    out = []
    for doc in docs:
        if "NameContains" in params and params["NameContains"].lower() not in doc[name_key].lower():
            continue
        if "StatusEquals" in params and doc.get(status_key) != params["StatusEquals"]:
            continue
        if (
            "WarmPoolStatusEquals" in params
            and (doc.get("WarmPoolStatus") or {}).get("Status") != params["WarmPoolStatusEquals"]
        ):
            continue
        if all(_inside(doc, params, p, f, sign) for p, f, sign in windows):
            out.append(doc)
    return out


def _inside(doc: dict, params: dict, param: str, field: str, sign: int) -> bool:
    if param not in params:
        return True
    value = doc.get(field)
    if value is None:
        return False
    bound = epoch_seconds(params[param])
    return value > bound if sign > 0 else value < bound


def sort_documents(
    docs: list[dict], params: dict[str, Any], *, keys: dict[str, Any], default: str
) -> list[dict]:
    """Sort by the request's SortBy (one of ``keys``: a field name or a function) and
    SortOrder (Ascending unless told otherwise)."""
    key = keys[params.get("SortBy", default)]
    getter = key if callable(key) else (lambda doc: doc.get(key))
    # Missing values sort last in either order; ties keep creation order.
    present = [d for d in docs if getter(d) is not None]
    absent = [d for d in docs if getter(d) is None]
    present.sort(key=getter, reverse=params.get("SortOrder", "Ascending") == "Descending")
    return present + absent


def paginate(items: list[dict], params: dict[str, Any], *, list_key: str) -> dict[str, Any]:
    """One page of ``items`` under ``list_key``, with a NextToken when more remain."""
    start = _offset(params.get("NextToken"))
    size = params.get("MaxResults", DEFAULT_MAX_RESULTS)
    page: dict[str, Any] = {list_key: items[start : start + size]}
    if start + size < len(items):
        page["NextToken"] = base64.urlsafe_b64encode(f"offset:{start + size}".encode()).decode()
    return page


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        kind, _, number = text.partition(":")
        if kind == "offset" and number.isdigit():
            return int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise ValidationError(f"Value '{token}' at 'nextToken' is not a token this endpoint issued")
