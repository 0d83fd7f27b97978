"""The training loop: Adam on mini-batches of a training set, checkpointed and resumable.

One run writes its directory (contract C). The epoch's batch order is a function of the
seed and the epoch (``EpochSampler``); a checkpoint holds the model, the optimizer, the
random-number states, the sampler position, the epoch rows so far and the running sums of
an unfinished epoch, so a resumed run continues bit for bit where it stopped on the CPU
(where deterministic kernels are switched on). Models and batches are channels-last on
every device (oneDNN's and cuDNN's fast layout: a CPU step of the demo's networks is
25-30 % faster than in the default layout, ``benchmarks/train.py``). On CUDA (pinned
memory, persistent DataLoader workers) two switches decide the numerics: ``precision`` ``bf16``
(the suite's: forward pass under bf16 autocast, fp16 with a GradScaler where bf16 is
missing, the loss in float32) or ``fp32`` (the authors'), and ``deterministic`` ``False``
(the suite's: ``cudnn.benchmark``) or ``True`` (the authors': ``cudnn.deterministic``, no
benchmark). Deterministic cuDNN fixes the convolution algorithms only; other CUDA kernels
(e.g. the backward pass of bilinear upsampling, which uses atomic adds) stay
nondeterministic, so a CUDA run, resumed or repeated, is not promised bit for bit.

Speed switches of execution (run.json ``execution``; they may change on resume): on CUDA
under the suite's protocol (``deterministic`` off) Adam runs its fused kernel, and
``compile`` wraps the training forward pass in ``torch.compile`` (off by default; eager on
the CPU and under ``deterministic``, the authors' protocol, which keeps torch's default
Adam). Checkpoints always hold the uncompiled module's weights. The validation Dice runs
eagerly in batches of ``eval_batch_size`` (twice the training batch unless set).

run.json ``cost`` sums the run's attempts (``CostMeter``): wall and device seconds, the
seconds inside training steps and per epoch, the peak memory (CUDA allocations, or the
process's peak RSS on the CPU) and, where NVML reports it, the GPU's energy.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import calf
from calf._json import read_json_object
from calf.errors import CalfError
from calf.losses import BRANCHES
from calf.protocol import PRECISIONS
from calf.tracking import LiveLogger
from calf.train.checkpoint import (
    CHECKPOINT_FILE,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from calf.train.config import EXIT_INTERRUPTED, EXIT_NON_FINITE, TrainConfig, differences
from calf.train.data import EpochSampler, TrainingSlices, eval_batches, load_slices, make_loader
from calf.train.rundir import RunDir, git_commit, now
from calf.train.signals import StopRequest

# a pause after every training step, in seconds: lets tests interrupt a tiny run mid-epoch
STEP_DELAY_ENV = "CALF_TRAIN_STEP_DELAY"
CALF_LOSSES = ("calf", "calf_region")
_RUNS_STARTED = 0  # calls of train() in this process (``calf train --run`` makes several)


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


def _stderr(message: str) -> None:
    print(f"calf train: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ setup


def read_profile(path: str) -> dict[str, Any]:
    """The imbalance profile JSON (DESIGN.md contract), with the keys training reads."""
    record = read_json_object(path, "profile", name=f"--profile {path}")
    for key in ("n_slices", "skewness", "kurtosis", "area_definition"):
        if key not in record:
            raise CalfError(f"--profile {path}: missing key {key!r}")
    for key in ("skewness", "kurtosis"):
        if record[key] is not None and not isinstance(record[key], (int, float)):
            raise CalfError(f"--profile {path}: {key} is {record[key]!r}, not a number or null")
    return record


def _stat(value: float | None) -> float:
    return math.nan if value is None else float(value)


def build_run_loss(config: TrainConfig, n_slices: int) -> tuple[torch.nn.Module, dict | None]:
    """The loss module and the run's imbalance record (run.json ``imbalance``).

    CALF in dataset scope takes S and K from ``--profile`` (whose area definition must be
    the loss's); a profile given with any loss must describe this training set (same
    number of slices).
    """
    from calf.losses import build_loss

    kwargs = dict(config.loss_kwargs)
    profile = read_profile(config.profile) if config.profile else None
    if profile is not None and profile["n_slices"] != n_slices:
        raise CalfError(
            f"--profile {config.profile}: n_slices is {profile['n_slices']} but the training "
            f"set {config.train_slices} has {n_slices} slices; profile this training set"
        )
    dataset_scope = config.loss == "calf" and kwargs.get("scope", "batch") == "dataset"
    if dataset_scope and profile is not None:
        given = [k for k in ("skewness", "kurtosis") if k in kwargs]
        if given:
            raise CalfError(f"--loss-kwargs: {given[0]} given together with --profile; give one")
        area = kwargs.get("area", "pixels")
        if profile["area_definition"] != area:
            raise CalfError(
                f"--profile {config.profile}: area_definition is {profile['area_definition']!r} "
                f"but the loss uses area {area!r}; set it in --loss-kwargs or use a matching "
                "profile"
            )
        kwargs["skewness"] = _stat(profile["skewness"])
        kwargs["kurtosis"] = _stat(profile["kurtosis"])
    elif dataset_scope and not {"skewness", "kurtosis"} <= set(kwargs):
        raise CalfError(
            "--loss calf with scope 'dataset' needs --profile (the training set's imbalance "
            "profile JSON, from 'calf profile')"
        )
    # the slices come from slice stores, whose masks were checked to be {0, 1} once, when
    # written (SliceStore refuses a store without that record): no check on every step
    kwargs.setdefault("check_target", False)
    try:
        loss = build_loss(config.loss, **kwargs)
    except ValueError as err:
        raise CalfError(f"--loss {config.loss}: {err}") from None
    if config.loss not in CALF_LOSSES:
        return loss, None
    scope = "region" if config.loss == "calf_region" else getattr(loss, "scope", "batch")
    if scope == "dataset":
        s, k, branch = loss.last_skewness, loss.last_kurtosis, loss.fixed_branch
    else:  # the branch varies by step; the profile's statistic, if given, for reference
        s = _stat(profile["skewness"]) if profile else math.nan
        k = _stat(profile["kurtosis"]) if profile else math.nan
        branch = None
    return loss, {
        "scope": scope,
        "skewness": None if math.isnan(s) else s,
        "kurtosis": None if math.isnan(k) else k,
        "branch": branch,
        "profile": None if config.profile is None else str(Path(config.profile).resolve()),
    }


def choose_device(name: str, precision: str = "bf16") -> tuple[torch.device, torch.dtype | None]:
    """The device and the autocast dtype of ``precision`` there (None: float32 throughout)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise CalfError("--device cuda: no CUDA device is available")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu"), None
    device = torch.device("cuda")
    return device, amp_dtype(device, precision)


