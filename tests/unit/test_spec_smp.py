"""The smp distribution (SageMaker model parallelism v2): validated once in the spec,
rendered through SDK v2 for every instance type it allows, the rest refused in one line.

Bad inputs tried (each one ConfigError line naming the field, exit 2 through the CLI):
instance types ml.g5.48xlarge, ml.p3.16xlarge, ml.c5.xlarge, ml.trn1.32xlarge; images
sm-toolkit:latest, a DLC pytorch-training image, smdistributed-modelparallel in another
region, an unpublished tag 2.3.0-gpu-py311-cu121 and a tag without the cuda part; degrees
0 / -1 / 2.5 / "two" / true for expert_parallel_degree, hybrid_shard_degree -1, 3 and 32
on a 16-process world, expert_parallel_degree 3 and 32, tensor_parallel_degree 3 and 2
(the project's entrypoint), expert_parallel_degree 4 against n_experts 6,
sm_activation_offloading "maybe", activation_loading_horizon 0, processes_per_host 0 and
a degree that divides 16 GPUs but not 2 x 3 processes; the SMP names as hyperparameters;
an unknown key in the distribution; `--set distribution.a.b=1`.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from cli_helpers import cli

from sm_toolkit.aws.render import render
from sm_toolkit.errors import ConfigError
from sm_toolkit.spec import parse_spec
from sm_toolkit.spec.overrides import apply_overrides
from sm_toolkit.spec.smp import smp_facts, world_size

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "moe-smp.yaml"
RAW = yaml.safe_load(EXAMPLE.read_text())
SMP_IMAGE = "658645717510.dkr.ecr.us-east-1.amazonaws.com/smdistributed-modelparallel:"


def _spec(**changes):
    data = copy.deepcopy(RAW)
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            data[section] = {**data[section], name: value}
        else:
            data[section] = value
    return parse_spec(data, base_dir=ROOT / "examples")


@pytest.mark.parametrize("instance_type", sorted(smp_facts().gpus))
def test_renders_on_every_instance_type_smp_allows(instance_type):
    spec = _spec(instance__type=instance_type)
    req = render(spec).request
    hps = req["HyperParameters"]
    assert req["ResourceConfig"]["InstanceType"] == instance_type
    assert hps["sagemaker_torch_distributed_enabled"] == "true"
    assert hps["sagemaker_distributed_dataparallel_enabled"] == "false"
    assert json.loads(hps["mp_parameters"]) == {
        "hybrid_shard_degree": 8,
        "expert_parallel_degree": 2,
        "tensor_parallel_degree": 1,
        "sm_activation_offloading": True,
        "activation_loading_horizon": 2,
    }
    assert world_size(spec, spec.distribution) == 16  # 2 hosts x 8 GPUs


@pytest.mark.parametrize(
    "instance_type", ["ml.g5.48xlarge", "ml.p3.16xlarge", "ml.c5.xlarge", "ml.trn1.32xlarge"]
)
def test_other_instance_types_are_refused_in_one_line(instance_type):
    with pytest.raises(ConfigError) as exc:
        _spec(instance__type=instance_type)
    line = str(exc.value)
    assert line.startswith(f"instance.type: '{instance_type}' is not allowed; smp (SMP v2)")
    assert all(t in line for t in smp_facts().gpus) and "\n" not in line


@pytest.mark.parametrize(
    "image, words",
    [
        ("sm-toolkit:latest", ["an SMP v2 image"]),
        (
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.4.0-gpu-py311",
            ["an SMP v2 image"],
        ),
        (
            "658645717510.dkr.ecr.eu-west-1.amazonaws.com/smdistributed-modelparallel:"
            "2.4.1-gpu-py311-cu121",
            ["job's region us-east-1"],
        ),
        (SMP_IMAGE + "2.3.0-gpu-py311-cu121", ["supported SMP v2 version"]),
        (SMP_IMAGE + "2.4.1-gpu-py311", ["supported SMP v2 version"]),
    ],
    ids=["own-image", "dlc", "other-region", "unpublished-tag", "no-cuda"],
)
def test_images_outside_the_smp_family_are_refused(image, words):
    with pytest.raises(ConfigError) as exc:
        _spec(image_uri=image)
    assert str(exc.value).startswith("image_uri: ")
    for word in words:
        assert word in str(exc.value)


def test_smp_images_and_images_built_from_them_are_accepted():
    for tag in smp_facts().images:
        assert _spec(image_uri=SMP_IMAGE + tag).image_uri.endswith(tag)
    assert _spec(image_uri=SMP_IMAGE + "2.5.1-gpu-py311-cu124-mine").image_uri


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("expert_parallel_degree", 0, ["greater than or equal to 1"]),
        ("expert_parallel_degree", -1, ["greater than or equal to 1"]),
        ("expert_parallel_degree", 2.5, ["valid integer"]),
        ("expert_parallel_degree", "two", ["valid integer"]),
        ("expert_parallel_degree", True, ["valid integer"]),
        ("expert_parallel_degree", 3, ["divisor of the world size 16 (2 x 8)"]),
        ("expert_parallel_degree", 32, ["divisor of the world size 16"]),
        ("hybrid_shard_degree", -1, ["greater than or equal to 0"]),
        ("hybrid_shard_degree", 3, ["0 or a divisor of the world size 16"]),
        ("hybrid_shard_degree", 32, ["0 or a divisor of the world size 16"]),
        ("tensor_parallel_degree", 3, ["divisor of the world size 16"]),
        ("tensor_parallel_degree", 2, ["1 for train_moe.py", "no tensor parallelism"]),
        ("sm_activation_offloading", "maybe", ["valid boolean"]),
        ("activation_loading_horizon", 0, ["greater than or equal to 1"]),
        ("processes_per_host", 0, ["greater than or equal to 1"]),
        ("bogus", 1, ["unknown key", "hybrid_shard_degree"]),
    ],
)
def test_bad_degrees_are_one_line_naming_the_field(field, value, words):
    with pytest.raises(ConfigError) as exc:
        _spec(**{f"distribution__{field}": value})
    line = str(exc.value)
    # the model's own checks name the variant too (distribution.smp.x), as for mpi
    assert re.match(rf"distribution\.(smp\.)?{field}: ", line), line
    for word in words:
        assert word in line, line


def test_the_world_is_hosts_times_processes_per_host_when_given():
    p5 = {"type": "ml.p5.48xlarge", "count": 3}
    spec = _spec(
        instance=p5, distribution__processes_per_host=2, distribution__hybrid_shard_degree=6
    )
    assert world_size(spec, spec.distribution) == 6
    with pytest.raises(ConfigError, match=r"world size 6 \(3 x 2\)"):
        _spec(instance=p5, distribution__processes_per_host=2, distribution__hybrid_shard_degree=8)


def test_expert_parallel_degree_divides_the_expert_count_the_hyperparameters_give():
    with pytest.raises(ConfigError) as exc:
        _spec(hyperparameters={**RAW["hyperparameters"], "n_experts": 6},
              distribution__expert_parallel_degree=4)  # fmt: skip
    assert str(exc.value).startswith("distribution.expert_parallel_degree: 4 is not allowed")
    assert "hyperparameters.n_experts (6)" in str(exc.value)


@pytest.mark.parametrize("name", ["hybrid_shard_degree", "mp_parameters"])
def test_smp_names_are_not_hyperparameters_with_smp(name):
    with pytest.raises(ConfigError, match=f"^hyperparameters.{name}: .*remove it"):
        _spec(hyperparameters={**RAW["hyperparameters"], name: 2})


def test_set_reaches_distribution_fields_and_is_checked_again():
    spec = _spec()
    small = apply_overrides(
        spec,
        [
            "instance.count=2",
            "distribution.processes_per_host=1",
            "distribution.hybrid_shard_degree=2",
            "epochs=1",
        ],  # fmt: skip
    )
    assert world_size(small, small.distribution) == 2
    assert small.distribution.expert_parallel_degree == 2 and small.hyperparameters["epochs"] == 1
    with pytest.raises(ConfigError, match="^distribution.hybrid_shard_degree: 8 .*world size 2"):
        apply_overrides(spec, ["instance.count=2", "distribution.processes_per_host=1"])
    with pytest.raises(ConfigError, match=r"^--set distribution.a.b: "):
        apply_overrides(spec, ["distribution.a.b=1"])


def test_validate_refuses_a_bad_smp_spec_with_exit_2(tmp_path):
    data = copy.deepcopy(RAW)
    data["instance"]["type"] = "ml.g5.48xlarge"
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    cli("validate", str(path)).assert_one_line_refusal("instance.type", "ml.p4d.24xlarge")
    assert cli("validate", str(EXAMPLE)).code == 0


def test_smp_image_tags_are_the_ones_the_sdk_picks():
    """data/smp_v2.yaml's tags against SDK v2's own image lookup for SMP v2."""
    from sagemaker import image_uris

    distribution = {"torch_distributed": {"enabled": True},
                    "smdistributed": {"modelparallel": {"enabled": True}}}  # fmt: skip
    for tag in smp_facts().images:
        version, _, py, _ = tag.split("-")
        uri = image_uris.get_training_image_uri(
            "us-east-1", "pytorch", framework_version=version, py_version=py,
            instance_type="ml.p4d.24xlarge", distribution=distribution,
        )  # fmt: skip
        assert uri == SMP_IMAGE + tag
