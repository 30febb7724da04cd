"""sagemaker-training's ``train`` command, with two fixes applied first.

``entry_point.run`` calls ``runner.run(wait, capture_error)`` positionally, but
``TorchDistributedRunner.run`` declares ``(capture_error, wait)``. With the toolkit's native
launcher (hyperparameter ``sagemaker_toolkit_native_launcher_enabled``) that turns into
``wait=False``, the return code of torchrun is never checked and a failed job reports SUCCESS
(sagemaker-training 5.1.4). The fix re-orders the arguments only when the installed runner
still has the swapped signature, so it becomes a no-op once upstream fixes it.
"""

from __future__ import annotations

import functools
import inspect


def fix_swapped_run_arguments(runner_cls: type) -> bool:
    """Make ``runner_cls.run(wait, capture_error)`` mean what its callers pass; True if patched."""
    original = runner_cls.run
    names = list(inspect.signature(original).parameters)[1:3]
    if names != ["capture_error", "wait"]:
        return False

    @functools.wraps(original)
    def run(self, wait=True, capture_error=False):
        return original(self, capture_error=capture_error, wait=wait)

    runner_cls.run = run
    return True


def use_master_port(port: str | None) -> None:
    """Both toolkits fix torchrun's rendezvous port at 7777 as a module constant; a job may
    name another (``SM_TOOLKIT_MASTER_PORT``) so that two multi-host jobs on one machine do
    not collide. Without the variable nothing changes."""
    if not port:
        return
    from sagemaker_pytorch_container import training as pytorch_training
    from sagemaker_training import torch_distributed

    torch_distributed.MASTER_PORT = port
    pytorch_training.MASTER_PORT = port


def main() -> None:
    import os

    from sagemaker_training import torch_distributed
    from sagemaker_training.cli import train

    from sm_toolkit.contract import MASTER_PORT_ENV

    fix_swapped_run_arguments(torch_distributed.TorchDistributedRunner)
    use_master_port(os.environ.get(MASTER_PORT_ENV))
    train.main()


if __name__ == "__main__":
    main()