def amp_dtype(device: torch.device, precision: str = "bf16") -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (training and prediction alike).

    ``bf16``: bfloat16 where the GPU has it, else float16; None (float32 throughout) on
    the CPU. ``fp32``: None everywhere.
    """
    if precision not in PRECISIONS:
        raise CalfError(f"precision {precision!r}: expected {' or '.join(PRECISIONS)}")
    if device.type != "cuda" or precision == "fp32":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def run_precision(record: dict[str, Any]) -> str:
    """The precision switch a run trained with (run.json); runs older than the switch ran
    the suite's bf16 autocast."""
    protocol = (record.get("params") or {}).get("protocol") or {}
    return protocol.get("precision", "bf16")


def default_workers(device: torch.device) -> int:
    if device.type != "cuda":
        return 0  # CPU training: workers would compete with the model for the same cores
    return max(1, min(8, len(os.sched_getaffinity(0)) - 1))


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.current_device()} ({torch.cuda.get_device_name()})"
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'s' if threads > 1 else ''})"


@contextlib.contextmanager
def determinism(device: torch.device, deterministic: bool = False) -> Iterator[None]:
    """Deterministic kernels on the CPU; on CUDA deterministic cuDNN without autotuning
    (``deterministic``, the authors') or cuDNN autotuning (the suite's). Restored afterwards."""
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


