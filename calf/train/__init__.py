"""Training: one run = (slice stores, training-set CSV, model, loss, seed) -> a run directory.

``train(TrainConfig(...))`` trains with the authors' settings by default (Adam, lr 1e-5, no
weight decay, no scheduler, 20 epochs, batch 32, seed ``calf.defaults.SEED``) and writes the
run directory: ``checkpoint.pt`` after every epoch (and on SIGTERM/SIGUSR1 at the exact step
reached), ``epochs.csv`` and ``run.json`` (read back by ``calf.train.rundir.read_run_record``
and ``read_epochs``). Re-running the same configuration resumes.

Importing this package imports no torch; ``train`` is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from calf.train.config import EXIT_INTERRUPTED, EXIT_NON_FINITE, TrainConfig

if TYPE_CHECKING:
    from calf.train.loop import train
    from calf.train.session import NonFiniteLoss, TrainResult

__all__ = ["EXIT_INTERRUPTED", "EXIT_NON_FINITE", "NonFiniteLoss", "TrainConfig", "TrainResult",
           "train"]


def __getattr__(name: str) -> Any:
    # PEP 562: the training loop (and torch) load only when asked for
    if name == "train":
        from calf.train.loop import train

        return train
    if name in ("TrainResult", "NonFiniteLoss"):
        from calf.train import session

        return getattr(session, name)
    raise AttributeError(f"module 'calf.train' has no attribute {name!r}")
