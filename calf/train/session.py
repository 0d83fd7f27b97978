"""One attempt at a run, in named parts.

- ``TrainingState``: the network, its optimizer (and fp16 GradScaler) and the training
  forward pass; ``forward_loss`` and ``update`` are the two halves of a step;
- ``Progress`` and ``Checkpoints``: where the run stands (epochs done, their rows, the
  running sums of an unfinished epoch) and the checkpoint that saves and restores it;
- ``RunRecord``: run.json (status, execution, timing, cost), rewritten at every change;
- ``EpochReporter``: the epoch's log line and the live MLflow logger;
- ``Session``: restores, trains the remaining steps epoch by epoch, validates, stops on a
  signal at the exact step reached, and records how the attempt ended.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import calf
from calf.device import describe_device, precision_name
from calf.errors import CalfError
from calf.layout import CHECKPOINT_FILE
from calf.losses import BRANCHES
from calf.train.build import default_workers, make_optimizer, speed_switches
from calf.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from calf.train.config import EXIT_INTERRUPTED, EXIT_NON_FINITE, TrainConfig, differences
from calf.train.cost import CostMeter
from calf.train.data import BatchLoader, EpochSampler, TrainingSlices, make_loader
from calf.train.rundir import RunDir, git_commit, now
from calf.train.signals import StopRequest
from calf.train.validate import pooled_dice

# a pause after every training step, in seconds: lets tests interrupt a tiny run mid-epoch
STEP_DELAY_ENV = "CALF_TRAIN_STEP_DELAY"


class NonFiniteLoss(CalfError):
    """A NaN or infinite training loss: the run stops, its last good checkpoint stays."""

    exit_code = EXIT_NON_FINITE


@dataclass(frozen=True)
class TrainResult:
    """How a call to ``train`` ended: ``complete`` (also when it already was) or ``interrupted``."""

    status: str
    epochs_completed: int
    run_dir: Path

    @property
    def exit_code(self) -> int:
        return EXIT_INTERRUPTED if self.status == "interrupted" else 0


@dataclass
class EpochSums:
    """Running sums of one epoch; saved in a mid-epoch checkpoint."""

    steps: int = 0
    slices: int = 0
    loss_sum: float = 0.0
    seconds: float = 0.0
    branches: Counter = field(default_factory=Counter)

    def state(self, epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "steps": self.steps, "slices": self.slices,
                "loss_sum": self.loss_sum, "seconds": self.seconds,
                "branches": dict(self.branches)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EpochSums:
        return cls(state["steps"], state["slices"], state["loss_sum"], state["seconds"],
                   Counter(state["branches"]))

    def row(self, epoch: int, val_dice: float | None) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "train_loss": self.loss_sum / self.steps,
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "slices_per_second": round(self.slices / self.seconds, 2) if self.seconds else None,
            **{f"branch_{b}": self.branches.get(b, 0) for b in BRANCHES},
            "val_dice": val_dice,
        }


def position(epochs: int, steps: int) -> str:
    """Where a checkpoint stands: after ``epochs`` epochs and ``steps`` steps of the next."""
    return f"at epoch {epochs + 1}, step {steps}" if steps else f"after epoch {epochs}"


# ------------------------------------------------------------------ the trained state


class TrainingState:
    """The network (channels-last, training mode), its Adam and, under fp16 autocast, a
    GradScaler; ``forward`` is the training forward pass (``torch.compile``'d when the
    speed switch says so) while ``model``, the plain module, is what is saved and
    validated."""

    def __init__(self, config: TrainConfig, model: torch.nn.Module, device: torch.device,
                 amp_dtype: torch.dtype | None, log: Callable[[str], None]):
        self.device, self.amp_dtype = device, amp_dtype
        # channels-last on every device: oneDNN (CPU) and cuDNN both run faster in NHWC
        self.model = model.to(device).to(memory_format=torch.channels_last)
        self.model.train()
        self.speed, notes = speed_switches(device, config.deterministic, config.compile)
        for note in notes:
            log(note)
        self.optimizer = make_optimizer(self.model, config.lr, self.speed["optimizer_impl"])
        self.forward = torch.compile(self.model) if self.speed["compile"] else self.model
        self.scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    def forward_loss(self, loss_fn: torch.nn.Module, x: torch.Tensor,
                     y: torch.Tensor) -> torch.Tensor:
        """The loss of one batch: the forward pass under autocast, the loss in float32
        (the suite's losses compute in float32)."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype,
                            enabled=self.amp_dtype is not None):
            logits = self.forward(x)
        return loss_fn(logits, y)

    def update(self, loss: torch.Tensor) -> None:
        """One optimizer step on ``loss``'s gradients (scaled under fp16)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()

    def state(self) -> dict[str, Any]:
        """The checkpoint's part of this state, random-number generators included."""
        return {
            "model_state": self.model.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "scaler_state": self.scaler.state_dict() if self.scaler is not None else None,
            "rng_state": rng_state(),
        }

    def load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model_state"])
        self.optimizer.load_state_dict(state["optimizer_state"])
        if self.scaler is not None and state.get("scaler_state"):
            self.scaler.load_state_dict(state["scaler_state"])
        set_rng_state(state["rng_state"])


