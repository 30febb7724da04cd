"""The fused expert loop run across worker threads (moe_loop.expert_threads): the same
numbers as the one-thread loop, bitwise, on the threads it claims, with the caller's thread
count, grad mode and gradients left as they were."""

from __future__ import annotations

import multiprocessing
import threading

import pytest
import torch
from test_moe_layer import _AllocatedBytes

from sm_toolkit.models import moe_loop
from sm_toolkit.models.moe_experts import GroupedExperts

COUNTS = [9, 0, 21, 4, 13, 1, 0, 16]  # dropless-like: uneven, two experts without rows


@pytest.fixture
def two_threads(torch_threads):
    torch_threads(2)


def run(experts: GroupedExperts, x_SD: torch.Tensor, g_SD: torch.Tensor) -> list[torch.Tensor]:
    x = x_SD.clone().requires_grad_(True)
    y = experts.forward_loop(x, COUNTS)
    (y * g_SD).sum().backward()
    out = [y.detach(), x.grad] + [p.grad.clone() for p in experts.parameters()]
    experts.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize("kind", ["mlp", "swiglu"])
def test_threads_give_the_one_thread_loop_bitwise(kind, two_threads, monkeypatch):
    torch.manual_seed(5)
    experts = GroupedExperts(n_experts=8, d_model=16, d_ff=24, activation="gelu", out_std=0.2,
                             kind=kind, compute="loop")  # fmt: skip
    x_SD, g_SD = torch.randn(64, 16), torch.randn(64, 16)
    ran_on: set[str] = set()
    segment = moe_loop._forward_segment

    def recording(*args):
        ran_on.add(threading.current_thread().name)
        return segment(*args)

    monkeypatch.setattr(moe_loop, "_forward_segment", recording)
    assert moe_loop.expert_threads(x_SD, COUNTS) is not None
    threaded = run(experts, x_SD, g_SD)
    # on the workers, not the caller (which worker takes which expert is first come, and
    # with experts this small one worker may take them all)
    assert ran_on and ran_on <= {"moe-experts-0", "moe-experts-1"}
    assert torch.get_num_threads() == 2  # the caller's count, after the workers' set-up
    torch.set_num_threads(1)
    ran_on.clear()
    plain = run(experts, x_SD, g_SD)
    assert ran_on == {threading.current_thread().name}
    for a, b in zip(threaded, plain, strict=True):
        assert torch.equal(a, b)  # each expert on one thread of one intra-op thread
    assert torch.equal(threaded[2][1], torch.zeros(16, 24))  # expert 1 had no rows


def test_when_experts_go_to_threads(two_threads):
    x_SD = torch.randn(64, 16)
    assert moe_loop.expert_threads(x_SD, COUNTS) is not None
    assert moe_loop.expert_threads(x_SD, [32, 32, 0, 0, 0, 0, 0, 0]) is None  # 2 experts
    big = torch.randn(8 * (moe_loop.EXPERT_THREAD_MAX_ROWS + 1), 16)
    assert moe_loop.expert_threads(big, [big.shape[0] // 8] * 8) is None  # large experts
    with _AllocatedBytes():  # a dispatch mode sees only this thread's ops
        assert moe_loop.expert_threads(x_SD, COUNTS) is None
    torch.set_num_threads(1)
    assert moe_loop.expert_threads(x_SD, COUNTS) is None


def test_a_thread_started_later_keeps_the_default_count(two_threads):
    workers = moe_loop._Workers(2)  # new workers, each set to one intra-op thread
    try:
        seen = []
        thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert seen == [2]  # not the workers' 1
        counts = []
        workers.run_all(lambda: counts.append(torch.get_num_threads()))
        assert counts == [1, 1]
    finally:
        workers.close()


def test_weight_gradients_are_handed_over_not_copied(two_threads):
    """The workers drop their task before reporting: a gradient still referenced there
    would be copied by autograd (a second [E, D, H] buffer, and its time)."""
    experts = GroupedExperts(n_experts=8, d_model=16, d_ff=24, activation="relu",
                             out_std=0.2, compute="loop")  # fmt: skip
    x_SD = torch.randn(64, 16, requires_grad=True)
    y = experts.forward_loop(x_SD, COUNTS)
    grads = []
    for p in experts.parameters():
        p.register_post_accumulate_grad_hook(lambda p: grads.append(p.grad))
    weight_bytes = sum(p.numel() * p.element_size() for p in experts.parameters())
    with _AllocatedBytes() as allocated:
        y.sum().backward()
    assert len(grads) == 2
    assert weight_bytes <= allocated.total < 1.5 * weight_bytes


def test_a_new_thread_count_ends_the_old_workers(two_threads):
    old = moe_loop._Workers.get(2)
    assert all(thread.is_alive() for thread in old._threads)
    torch.set_num_threads(3)
    new = moe_loop._Workers.get(3)
    assert new is not old and new.n == 3
    ran = []
    new.run_all(lambda: ran.append(torch.get_num_threads()))
    assert ran == [1, 1, 1]
    for thread in old._threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in old._threads)


def test_an_error_in_a_worker_reaches_the_caller(two_threads):
    workers = moe_loop._Workers.get(2)

    def fail() -> None:
        raise ValueError("in a worker")

    with pytest.raises(ValueError, match="in a worker"):
        workers.run_all(fail)
    ran = []
    workers.run_all(lambda: ran.append(1))  # the workers still serve
    assert ran == [1, 1]


def _child_step(queue) -> None:
    experts = GroupedExperts(n_experts=8, d_model=16, d_ff=24, activation="gelu",
                             out_std=0.2, compute="loop")  # fmt: skip
    x_SD = torch.randn(64, 16, requires_grad=True)
    experts.forward_loop(x_SD, COUNTS).sum().backward()
    queue.put(x_SD.grad.shape[0])


def test_a_forked_child_runs_the_threaded_loop(two_threads):
    """A DataLoader worker (fork) inherits the pool object but none of its threads."""
    moe_loop.expert_threads(torch.randn(64, 16), COUNTS)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_step, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung in the expert loop")
    assert child.exitcode == 0 and queue.get(timeout=5) == 64
