"""The training loop: Adam on mini-batches of a training set, checkpointed and resumable.

One run writes its run folder (``calf.train.rundir``; README.md, "Models and training"). The
epoch's batch order is a function of the seed and the epoch (``EpochSampler``); a checkpoint
holds the model, the optimizer, the random-number states, the sampler position, the epoch
rows so far and the running sums of an unfinished epoch, so a resumed run continues bit for
bit where it stopped on the CPU (where deterministic kernels are switched on). Models and
batches are channels-last on every device (oneDNN's and cuDNN's fast layout: a CPU step of
the demo's networks is 25-30 % faster than in the default layout, ``benchmarks/train.py``).
On CUDA (pinned memory, persistent DataLoader workers) two switches decide the numerics:
``precision`` ``bf16`` (the suite's: forward pass under bf16 autocast, fp16 with a
GradScaler where bf16 is missing, the loss in float32) or ``fp32`` (the authors'), and
``deterministic`` ``False`` (the suite's: ``cudnn.benchmark``) or ``True`` (the authors':
``cudnn.deterministic``, no benchmark). Deterministic cuDNN fixes the convolution algorithms
only; other CUDA kernels (e.g. the backward pass of bilinear upsampling, which uses atomic
adds) stay nondeterministic, so a CUDA run, resumed or repeated, is not promised bit for
bit.

Speed switches of execution (run.json ``execution``; they may change on resume): on CUDA
under the suite's protocol (``deterministic`` off) Adam runs its fused kernel, and
``compile`` wraps the training forward pass in ``torch.compile`` (off by default; eager on
the CPU and under ``deterministic``, the authors' protocol, which keeps torch's default
Adam). Checkpoints always hold the uncompiled module's weights. The validation Dice runs
eagerly in batches of ``eval_batch_size`` (twice the training batch unless set).

run.json ``cost`` sums the run's attempts (``calf.train.cost.CostMeter``): wall and device
seconds, the seconds inside training steps and per epoch, the peak memory (CUDA
allocations, or the process's peak RSS on the CPU) and, where NVML reports it, the GPU's
energy.

This module checks the inputs and builds the run (``train``); ``calf.train.session`` runs
one attempt at it, ``calf.train.build`` makes its loss, optimizer and speed switches,
``calf.train.validate`` computes the validation Dice, and ``calf.device`` chooses the
device, the autocast dtype and the deterministic kernels (shared with evaluation).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from calf.device import amp_dtype, determinism, resolve_device, seed_everything
from calf.errors import CalfError
from calf.train.build import build_run_loss
from calf.train.config import TrainConfig
from calf.train.cost import process_age
from calf.train.data import EpochSampler, load_slices
from calf.train.rundir import RunDir
from calf.train.session import NonFiniteLoss, Session, TrainResult

__all__ = ["NonFiniteLoss", "TrainResult", "train"]

_RUNS_STARTED = 0  # calls of train() in this process (``calf train --run`` makes several)


def _stderr(message: str) -> None:
    print(f"calf train: {message}", file=sys.stderr, flush=True)


def train(config: TrainConfig, log: Callable[[str], None] = _stderr) -> TrainResult:
    """Train (or resume, or confirm complete) the run ``config`` describes.

    Returns a ``TrainResult`` (``complete`` or ``interrupted`` by a stop signal). Raises
    ``CalfError`` on bad input (nothing written) and ``NonFiniteLoss`` when the loss turns
    NaN or infinite (run.json ``failed``, the last good checkpoint kept).
    """
    global _RUNS_STARTED
    entered = time.perf_counter()
    # this attempt's phases, in run.json "timing"; start-up is the first run's of a process
    timing = {"process_age_s": process_age(), "first_in_process": _RUNS_STARTED == 0}
    _RUNS_STARTED += 1
    from calf.models import build_model

    params = config.identity()
    run = RunDir(config.out)
    done = _already_complete(run, params, log)
    if done is not None:
        return done

    data = load_slices(config.stores, config.train_slices, "--train-slices")
    val = None
    if config.val_slices:
        val = load_slices(config.stores, config.val_slices, "--val-slices")
    loss_fn, imbalance = build_run_loss(config, len(data))
    device = resolve_device(config.device)
    amp = amp_dtype(device, config.precision)
    sampler = EpochSampler(len(data), config.batch_size, config.seed, config.max_steps_per_epoch)
    timing["data_s"] = time.perf_counter() - entered
    with determinism(device, config.deterministic):
        seed_everything(config.seed)
        built = time.perf_counter()
        try:
            model = build_model(config.model, width=config.width, **config.model_kwargs)
        except ValueError as err:
            raise CalfError(f"--model {config.model}: {err}") from None
        timing["model_s"] = time.perf_counter() - built
        run.lock()
        try:
            done = _already_complete(run, params, log)  # again, under the lock
            if done is not None:
                return done
            session = Session(config, params, run, run.read_run(), data, val, sampler, model,
                              loss_fn, imbalance, device, amp, log, timing)
            return session.run()
        finally:
            run.unlock()


def _already_complete(run: RunDir, params: dict[str, Any],
                      log: Callable[[str], None]) -> TrainResult | None:
    """The result of a run that is already complete; refuses one with other parameters."""
    record = run.read_run()
    if record is None:
        return None
    run.check_params(record, params)
    if record["status"] != "complete":
        return None
    log(f"{run.path}: already complete ({record['epochs_completed']} epochs); nothing to do")
    return TrainResult("complete", record["epochs_completed"], run.path)
