"""Activation offloading (sm_activation_offloading): the forward runs under torch's
save-on-CPU hooks, and training is numerically unchanged by it."""

from __future__ import annotations

import torch
from trainer_helpers import digits_task

from sm_toolkit.train.config import TrainConfig
from sm_toolkit.train.trainer import Trainer


def _train(offload: bool):
    task = digits_task(seed=0)
    seen = []
    loss = task.loss

    def watched_loss(model, batch):  # records whether saved-tensor hooks are active
        seen.append(torch._C._autograd._top_saved_tensors_default_hooks(False) is not None)
        return loss(model, batch)

    task.loss = watched_loss
    config = TrainConfig(epochs=1, batch_size=32, max_steps=3, sm_activation_offloading=offload)
    trainer = Trainer(config, task, emit=lambda _line: None)
    trainer.fit()
    return trainer, seen


def test_offloading_hooks_are_on_only_when_asked_and_change_nothing():
    on, seen_on = _train(True)
    off, seen_off = _train(False)
    assert seen_on == [True] * 3 and seen_off == [False] * 3
    assert on.state.step_losses == off.state.step_losses
    a, b = on.model.state_dict(), off.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
