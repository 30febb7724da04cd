"""SDK v3 ``ModelTrainer(training_mode=Mode.LOCAL_CONTAINER).train()`` of benchmarks/tiny in
IMAGE (run with the v3 venv's python): ``python _sdk_v3_local_train.py IMAGE WORKDIR``."""

import os
import sys
from pathlib import Path

from sagemaker.core.helper.session_helper import Session
from sagemaker.train.configs import Compute, SourceCode
from sagemaker.train.model_trainer import Mode, ModelTrainer

ROOT = Path(__file__).resolve().parents[1]
image, workdir = sys.argv[1], Path(sys.argv[2])
workdir.mkdir(parents=True, exist_ok=True)
os.environ.setdefault("SAGEMAKER_VALIDATE_ROLE", "false")
trainer = ModelTrainer(
    training_image=image,
    source_code=SourceCode(source_dir=str(ROOT / "benchmarks" / "tiny"), entry_script="train.py"),
    compute=Compute(instance_type="local_cpu", instance_count=1),
    role="arn:aws:iam::123456789012:role/SageMakerRole",
    training_mode=Mode.LOCAL_CONTAINER,
    local_container_root=str(workdir),
    sagemaker_session=Session(),
)
trainer.train()
