"""The rules of the ``smp`` distribution (SageMaker model parallelism v2), checked once.

SDK v2 checks none of them when an image URI is given (always, with this project), and
SMP itself would only fail once the instances are up, so the spec says it in one line:
the instance type is one SMP v2 runs on, the image is an SMP v2 image of a version it
supports, and every degree divides the world size (hosts x processes per host, by default
one process per GPU of the instance type). Facts live in ``data/smp_v2.yaml``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from sm_toolkit.errors import ConfigError
from sm_toolkit.spec.distribution import SmpDistribution
from sm_toolkit.spec.job import JobSpec

# SMP v2's parameter names: with smp they belong in the distribution, not the hyperparameters
# (the script gets them from `mp_parameters`; both at once would be two sources of truth).
SMP_PARAMETER_NAMES = (
    "hybrid_shard_degree",
    "expert_parallel_degree",
    "tensor_parallel_degree",
    "sm_activation_offloading",
    "activation_loading_horizon",
    "mp_parameters",
)
_ECR_IMAGE = re.compile(
    r"(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"/(?P<repository>[a-z0-9._/-]+):(?P<tag>[A-Za-z0-9._-]+)"
)


@dataclass(frozen=True)
class SmpFacts:
    """data/smp_v2.yaml: instance types (GPUs each) and the SMP v2 image tags."""

    gpus: dict[str, int]
    image_account: str
    image_repository: str
    images: dict[str, str]  # tag -> SMP library version


@cache
def smp_facts() -> SmpFacts:
    text = resources.files("sm_toolkit").joinpath("data/smp_v2.yaml").read_text()
    raw = yaml.safe_load(text)
    return SmpFacts(
        gpus=dict(raw["instance_types"]),
        image_account=str(raw["image_account"]),
        image_repository=raw["image_repository"],
        images={str(k): str(v) for k, v in raw["images"].items()},
    )


def world_size(spec: JobSpec, d: SmpDistribution) -> int:
    """Processes of the job: hosts x (processes_per_host, or the instance type's GPUs)."""
    per_host = d.processes_per_host or smp_facts().gpus[spec.instance.type]
    return spec.instance.count * per_host


def check_smp(spec: JobSpec, d: SmpDistribution) -> None:
    """Raise ConfigError for the first SMP v2 rule the spec breaks."""
    facts = smp_facts()
    if spec.instance.type not in facts.gpus:
        raise ConfigError(
            "instance.type",
            spec.instance.type,
            "smp (SMP v2) runs only on " + ", ".join(facts.gpus),
        )
    _check_image(spec, facts)
    _check_degrees(spec, d)
    for name in SMP_PARAMETER_NAMES:
        if name in spec.hyperparameters:
            where = "distribution" if name != "mp_parameters" else "the SDK (from distribution)"
            raise ConfigError(
                f"hyperparameters.{name}", spec.hyperparameters[name],
                f"set by {where} with distribution smp; remove it from hyperparameters",
            )  # fmt: skip


def _check_image(spec: JobSpec, facts: SmpFacts) -> None:
    tags = ", ".join(facts.images)
    allowed = (
        f"an SMP v2 image, {facts.image_account}.dkr.ecr.{spec.region}.amazonaws.com/"
        f"{facts.image_repository}:TAG (or your own ECR copy or image built FROM it, "
        f"TAG-suffix), TAG one of {tags}"
    )
    m = _ECR_IMAGE.fullmatch(spec.image_uri)
    if m is None or m["repository"].rsplit("/", 1)[-1] != facts.image_repository:
        raise ConfigError("image_uri", spec.image_uri, allowed)
    if m["region"] != spec.region:
        raise ConfigError(
            "image_uri", spec.image_uri, f"an image in the job's region {spec.region} ({allowed})"
        )
    tag = m["tag"]
    if not any(tag == t or tag.startswith(t + "-") for t in facts.images):
        raise ConfigError("image_uri", spec.image_uri, f"a supported SMP v2 version: {allowed}")


def _check_degrees(spec: JobSpec, d: SmpDistribution) -> None:
    world = world_size(spec, d)
    per_host = d.processes_per_host or smp_facts().gpus[spec.instance.type]
    hosts = f"{spec.instance.count} x {per_host}"
    for name in ("hybrid_shard_degree", "expert_parallel_degree", "tensor_parallel_degree"):
        value = getattr(d, name)
        if value and world % value:
            zero = "0 or " if name == "hybrid_shard_degree" else ""
            raise ConfigError(
                f"distribution.{name}",
                value,
                f"{zero}a divisor of the world size {world} ({hosts})",
            )
    if d.tensor_parallel_degree != 1 and _is_project_entrypoint(spec):
        raise ConfigError(
            "distribution.tensor_parallel_degree", d.tensor_parallel_degree,
            f"1 for {spec.entry_point} (sm-toolkit's models have no tensor parallelism; "
            "use hybrid_shard_degree / expert_parallel_degree)",
        )  # fmt: skip
    experts = spec.hyperparameters.get("n_experts")
    ep = d.expert_parallel_degree
    if isinstance(experts, int) and not isinstance(experts, bool) and experts % ep:
        raise ConfigError(
            "distribution.expert_parallel_degree", ep,
            f"a divisor of hyperparameters.n_experts ({experts}) and of the world size {world}",
        )  # fmt: skip


def _is_project_entrypoint(spec: JobSpec) -> bool:
    from pathlib import Path

    from sm_toolkit.spec.loader import entrypoints_dir
    from sm_toolkit.spec.metrics import entrypoint_catalog

    if spec.entry_point not in entrypoint_catalog() or spec.source_dir is None:
        return False
    return Path(spec.source_dir).resolve() == entrypoints_dir().resolve()
