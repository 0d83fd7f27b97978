"""Training: one run = (slice stores, training-set CSV, model, loss, seed) -> a run directory.

``train(TrainConfig(...))`` trains with the authors' settings by default (Adam, lr 1e-5, no
weight decay, no scheduler, 20 epochs, batch 32, seed 12345) and writes the run directory
(contract C): ``checkpoint.pt`` after every epoch (and on SIGTERM/SIGUSR1 at the exact step
reached), ``epochs.csv`` and ``run.json``. Re-running the same configuration resumes.

Importing this package imports no torch; ``train`` is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from calf.train.config import EXIT_INTERRUPTED, EXIT_NON_FINITE, TrainConfig

if TYPE_CHECKING:
    from calf.train.loop import NonFiniteLoss, TrainResult, train

__all__ = ["EXIT_INTERRUPTED", "EXIT_NON_FINITE", "NonFiniteLoss", "TrainConfig", "TrainResult",
           "train"]


def __getattr__(name: str) -> Any:
    # PEP 562: the training loop (and torch) load only when asked for
    if name in ("train", "TrainResult", "NonFiniteLoss"):
        from calf.train import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'calf.train' has no attribute {name!r}")
