"""benchmarks/gpu_check.py, run as the README says, without a GPU.

No GPU has been lent to this project yet, so the script has only run on CPU: its dry run
(the same sections at tiny sizes, gloo instead of NCCL) keeps every section runnable, so
that the first GPU machine runs the check rather than a fix to it. Each case is one process
of ~10 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
SECTIONS = ("nccl", "bf16", "compile", "layer", "lm")


def run_check(*args: str) -> tuple[int, list[str]]:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )
    return out.returncode, out.stdout.splitlines()


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the script runs for real")
def test_without_a_gpu_it_says_so_in_one_line_and_exits_0():
    rc, lines = run_check()
    assert rc == 0 and len(lines) == 1
    report = json.loads(lines[0])
    assert report["gpu"] is False and "--cpu-dry-run" in report["message"]


def test_the_dry_run_runs_every_section_and_prints_one_json_line():
    rc, lines = run_check("--cpu-dry-run")
    assert len(lines) == 1, lines
    report = json.loads(lines[0])
    assert rc == 0, report
    assert report["all_ok"] and report["gpu"] is False
    for section in SECTIONS:
        assert report[section]["ok"], (section, report[section])
    assert report["nccl"]["backend"] == "gloo" and report["nccl"]["steps"] == 5
    bf16 = report["bf16"]
    assert abs(bf16["loss_bf16"] - bf16["loss_fp32"]) < 0.05 * bf16["loss_fp32"]
    assert report["compile"]["max_abs_diff"] < 1e-4
    assert all(report["layer"][f"{path}_e{e}"] > 0 for path in ("loop", "grouped", "auto")
               for e in (8, 32))  # fmt: skip
    lm = report["lm"]
    assert lm["steps"] == 5 and lm["tokens_per_s"] > 0 and 0 < lm["mfu_vs_measured_gemm"] < 1
