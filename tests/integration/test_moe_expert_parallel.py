"""Expert parallelism with 2 real processes (gloo on 127.0.0.1) equals the one-process layer.

One `torch.multiprocessing.spawn` runs every case (start-up dominates the cost); each rank
writes, per case, "ok" or the assertion message to a JSON file the tests then read.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sm_toolkit.errors import ConfigError
from sm_toolkit.models.moe import MoEConfig, MoETransformer
from sm_toolkit.models.moe_experts import GroupedExperts
from sm_toolkit.models.moe_layer import DispatchConfig, MoELayer
from sm_toolkit.models.moe_parallel import shard_experts
from sm_toolkit.models.moe_router import RouterConfig, TopKRouter

WORLD = 2
D, H, E = 8, 16, 4
CASES = ("dropless", "capacity", "zero_tokens_rank1", "model", "padded_refused")


def _layer(dispatch: DispatchConfig) -> MoELayer:
    torch.manual_seed(0)  # identical weights on every rank
    return MoELayer(
        router=TopKRouter(RouterConfig(d_model=D, n_experts=E, top_k=2)),
        experts=GroupedExperts(n_experts=E, d_model=D, d_ff=H, activation="gelu", out_std=0.1),
        dispatch=dispatch,
        aux_loss_weight=0.1,
        z_loss_weight=0.01,
    )


def _run(layer: MoELayer, x_BTD: torch.Tensor, g_BTD: torch.Tensor):
    x_BTD = x_BTD.clone().requires_grad_(True)
    y_BTD, aux, stats = layer(x_BTD)
    ((y_BTD * g_BTD).sum() + aux).backward()
    return y_BTD.detach(), x_BTD.grad, stats


def _check_layer(rank: int, case: str) -> None:
    dispatch = (
        DispatchConfig(dropless=True)
        if case == "dropless"
        else DispatchConfig(capacity_factor=0.75)
    )
    ref = _layer(dispatch)
    torch.manual_seed(100 + rank)
    n_tokens = 6 + 5 * rank  # ranks send uneven numbers of rows
    x_BTD = torch.randn(1, n_tokens, D)
    if case == "zero_tokens_rank1":  # a large feature 0 steers every token to experts 0, 1
        x_BTD[..., 0] = 5.0
        with torch.no_grad():
            ref.router.gate.weight[:, 0] = torch.tensor([1.0, 1.0, -1.0, -1.0])
    g_BTD = torch.randn_like(x_BTD)
    ep = shard_experts(copy.deepcopy(ref))
    y_ref, gx_ref, stats_ref = _run(ref, x_BTD, g_BTD)
    y_ep, gx_ep, stats_ep = _run(ep, x_BTD, g_BTD)
    torch.testing.assert_close(y_ep, y_ref)
    torch.testing.assert_close(gx_ep, gx_ref)
    torch.testing.assert_close(ep.router.gate.weight.grad, ref.router.gate.weight.grad)
    assert stats_ep == stats_ref
    if case == "zero_tokens_rank1":
        assert stats_ep["tokens_per_expert"][2:] == [0, 0], stats_ep
    if case == "capacity":
        assert stats_ep["drop_rate"] > 0, stats_ep
    lo, hi = rank * E // WORLD, (rank + 1) * E // WORLD
    for name in ("w1_EDH", "w2_EHD"):
        full_grad = getattr(ref.experts, name).grad.clone()
        dist.all_reduce(full_grad)  # one expert's gradient = sum over the ranks' batches
        torch.testing.assert_close(getattr(ep.experts.local, name).grad, full_grad[lo:hi])


def _check_model(rank: int) -> None:
    torch.manual_seed(0)
    ref = MoETransformer(MoEConfig.debug(vocab_size=20, dropless=True))
    ep = shard_experts(copy.deepcopy(ref))
    torch.manual_seed(7 + rank)
    idx_BT = torch.randint(0, 20, (2, 12))
    logits_ref, aux_ref = ref(idx_BT)
    logits_ep, aux_ep = ep(idx_BT)
    torch.testing.assert_close(logits_ep, logits_ref)
    torch.testing.assert_close(aux_ep.loss, aux_ref.loss)
    (logits_ref.square().mean() + aux_ref.loss).backward()
    (logits_ep.square().mean() + aux_ep.loss).backward()
    torch.testing.assert_close(ep.wte.weight.grad, ref.wte.weight.grad)
    assert len(ep.expert_parameters()) == len(ref.expert_parameters())


def _check_padded_refused() -> None:
    layer = _layer(DispatchConfig(capacity_factor=1.0, compute="padded"))
    try:
        shard_experts(layer)
    except ConfigError as err:
        assert err.field == "capacity_compute", err
    else:
        raise AssertionError("padded compute was accepted under expert parallelism")


def _worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    results = {}
    for case in CASES:
        try:
            if case == "model":
                _check_model(rank)
            elif case == "padded_refused":
                _check_padded_refused()
            else:
                _check_layer(rank, case)
            results[case] = "ok"
        except Exception:  # recorded per case, so one failure does not hide the others
            results[case] = traceback.format_exc(limit=3)
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> list[dict]:
    out_dir = tmp_path_factory.mktemp("ep")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=True)
    return [json.loads(Path(out_dir, f"rank{r}.json").read_text()) for r in range(WORLD)]


@pytest.mark.integration
@pytest.mark.parametrize("case", CASES)
def test_expert_parallel_matches_single_process(results: list[dict], case: str) -> None:
    for rank, per_case in enumerate(results):
        assert per_case[case] == "ok", f"rank {rank}: {per_case[case]}"
