"""Tiny SageMaker script-mode job: echoes its arguments and environment, writes the model dir."""

import argparse
import json
import os
import sys
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--greeting", default="hello")
parser.add_argument("--fail-with", default="")
args = parser.parse_args()

if args.fail_with:
    raise ValueError(args.fail_with)


report = {
    "greeting": args.greeting,
    "argv": sys.argv[1:],
    "executable": sys.executable,
    "current_host": os.environ["SM_CURRENT_HOST"],
    "hosts": json.loads(os.environ["SM_HOSTS"]),
    "torch_version": __import__("torch").__version__,
    "sm_toolkit": __import__("sm_toolkit").__file__,
}
print("hello_train:", json.dumps(report), flush=True)
Path(os.environ["SM_MODEL_DIR"], "report.json").write_text(json.dumps(report))