@dataclass
class Progress:
    """Where the run stands: epochs completed, their rows (epochs.csv), the running sums
    of an unfinished epoch to resume, and where the checkpoint on disk stands, in words."""

    completed: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    resume_sums: dict[str, Any] | None = None
    saved: str = ""


class Checkpoints:
    """The run's ``checkpoint.pt``: the trained state, the sampler's position and the
    progress, checked against the run's parameters and training set on restore."""

    def __init__(self, run: RunDir, params: dict[str, Any], sampler: EpochSampler):
        self.path = run.path / CHECKPOINT_FILE
        self.run_file = run.run_file
        self.params, self.sampler = params, sampler

    def restore(self, state: TrainingState, previous_epochs: int) -> Progress:
        """The progress the checkpoint holds (loaded into ``state``), or a fresh one."""
        saved = load_checkpoint(self.path)
        if saved is None:
            if previous_epochs:
                raise CalfError(
                    f"{self.path}: missing, but {self.run_file} records "
                    f"{previous_epochs} completed epochs; delete the run directory to restart"
                )
            return Progress()
        diff = differences(saved["config"].get("params", {}), self.params)
        if diff:
            raise CalfError(f"{self.path}: made with other parameters ({diff[0]})")
        self.sampler.check_state(saved["sampler_state"], self.path)
        state.load(saved)
        completed, partial = int(saved["epoch"]), saved.get("partial")
        return Progress(completed, list(saved["history"]), partial,
                        position(completed, partial["steps"] if partial else 0))

    def save(self, state: TrainingState, progress: Progress, execution: dict[str, Any],
             sums: EpochSums | None = None) -> None:
        """Checkpoint after ``progress.completed`` epochs, plus ``sums.steps`` steps of the
        next."""
        epoch = progress.completed + 1
        steps = sums.steps if sums else 0
        progress.saved = position(progress.completed, steps)
        save_checkpoint(
            self.path,
            {
                "epoch": progress.completed,
                **state.state(),
                "sampler_state": self.sampler.state_dict(epoch, steps),
                "partial": sums.state(epoch) if sums is not None else None,
                "history": progress.history,
                "config": {"params": self.params, "execution": execution},
            },
        )


# ------------------------------------------------------------------------- the record


def execution_record(config: TrainConfig, state: TrainingState, workers: int,
                     loader: BatchLoader) -> dict[str, Any]:
    """How this attempt executes (run.json ``execution``; may change on resume)."""
    device = state.device
    return {"device": str(device), "precision": precision_name(state.amp_dtype),
            "workers": workers, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "channels_last": True,
            "cudnn_benchmark": device.type == "cuda" and not config.deterministic,
            "cudnn_deterministic": device.type == "cuda" and config.deterministic,
            "deterministic_algorithms": device.type == "cpu", **state.speed,
            "eval_batch_size": config.val_batch_size,
            "pin_memory": loader.pin_memory,
            "persistent_workers": loader.persistent_workers,
            "prefetch_factor": loader.prefetch_factor}


