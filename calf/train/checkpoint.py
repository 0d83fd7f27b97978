"""Atomic checkpoints and the random-number state they carry.

A checkpoint is written to a temporary file in the run directory, flushed and fsynced,
then renamed over ``checkpoint.pt`` (and the directory fsynced; ``calf._fs``, durable): a
kill or a power loss at any moment leaves either the old or the new checkpoint, never a
torn one.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from calf import _fs
from calf.errors import CalfError
from calf.layout import CHECKPOINT_FILE

__all__ = ["CHECKPOINT_FILE", "FORMAT", "load_checkpoint", "rng_state", "save_checkpoint",
           "set_rng_state"]

FORMAT = 1


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


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``{"format": 1, **state}`` atomically."""
    # the run folder is the training's own: the checkpoint is replaced, durably
    _fs.write_with(path, lambda f: torch.save({"format": FORMAT, **state}, f), durable=True)


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
