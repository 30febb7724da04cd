"""SIGTERM handling: SageMaker sends SIGTERM on StopTrainingJob and spot reclaim and
waits 120 s before SIGKILL. The handler only sets a flag; the training loop checks it
after each step, writes a checkpoint and returns, so the job exits cleanly."""

from __future__ import annotations

import signal
import sys
from types import FrameType


class StopFlag:
    """Set by SIGTERM/SIGINT (or by a test); read by the trainer between steps."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def __call__(self) -> bool:
        return self.signal_name is not None

    def request(self, reason: str) -> None:
        self.signal_name = reason

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.signal_name = name
        print(f"[signal] {name} received: will checkpoint and stop after this step", flush=True)
        sys.stdout.flush()

    def install(self, signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> StopFlag:
        """Install the handler (main thread only); returns self for chaining."""
        for signum in signums:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()
