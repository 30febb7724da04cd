"""Fixtures for the unit tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def torch_threads():
    """Sets torch's intra-op thread count for one test (call it with the count) and puts the
    count back after."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)
