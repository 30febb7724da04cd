"""Which SageMaker SDK generation to use: ``v2`` (Estimator) or ``v3`` (ModelTrainer).

Both generations are the package ``sagemaker``, so one environment holds at most one; the
default is the one installed. Asking for the other, or for either when neither is
installed, is one line naming the way out.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from sm_toolkit.errors import ConfigError, ToolkitError

GENERATIONS = ("v2", "v3")
INSTALL = (
    "pip install 'sm-toolkit[sdk-v2]' (sagemaker>=2.257,<3) "
    "or 'sm-toolkit[sdk-v3]' (sagemaker>=3.27,<4)"
)


class NoSdkError(ToolkitError):
    """Neither SDK generation is installed."""

    exit_code = 2


def installed() -> str | None:
    """``v2`` or ``v3`` from the installed ``sagemaker`` distribution, or None."""
    try:
        major = version("sagemaker").split(".", 1)[0]
    except PackageNotFoundError:
        return None
    return {"2": "v2", "3": "v3"}.get(major)


def resolve(sdk: str | None) -> str:
    """The generation to use: ``sdk`` if given and installed, else the installed one."""
    have = installed()
    if sdk is not None and sdk not in GENERATIONS:
        raise ConfigError("--sdk", sdk, "v2 or v3")
    if have is None:
        raise NoSdkError(f"no SageMaker Python SDK is installed; {INSTALL}")
    if sdk is not None and sdk != have:
        raise ConfigError(
            "--sdk",
            sdk,
            f"the generation installed here ({have}); v2 and v3 cannot share an environment, "
            f"so use a virtualenv with sm-toolkit[sdk-{sdk}]",
        )
    return have
