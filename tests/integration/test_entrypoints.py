"""Each entrypoint trains for real under sagemaker-training's `train` against a fake /opt/ml,
and every metric declared in sm_toolkit/data/entrypoints.yaml appears in its output."""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest
import torch
import yaml
from entrypoint_helpers import make_base, run_entrypoint, run_train_launcher

from sm_toolkit.models import cpu_matmul
from sm_toolkit.train.datasets import write_digits_npz, write_text_corpus
from sm_toolkit.train.families import rebuild_model
from sm_toolkit.train.metrics import metric_regex

CATALOG = yaml.safe_load(
    resources.files("sm_toolkit").joinpath("data/entrypoints.yaml").read_text()
)
RULES = (
    "vanishing_gradient,exploding_tensor,dead_relu,saturated_activation,loss_not_decreasing,overfit"
)
CASES = {
    "train_cnn.py": ({"epochs": 2, "size": "debug"}, write_digits_npz),
    "train_rnn.py": ({"epochs": 1, "size": "debug", "cell": "gru"}, write_text_corpus),
    "train_moe.py": ({"epochs": 1, "size": "debug"}, write_text_corpus),
}


def test_every_entrypoint_in_the_catalog_is_tested():
    assert set(CATALOG) == set(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("program", sorted(CASES))
def test_entrypoint_under_the_train_launcher(tmp_path, program):
    hps, writer = CASES[program]
    base = make_base(tmp_path / "opt_ml", program, hps, writer)
    tb = tmp_path / "tb"
    out = run_train_launcher(base, SM_TOOLKIT_RULES=RULES, SM_TENSORBOARD_DIR=str(tb))
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert "Reporting training SUCCESS" in log
    # the defaults, as here: the matmul engine auto picks, and glibc keeping freed memory
    assert f"device cpu (fp32 matmuls: {cpu_matmul.engine()}; malloc keeps freed memory)" in (
        out.stdout
    )
    assert (base / "output" / "success").exists() and not (base / "output" / "failure").exists()
    # the model can be rebuilt from what was written
    meta = json.loads((base / "model" / "model_config.json").read_text())
    assert meta["family"] in ("cnn", "rnn", "moe")
    model = rebuild_model(base / "model")
    state = torch.load(base / "model" / "model.pt", weights_only=True)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    data = base / "output" / "data"
    for png in ("loss_curves.png", "gradient_flow.png"):
        assert (data / png).stat().st_size > 5000
    report = json.loads((data / "metrics.json").read_text())
    assert {r["name"] for r in report["rules"]} == set(RULES.split(","))
    assert sum(line.startswith("[rule] ") for line in out.stdout.splitlines()) == 6
    assert list(tb.glob("events.out.tfevents.*"))
    # every declared metric is printed, parseable by its regex, and the last value is final
    metric_lines = "\n".join(l for l in out.stdout.splitlines() if l.startswith("[metrics]"))  # noqa: E741
    for name in CATALOG[program]["metrics"]:
        values = re.findall(metric_regex(name), out.stdout)
        assert values, f"{name} not in output of {program}"
        assert re.findall(metric_regex(name), metric_lines) == values  # only [metrics] lines match
        assert float(values[-1]) == pytest.approx(report["final"][name], abs=1e-4)
    if program == "train_cnn.py":
        assert (data / "confusion_matrix.png").exists() and (data / "roc_pr_curves.png").exists()
    if program == "train_moe.py":
        assert (data / "expert_utilisation.png").exists()
        assert re.search(r"train:aux_loss=\S+", out.stdout) and "val:drop_rate=" in out.stdout


@pytest.mark.slow
def test_bad_hyperparameter_is_one_line_exit_2_and_the_failure_reason(tmp_path):
    base = make_base(tmp_path / "opt_ml", "train_cnn.py", {"optimizer": "lamb", "size": "debug"})
    out = run_train_launcher(base)
    assert out.returncode != 0
    failure = (base / "output" / "failure").read_text()
    # our script wrote it first; the launcher left it alone
    assert failure.splitlines()[0] == (
        "ConfigError: optimizer: 'lamb' is not allowed; one of sgd, adam, adamw, rmsprop"
    )
    assert "Traceback" not in out.stdout + out.stderr.split("ExecuteUserScriptError")[0]


def test_direct_run_without_sagemaker_writes_under_runs(tmp_path):
    out = run_entrypoint("train_cnn.py", ["--size", "debug", "--epochs", "1"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    run_dir = tmp_path / "runs" / "train_cnn"
    assert (run_dir / "model" / "model.pt").exists()
    assert (run_dir / "output" / "data" / "metrics.json").exists()
    assert re.search(metric_regex("val:accuracy"), out.stdout)


def test_the_matmul_engine_and_the_malloc_setting_are_hyperparameters(tmp_path):
    args = ["--size", "debug", "--epochs", "1", "--max_steps", "3"]
    chosen = ["--cpu_matmul", "torch", "--keep_freed_memory", "False"]
    out = run_entrypoint("train_moe.py", [*args, *chosen], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "device cpu (fp32 matmuls: torch);" in out.stdout
    # bad values tried: an engine name torch does not use here, a case variant; not a boolean
    for bad in ("mkl", "oneDNN"):
        out = run_entrypoint("train_moe.py", [*args, "--cpu_matmul", bad], cwd=tmp_path)
        assert out.returncode == 2
        assert out.stderr.strip().splitlines() == [
            f"[failure] ConfigError: cpu_matmul: {bad!r} is not allowed; one of auto, torch, onednn"
        ]
    out = run_entrypoint("train_moe.py", [*args, "--keep_freed_memory", "always"], cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "[failure] ConfigError: keep_freed_memory: 'always' is not allowed; True or False"
    ]


def test_direct_run_framework_error_writes_cause_first(tmp_path):
    base = tmp_path / "opt_ml"
    (base / "input" / "data" / "train").mkdir(parents=True)
    (base / "input" / "data" / "train" / "digits.npz").write_bytes(b"not an npz file")
    out = run_entrypoint(
        "train_cnn.py", ["--size", "debug"], cwd=tmp_path, SAGEMAKER_BASE_DIR=str(base)
    )
    assert out.returncode == 1
    failure = (base / "output" / "failure").read_text()
    first = failure.splitlines()[0]
    assert first.startswith(("BadZipFile", "ValueError", "OSError", "UnpicklingError")), first
    assert "Traceback" in failure and "Traceback" in out.stderr
