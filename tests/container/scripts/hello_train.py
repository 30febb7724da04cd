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


def has_default_route() -> bool:
    """True if the kernel has a route to anywhere (read from /proc: sends nothing)."""
    lines = Path("/proc/net/route").read_text().splitlines()[1:]
    return any(line.split()[1] == "00000000" for line in lines)


report = {
    "greeting": args.greeting,
    "argv": sys.argv[1:],
    "executable": sys.executable,
    "current_host": os.environ["SM_CURRENT_HOST"],
    "hosts": json.loads(os.environ["SM_HOSTS"]),
    "torch_version": __import__("torch").__version__,
    "sm_toolkit": __import__("sm_toolkit").__file__,
    "default_route": has_default_route(),
}
print("hello_train:", json.dumps(report), flush=True)
Path(os.environ["SM_MODEL_DIR"], "report.json").write_text(json.dumps(report))