class RunRecord:
    """run.json: this attempt's status, what the run is and ran with, and what its
    attempts took (``seconds``, ``timing``, ``cost``), summed with the earlier attempts'
    (``previous``, the run.json found)."""

    def __init__(self, run: RunDir, params: dict[str, Any], execution: dict[str, Any],
                 model: torch.nn.Module, device: torch.device, imbalance: dict | None,
                 previous: dict[str, Any] | None, timing: dict[str, float | None] | None):
        from calf.models import count_parameters

        self.run = run
        prev = previous or {}
        self.record: dict[str, Any] = {
            "status": "running",
            "params": params,
            "execution": execution,
            "model_parameters": count_parameters(model),
            "device": describe_device(device),
            "calf_version": calf.__version__,
            "git_commit": git_commit(),
            "imbalance": imbalance,
            "started": prev.get("started") or now(),
            "finished": None,
            "seconds": float(prev.get("seconds") or 0.0),
            "epochs_completed": 0,
            "attempts": int(prev.get("attempts") or 0) + 1,
            "error": None,
        }
        # where this attempt's time goes: start-up, data, model, steps, checkpoints (seconds)
        # (setup_s: the model to the device, the optimizer, whose first use imports
        # torch._dynamo, about 1.7 s, and the loader)
        self.timing: dict[str, float | None] = {**(timing or {}), "steps_s": 0.0,
                                                "checkpoint_s": 0.0}
        self.record["timing"] = self.timing
        self.previous_epochs = int(prev.get("epochs_completed") or 0)
        self.seconds_before = self.record["seconds"]
        self.attempt_start = time.perf_counter()
        self.cost = CostMeter(device, prev.get("cost"),
                              self.seconds_before, self.record["attempts"] - 1)

    def write(self, status: str, progress: Progress, error: str | None = None) -> None:
        self.timing.update({k: round(v, 3) for k, v in self.timing.items()
                            if isinstance(v, float)})
        attempt_s = time.perf_counter() - self.attempt_start
        self.record.update(
            status=status,
            error=error,
            epochs_completed=progress.completed,
            seconds=round(self.seconds_before + attempt_s, 3),
            finished=None if status == "running" else now(),
        )
        self.record["cost"] = self.cost.record(self.record["seconds"], attempt_s,
                                               progress.history, self.record["attempts"])
        self.run.write_run(self.record)

    def tags(self) -> dict[str, str]:
        """The live MLflow run's tags: versions, device, run folder, CALF's statistic."""
        imbalance = self.record["imbalance"] or {}
        tags = {"calf_version": calf.__version__, "git_commit": self.record["git_commit"] or "",
                "device": self.record["device"], "run_dir": str(self.run.path)}
        for key in ("scope", "branch", "skewness", "kurtosis"):
            if imbalance.get(key) is not None:
                tags[f"calf_{key}"] = str(imbalance[key])
        return tags


