"""Waits for SIGTERM like a job that checkpoints on a stop request, then saves and exits 0."""

import os
import signal
import sys
import time
from pathlib import Path

model_dir = Path(os.environ["SM_MODEL_DIR"])
received: list[int] = []
signal.signal(signal.SIGTERM, lambda signum, _frame: received.append(signum))
(model_dir / "ready").write_text("waiting for SIGTERM")
print("sigterm_train: ready", flush=True)
deadline = time.monotonic() + 120
while not received and time.monotonic() < deadline:
    time.sleep(0.1)
# Printed after the signal: the reader of this pipe (train) must still be alive to take it.
print("sigterm_train: got SIGTERM, saving checkpoint", flush=True)
(model_dir / "saved_on_sigterm").write_text(str(received))
sys.exit(0 if received else 3)
