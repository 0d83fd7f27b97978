"""The parameters of one training run, their defaults (the authors'), and the run's identity."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calf.defaults import SEED
from calf.device import check_device
from calf.errors import CalfError
from calf.protocol import PRECISIONS, run_protocol

# exit codes of ``calf train``; bad input is CalfError's 2
EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: stopped by SIGTERM/SIGUSR1 after a checkpoint; rerun resumes
EXIT_NON_FINITE = 3  # stopped on a NaN or infinite loss; the last good checkpoint stays


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs.

    ``stores`` are slice store directories (one per dataset), ``train_slices`` the
    training-set CSV (``calf split``; columns ``dataset`` and ``row`` at least), ``out`` the
    run directory. ``profile`` is the training set's imbalance profile JSON (required for
    CALF in dataset scope). ``val_slices`` (a CSV like ``train_slices``) adds a validation
    Dice, pooled over all its pixels, to every epoch row. ``device`` and ``workers`` are
    execution settings: they may differ between an interrupted run and its resumption; so
    are ``compile`` (``torch.compile`` of the model on CUDA; eager under ``deterministic``)
    and ``eval_batch_size`` (the validation Dice's batch; None: twice ``batch_size``), which
    leave the trained model's arithmetic as it is.
    """

    stores: tuple[str, ...]
    train_slices: str
    out: str
    model: str
    loss: str
    width: float = 1.0
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    profile: str | None = None
    val_slices: str | None = None
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-5
    seed: int = SEED
    max_steps_per_epoch: int | None = None
    device: str = "auto"
    workers: int | None = None  # None: 0 on CPU, up to 8 on CUDA
    # numerics switches (calf.protocol); the suite's defaults, the authors' are fp32 and True
    precision: str = "bf16"  # bf16 autocast on CUDA where supported (fp16 elsewhere); CPU fp32
    deterministic: bool = False  # True: cudnn.deterministic, no cudnn.benchmark
    # speed switches of execution (run.json ``execution``), not of the run's identity
    compile: bool = False  # torch.compile the model on CUDA (not under deterministic)
    eval_batch_size: int | None = None  # validation Dice batch; None: 2 x batch_size

    def __post_init__(self) -> None:
        if not self.stores:
            raise CalfError("give at least one --store")
        for key in ("epochs", "batch_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise CalfError(f"--{key.replace('_', '-')} {value!r}: expected an integer >= 1")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise CalfError(
                f"--max-steps-per-epoch {self.max_steps_per_epoch}: expected an integer >= 1"
            )
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise CalfError(f"--lr {self.lr!r}: expected a positive finite number")
        check_device(self.device)
        if self.workers is not None and self.workers < 0:
            raise CalfError(f"--workers {self.workers}: expected an integer >= 0")
        if self.precision not in PRECISIONS:
            raise CalfError(
                f"--precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}"
            )
        if not isinstance(self.deterministic, bool):
            raise CalfError(f"--deterministic {self.deterministic!r}: expected true or false")
        if not isinstance(self.compile, bool):
            raise CalfError(f"--compile {self.compile!r}: expected true or false")
        if self.eval_batch_size is not None and (
                not isinstance(self.eval_batch_size, int) or self.eval_batch_size < 1):
            raise CalfError(
                f"--eval-batch-size {self.eval_batch_size!r}: expected an integer >= 1"
            )

    @property
    def val_batch_size(self) -> int:
        """The validation Dice's batch: ``eval_batch_size``, or twice the training batch
        (no gradients are kept, so the larger batch fits where the training one did)."""
        return self.eval_batch_size or 2 * self.batch_size

    def identity(self) -> dict[str, Any]:
        """The parameters that decide the trained model (run.json ``params``).

        Paths are resolved and input files fingerprinted, so that resuming with a changed
        training set, profile or store is refused rather than silently mixed. Execution
        settings (device, workers, compile, eval_batch_size) are not part of it; the
        numerics switches are, and ``protocol`` holds every protocol switch of the run
        (``calf.protocol``).
        """
        from calf.store import read_meta

        stores = [read_meta(p).get("settings") or {} for p in self.stores]
        return {
            "stores": [str(Path(p).resolve()) for p in self.stores],
            "store_fingerprints": [_store_fingerprint(p) for p in self.stores],
            "train_slices": str(Path(self.train_slices).resolve()),
            "train_slices_sha256": _sha256(self.train_slices, "--train-slices"),
            "profile": None if self.profile is None else str(Path(self.profile).resolve()),
            "profile_sha256": None if self.profile is None else _sha256(self.profile, "--profile"),
            "val_slices": None if self.val_slices is None else str(Path(self.val_slices).resolve()),
            "val_slices_sha256": (
                None if self.val_slices is None else _sha256(self.val_slices, "--val-slices")
            ),
            "model": self.model,
            "width": float(self.width),
            "model_kwargs": dict(self.model_kwargs),
            "loss": self.loss,
            "loss_kwargs": dict(self.loss_kwargs),
            "optimizer": "adam",
            "lr": float(self.lr),
            "weight_decay": 0.0,
            "scheduler": None,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "max_steps_per_epoch": self.max_steps_per_epoch,
            "seed": self.seed,
            "protocol": run_protocol(stores, self.model, self.model_kwargs, self.loss,
                                     self.loss_kwargs, self.precision, self.deterministic),
        }


def _sha256(path: str | Path, option: str) -> str:
    from calf._fs import sha256_file

    try:
        return sha256_file(path)
    except FileNotFoundError:
        raise CalfError(f"{option} {path}: file not found") from None
    except OSError as err:
        raise CalfError(f"{option} {path}: unreadable ({err.strerror})") from None


def _store_fingerprint(path: str | Path) -> str:
    """The input fingerprint ``calf preprocess`` recorded, plus the store's settings."""
    import json

    from calf.store import read_meta

    meta = read_meta(path)
    return hashlib.sha256(
        json.dumps([meta.get("fingerprint"), meta.get("settings")], sort_keys=True).encode()
    ).hexdigest()


def differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: old -> new`` for every parameter that differs (for a one-line refusal);
    nested objects (``protocol``) by their dotted keys."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}: {_short(a)} -> {_short(b)}")
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
