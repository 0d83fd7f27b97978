"""Graceful stop on the signals a batch scheduler sends before it kills a job.

SLURM sends SIGTERM at preemption and at the time limit (and SIGUSR1 when a job asks for
``--signal=USR1@SECONDS``), then SIGKILL after its grace period. Inside ``StopRequest()``
those signals only set a flag; the training loop checks it between steps, saves a
checkpoint of the exact position and exits. SIGINT (Ctrl-C) is treated alike the first
time; a second Ctrl-C raises KeyboardInterrupt as usual.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class StopRequest:
    """Context manager: catch the stop signals, remember the first one received."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> StopRequest:
        # handlers can only be installed from the main thread; elsewhere, no graceful stop
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
