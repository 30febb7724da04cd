"""Checkpoints that survive a kill at any moment and load with `weights_only=True`.

Files are `ckpt-<step>.pt`, written to a temp file and renamed (os.replace is atomic on
POSIX), so a reader sees a whole file or none. A truncated or corrupt file (a copy cut
short by an S3 sync, say) is skipped and the next older one is used.
Only tensors and plain containers go in, so torch.load never unpickles code.
"""

from __future__ import annotations

import os
import random
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sm_toolkit.errors import ConfigError

_NAME = re.compile(r"^ckpt-(\d{9})\.pt$")
REQUIRED_KEYS = ("model", "optimizer", "step", "epoch", "position")


def rng_state() -> dict[str, Any]:
    """RNG states of torch, numpy and python as tensors / lists (weights_only-safe)."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_model_config(saved: dict | None, current: dict, path: Path) -> None:
    """A resume must build the same model: one ConfigError naming what changed."""
    if not saved or not current:  # older checkpoints and bare trainers record none
        return
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if changed:
        diffs = ", ".join(f"{k} {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise ConfigError(
            "checkpoint", str(path),
            f"a checkpoint of the same model config (changed: {diffs}); use a new "
            "checkpoint folder to start another model",
        )  # fmt: skip


class CheckpointManager:
    """Save / find / load checkpoints in one folder, keeping the newest `keep` files."""

    def __init__(self, directory: Path, *, keep: int = 3) -> None:
        self.directory = Path(directory)
        self.keep = keep

    def path_for(self, step: int) -> Path:
        return self.directory / f"ckpt-{step:09d}.pt"

    def save(self, state: dict[str, Any]) -> Path:
        """Write `state` atomically as the checkpoint of state['step']."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path_for(int(state["step"]))
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        self._prune()
        return final

    def candidates(self) -> list[Path]:
        """Checkpoint files, newest step first."""
        if not self.directory.is_dir():
            return []
        files = [p for p in self.directory.iterdir() if _NAME.match(p.name)]
        return sorted(files, key=lambda p: int(_NAME.match(p.name).group(1)), reverse=True)

    def load_latest(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint that loads and has every required key, or None."""
        for path in self.candidates():
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as err:  # noqa: BLE001 - any unreadable file is skipped
                print(f"[checkpoint] skipping unreadable {path.name}: {err}", file=sys.stderr)
                continue
            missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
            if missing:
                print(f"[checkpoint] skipping {path.name}: missing {missing}", file=sys.stderr)
                continue
            return path, state
        return None

    def _prune(self) -> None:
        for old in self.candidates()[self.keep :]:
            old.unlink(missing_ok=True)
