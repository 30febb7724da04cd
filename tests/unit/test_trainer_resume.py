"""A stopped-and-resumed run must equal an uninterrupted one, bit for bit, on CPU."""

import pytest
import torch
from trainer_helpers import digits_task, lm_task

from sm_toolkit.train.config import TrainConfig
from sm_toolkit.train.trainer import Trainer


def quiet(_line: str) -> None:
    pass


def run(make_task, config, ckpt_dir, stop_step=None):
    trainer = Trainer(config, make_task(), checkpoint_dir=ckpt_dir, emit=quiet)
    if stop_step is not None:
        trainer.stop = lambda: trainer.state.step >= stop_step
    return trainer, trainer.fit()


def assert_same_run(a: Trainer, b: Trainer) -> None:
    assert a.state.step_losses == b.state.step_losses  # every logged loss, exactly
    assert a.state.epochs == b.state.epochs  # every epoch metric, exactly
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


CNN_CONFIG = dict(epochs=3, batch_size=32, lr=3e-3, warmup_steps=3, checkpoint_every=4)


@pytest.mark.parametrize("stop_step", [7, 6])  # mid-epoch, and just before an epoch's eval
def test_cnn_resume_is_bit_exact(tmp_path, stop_step):
    config = TrainConfig(**CNN_CONFIG)
    make = lambda: digits_task(seed=0)  # noqa: E731  (dropout 0.25 + batch norm)
    full, result = run(make, config, tmp_path / "a")
    assert result.interrupted is None and full.state.step == 18

    first, r1 = run(make, config, tmp_path / "b", stop_step=stop_step)
    assert r1.interrupted and first.state.step == stop_step
    # A new process would build the model from another seed: the checkpoint must win.
    resumed, r2 = run(lambda: digits_task(seed=0, init_seed=123), config, tmp_path / "b")
    assert r2.resumed_from is not None and r2.resumed_from.name == f"ckpt-{stop_step:09d}.pt"
    assert_same_run(full, resumed)


def test_resume_skips_a_corrupt_latest_checkpoint(tmp_path):
    config = TrainConfig(**CNN_CONFIG)
    make = lambda: digits_task(seed=0)  # noqa: E731
    full, _ = run(make, config, tmp_path / "a")
    run(make, config, tmp_path / "b", stop_step=7)  # checkpoints at steps 4 and 7
    latest = tmp_path / "b" / "ckpt-000000007.pt"
    latest.write_bytes(latest.read_bytes()[:1000])  # truncated copy
    resumed, r2 = run(make, config, tmp_path / "b")
    assert r2.resumed_from.name == "ckpt-000000004.pt"
    assert_same_run(full, resumed)


def test_tbptt_lstm_resume_restores_the_carried_hidden_state(tmp_path):
    config = TrainConfig(epochs=2, batch_size=8, lr=5e-3, grad_clip=1.0, checkpoint_every=5)
    full, _ = run(lambda: lm_task(seed=0), config, tmp_path / "a")
    steps = full.state.step
    run(lambda: lm_task(seed=0), config, tmp_path / "b", stop_step=steps // 2 - 3)
    resumed, r2 = run(lambda: lm_task(seed=9), config, tmp_path / "b")
    assert r2.resumed_from is not None
    assert_same_run(full, resumed)
