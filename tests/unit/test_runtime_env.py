import json
import subprocess
import sys
from pathlib import Path

from sm_toolkit.runtime.env import read_env


def test_sm_variables_are_read_into_one_frozen_object(tmp_path):
    environ = {
        "SM_MODEL_DIR": str(tmp_path / "m"),
        "SM_OUTPUT_DIR": str(tmp_path / "o"),
        "SM_OUTPUT_DATA_DIR": str(tmp_path / "o" / "data"),
        "SM_CHANNEL_TRAIN": str(tmp_path / "in" / "train"),
        "SM_CHANNEL_EVAL": str(tmp_path / "in" / "eval"),
        "SM_HOSTS": json.dumps(["algo-1", "algo-2"]),
        "SM_CURRENT_HOST": "algo-2",
        "SM_NUM_CPUS": "4",
        "SM_NUM_GPUS": "0",
        "SM_TOOLKIT_RULES": "vanishing_gradient, overfit",
        "SM_TENSORBOARD_DIR": str(tmp_path / "tb"),
    }
    env = read_env(environ, local_dir=tmp_path / "local")
    assert env.in_sagemaker
    assert env.model_dir == tmp_path / "m"
    assert env.failure_file == tmp_path / "o" / "failure"
    assert env.channel("train") == tmp_path / "in" / "train"
    assert env.channel("eval") == tmp_path / "in" / "eval"
    assert env.channel("test") is None
    assert env.hosts == ("algo-1", "algo-2") and env.current_host == "algo-2"
    assert env.num_cpus == 4 and env.rules == ("vanishing_gradient", "overfit")
    assert env.tensorboard_dir == tmp_path / "tb"
    assert env.checkpoint_dir is None


def test_base_dir_layout_and_checkpoint_folder_switch(tmp_path):
    base = tmp_path / "opt_ml"
    (base / "input" / "data" / "train").mkdir(parents=True)
    env = read_env({"SAGEMAKER_BASE_DIR": str(base)}, local_dir=tmp_path / "x")
    assert env.model_dir == base / "model"
    assert env.output_data_dir == base / "output" / "data"
    assert env.channel("train") == base / "input" / "data" / "train"
    assert env.checkpoint_dir is None
    (base / "checkpoints").mkdir()
    assert read_env({"SAGEMAKER_BASE_DIR": str(base)}, local_dir=tmp_path).checkpoint_dir == (
        base / "checkpoints"
    )
    explicit = read_env(
        {"SAGEMAKER_BASE_DIR": str(base), "SM_CHECKPOINT_DIR": str(tmp_path / "ck")},
        local_dir=tmp_path,
    )
    assert explicit.checkpoint_dir == tmp_path / "ck"


def test_no_sagemaker_env_writes_under_the_local_folder(tmp_path):
    env = read_env({}, local_dir=tmp_path / "runs" / "train_cnn")
    if Path("/opt/ml").is_dir():  # inside a real container the contract wins
        return
    assert not env.in_sagemaker
    assert env.model_dir == tmp_path / "runs" / "train_cnn" / "model"
    assert not (tmp_path / "runs").exists()  # reading creates nothing
    env.prepare()
    assert env.output_data_dir.is_dir() and env.model_dir.is_dir()


def test_importing_container_modules_has_no_side_effects(tmp_path):
    code = (
        "import os, sys\n"
        "import torch, sklearn, matplotlib  # third-party imports set KMP_* themselves\n"
        "before = dict(os.environ)\n"
        "import sm_toolkit.runtime.env, sm_toolkit.runtime.failure, sm_toolkit.runtime.signals\n"
        "import sm_toolkit.runtime.distributed, sm_toolkit.train.app, sm_toolkit.train.plots\n"
        "import sm_toolkit.models.cnn, sm_toolkit.models.rnn\n"
        "assert dict(os.environ) == before\n"
        "bad = [m for m in sys.modules if m == 'sagemaker' or m.startswith('sagemaker.')\n"
        "       or m.startswith('sm_toolkit.aws') or m.startswith('sm_toolkit.local')]\n"
        "assert not bad, bad\n"
        "print(sorted(os.listdir('.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