def speed_switches(device: torch.device, deterministic: bool,
                   compile: bool) -> tuple[dict[str, Any], list[str]]:
    """The speed switches a run executes with (run.json ``execution``), and a line for each
    one asked for that does not apply here.

    On CUDA the suite's protocol (``deterministic`` off) uses Adam's fused kernel; the
    authors' (``deterministic``) keeps torch's default implementation. ``compile``
    (``torch.compile``) applies on CUDA outside ``deterministic`` only.
    """
    cuda = device.type == "cuda"
    compiled = compile and cuda and not deterministic
    notes = []
    if compile and not cuda:
        notes.append("--compile: running eagerly (torch.compile is used on CUDA only)")
    elif compile and not compiled:
        notes.append("--compile: running eagerly under --deterministic (the authors' protocol)")
    impl = "fused" if cuda and not deterministic else "default"
    return {"optimizer_impl": impl, "compile": compiled}, notes


def make_optimizer(model: torch.nn.Module, lr: float, impl: str) -> torch.optim.Adam:
    """Adam without weight decay; ``impl`` ``fused`` (one kernel for all parameters) or
    ``default`` (torch's choice: foreach on CUDA, a loop on the CPU). Their states load
    into each other, so a resume may change it."""
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=0.0,
                            fused=True if impl == "fused" else None)