class EpochReporter:
    """The log line of every epoch and, when MLFLOW_TRACKING_URI names a server, the live
    MLflow run (a no-op otherwise)."""

    def __init__(self, log: Callable[[str], None], epochs: int, branches: bool):
        self.log, self.epochs, self.branches = log, epochs, branches
        self.logger = None

    def start(self, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> None:
        from calf.tracking.live import LiveLogger

        self.logger = LiveLogger.from_env(run_name, params, tags)

    def epoch(self, row: dict[str, Any]) -> None:
        branches = ", ".join(f"{b} {row[f'branch_{b}']}" for b in BRANCHES if row[f"branch_{b}"])
        val = f", val Dice {row['val_dice']:.4f}" if row["val_dice"] is not None else ""
        speed = row["slices_per_second"]
        self.log(
            f"epoch {row['epoch']}/{self.epochs}: loss {row['train_loss']:.5g}, "
            f"{row['steps']} steps, {speed} slices/s{val}"
            + (f", branches: {branches}" if branches and self.branches else "")
        )
        if self.logger is not None:
            metrics = {k: float(v) for k, v in row.items() if k != "epoch" and v is not None}
            self.logger.log_epoch(row["epoch"], metrics)

    def finish(self, status: str, cost: dict[str, Any] | None) -> None:
        if self.logger is not None:
            self.logger.log_cost(cost)
            self.logger.finish(status)


def step_branches(loss_fn: torch.nn.Module) -> list[str]:
    """The CALF branches the last step took (one per region, or one), none for others."""
    regions = getattr(loss_fn, "last_branches", None)
    if regions is not None:
        return list(regions)
    branch = getattr(loss_fn, "last_branch", None)
    return [branch] if branch is not None else []


def non_finite_detail(loss_name: str, loss_fn: torch.nn.Module) -> str:
    """The loss and, for CALF, the branches and statistics of the failing step."""
    detail = f"loss {loss_name}"
    if getattr(loss_fn, "last_branches", None):
        counts = Counter(loss_fn.last_branches).most_common()
        s = [v for v in loss_fn.last_skewness if not math.isnan(v)]
        k = [v for v in loss_fn.last_kurtosis if not math.isnan(v)]
        detail += (
            ", branches " + ", ".join(f"{b} x{n}" for b, n in counts)
            + (f", S {min(s):.4g}..{max(s):.4g}" if s else ", S undefined")
            + (f", K {min(k):.4g}..{max(k):.4g}" if k else ", K undefined")
        )
    elif getattr(loss_fn, "last_branch", None) is not None:
        detail += (f", branch {loss_fn.last_branch}, S={loss_fn.last_skewness:.4g}, "
                   f"K={loss_fn.last_kurtosis:.4g}")
    return detail


# --------------------------------------------------------------------------- the attempt


class Session:
    """One attempt at a run: restores the checkpoint, trains the remaining steps."""

    def __init__(self, config: TrainConfig, params: dict[str, Any], run: RunDir,
                 previous: dict[str, Any] | None, data: TrainingSlices,
                 val: TrainingSlices | None, sampler: EpochSampler, model: torch.nn.Module,
                 loss_fn: torch.nn.Module, imbalance: dict | None, device: torch.device,
                 amp_dtype: torch.dtype | None, log: Callable[[str], None],
                 timing: dict[str, float | None] | None = None):
        started = time.perf_counter()
        self.config, self.params, self.run_dir, self.log = config, params, run, log
        self.val, self.sampler, self.loss_fn = val, sampler, loss_fn
        self.device = device
        self.state = TrainingState(config, model, device, amp_dtype, log)
        workers = config.workers if config.workers is not None else default_workers(device)
        # uint8 batches from the workers, converted to float32 on the device
        self.loader = make_loader(data, sampler, workers, pin=device.type == "cuda",
                                  seed=config.seed, device=device)
        self.checkpoints = Checkpoints(run, params, sampler)
        self.step_delay = float(os.environ.get(STEP_DELAY_ENV, "0") or 0)
        self.progress = Progress()
        self.execution = execution_record(config, self.state, workers, self.loader)
        self.record = RunRecord(run, params, self.execution, self.state.model, device,
                                imbalance, previous, timing)
        self.timing = self.record.timing
        self.reporter = EpochReporter(log, config.epochs, branches=imbalance is not None)
        self.timing["setup_s"] = time.perf_counter() - started

    def _save(self, sums: EpochSums | None = None) -> None:
        self.checkpoints.save(self.state, self.progress, self.execution, sums)

    def _write_record(self, status: str, error: str | None = None) -> None:
        self.record.write(status, self.progress, error)

    def _announce(self) -> None:
        record = self.record.record
        where = f"resuming {self.progress.saved}" if self.progress.saved else "from the start"
        ran = self.execution["precision"]
        if ran != self.config.precision:  # bf16 asked for: fp32 on the CPU, fp16 on old GPUs
            why = "autocast runs on CUDA only" if ran == "fp32" else "this GPU lacks bf16"
            ran += f" (bf16 asked for: {why})"
        self.log(
            f"{self.run_dir.path}: {self.config.model} ({record['model_parameters']:,} "
            f"parameters), loss {self.config.loss}, {self.sampler.n} slices, "
            f"{self.sampler.batches_per_epoch} steps per epoch, {self.execution['device']} "
            f"{ran}, {where}"
        )

    def _end(self, status: str, error: str | None = None) -> None:
        """A failed or interrupted attempt's record and the end of its live MLflow run."""
        self._write_record(status, error)
        self.reporter.finish(status, self.record.record.get("cost"))

    def run(self) -> TrainResult:
        self.progress = self.checkpoints.restore(self.state, self.record.previous_epochs)
        self.run_dir.write_epochs(self.progress.history)
        self._write_record("running")
        self._announce()
        self.reporter.start(str(self.run_dir.path), self.params, self.record.tags())
        try:
            with StopRequest() as stop:
                result = self._epochs(stop)
        except NonFiniteLoss as err:
            self._end("failed", str(err))
            raise
        except KeyboardInterrupt:
            self._end("interrupted", "KeyboardInterrupt")
            raise
        except BaseException as err:
            self._end("failed", f"{type(err).__name__}: {' '.join(str(err).split())}")
            raise
        self.reporter.finish(result.status, self.record.record.get("cost"))
        return result

    def _epochs(self, stop: StopRequest) -> TrainResult:
        for epoch in range(self.progress.completed + 1, self.config.epochs + 1):
            sums = EpochSums()
            resume = self.progress.resume_sums
            if resume is not None and resume["epoch"] == epoch:
                sums = EpochSums.from_state(resume)
            self.progress.resume_sums = None
            if not self._train_epoch(epoch, sums, stop):
                return self._interrupted(stop, sums if sums.steps else None)
            self._finish_epoch(sums.row(epoch, self._val_dice()))
            if stop.requested and epoch < self.config.epochs:
                return self._interrupted(stop, None)
        self._write_record("complete")
        self.log(f"{self.run_dir.path}: complete ({self.progress.completed} epochs)")
        return TrainResult("complete", self.progress.completed, self.run_dir.path)

    def _train_epoch(self, epoch: int, sums: EpochSums, stop: StopRequest) -> bool:
        """The epoch's remaining steps; False when a stop signal came first (``sums``
        then holds the steps taken)."""
        self.sampler.set_epoch(epoch, sums.steps)
        batches = iter(self.loader)
        start = time.perf_counter()
        while sums.steps < self.sampler.batches_per_epoch:
            if stop.requested:
                sums.seconds += time.perf_counter() - start
                return False
            x, y = next(batches)
            self._step(epoch, sums, x, y)
            if self.step_delay:
                time.sleep(self.step_delay)
        sums.seconds += time.perf_counter() - start
        self.timing["steps_s"] += time.perf_counter() - start
        return True

    def _finish_epoch(self, row: dict[str, Any]) -> None:
        """Record a completed epoch: checkpoint, epochs.csv, run.json, log line."""
        self.progress.history.append(row)
        self.progress.completed = row["epoch"]
        saving = time.perf_counter()
        self._save()
        self.run_dir.write_epochs(self.progress.history)
        self.timing["checkpoint_s"] += time.perf_counter() - saving
        self._write_record("running")
        self.reporter.epoch(row)

    def _interrupted(self, stop: StopRequest, sums: EpochSums | None) -> TrainResult:
        if sums is not None:  # a mid-epoch position to keep
            self._save(sums)
        self._write_record("interrupted", f"stopped by {stop.signal_name}")
        self.log(
            f"{self.run_dir.path}: {stop.signal_name}: stopped with a checkpoint "
            f"{self.progress.saved}; run the same command again to resume"
        )
        return TrainResult("interrupted", self.progress.completed, self.run_dir.path)

    def _step(self, epoch: int, sums: EpochSums, x: torch.Tensor, y: torch.Tensor) -> None:
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = y.to(self.device, non_blocking=True)
        loss = self.state.forward_loss(self.loss_fn, x, y)
        value = loss.item()
        if not math.isfinite(value):
            raise NonFiniteLoss(self._non_finite_message(value, epoch, sums.steps + 1))
        self.state.update(loss)
        sums.steps += 1
        sums.slices += x.shape[0]
        sums.loss_sum += value
        sums.branches.update(step_branches(self.loss_fn))

    def _non_finite_message(self, value: float, epoch: int, step: int) -> str:
        saved = self.progress.saved
        kept = (f"last good checkpoint {self.checkpoints.path} {saved}" if saved
                else "no checkpoint yet")
        return (f"non-finite loss ({value}) at epoch {epoch}, step {step} "
                f"({non_finite_detail(self.config.loss, self.loss_fn)}); stopped; {kept}")

    def _val_dice(self) -> float | None:
        if self.val is None:
            return None
        return pooled_dice(self.state.model, self.val, self.config.val_batch_size, self.device,
                           self.state.amp_dtype, channels_last=True)
