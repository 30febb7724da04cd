"""The job spec: examples load complete, and bad specs give one clear line each."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sm_toolkit.errors import ConfigError
from sm_toolkit.spec import RULES, load_spec, metric_regex, parse_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

BASE = {
    "name": "job-1",
    "entry_point": "train_cnn.py",
    "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/sm-toolkit:0.1.0",
    "role": "arn:aws:iam::123456789012:role/SageMakerTrainingRole",
    "instance": {"type": "ml.c5.xlarge"},
    "output_path": "s3://bucket/output",
}
TUNING = {
    "job_name": "tune-1",
    "objective": {"metric": "val:accuracy"},
    "max_jobs": 4,
    "ranges": {"lr": {"type": "continuous", "min": 0.001, "max": 0.1}},
}
P4D = {"type": "ml.p4d.24xlarge"}


def spec_with(**changes):
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        data[key] = value
    return data


def tuning_with(**changes):
    t = copy.deepcopy(TUNING)
    t.update(changes)
    return spec_with(tuning=t)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_loads_complete(path):
    spec = load_spec(path)
    assert spec.source_dir and Path(spec.source_dir).is_dir()
    assert spec.metrics, "the entrypoint's metric definitions are filled in"
    if spec.tuning is not None:
        assert spec.tuning.objective.metric in {m.name for m in spec.metrics}


def test_builtin_entrypoint_gets_its_metric_definitions():
    spec = parse_spec(spec_with(), base_dir=ROOT)
    assert spec.source_dir == str(ROOT / "entrypoints")
    regexes = {m.name: m.regex for m in spec.metrics}
    assert regexes["val:accuracy"] == metric_regex("val:accuracy")


def test_yaml_off_means_the_string_off():
    raw = yaml.safe_load("early_stopping: Off")
    spec = parse_spec(tuning_with(**raw), base_dir=ROOT)
    assert spec.tuning.early_stopping == "Off"


def test_relative_local_input_resolves_against_the_spec_file(tmp_path):
    (tmp_path / "data").mkdir()
    spec = parse_spec(spec_with(inputs={"train": "data"}), base_dir=tmp_path)
    assert spec.inputs["train"] == str(tmp_path / "data")


# Each bad spec: (what is wrong, the spec, the field path the error must name,
# a word of what is allowed). The error must be one line.
BAD = [
    (
        "smddp on a CPU instance",
        spec_with(distribution={"type": "smddp"}),
        "instance.type",
        "ml.p4d",
    ),
    (
        "pytorchddp on a g5",
        spec_with(distribution={"type": "pytorchddp"}, instance={"type": "ml.g5.12xlarge"}),
        "instance.type",
        "ml.p5",
    ),
    (
        "unknown distribution",
        spec_with(distribution={"type": "horovod"}),
        "distribution.type",
        "smddp",
    ),
    (
        "negative instance count",
        spec_with(instance={"type": "ml.c5.xlarge", "count": -1}),
        "instance.count",
        "greater than or equal to 1",
    ),
    (
        "zero instance count",
        spec_with(instance={"type": "ml.c5.xlarge", "count": 0}),
        "instance.count",
        "1",
    ),
    (
        "bad instance type",
        spec_with(instance={"type": "c5.xlarge"}),
        "instance.type",
        "ml.c5.xlarge",
    ),
    (
        "keep-alive 99999",
        spec_with(warm_pool={"keep_alive_seconds": 99999}),
        "warm_pool.keep_alive_seconds",
        "3600",
    ),
    (
        "negative keep-alive",
        spec_with(warm_pool={"keep_alive_seconds": -5}),
        "warm_pool.keep_alive_seconds",
        "0",
    ),
    (
        "spot wait shorter than run",
        spec_with(spot={"max_wait_seconds": 60}, max_run_seconds=3600),
        "spot.max_wait_seconds",
        "max_run_seconds",
    ),
    (
        "unknown top-level key",
        spec_with(instanse={"type": "ml.c5.xlarge"}),
        "instanse",
        "allowed: name, entry_point",
    ),
    (
        "unknown nested key",
        spec_with(checkpoint={"s3_uri": "s3://bkt/c", "path": "/x"}),
        "checkpoint.path",
        "allowed: s3_uri, local_path",
    ),
    (
        "unknown key in a distribution",
        spec_with(distribution={"type": "mpi", "procs": 2}),
        "distribution.mpi.procs",
        "processes_per_host",
    ),
    (
        "malformed checkpoint URI",
        spec_with(checkpoint={"s3_uri": "s3:/bucket/x"}),
        "checkpoint.s3_uri",
        "s3://bucket/prefix",
    ),
    (
        "malformed output path",
        spec_with(output_path="https://bucket/output"),
        "output_path",
        "s3://bucket/prefix",
    ),
    (
        "malformed input S3 URI",
        spec_with(inputs={"train": "s3://B_ad/x"}),
        "inputs.train",
        "s3://bucket/prefix",
    ),
    (
        "bad channel name",
        spec_with(inputs={"tr ain": "s3://bucket/x"}),
        "inputs.tr ain",
        "channel names",
    ),
    ("role that is not an ARN", spec_with(role="SageMakerRole"), "role", "arn:aws:iam::"),
    ("job name with underscore", spec_with(name="my_job"), "name", "hyphens"),
    ("missing image", {k: v for k, v in BASE.items() if k != "image_uri"}, "image_uri", "required"),
    ("unknown entrypoint", spec_with(entry_point="train_gan.py"), "entry_point", "train_cnn.py"),
    (
        "reserved hyperparameter",
        spec_with(hyperparameters={"sagemaker_program": "x.py"}),
        "hyperparameters.sagemaker_program",
        "reserved",
    ),
    (
        "hyperparameter that is a list",
        spec_with(hyperparameters={"layers": [1, 2]}),
        "hyperparameters.layers",
        "a single value",
    ),
    (
        "unknown debugger rule",
        spec_with(rules=["loss_not_decreasing", "gradient_magic"]),
        "rules[1]",
        "vanishing_gradient",
    ),
    ("bad environment key", spec_with(environment={"1BAD": "x"}), "environment.1BAD", "keys"),
    (
        "torchrun with a shell entry point",
        spec_with(
            entry_point="run.sh", source_dir="fixtures", distribution={"type": "torch_distributed"}
        ),
        "entry_point",
        "a file inside source_dir",
    ),
    (
        "Grid with a continuous range",
        tuning_with(strategy="Grid", max_jobs=None),
        "tuning.ranges.lr.type",
        "categorical",
    ),
    (
        "Grid with the wrong max_jobs",
        tuning_with(
            strategy="Grid",
            max_jobs=5,
            ranges={"opt": {"type": "categorical", "values": ["a", "b"]}},
        ),
        "tuning.max_jobs",
        "2",
    ),
    (
        "Hyperband with early stopping Auto",
        tuning_with(strategy="Hyperband", early_stopping="Auto"),
        "tuning.early_stopping",
        "Off",
    ),
    (
        "hyperband section with Random",
        tuning_with(strategy="Random", hyperband={"min_resource": 1, "max_resource": 9}),
        "tuning.hyperband",
        "only with strategy Hyperband",
    ),
    (
        "Hyperband min above max",
        tuning_with(strategy="Hyperband", hyperband={"min_resource": 10, "max_resource": 9}),
        "tuning.hyperband.min_resource",
        "at most",
    ),
    (
        "objective not among the metrics",
        tuning_with(objective={"metric": "val:f2"}),
        "tuning.objective.metric",
        "val:accuracy",
    ),
    (
        "objective type misspelt",
        tuning_with(objective={"metric": "val:accuracy", "type": "Maximise"}),
        "tuning.objective.type",
        "Maximize",
    ),
    ("unknown strategy", tuning_with(strategy="Genetic"), "tuning.strategy", "Bayesian"),
    (
        "unknown scaling",
        tuning_with(
            ranges={"lr": {"type": "continuous", "min": 0.1, "max": 1, "scaling": "Cubic"}}
        ),
        "tuning.ranges.lr.continuous.scaling",
        "Logarithmic",
    ),
    (
        "Logarithmic from zero",
        tuning_with(
            ranges={"lr": {"type": "continuous", "min": 0, "max": 1, "scaling": "Logarithmic"}}
        ),
        "tuning.ranges.lr.min",
        "min > 0",
    ),
    (
        "ReverseLogarithmic on an integer",
        tuning_with(
            ranges={"n": {"type": "integer", "min": 1, "max": 9, "scaling": "ReverseLogarithmic"}}
        ),
        "tuning.ranges.n.scaling",
        "continuous",
    ),
    (
        "range min above max",
        tuning_with(ranges={"lr": {"type": "continuous", "min": 1, "max": 0.1}}),
        "tuning.ranges.lr.max",
        "greater than min",
    ),
    ("no max_jobs for Bayesian", tuning_with(max_jobs=None), "tuning.max_jobs", "needs max_jobs"),
    (
        "more parallel jobs than jobs",
        tuning_with(max_parallel_jobs=8),
        "tuning.max_parallel_jobs",
        "at most max_jobs",
    ),
    (
        "tuning name over 32 characters",
        tuning_with(job_name="x" * 33),
        "tuning.job_name",
        "at most 32",
    ),
    (
        "six warm-start parents",
        tuning_with(warm_start={"type": "TransferLearning", "parents": list("abcdef")}),
        "tuning.warm_start.parents",
        "at most 5",
    ),
    (
        "not-improving below 3",
        tuning_with(completion={"max_jobs_not_improving": 2}),
        "tuning.completion.max_jobs_not_improving",
        "3",
    ),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_spec_gives_one_line_naming_the_field(case, tmp_path):
    _, data, field, allowed = case
    (tmp_path / "fixtures").mkdir()
    (tmp_path / "fixtures" / "train.py").write_text("print('x')\n")
    with pytest.raises(ConfigError) as info:
        parse_spec(data, base_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(field + ":"), message
    assert allowed in message, message


def test_at_least_forty_bad_specs_are_covered():
    assert len(BAD) >= 40


def test_cli_prints_one_line_and_exits_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec_with(warm_pool={"keep_alive_seconds": 99999})))
    proc = subprocess.run(
        [sys.executable, "-m", "sm_toolkit.cli", "validate", str(path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "warm_pool.keep_alive_seconds: 99999" in lines[0], proc.stderr


def test_cli_rejects_invalid_yaml_with_its_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ninstance: [unclosed\n")
    proc = subprocess.run(
        [sys.executable, "-m", "sm_toolkit.cli", "validate", str(path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "valid YAML (error at line" in proc.stderr


def test_every_rule_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    for rule in RULES:
        assert f"`{rule.id}`" in readme, rule.id


def test_hyperparameters_round_trip_through_the_container_launcher():
    """What the SDK encodes (json.dumps per value) sagemaker-training decodes to equal values."""
    from sagemaker_training import mapping as sm_mapping

    hps = {"epochs": 3, "lr": 0.003, "optimizer": "adamw", "bf16": True, "name": "a b"}
    encoded = {k: json.dumps(v) for k, v in hps.items()}  # the SDK's Framework encoding
    decoded = {k: json.loads(v) for k, v in encoded.items()}  # read_hyperparameters
    assert decoded == hps
    args = sm_mapping.to_cmd_args(decoded)
    assert args[args.index("--bf16") + 1] == "True"
    assert args[args.index("--lr") + 1] == "0.003"


def test_notices_say_what_the_sdk_and_launcher_will_change():
    from sm_toolkit.spec import notices

    spec = parse_spec(
        spec_with(
            distribution={"type": "pytorchddp"},
            instance={"type": "ml.p4d.24xlarge"},
            hyperparameters={"x": 1},
            spot={"max_wait_seconds": 90000},
        ),
        base_dir=ROOT,
    )
    text = "\n".join(notices(spec))
    assert "rewrites it into smdistributed.dataparallel" in text
    assert "one dash (-x VALUE)" in text
    assert "spot without checkpoint" in text
    tuned = parse_spec({**tuning_with(), "warm_pool": {"keep_alive_seconds": 60}}, base_dir=ROOT)
    assert "cannot carry warm_pool" in "\n".join(notices(tuned))
