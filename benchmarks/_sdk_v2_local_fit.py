"""SDK v2 local mode ``fit()`` of benchmarks/tiny/train.py in IMAGE (run as its own process,
as a user runs it): ``python benchmarks/_sdk_v2_local_fit.py IMAGE WORKDIR``."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "container"))  # the offline LocalSession harness

from local_mode import ensure_internal_network, offline_local_session  # noqa: E402
from sagemaker.pytorch import PyTorch  # noqa: E402

image, workdir = sys.argv[1], Path(sys.argv[2])
ensure_internal_network()
session = offline_local_session(container_root=workdir / "containers")
PyTorch(
    entry_point="train.py",
    source_dir=str(ROOT / "benchmarks" / "tiny"),
    image_uri=image,
    role="arn:aws:iam::123456789012:role/SageMakerRole",
    instance_type="local",
    instance_count=1,
    framework_version="2.13.0",
    py_version="py311",
    output_path=f"file://{workdir}/out",
    sagemaker_session=session,
).fit(wait=True)
