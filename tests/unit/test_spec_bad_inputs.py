"""The bad inputs issue 10 quotes, each through the CLI as a user types it.

Each must end in exit code 2, one line of at most 300 characters on stderr naming the
field, nothing on stdout and no traceback. Bad inputs tried here: a billion-laughs alias
chain, 3,000-level nesting, /dev/zero, a directory, a named pipe, a binary file, a UTF-16 file, a 200 KB value, a
file over the size limit, a dangling symlink in source_dir (render), a metric regex that
does not compile and one without a capture group, `my-bucket/data` and a missing local
input, https:// and gs:// inputs, instance types ml.fake.huge / ml.m5.larg / ml.g5.12xl,
98 hyperparameters (103 with the SDK's), a 2,499-character hyperparameter value (2,501
quoted), an environment value over 512 characters, a tag key starting aws:, a 34-character
tuning job name, a 93-character training job name (--job-name), tuning ranges of infinity,
a NaN target objective value, spot with a warm pool, trailing newlines in a channel name,
an environment key and an input URI, a duplicate `role:` key, `--job-name bad_name!`,
`--set sagemaker_program=x` and `--set "bad key=1"`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cli_helpers import cli, cli_subprocess, example, write_spec

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


def _file_case(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "spec.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize(
    "content, words",
    [
        (LAUGHS, ["no YAML aliases"]),
        ("a: " + "[" * 3000 + "]" * 3000 + "\n", ["levels of nesting"]),
        ("a:\n" + "".join("  " * i + "- b:\n" for i in range(1, 60)), ["levels of nesting"]),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", ["UTF-8"]),
        ("name: x\nrole: y\n".encode("utf-16"), ["UTF-8"]),
        ("name: " + "x" * 200_000 + "\n", ["name:", "chars"]),
        ("name: x\n" + "#" * 300_000, ["at most 262144 bytes"]),
        ("name: x\ntags: !!python/object:os.system {}\n", ["plain YAML"]),
    ],
    ids=[
        "billion-laughs",
        "nesting-3000",
        "nesting-block",
        "binary",
        "utf16",
        "long-value",
        "too-big",
        "python-tag",
    ],
)
def test_hostile_files_give_one_line(tmp_path, content, words):
    path = _file_case(tmp_path, content)
    for command in ("validate", "render"):
        outcome = cli(command, str(path))
        outcome.assert_one_line_refusal(*words)
        assert outcome.seconds < 1.0, outcome.seconds


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_dev_zero_is_refused_by_size():
    cli("validate", "/dev/zero").assert_one_line_refusal("at most 262144 bytes")


def test_a_directory_and_a_named_pipe_are_refused(tmp_path):
    cli("validate", str(tmp_path)).assert_one_line_refusal("readable YAML file")
    os.mkfifo(tmp_path / "pipe.yaml")
    cli("validate", str(tmp_path / "pipe.yaml")).assert_one_line_refusal("named pipe")


def test_duplicate_key_names_the_key(tmp_path):
    text = write_spec(tmp_path, example("cnn-local")).read_text()
    path = _file_case(tmp_path, text + "role: arn:aws:iam::123456789012:role/Other\n")
    cli("validate", str(path)).assert_one_line_refusal("role:", "given twice", "line")


def test_dangling_symlink_in_source_dir_fails_render_cleanly(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("print('hi')\n")
    (src / "gone.txt").symlink_to(tmp_path / "nowhere")
    data = {**example("cnn-local"), "entry_point": "train.py", "source_dir": "src"}
    path = write_spec(tmp_path, data)
    cli("render", str(path)).assert_one_line_refusal("source_dir")
    cli("validate", str(path)).assert_one_line_refusal("source_dir")


def _with(tmp_path: Path, name: str = "cnn-local", **changes) -> Path:
    data = example(name)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return write_spec(tmp_path, data)


METRIC = {"name": "loss", "regex": "loss=([0-9.]+)"}
TUNING = example("tune-cnn-hyperband")["tuning"]

CASES = [
    (
        "metric regex that does not compile",
        dict(metrics=[{"name": "loss", "regex": "loss=(["}]),
        "metrics[0].regex",
    ),
    (
        "metric regex without a group",
        dict(metrics=[{"name": "loss", "regex": "loss=[0-9.]+"}]),
        "exactly one capture group",
    ),
    (
        "metric regex with two groups",
        dict(metrics=[{"name": "l", "regex": "(l)=([0-9.]+)"}]),
        "exactly one capture group",
    ),
    ("input without a scheme", dict(inputs={"train": "my-bucket/data"}), "inputs.train"),
    ("missing local input", dict(inputs={"train": "./no-such-dir"}), "does not exist"),
    ("https input", dict(inputs={"train": "https://example.com/data"}), "inputs.train"),
    ("gs input", dict(inputs={"train": "gs://bucket/data"}), "inputs.train"),
    ("ml.fake.huge", dict(instance={"type": "ml.fake.huge"}), "instance.type"),
    ("ml.m5.larg", dict(instance={"type": "ml.m5.larg"}), "ml.m5.large"),
    ("ml.g5.12xl", dict(instance={"type": "ml.g5.12xl"}), "instance.type"),
    (
        "98 hyperparameters",
        dict(hyperparameters={f"h{i}": i for i in range(98)}),
        "hyperparameters: '103 entries'",
    ),
    ("2,499-character value", dict(hyperparameters={"note": "x" * 2499}), "hyperparameters.note"),
    ("environment value too long", dict(environment={"NOTE": "x" * 513}), "environment.NOTE"),
    ("tag key aws:", dict(tags={"aws:owner": "me"}), "tags.aws:owner"),
    (
        "spot with a warm pool",
        dict(spot={"max_wait_seconds": 7200}, warm_pool={"keep_alive_seconds": 60}),
        "warm_pool",
    ),
    ("channel name with a newline", dict(inputs={"train\n": "s3://bucket/data"}), "inputs.train"),
    ("environment key with a newline", dict(environment={"KEY\n": "v"}), "environment.KEY"),
    ("input URI with a newline", dict(inputs={"train": "s3://bucket/data\n"}), "inputs.train"),
    ("NaN hyperparameter", dict(hyperparameters={"lr": float("nan")}), "hyperparameters.lr"),
    (
        "tuning name of 34 characters",
        dict(tuning={**TUNING, "job_name": "t" * 34}),
        "tuning.job_name",
    ),
    (
        "tuning range to infinity",
        dict(
            tuning={
                **TUNING,
                "ranges": {"lr": {"type": "continuous", "min": 0.001, "max": float("inf")}},
            }
        ),
        "tuning.ranges.lr",
    ),
    (
        "NaN target objective value",
        dict(tuning={**TUNING, "completion": {"target_objective_value": float("nan")}}),
        "tuning.completion.target_objective_value",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_quoted_spec_mistakes_are_caught_by_validate(tmp_path, case):
    _, changes, word = case
    path = _with(tmp_path, **changes)
    outcome = cli("validate", str(path))
    outcome.assert_one_line_refusal(word)
    cli("render", str(path)).assert_one_line_refusal(word)


def test_render_prints_no_bare_nan(tmp_path):
    """JSON has no NaN: a request that would hold one is refused, never printed."""
    path = _with(
        tmp_path,
        "tune-cnn-hyperband",
        tuning={**TUNING, "completion": {"target_objective_value": float("nan")}},
    )
    assert "NaN" not in cli("render", str(path)).out


@pytest.mark.parametrize(
    "argv, word",
    [
        (["render", "{spec}", "--job-name", "bad_name!"], "--job-name"),
        (["render", "{spec}", "--job-name", "j" * 93], "--job-name"),
        (["launch", "{spec}", "--job-name", "bad_name!"], "--job-name"),
        (["run", "{spec}", "--local", "--set", "sagemaker_program=x"], "reserved"),
        (["run", "{spec}", "--local", "--set", "bad key=1"], "--set bad key"),
        (["run", "{spec}", "--local", "--set", "lr=.nan"], "finite"),
        (["run", "{spec}", "--local", "--set", "noequals"], "KEY=VALUE"),
    ],
    ids=[
        "job-name-bang",
        "job-name-93",
        "launch-job-name",
        "set-reserved",
        "set-space",
        "set-nan",
        "set-no-equals",
    ],
)
def test_command_line_values_pass_the_same_checks(tmp_path, argv, word):
    path = _with(tmp_path)
    outcome = cli(*[a.format(spec=path) for a in argv])
    outcome.assert_one_line_refusal(word)


def test_tuning_job_name_option_has_the_tuning_limit(tmp_path):
    path = _with(tmp_path, "tune-cnn-hyperband")
    cli("render", str(path), "--job-name", "t" * 33).assert_one_line_refusal("at most 32")


def test_a_few_through_a_real_process(tmp_path):
    for content, word in ((LAUGHS, "aliases"), ("name: [" * 3000, "nesting")):
        path = _file_case(tmp_path, content)
        cli_subprocess("validate", str(path)).assert_one_line_refusal(word)
    path = _with(tmp_path, instance={"type": "ml.g5.12xl"})
    cli_subprocess("render", str(path)).assert_one_line_refusal("instance.type")


def test_sdk_style_metric_keys_are_accepted(tmp_path):
    metrics = [{"Name": "loss", "Regex": "loss=([0-9.]+)"}]
    path = _with(tmp_path, metrics=metrics)
    outcome = cli("render", str(path))
    assert outcome.code == 0, outcome.err
    request = json.loads(outcome.out)
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == metrics
