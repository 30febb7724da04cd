"""The SMP v2 example end to end: launched through SDK v2 against moto, and run locally as
a user types it, where the same degrees drive sm-toolkit's own FSDP2 / expert parallelism
over gloo (2 hosts of the process backend, one process each)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import boto3
import pytest

from sm_toolkit.aws.launch import launch
from sm_toolkit.spec import load_spec
from sm_toolkit.train.datasets import builtin_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "moe-smp.yaml"
pytestmark = pytest.mark.integration


@pytest.fixture()
def example_bucket(s3):
    s3.create_bucket(Bucket="my-ml-bucket")
    # the example's train channel: a slice of the built-in corpus keeps the run short
    s3.put_object(
        Bucket="my-ml-bucket", Key="data/text/corpus.txt", Body=builtin_text()[:40_000].encode()
    )
    return s3


def test_launch_describes_smp_parameters_and_torchrun(example_bucket):
    launch(load_spec(EXAMPLE), job_name="moe-smp-check")
    sm = boto3.client("sagemaker", region_name="us-east-1")
    desc = sm.describe_training_job(TrainingJobName="moe-smp-check")
    hps = desc["HyperParameters"]
    assert hps["sagemaker_torch_distributed_enabled"] == "true"
    assert json.loads(hps["mp_parameters"])["expert_parallel_degree"] == 2
    assert json.loads(hps["mp_parameters"])["hybrid_shard_degree"] == 8
    assert (
        desc["AlgorithmSpecification"]["TrainingImage"]
        .split("/")[-1]
        .startswith("smdistributed-modelparallel:2.4.1-gpu-py311-cu121")
    )
    assert desc["ResourceConfig"]["InstanceType"] == "ml.p4d.24xlarge"


def test_run_local_trains_with_the_smp_degrees_on_two_hosts(example_bucket, tmp_path):
    argv = [
        sys.executable, "-m", "sm_toolkit.cli", "run", str(EXAMPLE), "--local",
        "--workdir", str(tmp_path),
        # a world of 2 (2 hosts x 1 process) instead of 2 x 8 GPUs, so the degrees fit
        "--set", "instance.count=2", "--set", "distribution.processes_per_host=1",
        "--set", "distribution.hybrid_shard_degree=2",
        "--set", "size=debug", "--set", "epochs=1",
        "--set", "threads=1", "--set", "checkpoint_every=0",
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.rindex('{\n  "TrainingJobName"') :])
    assert summary["TrainingJobStatus"] == "Completed"
    # each host's script ran sm-toolkit's FSDP2 + EP with SMP's degrees from mp_parameters
    started = [line for line in proc.stdout.splitlines() if "[job] train_moe.py: moe" in line]
    assert len(started) == 1, proc.stdout[-3000:]  # rank 0 (algo-1) reports for the job
    assert started[0].startswith("algo-1 | ")
    assert "world size 2 (fsdp2 shard 2 x replicate 1, expert parallel 2, world 2)" in started[0]
    name = summary["TrainingJobName"]  # the job's output data, from (moto) S3 as on AWS
    body = example_bucket.get_object(
        Bucket="my-ml-bucket", Key=f"output/{name}/output/output.tar.gz"
    )
    with tarfile.open(fileobj=io.BytesIO(body["Body"].read())) as tar:
        report = json.load(tar.extractfile("metrics.json"))
    assert report["train_config"]["sm_activation_offloading"] is True
    assert report["model_config"]["n_experts"] == 8
    assert report["model_config"]["expert_kind"] == "swiglu"
    assert report["epochs_run"] == 1 and report["steps"] > 0
    assert report["final"]["val:perplexity"] > 0
