"""sagemaker-training's ``train`` command, with two fixes applied first.

``entry_point.run`` calls ``runner.run(wait, capture_error)`` positionally, but
``TorchDistributedRunner.run`` declares ``(capture_error, wait)``. With the toolkit's native
launcher (hyperparameter ``sagemaker_toolkit_native_launcher_enabled``) that turns into
``wait=False``, the return code of torchrun is never checked and a failed job reports SUCCESS
(sagemaker-training 5.1.4). The fix re-orders the arguments only when the installed runner
still has the swapped signature, so it becomes a no-op once upstream fixes it.

The PyTorch toolkit also imports torch in its own process only to copy ``torch.__version__``
into ``SM_DLC_TORCH_VERSION`` (about a second on a laptop, before the script starts). The
installed distribution's version is the same string; it is read from its metadata instead.
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


def set_torch_version_without_import() -> None:
    """``SM_DLC_TORCH_VERSION`` as the PyTorch toolkit sets it, without importing torch."""
    import os
    from importlib import metadata

    try:
        os.environ["SM_DLC_TORCH_VERSION"] = metadata.version("torch")
    except metadata.PackageNotFoundError:
        pass  # the toolkit warns "PyTorch cannot be found" and sets nothing either


TOOLKITS = ("sagemaker_training", "sagemaker_pytorch_container")


def preload() -> None:
    """What a kept warm worker does before its job arrives (``sm_toolkit.local.backends.
    worker``): import everything ``train`` imports, then forget the toolkits' own modules.
    They compute paths from SAGEMAKER_BASE_DIR when imported, so ``main`` imports them again
    (a few milliseconds) under the job's environment; their dependencies stay loaded."""
    import sys

    from sagemaker_pytorch_container import training  # noqa: F401
    from sagemaker_training import torch_distributed  # noqa: F401
    from sagemaker_training.cli import train  # noqa: F401

    for name in [m for m in sys.modules if m.split(".")[0] in TOOLKITS]:
        del sys.modules[name]


def main() -> None:
    import os

    from sagemaker_pytorch_container import training as pytorch_training
    from sagemaker_training import torch_distributed
    from sagemaker_training.cli import train

    from sm_toolkit.contract import MASTER_PORT_ENV

    fix_swapped_run_arguments(torch_distributed.TorchDistributedRunner)
    pytorch_training._set_torch_version_environment = set_torch_version_without_import
    use_master_port(os.environ.get(MASTER_PORT_ENV))
    train.main()


if __name__ == "__main__":
    main()
