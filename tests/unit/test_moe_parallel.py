"""Pure parts of expert parallelism (the 2-process run is in tests/integration)."""

from __future__ import annotations

import torch

from sm_toolkit.models.moe_experts import GroupedExperts
from sm_toolkit.models.moe_parallel import expert_major_order


def test_expert_major_order_regroups_received_rows():
    # rows arrive as (rank 0: e0 x1, e1 x2), (rank 1: e0 x2, e1 x1) = rows 0 | 1 2 | 3 4 | 5
    counts_WL = torch.tensor([[1, 2], [2, 1]])
    assert expert_major_order(counts_WL).tolist() == [0, 3, 4, 1, 2, 5]


def test_expert_major_order_with_empty_chunks():
    counts_WL = torch.tensor([[0, 2], [1, 0]])
    assert expert_major_order(counts_WL).tolist() == [2, 0, 1]
    assert expert_major_order(torch.zeros(2, 2, dtype=torch.long)).tolist() == []


def test_slice_copies_expert_weights_and_marks_them():
    full = GroupedExperts(n_experts=4, d_model=3, d_ff=5, activation="relu", out_std=0.1)
    part = full.slice(2, 4)
    assert part.n_experts == 2
    torch.testing.assert_close(part.w1_EDH, full.w1_EDH[2:4])
    torch.testing.assert_close(part.w2_EHD, full.w2_EHD[2:4])
    assert all(p.is_expert for p in part.parameters())
    assert part.w1_EDH.data_ptr() != full.w1_EDH.data_ptr()
