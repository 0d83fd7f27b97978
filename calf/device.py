"""The device a step runs on, its autocast dtype, and the numerics switches of torch.

Training and evaluation both choose their device here (``resolve_device``: one accepted
set, ``auto``, ``cpu``, ``cuda`` or ``cuda:N``), their autocast dtype (``amp_dtype``) and
their kernels (``determinism``, ``seed_everything``). Importing this module imports no
torch; the functions that need it import it when called.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from calf.errors import CalfError
from calf.protocol import PRECISIONS

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_DEVICE = re.compile(r"auto|cpu|cuda(?::[0-9]+)?")


def check_device(text: object, option: str = "--device") -> str:
    """``text`` when it names a device ``resolve_device`` accepts (without looking at the
    machine); CalfError otherwise."""
    if not isinstance(text, str) or _DEVICE.fullmatch(text) is None:
        raise CalfError(f"{option} {text!r}: expected {DEVICE_CHOICES}")
    return text


def resolve_device(text: str = "auto", option: str = "--device") -> torch.device:
    """The device ``text`` names: ``auto`` (CUDA when present, else the CPU), ``cpu``,
    ``cuda`` (the current CUDA device) or ``cuda:N``; CalfError when the machine lacks it."""
    import torch

    check_device(text, option)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CalfError(f"{option} {text}: no CUDA device is available")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise CalfError(f"{option} {text}: this machine has {count} CUDA device(s)")
    return device


def amp_dtype(device: torch.device, precision: str = "bf16") -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (training and prediction alike).

    ``bf16``: bfloat16 where the GPU has it, else float16; None (float32 throughout) on
    the CPU. ``fp32``: None everywhere.
    """
    import torch

    if precision not in PRECISIONS:
        raise CalfError(f"precision {precision!r}: expected {' or '.join(PRECISIONS)}")
    if device.type != "cuda" or precision == "fp32":
        return None
    with torch.cuda.device(device):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def precision_name(dtype: torch.dtype | None) -> str:
    """How run records spell an autocast dtype: ``fp32`` (none), ``bf16`` or ``fp16``."""
    import torch

    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def describe_device(device: torch.device) -> str:
    """``cuda:0 (NVIDIA H200)`` or ``cpu (2 threads)``."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'s' if threads > 1 else ''})"


@contextlib.contextmanager
def determinism(device: torch.device, deterministic: bool = False) -> Iterator[None]:
    """Deterministic kernels on the CPU; on CUDA deterministic cuDNN without autotuning
    (``deterministic``, the authors') or cuDNN autotuning (the suite's). Restored afterwards."""
    import torch

    cudnn = torch.backends.cudnn
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        cudnn.benchmark,
        cudnn.deterministic,
    )
    # torch.use_deterministic_algorithms also imports torch._inductor (2-3 s per process)
    # to set a compiler flag that eager training never reads: set the kernel switch only
    if device.type == "cpu":
        torch._C._set_deterministic_algorithms(True)
    else:
        cudnn.benchmark, cudnn.deterministic = (False, True) if deterministic else (True, False)
    try:
        yield
    finally:
        torch._C._set_deterministic_algorithms(previous[0], warn_only=previous[1])
        cudnn.benchmark, cudnn.deterministic = previous[2], previous[3]


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch (every CUDA device)."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