def nvml_energy_reader(device: torch.device) -> Callable[[], float | None] | None:
    """A reader of the total energy (mJ) NVML counts for the GPU of ``device``, or None
    on the CPU, without nvidia-ml-py (``pynvml``), or where the GPU does not report it
    (MIG slices, GPUs before Volta). Never raises. The counter is the whole GPU's, other
    processes on it included."""
    if device.type != "cuda":
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        props = torch.cuda.get_device_properties(device)
        uuid = str(props.uuid)
        try:
            handle = pynvml.nvmlDeviceGetHandleByUUID(
                uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
        except Exception:  # noqa: BLE001 - older drivers: by PCI address
            handle = pynvml.nvmlDeviceGetHandleByPciBusId_v2(
                f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0")
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception:  # noqa: BLE001 - energy is optional: any NVML failure means none
        return None

    def read() -> float | None:
        try:
            return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except Exception:  # noqa: BLE001
            return None

    return read


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux counts KiB


class CostMeter:
    """What a run costs (run.json ``cost``): this attempt's figures added to those of the
    earlier attempts (``previous``, their ``cost``; runs older than the record have none,
    and their wall seconds stand in for the device seconds).

    ``device_s`` is the seconds the run held its device (wall time x one GPU, or x the
    CPU process), in the unit of ``device_s_per_epoch``; ``cpu_s`` the training process's
    CPU seconds (user + system, all its threads; data-loading workers excluded). Peaks are
    the maximum over the attempts on the same kind of device (the CUDA peak is reset when
    the attempt starts; the CPU's peak RSS is the whole process's, earlier runs of a
    ``--run`` process included); ``energy_j`` and ``cpu_s`` are None unless every attempt
    measured them.
    """

    def __init__(self, device: torch.device, previous: dict[str, Any] | None,
                 previous_seconds: float, previous_attempts: int):
        self.device = device
        self.previous = previous if isinstance(previous, dict) else {}
        self.previous_attempts = previous_attempts
        self.previous_device_s = float(self.previous.get("device_s", previous_seconds) or 0.0)
        self.start_cpu = _cpu_seconds()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            self.name = torch.cuda.get_device_name(device)
        else:
            self.name = describe_device(device)
        self.energy = nvml_energy_reader(device)
        self.energy_start = self.energy() if self.energy is not None else None

    def record(self, wall_s: float, attempt_s: float, history: list[dict[str, Any]],
               attempts: int) -> dict[str, Any]:
        """The ``cost`` object now: ``wall_s`` is the run's (all attempts), ``attempt_s``
        this attempt's wall seconds, ``history`` the run's epoch rows."""
        cuda = self.device.type == "cuda"
        cpu_s = self.previous.get("cpu_s") if self.previous_attempts else 0.0
        if cpu_s is not None:
            cpu_s = round(float(cpu_s) + _cpu_seconds() - self.start_cpu, 3)
        train_s = sum(float(row["seconds"]) for row in history)
        epochs = len(history)
        kind = "cuda_allocated" if cuda else "cpu_rss"
        peak = torch.cuda.max_memory_allocated(self.device) if cuda else _peak_rss_bytes()
        if self.previous.get("peak_memory_kind") == kind and self.previous.get(
                "peak_memory_bytes") is not None:
            peak = max(peak, int(self.previous["peak_memory_bytes"]))
        energy = None
        now_mj = self.energy() if self.energy is not None else None
        earlier = self.previous.get("energy_j") if self.previous_attempts else 0.0
        if now_mj is not None and self.energy_start is not None and earlier is not None:
            energy = round(float(earlier) + (now_mj - self.energy_start) / 1000, 3)
        return {
            "device": self.device.type,
            "device_name": self.name,
            "wall_s": round(wall_s, 3),
            "device_s": round(self.previous_device_s + attempt_s, 3),
            "train_s": round(train_s, 3),
            "epochs": epochs,
            "device_s_per_epoch": round(train_s / epochs, 4) if epochs else None,
            "peak_memory_bytes": int(peak),
            "peak_memory_kind": kind,
            "energy_j": energy,
            "attempts": attempts,
            "cpu_s": cpu_s,
        }


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also every CUDA device


def pooled_dice(model: torch.nn.Module, slices: TrainingSlices, batch_size: int,
                device: torch.device, amp_dtype: torch.dtype | None = None,
                channels_last: bool = False) -> float:
    """Dice of (logit > 0) against the masks of ``slices``, pooled over all their pixels.

    1.0 when prediction and truth are both empty. The model runs in eval mode and returns
    to the mode it was in.
    """
    was_training = model.training
    model.eval()
    counts = torch.zeros(3, dtype=torch.float64, device=device)
    with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype,
                                         enabled=amp_dtype is not None):
        for positions in eval_batches(len(slices), batch_size):
            x, y = slices[positions]
            x = x.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            pred = model(x) > 0
            truth = y.to(device, non_blocking=True) > 0.5
            counts += torch.stack([(pred & truth).sum(), (pred & ~truth).sum(),
                                   (~pred & truth).sum()]).double()
    model.train(was_training)
    tp, fp, fn = counts.tolist()
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


# ---------------------------------------------------------------------------- the run


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
    device, amp_dtype = choose_device(config.device, config.precision)
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
            session = _Session(config, params, run, run.read_run(), data, val, sampler, model,
                               loss_fn, imbalance, device, amp_dtype, log, timing)
            return session.run()
        finally:
            run.unlock()


def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``; None elsewhere): what the
    interpreter, the imports and the argument parsing took before training began."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 3)
    except (OSError, ValueError, IndexError):
        return None


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


def _position(epochs: int, steps: int) -> str:
    """Where a checkpoint stands: after ``epochs`` epochs and ``steps`` steps of the next."""
    return f"at epoch {epochs + 1}, step {steps}" if steps else f"after epoch {epochs}"


