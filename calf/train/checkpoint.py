"""Atomic checkpoints and the random-number state they carry.

A checkpoint is written to a temporary file in the run directory, flushed and fsynced,
then renamed over ``checkpoint.pt`` (and the directory fsynced): a kill at any moment
leaves either the old or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from calf.errors import CalfError

FORMAT = 1
CHECKPOINT_FILE = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    """torch CPU (and CUDA), numpy and python ``random`` generator states."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic_bytes(path: Path, write) -> None:
    """``write(fileobj)`` into a temp file beside ``path``, fsync, rename over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``{"format": 1, **state}`` atomically."""
    write_atomic_bytes(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None when there is none yet."""
    if not path.exists():
        return None
    try:
        # our own file, holding numpy and python RNG states besides tensors
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CalfError(f"{path}: unreadable checkpoint ({' '.join(str(err).split())})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CalfError(f"{path}: unknown checkpoint format (expected {FORMAT})")
    return state
