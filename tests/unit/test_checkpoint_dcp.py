"""Sharded-checkpoint parts that need no process group: the safe metadata reader, which
folders count as checkpoints, and the model-config check a resume makes (the multi-process
save / SIGTERM / reshard scenario is in tests/integration/test_sharded_checkpoints.py)."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from trainer_helpers import digits_task

from sm_toolkit.errors import ConfigError
from sm_toolkit.train.checkpoint import check_model_config
from sm_toolkit.train.checkpoint_dcp import SafeReader, ShardedCheckpoints
from sm_toolkit.train.config import TrainConfig
from sm_toolkit.train.trainer import Trainer


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_metadata_that_would_run_code_is_refused(tmp_path):
    (tmp_path / ".metadata").write_bytes(pickle.dumps({"x": _RunsCode()}))
    with pytest.raises(pickle.UnpicklingError, match="refused to load"):
        SafeReader(str(tmp_path)).read_metadata()
    assert not (tmp_path / "pwned.txt").exists() and not os.path.exists("pwned.txt")


def test_dcp_metadata_classes_load(tmp_path):
    from torch.distributed.checkpoint import FileSystemWriter
    from torch.distributed.checkpoint import save as dcp_save

    dcp_save({"w": torch.arange(6.0).view(2, 3)}, storage_writer=FileSystemWriter(str(tmp_path)))
    meta = SafeReader(str(tmp_path)).read_metadata()
    assert list(meta.state_dict_metadata) == ["w"]
    assert meta.state_dict_metadata["w"].size == torch.Size([2, 3])


def test_only_complete_renamed_folders_are_checkpoints(tmp_path):
    for name, files in [
        ("ckpt-000000005", [".metadata", "meta.json", "trainer.pt"]),
        ("ckpt-000000007", [".metadata", "meta.json", "trainer.pt"]),
        (".ckpt-000000009.tmp", [".metadata", "meta.json", "trainer.pt"]),  # killed mid-save
        ("ckpt-000000008", ["__0_0.distcp"]),  # no metadata: not a finished save
    ]:
        (tmp_path / name).mkdir()
        for f in files:
            (tmp_path / name / f).write_text("x")
    found = ShardedCheckpoints(tmp_path).candidates()
    assert [p.name for p in found] == ["ckpt-000000007", "ckpt-000000005"]


def test_config_check_names_every_changed_field(tmp_path):
    check_model_config({"d": 1}, {"d": 1}, tmp_path)
    check_model_config(None, {"d": 1}, tmp_path)  # checkpoints written before the check
    with pytest.raises(ConfigError) as err:
        check_model_config({"d": 1, "e": 4}, {"d": 2, "e": 4, "f": 0}, tmp_path)
    assert err.value.field == "checkpoint"
    assert "d 1 -> 2, f None -> 0" in str(err.value) and "\n" not in str(err.value)


def test_plain_checkpoint_resume_with_another_model_is_one_error(tmp_path):
    config = TrainConfig(epochs=1, batch_size=32, max_steps=2)
    first = Trainer(config, digits_task(), checkpoint_dir=tmp_path, model_config={"width": 8},
                    emit=lambda _l: None)  # fmt: skip
    first.fit()
    again = Trainer(config, digits_task(), checkpoint_dir=tmp_path, model_config={"width": 16},
                    emit=lambda _l: None)  # fmt: skip
    with pytest.raises(ConfigError, match="width 8 -> 16"):
        again.fit()