class _Session:
    """One attempt at a run: restores the checkpoint, trains the remaining steps."""

    def __init__(self, config: TrainConfig, params: dict[str, Any], run: RunDir,
                 previous: dict[str, Any] | None, data: TrainingSlices,
                 val: TrainingSlices | None, sampler: EpochSampler, model: torch.nn.Module,
                 loss_fn: torch.nn.Module, imbalance: dict | None, device: torch.device,
                 amp_dtype: torch.dtype | None, log: Callable[[str], None],
                 timing: dict[str, float | None] | None = None):
        from calf.models import count_parameters

        started = time.perf_counter()
        self.config, self.params, self.run_dir, self.log = config, params, run, log
        self.val, self.sampler, self.loss_fn = val, sampler, loss_fn
        self.device, self.amp_dtype = device, amp_dtype
        # channels-last on every device: oneDNN (CPU) and cuDNN both run faster in NHWC
        self.model = model.to(device).to(memory_format=torch.channels_last)
        self.model.train()
        speed, notes = speed_switches(device, config.deterministic, config.compile)
        for note in notes:
            log(note)
        self.optimizer = make_optimizer(self.model, config.lr, speed["optimizer_impl"])
        # the training forward pass; self.model (saved, validated) stays the plain module
        self.forward = torch.compile(self.model) if speed["compile"] else self.model
        self.scaler = (
            torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        )
        workers = config.workers if config.workers is not None else default_workers(device)
        # uint8 batches from the workers, converted to float32 on the device
        self.loader = make_loader(data, sampler, workers, pin=device.type == "cuda",
                                  seed=config.seed, device=device)
        self.checkpoint_path = run.path / CHECKPOINT_FILE
        self.step_delay = float(os.environ.get(STEP_DELAY_ENV, "0") or 0)
        self.history: list[dict[str, Any]] = []
        self.completed = 0
        self.resume_sums: dict[str, Any] | None = None
        self.saved = ""  # where the checkpoint on disk stands, in words
        precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype]
        self.execution = {"device": str(device), "precision": precision, "workers": workers,
                          "threads": torch.get_num_threads(), "torch": torch.__version__,
                          "channels_last": True,
                          "cudnn_benchmark": device.type == "cuda" and not config.deterministic,
                          "cudnn_deterministic": device.type == "cuda" and config.deterministic,
                          "deterministic_algorithms": device.type == "cpu", **speed,
                          "eval_batch_size": config.val_batch_size,
                          "pin_memory": self.loader.pin_memory,
                          "persistent_workers": self.loader.persistent_workers,
                          "prefetch_factor": self.loader.prefetch_factor}
        prev = previous or {}
        self.record: dict[str, Any] = {
            "status": "running",
            "params": params,
            "execution": self.execution,
            "model_parameters": count_parameters(self.model),
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
        self.cost = CostMeter(device, prev.get("cost"), self.seconds_before,
                              self.record["attempts"] - 1)
        self.logger = None
        self.timing["setup_s"] = time.perf_counter() - started

    # ------------------------------------------------------------------ checkpoints

    def _restore(self) -> None:
        state = load_checkpoint(self.checkpoint_path)
        if state is None:
            if self.previous_epochs:
                raise CalfError(
                    f"{self.checkpoint_path}: missing, but {self.run_dir.run_file} records "
                    f"{self.previous_epochs} completed epochs; delete the run directory to restart"
                )
            return
        diff = differences(state["config"].get("params", {}), self.params)
        if diff:
            raise CalfError(f"{self.checkpoint_path}: made with other parameters ({diff[0]})")
        self.sampler.check_state(state["sampler_state"], self.checkpoint_path)
        self.model.load_state_dict(state["model_state"])
        self.optimizer.load_state_dict(state["optimizer_state"])
        if self.scaler is not None and state.get("scaler_state"):
            self.scaler.load_state_dict(state["scaler_state"])
        set_rng_state(state["rng_state"])
        self.completed = int(state["epoch"])
        self.history = list(state["history"])
        self.resume_sums = state.get("partial")
        self.saved = _position(self.completed, self.resume_sums["steps"] if self.resume_sums else 0)

    def _save(self, sums: EpochSums | None = None) -> None:
        """Checkpoint after ``self.completed`` epochs, plus ``sums.steps`` steps of the next."""
        epoch = self.completed + 1
        self.saved = _position(self.completed, sums.steps if sums else 0)
        save_checkpoint(
            self.checkpoint_path,
            {
                "epoch": self.completed,
                "model_state": self.model.state_dict(),
                "optimizer_state": self.optimizer.state_dict(),
                "scaler_state": self.scaler.state_dict() if self.scaler is not None else None,
                "rng_state": rng_state(),
                "sampler_state": self.sampler.state_dict(epoch, sums.steps if sums else 0),
                "partial": sums.state(epoch) if sums is not None else None,
                "history": self.history,
                "config": {"params": self.params, "execution": self.execution},
            },
        )

    def _write_record(self, status: str, error: str | None = None) -> None:
        self.timing.update({k: round(v, 3) for k, v in self.timing.items()
                            if isinstance(v, float)})
        attempt_s = time.perf_counter() - self.attempt_start
        self.record.update(
            status=status,
            error=error,
            epochs_completed=self.completed,
            seconds=round(self.seconds_before + attempt_s, 3),
            finished=None if status == "running" else now(),
        )
        self.record["cost"] = self.cost.record(self.record["seconds"], attempt_s,
                                               self.history, self.record["attempts"])
        self.run_dir.write_run(self.record)

    # ---------------------------------------------------------------------- training

    def run(self) -> TrainResult:
        self._restore()
        self.run_dir.write_epochs(self.history)
        self._write_record("running")
        where = f"resuming {self.saved}" if self.saved else "from the start"
        ran = self.execution["precision"]
        if ran != self.config.precision:  # bf16 asked for: fp32 on the CPU, fp16 on old GPUs
            why = "autocast runs on CUDA only" if ran == "fp32" else "this GPU lacks bf16"
            ran += f" (bf16 asked for: {why})"
        self.log(
            f"{self.run_dir.path}: {self.config.model} ({self.record['model_parameters']:,} "
            f"parameters), loss {self.config.loss}, {self.sampler.n} slices, "
            f"{self.sampler.batches_per_epoch} steps per epoch, {self.execution['device']} "
            f"{ran}, {where}"
        )
        # the live MLflow logger: a no-op unless MLFLOW_TRACKING_URI names a server
        self.logger = LiveLogger.from_env(str(self.run_dir.path), self.params, self._tags())
        try:
            with StopRequest() as stop:
                result = self._epochs(stop)
        except NonFiniteLoss as err:
            self._write_record("failed", str(err))
            self._finish_logger("failed")
            raise
        except KeyboardInterrupt:
            self._write_record("interrupted", "KeyboardInterrupt")
            self._finish_logger("interrupted")
            raise
        except BaseException as err:
            self._write_record("failed", f"{type(err).__name__}: {' '.join(str(err).split())}")
            self._finish_logger("failed")
            raise
        self._finish_logger(result.status)
        return result

    def _epochs(self, stop: StopRequest) -> TrainResult:
        batches_per_epoch = self.sampler.batches_per_epoch
        for epoch in range(self.completed + 1, self.config.epochs + 1):
            sums = EpochSums()
            if self.resume_sums is not None and self.resume_sums["epoch"] == epoch:
                sums = EpochSums.from_state(self.resume_sums)
            self.resume_sums = None
            self.sampler.set_epoch(epoch, sums.steps)
            batches = iter(self.loader)
            start = time.perf_counter()
            while sums.steps < batches_per_epoch:
                if stop.requested:
                    sums.seconds += time.perf_counter() - start
                    return self._interrupted(stop, sums if sums.steps else None)
                x, y = next(batches)
                self._step(epoch, sums, x, y)
                if self.step_delay:
                    time.sleep(self.step_delay)
            sums.seconds += time.perf_counter() - start
            self.timing["steps_s"] += time.perf_counter() - start
            del batches
            row = sums.row(epoch, self._val_dice() if self.val is not None else None)
            self.history.append(row)
            self.completed = epoch
            saving = time.perf_counter()
            self._save()
            self.run_dir.write_epochs(self.history)
            self.timing["checkpoint_s"] += time.perf_counter() - saving
            self._write_record("running")
            self._log_epoch(row)
            if stop.requested and epoch < self.config.epochs:
                return self._interrupted(stop, None)
        self._write_record("complete")
        self.log(f"{self.run_dir.path}: complete ({self.completed} epochs)")
        return TrainResult("complete", self.completed, self.run_dir.path)

    def _interrupted(self, stop: StopRequest, sums: EpochSums | None) -> TrainResult:
        if sums is not None:  # a mid-epoch position to keep
            self._save(sums)
        self._write_record("interrupted", f"stopped by {stop.signal_name}")
        self.log(
            f"{self.run_dir.path}: {stop.signal_name}: stopped with a checkpoint {self.saved}; "
            "run the same command again to resume"
        )
        return TrainResult("interrupted", self.completed, self.run_dir.path)

    def _step(self, epoch: int, sums: EpochSums, x: torch.Tensor, y: torch.Tensor) -> None:
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = y.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype,
                            enabled=self.amp_dtype is not None):
            logits = self.forward(x)
        loss = self.loss_fn(logits, y)  # the suite's losses compute in float32
        value = loss.item()
        if not math.isfinite(value):
            raise NonFiniteLoss(self._non_finite_message(value, epoch, sums.steps + 1))
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        sums.steps += 1
        sums.slices += x.shape[0]
        sums.loss_sum += value
        sums.branches.update(self._branches())

    def _branches(self) -> list[str]:
        regions = getattr(self.loss_fn, "last_branches", None)
        if regions is not None:
            return list(regions)
        branch = getattr(self.loss_fn, "last_branch", None)
        return [branch] if branch is not None else []

    def _non_finite_message(self, value: float, epoch: int, step: int) -> str:
        fn = self.loss_fn
        detail = f"loss {self.config.loss}"
        if getattr(fn, "last_branches", None):
            counts = Counter(fn.last_branches).most_common()
            s = [v for v in fn.last_skewness if not math.isnan(v)]
            k = [v for v in fn.last_kurtosis if not math.isnan(v)]
            detail += (
                ", branches " + ", ".join(f"{b} x{n}" for b, n in counts)
                + (f", S {min(s):.4g}..{max(s):.4g}" if s else ", S undefined")
                + (f", K {min(k):.4g}..{max(k):.4g}" if k else ", K undefined")
            )
        elif getattr(fn, "last_branch", None) is not None:
            detail += (
                f", branch {fn.last_branch}, S={fn.last_skewness:.4g}, K={fn.last_kurtosis:.4g}"
            )
        kept = f"last good checkpoint {self.checkpoint_path} {self.saved}" if self.saved else (
            "no checkpoint yet")
        return (
            f"non-finite loss ({value}) at epoch {epoch}, step {step} ({detail}); stopped; {kept}"
        )

    def _val_dice(self) -> float:
        assert self.val is not None
        return pooled_dice(self.model, self.val, self.config.val_batch_size, self.device,
                           self.amp_dtype, channels_last=True)

    # --------------------------------------------------------------------- reporting

    def _tags(self) -> dict[str, str]:
        imbalance = self.record["imbalance"] or {}
        tags = {"calf_version": calf.__version__, "git_commit": self.record["git_commit"] or "",
                "device": self.record["device"], "run_dir": str(self.run_dir.path)}
        for key in ("scope", "branch", "skewness", "kurtosis"):
            if imbalance.get(key) is not None:
                tags[f"calf_{key}"] = str(imbalance[key])
        return tags

    def _log_epoch(self, row: dict[str, Any]) -> None:
        branches = ", ".join(f"{b} {row[f'branch_{b}']}" for b in BRANCHES if row[f"branch_{b}"])
        val = f", val Dice {row['val_dice']:.4f}" if row["val_dice"] is not None else ""
        speed = row["slices_per_second"]
        self.log(
            f"epoch {row['epoch']}/{self.config.epochs}: loss {row['train_loss']:.5g}, "
            f"{row['steps']} steps, {speed} slices/s{val}"
            + (f", branches: {branches}" if branches and self.config.loss in CALF_LOSSES else "")
        )
        if self.logger is not None:
            metrics = {k: float(v) for k, v in row.items() if k != "epoch" and v is not None}
            self.logger.log_epoch(row["epoch"], metrics)

    def _finish_logger(self, status: str) -> None:
        if self.logger is not None:
            self.logger.log_cost(self.record.get("cost"))
            self.logger.finish(status)
