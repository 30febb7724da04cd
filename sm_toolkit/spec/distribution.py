"""Distribution strategies: one typed variant each, chosen by ``type``.

The variants map onto the SDK's ``distribution`` dict in ``sm_toolkit.aws.estimator``.
``pytorchddp`` is kept as its own variant because users write it, but SDK >= 2.221.1
rewrites it into ``smdistributed.dataparallel`` (SMDDP), so it obeys smddp's rules.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoDistribution(_Strict):
    """One process per host, no launcher (the default)."""

    type: Literal["none"] = "none"


class SmddpDistribution(_Strict):
    """SageMaker distributed data parallel (SMDDP, GPU instances P4d/P4de/P5 only)."""

    type: Literal["smddp"]
    custom_mpi_options: str = ""


class PyTorchDdpDistribution(_Strict):
    """``pytorchddp``: rewritten by SDK >= 2.221.1 into smddp (so it runs SMDDP)."""

    type: Literal["pytorchddp"]


class TorchDistributedDistribution(_Strict):
    """torchrun on every host (``torch_distributed``)."""

    type: Literal["torch_distributed"]
    # torchrun's --nproc_per_node. None lets the container decide (GPUs per host, or 1 on CPU).
    processes_per_host: int | None = Field(default=None, ge=1, le=64)


class MpiDistribution(_Strict):
    """mpirun across hosts (``mpi``)."""

    type: Literal["mpi"]
    processes_per_host: int = Field(default=1, ge=1, le=64)
    custom_mpi_options: str = ""


Distribution = Annotated[
    NoDistribution
    | SmddpDistribution
    | PyTorchDdpDistribution
    | TorchDistributedDistribution
    | MpiDistribution,
    Field(discriminator="type"),
]

DISTRIBUTION_TYPES = ("none", "smddp", "pytorchddp", "torch_distributed", "mpi")
