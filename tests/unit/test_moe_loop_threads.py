"""The fused expert loop run across worker threads (moe_loop.expert_threads): the same
numbers as the one-thread loop, bitwise, on the threads it claims, with the caller's thread
count, grad mode and gradients left as they were; chosen by a fixed rule of expert sizes.

The tests of the threaded path lower the rule's size floor (`threads_chosen`) to run it on
experts small enough for a unit test."""

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


@pytest.fixture
def threads_chosen(two_threads, monkeypatch):
    """Two intra-op threads, and the rule's weight-size floor lowered to these experts."""
    monkeypatch.setattr(moe_loop, "THREAD_MIN_WEIGHTS", 16 * 24)


def make_experts(kind: str = "mlp", activation: str = "gelu") -> GroupedExperts:
    return GroupedExperts(n_experts=8, d_model=16, d_ff=24, activation=activation,
                          out_std=0.2, kind=kind, compute="loop")  # fmt: skip


def chosen(experts: GroupedExperts, x_SD: torch.Tensor, counts: list[int]):
    return moe_loop.expert_threads(x_SD, counts, list(experts.parameters()))


def run(experts: GroupedExperts, x_SD: torch.Tensor, g_SD: torch.Tensor) -> list[torch.Tensor]:
    x = x_SD.clone().requires_grad_(True)
    y = experts.forward_loop(x, COUNTS)
    (y * g_SD).sum().backward()
    out = [y.detach(), x.grad] + [p.grad.clone() for p in experts.parameters()]
    experts.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize("kind", ["mlp", "swiglu"])
def test_threads_give_the_one_thread_loop_bitwise(kind, threads_chosen, monkeypatch):
    torch.manual_seed(5)
    experts = make_experts(kind)
    x_SD, g_SD = torch.randn(64, 16), torch.randn(64, 16)
    ran_on: set[str] = set()
    segment = moe_loop._forward_segment

    def recording(*args):
        ran_on.add(threading.current_thread().name)
        return segment(*args)

    monkeypatch.setattr(moe_loop, "_forward_segment", recording)
    assert chosen(experts, x_SD, COUNTS) is not None
    threaded = run(experts, x_SD, g_SD)
    # on the workers, not the caller (which worker takes which expert is first come, and
    # with experts this small one worker may take them all)
    assert ran_on and ran_on <= {"moe-experts-0", "moe-experts-1"}
    assert torch.get_num_threads() == 2  # the caller's count, after the workers' set-up
    assert torch.equal(run(experts, x_SD, g_SD)[2], threaded[2])  # the same, run again
    torch.set_num_threads(1)
    ran_on.clear()
    plain = run(experts, x_SD, g_SD)
    assert ran_on == {threading.current_thread().name}
    for a, b in zip(threaded, plain, strict=True):
        assert torch.equal(a, b)  # each expert on one thread of one intra-op thread
    assert torch.equal(threaded[2][1], torch.zeros(16, 24))  # expert 1 had no rows


def test_when_experts_go_to_threads(threads_chosen, monkeypatch):
    experts, x_SD = make_experts(), torch.randn(64, 16)
    assert chosen(experts, x_SD, COUNTS) is not None
    assert chosen(experts, x_SD, [32, 32, 0, 0, 0, 0, 0, 0]) is None  # 2 experts with rows
    many = torch.randn(8 * (moe_loop.THREAD_MAX_ROWS + 1), 16)
    assert chosen(experts, many, [moe_loop.THREAD_MAX_ROWS + 1] * 8) is None  # large experts
    with _AllocatedBytes():  # a dispatch mode sees only this thread's ops
        assert chosen(experts, x_SD, COUNTS) is None
    monkeypatch.setattr(moe_loop, "USE_THREADS", False)
    assert chosen(experts, x_SD, COUNTS) is None
    monkeypatch.setattr(moe_loop, "USE_THREADS", True)
    torch.set_num_threads(1)
    assert chosen(experts, x_SD, COUNTS) is None


def test_the_rule_keeps_the_measured_shapes(two_threads):
    """The layer benchmark's 32 experts (256 rows; MLP 256 x 1024, SwiGLU 256 x 680) go to
    threads; its 8 experts (1024 rows) and the MoE LM's experts (128 x 256) do not."""

    def threaded(n_experts: int, d_model: int, d_ff: int, rows: int) -> bool:
        weights = [torch.empty(n_experts, d_model, d_ff), torch.empty(n_experts, d_ff, d_model)]
        x_SD = torch.empty(n_experts * rows, d_model)
        return moe_loop.expert_threads(x_SD, [rows] * n_experts, weights) is not None

    assert threaded(32, 256, 1024, 256) and threaded(64, 256, 1024, 128)
    assert threaded(32, 256, 680, 256)
    assert not threaded(8, 256, 1024, 1024)
    assert not threaded(32, 128, 256, 256)


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


def test_weight_gradients_are_handed_over_not_copied(threads_chosen):
    """The workers drop their task before reporting: a gradient still referenced there
    would be copied by autograd (a second [E, D, H] buffer, and its time)."""
    experts = make_experts(activation="relu")
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


def test_a_backward_after_its_workers_were_replaced_finishes(threads_chosen):
    """A forward on 2 threads, the count changed to 3 and another forward (a new pool
    ends the old one), then the first backward: it runs serially instead of waiting on
    workers that are gone."""
    experts, x_SD = make_experts(), torch.randn(64, 16, requires_grad=True)
    y = experts.forward_loop(x_SD, COUNTS)
    torch.set_num_threads(3)
    assert chosen(experts, x_SD, COUNTS).n == 3  # six experts with rows: two a thread
    assert y.grad_fn is not None
    finished = threading.Event()

    def backward() -> None:
        y.sum().backward()
        finished.set()

    threading.Thread(target=backward, daemon=True).start()
    assert finished.wait(timeout=30), "the backward waited on closed workers"
    expected = x_SD.detach().clone().requires_grad_(True)
    torch.set_num_threads(1)
    experts.zero_grad(set_to_none=True)
    experts.forward_loop(expected, COUNTS).sum().backward()
    torch.testing.assert_close(x_SD.grad, expected.grad)


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
    experts = make_experts()
    x_SD = torch.randn(64, 16, requires_grad=True)
    assert chosen(experts, x_SD, COUNTS) is not None
    experts.forward_loop(x_SD, COUNTS).sum().backward()
    queue.put(x_SD.grad.shape[0])


def test_a_forked_child_runs_the_threaded_loop(threads_chosen):
    """A DataLoader worker (fork) inherits the pool object but none of its threads."""
    experts = make_experts()
    assert chosen(experts, torch.randn(64, 16), COUNTS) is not None  # the workers exist
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_step, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung in the expert loop")
    assert child.exitcode == 0 and queue.get(timeout=5) == 64
