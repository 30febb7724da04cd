"""Fuzz: hundreds of malformed specs derived from the examples, each refused in one line.

Every example gets every mutation in MUTATIONS (each one always makes a spec invalid),
every text mutation in TEXT_MUTATIONS (hostile or broken YAML), and seeded random ones:
a scalar replaced by a mapping, an unknown key in a section. For each: exit code 2, one
line of at most 300 characters on stderr, nothing on stdout, no traceback, under 2 s.
The second test feeds boundary values to the CLI and checks that whatever it accepts
renders to a request that botocore and the model's own limits accept.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from botocore.validate import ParamValidator
from cli_helpers import EXAMPLES, cli, write_spec

from sm_toolkit.aws import limits

NAN, INF = float("nan"), float("inf")
TUNING = yaml.safe_load((EXAMPLES[0].parent / "tune-cnn-hyperband.yaml").read_text())["tuning"]


def _set(key: str, value) -> Callable[[dict], None]:
    """A mutation that sets a top-level key of the spec to ``value``."""

    def apply(data: dict) -> None:
        data[key] = copy.deepcopy(value)

    return apply


def _drop(key: str) -> Callable[[dict], None]:
    return lambda data: data.pop(key, None)


def _tuned(**changes) -> Callable[[dict], None]:
    def apply(data: dict) -> None:
        data["entry_point"] = "train_cnn.py"  # so TUNING's objective is one of its metrics
        data["tuning"] = {**copy.deepcopy(TUNING), **changes}
        data.pop("warm_pool", None)
        data.pop("spot", None)

    return apply


def _both(*fns) -> Callable[[dict], None]:
    def apply(data: dict) -> None:
        for fn in fns:
            fn(data)

    return apply


MUTATIONS: dict[str, Callable[[dict], None]] = {
    **{
        f"no {k}": _drop(k)
        for k in ("name", "entry_point", "image_uri", "role", "instance", "output_path")
    },
    "unknown key": _set("instanse", {"type": "ml.c5.xlarge"}),
    "ml.fake.huge": _set("instance", {"type": "ml.fake.huge"}),
    "ml.m5.larg": _set("instance", {"type": "ml.m5.larg"}),
    "ml.g5.12xl": _set("instance", {"type": "ml.g5.12xl"}),
    "no ml. prefix": _set("instance", {"type": "c5.xlarge"}),
    "count 0": _set("instance", {"type": "ml.c5.xlarge", "count": 0}),
    "count two": _set("instance", {"type": "ml.c5.xlarge", "count": "two"}),
    "volume 0": _set("instance", {"type": "ml.c5.xlarge", "volume_size_gb": 0}),
    "max_run 0": _set("max_run_seconds", 0),
    "max_run NaN": _set("max_run_seconds", NAN),
    "retry 31": _set("max_retry_attempts", 31),
    "role not an ARN": _set("role", "SageMakerRole"),
    "name bad_name!": _set("name", "bad_name!"),
    "name of 93": _set("name", "n" * 93),
    "name with newline": _set("name", "job\n"),
    "region mars": _set("region", "mars"),
    "output https": _set("output_path", "https://bucket/output"),
    "output bad bucket": _set("output_path", "s3://B_ad/x"),
    "image empty": _set("image_uri", ""),
    "input gs": _set("inputs", {"train": "gs://bucket/data"}),
    "input https": _set("inputs", {"train": "https://example.com/data"}),
    "input no scheme": _set("inputs", {"train": "my-bucket/data"}),
    "channel space": _set("inputs", {"tr ain": "s3://bucket/x"}),
    "channel newline": _set("inputs", {"train\n": "s3://bucket/x"}),
    "uri newline": _set("inputs", {"train": "s3://bucket/x\n"}),
    "21 channels": _set("inputs", {f"c{i}": "s3://bucket/x" for i in range(21)}),
    "98 hyperparameters": _set("hyperparameters", {f"h{i}": i for i in range(98)}),
    "2499-char value": _set("hyperparameters", {"note": "x" * 2499}),
    "sagemaker_ hp": _set("hyperparameters", {"sagemaker_program": "x.py"}),
    "hp with space": _set("hyperparameters", {"bad key": 1}),
    "hp NaN": _set("hyperparameters", {"lr": NAN}),
    "hp inf": _set("hyperparameters", {"lr": INF}),
    "hp list": _set("hyperparameters", {"layers": [1, 2]}),
    "env key digit": _set("environment", {"1BAD": "x"}),
    "env key newline": _set("environment", {"KEY\n": "v"}),
    "env value 513": _set("environment", {"NOTE": "x" * 513}),
    "env value map": _set("environment", {"NOTE": {"a": 1}}),
    "tag aws:": _set("tags", {"aws:owner": "me"}),
    "tag value 257": _set("tags", {"k": "v" * 257}),
    "regex no compile": _set("metrics", [{"name": "loss", "regex": "loss=(["}]),
    "regex no group": _set("metrics", [{"name": "loss", "regex": "loss=[0-9.]+"}]),
    "regex two groups": _set("metrics", [{"name": "l", "regex": "(l)=([0-9.]+)"}]),
    "metric twice": _set("metrics", [{"name": "l", "regex": f"{c}l=(\\d)"} for c in "ab"]),
    "metric without regex": _set("metrics", [{"Name": "l"}]),
    "spot and warm pool": _both(
        _set("spot", {"max_wait_seconds": 2419200}), _set("warm_pool", {"keep_alive_seconds": 60})
    ),
    "spot wait 1": _set("spot", {"max_wait_seconds": 1}),
    "keep-alive 99999": _set("warm_pool", {"keep_alive_seconds": 99999}),
    "keep-alive -5": _set("warm_pool", {"keep_alive_seconds": -5}),
    "horovod": _set("distribution", {"type": "horovod"}),
    "smddp on c5": _both(
        _set("distribution", {"type": "smddp"}), _set("instance", {"type": "ml.c5.xlarge"})
    ),
    "unknown rule": _set("rules", ["gradient_magic"]),
    "checkpoint s3:/": _set("checkpoint", {"s3_uri": "s3:/bucket/x"}),
    "checkpoint unknown key": _set("checkpoint", {"s3_uri": "s3://bkt/c", "path": "/x"}),
    "tensorboard gs": _set("tensorboard", {"s3_output_path": "gs://x/y"}),
    "unknown entrypoint": _both(_set("entry_point", "train_gan.py"), _drop("source_dir")),
    "missing source_dir": _set("source_dir", "no-such-dir"),
    "tuning name 34": _tuned(job_name="t" * 34),
    "range to inf": _tuned(ranges={"lr": {"type": "continuous", "min": 0.1, "max": INF}}),
    "range from -inf": _tuned(ranges={"lr": {"type": "continuous", "min": -INF, "max": 1}}),
    "target NaN": _tuned(completion={"target_objective_value": NAN}),
    "strategy Genetic": _tuned(strategy="Genetic"),
    "objective f2": _tuned(objective={"metric": "val:f2"}),
    "no ranges": _tuned(ranges={}),
    "max_jobs 0": _tuned(max_jobs=0),
    "parallel over max": _tuned(max_parallel_jobs=100),
}


def _alias_bomb(text: str) -> str:
    lines = ["x0: &x0 [a, a, a, a, a, a, a, a, a]"]
    lines += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n" + text


TEXT_MUTATIONS: dict[str, Callable[[str, random.Random], str | bytes]] = {
    "alias bomb": lambda t, r: _alias_bomb(t),
    "one alias": lambda t, r: t + "tags: &t {a: b}\nenvironment: *t\n",
    "nesting 3000": lambda t, r: t + "tags: " + "[" * 3000 + "]" * 3000 + "\n",
    "duplicate first key": lambda t, r: (
        t + next(line for line in t.splitlines() if line[:1].isalpha()) + "\n"
    ),
    "invalid utf-8 byte": lambda t, r: (lambda b, i: b[:i] + b"\xff\xfe" + b[i:])(
        t.encode(), r.randrange(len(t))
    ),
    "utf-16": lambda t, r: t.encode("utf-16"),
    "nul byte": lambda t, r: t + "\x00",
    "unclosed flow": lambda t, r: t + "tags: [unclosed\n",
    "tab indent": lambda t, r: t + "instance:\n\ttype: ml.c5.xlarge\n",
    "python tag": lambda t, r: t + "tags: !!python/object/apply:os.system ['true']\n",
    "a list": lambda t, r: "- " + t.replace("\n", "\n  "),
    "over 256 KiB": lambda t, r: t + "#" * (256 * 1024),
}

FREE_FORM = {"hyperparameters", "environment", "tags", "inputs", "ranges"}


def _leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))
    else:
        yield path


def _sections(node, path=()):
    if isinstance(node, dict):
        if not path or path[-1] not in FREE_FORM:
            yield path
        for k, v in node.items():
            yield from _sections(v, (*path, k))


def _at(data, path):
    for p in path:
        data = data[p]
    return data


def _random_mutations(data: dict, rng: random.Random) -> list[tuple[str, dict]]:
    out = []
    leaves = list(_leaves(data))
    for path in rng.sample(leaves, min(5, len(leaves))):
        d = copy.deepcopy(data)
        _at(d, path[:-1])[path[-1]] = {"x": {"y": [1]}}  # no field takes a mapping here
        out.append((f"mapping at {'.'.join(map(str, path))}", d))
    sections = list(_sections(data))
    for path in rng.sample(sections, min(3, len(sections))):
        d = copy.deepcopy(data)
        _at(d, path)["zz_unknown"] = 1
        out.append((f"unknown key in {'.'.join(map(str, path)) or 'top'}", d))
    return out


def _cases() -> list[tuple[str, str, object]]:
    rng = random.Random(10)
    cases: list[tuple[str, str, object]] = []
    for example in EXAMPLES:
        text = example.read_text()
        data = yaml.safe_load(text)
        for name, mutate in MUTATIONS.items():
            d = copy.deepcopy(data)
            mutate(d)
            cases.append((example.stem, name, d))
        for name, mutate in TEXT_MUTATIONS.items():
            cases.append((example.stem, name, mutate(text, rng)))
        for name, d in _random_mutations(data, rng):
            cases.append((example.stem, name, d))
    return cases


CASES = _cases()


def _write(folder: Path, content) -> Path:
    if isinstance(content, dict):
        return write_spec(folder, content)
    path = folder / "spec.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def test_there_are_at_least_300_malformed_specs():
    assert len(CASES) >= 300, len(CASES)


@pytest.fixture(scope="module")
def warm():
    """Import the SDK once: the first render in a process pays seconds of imports."""
    cli("validate", str(EXAMPLES[0]))


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_malformed_spec_is_refused_in_one_line(tmp_path, warm, case):
    _, _, content = case
    path = _write(tmp_path, content)
    for command in ("validate", "render"):
        outcome = cli(command, str(path))
        outcome.assert_one_line_refusal()
        # A hang guard, not a speed target (benchmarks/ has those): a refusal that took
        # this long would be a loop or a network wait; on a quiet machine the median is 7 ms.
        assert outcome.seconds < 15.0, (command, outcome.seconds)


# Boundary values: some are accepted, some refused. Whatever the CLI accepts must render
# to a request that botocore and the model's limits accept (checked here independently).
BOUNDARY = (
    [("hyperparameters", {f"h{i}": i for i in range(n)}) for n in (90, 94, 95, 96, 97)]
    + [("hyperparameters", {"note": "x" * n}) for n in (2497, 2498, 2499)]
    + [("name", "n" * n) for n in (62, 63, 64)]
    + [("environment", {"NOTE": "x" * n}) for n in (512, 513)]
    + [("tags", {"k" * n: "v"}) for n in (128, 129)]
    + [
        ("instance", {"type": t, "count": c})
        for t in ("ml.c5.xlarge", "ml.g5.12xlarge", "ml.c5.xlarg")
        for c in (1, 100, 101)
    ]
    + [("max_run_seconds", n) for n in (1, 2419200, 2419201)]
)


@pytest.mark.parametrize("case", BOUNDARY, ids=[f"{c[0]}-{i}" for i, c in enumerate(BOUNDARY)])
def test_whatever_the_cli_accepts_passes_the_api_model(tmp_path, warm, case):
    key, value = case
    for example in (EXAMPLES[0], EXAMPLES[-1]):  # one training, one tuning spec
        data = yaml.safe_load(example.read_text())
        data[key] = value
        outcome = cli("render", str(write_spec(tmp_path, data)))
        if outcome.code != 0:
            outcome.assert_one_line_refusal()
            continue
        request = json.loads(outcome.out)
        operation = "CreateHyperParameterTuningJob" if "tuning" in data else "CreateTrainingJob"
        shape = limits.operation_input(operation)
        assert not ParamValidator().validate(request, shape).has_errors()
        assert limits.violations(operation, request) == []


def test_every_example_is_accepted_and_passes_the_api_model(warm):
    for example in EXAMPLES:
        outcome = cli("render", str(example))
        assert outcome.code == 0, outcome.err
        request = json.loads(outcome.out)
        operation = (
            "CreateHyperParameterTuningJob"
            if "HyperParameterTuningJobName" in request
            else "CreateTrainingJob"
        )
        assert limits.violations(operation, request) == []
