"""Distribution strategies: one typed variant each, chosen by ``type``.

The variants map onto the SDK's ``distribution`` dict in ``sm_toolkit.aws.estimator``.
``pytorchddp`` is kept as its own variant because users write it, but SDK >= 2.221.1
rewrites it into ``smdistributed.dataparallel`` (SMDDP), so it obeys smddp's rules.
``smp`` is SageMaker model parallelism v2: torchrun plus ``smdistributed.modelparallel``
with its parameters (checked against the instance type, image and world size in
``sm_toolkit.spec.smp``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt


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


class SmpDistribution(_Strict):
    """SageMaker model parallelism v2 (SMP): torchrun on every host plus
    ``smdistributed.modelparallel`` with these parameters (SMP v2's names and meaning)."""

    type: Literal["smp"]
    # 0: the script's native data parallelism (SMP's default); n: shard over groups of n.
    hybrid_shard_degree: StrictInt = Field(default=0, ge=0)
    expert_parallel_degree: StrictInt = Field(default=1, ge=1)
    tensor_parallel_degree: StrictInt = Field(default=1, ge=1)
    sm_activation_offloading: StrictBool = False
    activation_loading_horizon: StrictInt = Field(default=2, ge=1)
    # torchrun's --nproc_per_node. None: one process per GPU of the instance type.
    processes_per_host: StrictInt | None = Field(default=None, ge=1, le=64)

    def mp_parameters(self) -> dict[str, int | bool]:
        """SMP v2's ``parameters`` (sent as the ``mp_parameters`` hyperparameter)."""
        return self.model_dump(exclude={"type", "processes_per_host"})


Distribution = Annotated[
    NoDistribution
    | SmddpDistribution
    | PyTorchDdpDistribution
    | TorchDistributedDistribution
    | MpiDistribution
    | SmpDistribution,
    Field(discriminator="type"),
]

DISTRIBUTION_TYPES = ("none", "smddp", "pytorchddp", "torch_distributed", "mpi", "smp")
