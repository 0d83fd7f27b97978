"""GPU check: training throughput, loss steps, a SIGTERM-and-resume CLI run, the loader's rate.

    python benchmarks/gpu.py [--device cuda|cpu] [--quick] [--out DIR] [--budget-s S]

Writes DIR/gpu.json and DIR/gpu.md (default DIR: benchmarks/results; rewritten after each
section, so a run cut short leaves what it measured) and prints the Markdown. Sections:

1. training throughput: slices/s of forward + CALF batch-scope loss (float32) + backward +
   Adam, 256 x 256, full width, batch 32, for unet, deeplabv3 and fpn in the modes fp32,
   bf16 autocast, bf16 + channels-last, bf16 + channels-last + fused Adam (CUDA only) and
   bf16 + channels-last + torch.compile (in a child process, killed when over budget); warm-up
   steps excluded, peak memory per mode, the ratio to the authors' implied rates
   (``calf.report.reference.implied_rate``) and whether U-Net in bf16 reaches 5x their
   high rate;
2. loss steps on the device (CALF batch scope with pixel areas, region CALF, torch
   BCEWithLogitsLoss; fwd + bwd) and the pixel against the contour imbalance statistic
   (the contour's device-to-host copy included);
3. ``python -m calf train`` of each model with CALF on a tiny slice store: finite losses, a
   checkpoint, a SIGTERM mid-run (exit 75), a resume to completion, the final model against
   an uninterrupted run (bit-exact on the CPU; on CUDA both runs use ``--deterministic``,
   which is not promised bit-exact: the max abs difference is reported);
4. the DataLoader's rate from a memory-mapped slice store (``calf.train.data``) with the
   workers a training job of ``config/paper.yaml`` gets, against the best rate of section 1.

Every section has a time budget (the whole run: ``--budget-s``, default 300 s); what does
not fit is recorded ``skipped: budget``, a section that fails records its error and the
others go on. Exit 0 unless nothing could run. ``--quick``: every section tiny (64 x 64,
width 1/8, batch 4, 2 timed steps; no torch.compile) for a CPU smoke test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import torch
from losses import masks, sync, time_all  # benchmarks/losses.py
from train import MODELS, make_store, synthetic_batch, train_step  # benchmarks/train.py

from calf.device import determinism
from calf.imbalance import contour_areas, foreground_areas, moments
from calf.losses import CALFLoss, build_loss
from calf.models import build_model, count_parameters
from calf.report.reference import implied_rate
from calf.train.build import default_workers
from calf.train.checkpoint import CHECKPOINT_FILE, load_checkpoint
from calf.train.data import EpochSampler, load_slices, make_loader

GOAL_X = 5.0  # issue 13: U-Net in bf16 at >= 5x the authors' implied (high) rate
LOADER_GOAL_X = 2.0  # the loader at >= 2x the best training rate
STEP_DELAY = 0.2  # seconds per step of the run that is interrupted (CALF_TRAIN_STEP_DELAY)


@dataclass(frozen=True)
class Mode:
    key: str
    label: str
    amp: bool = False
    channels_last: bool = False
    fused: bool = False
    compile: bool = False
    cuda_only: bool = False


MODES = (
    Mode("fp32", "fp32"),
    Mode("bf16", "bf16 autocast", amp=True),
    Mode("bf16_cl", "bf16 + channels-last", amp=True, channels_last=True),
    Mode("bf16_cl_fused", "bf16 + channels-last + fused Adam", amp=True, channels_last=True,
         fused=True, cuda_only=True),
    Mode("bf16_cl_compile", "bf16 + channels-last + torch.compile", amp=True,
         channels_last=True, compile=True),
)
MODE_BY_KEY = {m.key: m for m in MODES}


@dataclass(frozen=True)
class Settings:
    """Sizes of every section; ``quick`` makes them tiny."""

    size: int = 256
    width: float = 1.0
    batch: int = 32
    warmup: int = 5
    steps: int = 10
    repeats: int = 3
    loss_repeats: int = 20
    run_size: int = 64  # section 3
    run_width: float = 0.125
    run_batch: int = 8
    run_steps: int = 6
    run_epochs: int = 2
    loader_batches: int = 300
    loader_cases: int = 12
    loader_depth: int = 32

    @classmethod
    def quick(cls) -> Settings:
        return cls(size=64, width=0.125, batch=4, warmup=1, steps=2, repeats=1, loss_repeats=2,
                   loader_batches=20, loader_cases=4, loader_depth=16)


class Budget:
    """One deadline for the run; a task starts only when its estimate fits before it,
    less what the sections still to come reserve."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.monotonic()

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def fits(self, estimate: float, reserve: float = 0.0) -> bool:
        return self.left() - reserve >= estimate


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:400]


def _amp(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


# ------------------------------------------------------------------ 1. training throughput


def measure_mode(model_name: str, mode: Mode, s: Settings, device: torch.device) -> dict[str, Any]:
    """Slices/s (median of ``repeats`` blocks of ``steps`` steps, after ``warmup`` steps) and
    peak memory of one model in one mode; the warm-up's seconds (compile time) too."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    model = build_model(model_name, width=s.width).to(device).train()
    if mode.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5,
                                 **({"fused": True} if mode.fused else {}))
    amp = _amp(device) if mode.amp else None
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    net = torch.compile(model) if mode.compile else model
    loss_fn = build_loss("calf")
    x, y = synthetic_batch(s.batch, s.size)
    x, y = x.to(device), y.to(device)
    if mode.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        train_step(net, loss_fn, optimizer, scaler, amp, device, x, y)

    with determinism(device):  # the suite's: cudnn.benchmark on CUDA
        started = time.perf_counter()
        for _ in range(s.warmup):
            step()
        sync(device)
        warmup_s = time.perf_counter() - started
        rates = []
        for _ in range(s.repeats):
            sync(device)
            start = time.perf_counter()
            for _ in range(s.steps):
                step()
            sync(device)
            rates.append(s.batch * s.steps / (time.perf_counter() - start))
        finite = bool(torch.stack([p.isfinite().all() for p in model.parameters()]).all())
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    result = {
        "slices_per_s": statistics.median(rates),
        "block_rates": rates,
        "warmup_s": round(warmup_s, 3),
        "peak_memory_mib": None if peak is None else round(peak, 1),
        "parameters": count_parameters(model),
        "parameters_finite": finite,
    }
    return result  # the model, optimizer and batch go with this frame


def authors(model: str) -> dict[str, float]:
    low, high = implied_rate(model)
    return {"low": low, "high": high}


def mode_row(model: str, mode: Mode, status: str, measured: dict | None = None,
             seconds: float | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"model": model, "mode": mode.key, "label": mode.label,
                           "status": status, "seconds": seconds}
    if measured:
        row.update(measured)
        rate, ref = measured["slices_per_s"], authors(model)
        row["x_authors_low"] = rate / ref["low"]
        row["x_authors_high"] = rate / ref["high"]
    return row


def section_training(s: Settings, device: torch.device, budget: Budget, quick: bool,
                     reserve: float) -> dict[str, Any]:
    """Every eager mode of every model; the compile modes come later (``compile_modes``)."""
    rows, estimate = [], 20.0
    for model in MODELS:
        for mode in MODES:
            if mode.cuda_only and device.type != "cuda":
                rows.append(mode_row(model, mode, "skipped: CUDA only"))
                continue
            if mode.compile:
                reason = "skipped: --quick" if quick else "pending"
                rows.append(mode_row(model, mode, reason))
                continue
            if not budget.fits(estimate, reserve):
                rows.append(mode_row(model, mode, "skipped: budget"))
                continue
            start = time.perf_counter()
            try:
                measured = measure_mode(model, mode, s, device)
                row = mode_row(model, mode, "ok", measured, time.perf_counter() - start)
                if not measured["parameters_finite"]:
                    row["status"] = "error: non-finite parameters after the steps"
            except Exception as err:  # noqa: BLE001 - recorded, the others go on
                row = mode_row(model, mode, f"error: {one_line(err)}", None,
                               time.perf_counter() - start)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            estimate = max(estimate * 0.5, 1.5 * row["seconds"])
            rows.append(row)
            print(f"# training {model} {mode.label}: {row['status']}"
                  + (f", {row['slices_per_s']:.1f} slices/s" if "slices_per_s" in row else ""),
                  file=sys.stderr, flush=True)
    return finish_training({"settings": {"size": s.size, "width": s.width, "batch": s.batch,
                                         "warmup_steps": s.warmup, "timed_steps": s.steps,
                                         "blocks": s.repeats, "loss": "calf (batch scope)"},
                            "rows": rows})


def compile_modes(section: dict, quick: bool, device: torch.device, budget: Budget,
                  margin: float) -> dict[str, Any]:
    """The torch.compile rows, each in a child process killed when it would overrun."""
    estimate = 90.0 if device.type == "cuda" else 120.0
    for row in section["rows"]:
        if row["status"] != "pending":
            continue
        if not budget.fits(estimate, margin):
            row["status"] = "skipped: budget"
            continue
        limit = budget.left() - margin
        cmd = [sys.executable, str(Path(__file__).resolve()), "--device", device.type,
               "--compile-one", row["model"]] + (["--quick"] if quick else [])
        start = time.perf_counter()
        # its own process group: a timeout ends inductor's compile workers with it
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                 start_new_session=True)
        try:
            stdout, stderr = child.communicate(timeout=limit)
            lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
            if child.returncode != 0 or not lines:
                tail = (stderr.strip().splitlines() or ["no output"])[-1]
                row["status"] = f"error: exit {child.returncode}: {tail[:300]}"
            else:
                answer = json.loads(lines[-1])
                if "error" in answer:
                    row["status"] = f"error: {answer['error']}"
                else:
                    row.update(mode_row(row["model"], MODE_BY_KEY[row["mode"]], "ok", answer))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            row["status"] = f"skipped: budget (compile not done in {limit:.0f} s)"
        row["seconds"] = time.perf_counter() - start
        estimate = max(estimate, 1.2 * row["seconds"])
        print(f"# training {row['model']} {row['label']}: {row['status']}", file=sys.stderr,
              flush=True)
    return finish_training(section)


def compile_one(model: str, s: Settings, device: torch.device) -> int:
    """Child of ``compile_modes``: one compiled measurement as a JSON line."""
    try:
        print(json.dumps(measure_mode(model, MODE_BY_KEY["bf16_cl_compile"], s, device)))
    except Exception as err:  # noqa: BLE001 - the parent records it
        print(json.dumps({"error": one_line(err)}))
    return 0


def finish_training(section: dict[str, Any]) -> dict[str, Any]:
    """The per-model best rates, the authors' rates and the U-Net goal, from the rows."""
    rows = section["rows"]
    ok = [r for r in rows if r["status"] == "ok"]
    section["authors"] = {m: authors(m) for m in MODELS}
    section["best"] = {}
    for model in MODELS:
        mine = [r for r in ok if r["model"] == model]
        if mine:
            top = max(mine, key=lambda r: r["slices_per_s"])
            section["best"][model] = {k: top[k] for k in ("mode", "slices_per_s",
                                                          "x_authors_low", "x_authors_high")}
    bf16 = [r for r in ok if r["model"] == "unet" and r["mode"] != "fp32"]
    target = GOAL_X * authors("unet")["high"]
    best = max(bf16, key=lambda r: r["slices_per_s"]) if bf16 else None
    section["goal"] = {
        "what": f"unet in bf16 >= {GOAL_X:g}x the authors' high implied rate",
        "target_slices_per_s": target,
        "best_mode": best["mode"] if best else None,
        "slices_per_s": best["slices_per_s"] if best else None,
        "x_authors_high": best["x_authors_high"] if best else None,
        "reached": None if best is None else best["slices_per_s"] >= target,
    }
    statuses = [r["status"] for r in rows]
    # compile may fail (its row says why); fused Adam is CUDA only; --quick skips compile
    eager = [r["status"] for r in rows if r["mode"] != "bf16_cl_compile"]
    if "pending" in statuses:
        section["status"] = "running"
    elif not ok:
        section["status"] = "error: no mode ran" if any(
            st.startswith("error") for st in statuses) else "skipped: budget"
    elif all(st in ("ok", "skipped: CUDA only") for st in eager):
        section["status"] = "ok"
    else:
        section["status"] = "partial"
    return section


# ------------------------------------------------------------------------ 2. loss steps


def section_losses(s: Settings, device: torch.device) -> dict[str, Any]:
    y = masks(s.batch, s.size).to(device)
    x = torch.randn(y.shape, device=device, requires_grad=True)
    losses = {
        "bce_torch": ("torch BCEWithLogitsLoss", torch.nn.BCEWithLogitsLoss()),
        "calf_batch_pixels": ("CALF batch scope, pixels", CALFLoss("batch", area="pixels")),
        "calf_region": ("region CALF (4 x 4, pixels)", build_loss("calf_region")),
    }

    def step(loss):
        def run():
            x.grad = None
            loss(x, y).backward()

        return run

    seconds = time_all({k: step(fn) for k, (_, fn) in losses.items()}, device, s.loss_repeats)
    base = seconds["bce_torch"]
    rows = [{"loss": k, "label": label, "ms": seconds[k] * 1e3, "x_bce": seconds[k] / base}
            for k, (label, _) in losses.items()]
    statistic = {"pixels": lambda: moments(foreground_areas(y), 0)[0].item()}
    contour_status = "ok"
    try:
        import cv2  # noqa: F401

        # contour_areas copies the masks to the host, as the loss's contour path does
        statistic["contour"] = lambda: moments(contour_areas(y), 0)[0].item()
    except ImportError:
        contour_status = "skipped: OpenCV missing (pip install opencv-python-headless)"
    stat = time_all(statistic, device, s.loss_repeats)
    stat_rows = [{"statistic": k, "ms": v * 1e3, "x_pixels": v / stat["pixels"]}
                 for k, v in stat.items()]
    return {"status": "ok", "shape": list(y.shape), "repeats": s.loss_repeats, "rows": rows,
            "statistic": stat_rows, "contour_status": contour_status,
            "calf_x_bce": seconds["calf_batch_pixels"] / base,
            "region_x_bce": seconds["calf_region"] / base,
            "contour_x_pixels": stat["contour"] / stat["pixels"] if "contour" in stat else None}


# --------------------------------------------------------------- 3. CLI training and resume


def slice_store(root: Path, size: int, cases: int, depth: int) -> tuple[Path, Path]:
    """A slice store of synthetic discs and its training CSV (``benchmarks/train.py``'s
    NIfTI -> ``calf.preprocess`` -> ``calf.split``), built once per shape in ``root``."""
    folder = root / f"store-{size}-{cases}x{depth}"
    if not (folder / "train.csv").exists():
        return make_store(folder, size, cases=cases, depth=depth)
    return folder / "store", folder / "train.csv"


def _cli(argv: list[str], log: Path, delay: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)  # files only: no live logging from a benchmark
    if delay:
        env["CALF_TRAIN_STEP_DELAY"] = str(delay)
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "calf", *argv], stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                start_new_session=True)


def _wait(proc: subprocess.Popen, deadline: float) -> int | None:
    try:
        return proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None


def _last_line(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def _epochs(out: Path) -> list[float]:
    from calf.layout import EPOCHS_FILE
    from calf.train.rundir import read_epochs

    exists = (out / EPOCHS_FILE).exists()
    return read_epochs(out, columns=("train_loss",))["train_loss"].tolist() if exists else []


def section_resume(s: Settings, device: torch.device, root: Path,
                   deadline: float) -> dict[str, Any]:
    """Per model three ``calf train`` runs of one setting: SIGTERM'd, resumed, uninterrupted.

    The runs to stop start side by side as child processes (a thread sends each its SIGTERM)
    while the uninterrupted runs go through the same CLI (``calf.cli.main``) in this
    process; then the resumes run side by side. On the CPU every run has one torch thread
    (bit-exact needs the same reductions); on CUDA every run has --deterministic."""
    from calf.cli import main as calf_main

    store, csv = slice_store(root, s.run_size, cases=4, depth=16)
    common = ["train", "--store", str(store), "--train-slices", str(csv), "--width",
              str(s.run_width), "--loss", "calf", "--epochs", str(s.run_epochs), "--batch-size",
              str(s.run_batch), "--max-steps-per-epoch", str(s.run_steps), "--workers", "1",
              "--device", device.type]
    common += ["--threads", "1"] if device.type == "cpu" else ["--deterministic"]
    argv = {(model, kind): common + ["--model", model, "--out", str(root / f"{model}-{kind}")]
            for model in MODELS for kind in ("reference", "stopped")}
    rows = {model: {"model": model, "sigterm_sent": False} for model in MODELS}
    stopped = {m: _cli(argv[m, "stopped"], root / f"{m}-stopped.log", STEP_DELAY)
               for m in MODELS}

    def stop_each() -> None:
        # SIGTERM to the process group, as SLURM signals a job, two steps after the first
        # epoch's checkpoint is written: inside the second epoch
        waiting, seen = set(MODELS), {}
        while waiting and time.monotonic() < deadline:
            for model in sorted(waiting):
                out = root / f"{model}-stopped"
                if stopped[model].poll() is not None:
                    waiting.discard(model)
                elif model not in seen:
                    if (out / CHECKPOINT_FILE).exists() and len(_epochs(out)) >= 1:
                        seen[model] = time.monotonic()
                elif time.monotonic() - seen[model] >= 2 * STEP_DELAY:
                    os.killpg(stopped[model].pid, signal.SIGTERM)
                    rows[model]["sigterm_sent"] = True
                    waiting.discard(model)
            time.sleep(0.02)

    stopper = threading.Thread(target=stop_each, daemon=True)
    stopper.start()
    threads = torch.get_num_threads()
    try:
        for model in MODELS:
            log = root / f"{model}-reference.log"
            with open(log, "w") as out, contextlib.redirect_stderr(out):
                try:
                    rows[model]["reference_exit"] = calf_main(argv[model, "reference"])
                except SystemExit as done:  # bad input: argparse / CalfError exits
                    rows[model]["reference_exit"] = done.code
                except Exception as err:  # noqa: BLE001 - recorded
                    print(one_line(err), file=out)
                    rows[model]["reference_exit"] = None
            if rows[model]["reference_exit"] != 0:
                rows[model]["reference_error"] = _last_line(log)
    finally:
        torch.set_num_threads(threads)
    stopper.join(max(1.0, deadline - time.monotonic()))
    resumed = {}
    for model in MODELS:
        row = rows[model]
        row["stopped_exit"] = _wait(stopped[model], deadline)
        ckpt = load_checkpoint(root / f"{model}-stopped" / CHECKPOINT_FILE)
        row["checkpoint_after_stop"] = ckpt is not None
        if ckpt is not None:
            part = ckpt.get("partial")
            row["stopped_at"] = (f"epoch {part['epoch']}, step {part['steps']}" if part
                                 else f"after epoch {ckpt['epoch']}")
        if row["stopped_exit"] != 75:
            row["stopped_error"] = _last_line(root / f"{model}-stopped.log")
        resumed[model] = _cli(argv[model, "stopped"], root / f"{model}-resumed.log")
    for model in MODELS:
        row = rows[model]
        row["resumed_exit"] = _wait(resumed[model], deadline)
        if row["resumed_exit"] != 0:
            row["resumed_error"] = _last_line(root / f"{model}-resumed.log")
        compare(row, root / f"{model}-reference", root / f"{model}-stopped", device.type == "cpu")
    good = [rows[m]["ok"] for m in MODELS]
    status = "ok" if all(good) else ("partial" if any(good) else "error: no model resumed")
    if not all(good):
        bad = next(rows[m] for m in MODELS if not rows[m]["ok"])
        status += f" ({bad['model']}: {bad['problem']})"
    return {"status": status, "device": device.type,
            "settings": {"size": s.run_size, "width": s.run_width, "batch": s.run_batch,
                         "steps_per_epoch": s.run_steps, "epochs": s.run_epochs,
                         "step_delay_s": STEP_DELAY, "workers": 1,
                         "numerics": ("cpu fp32, 1 thread, deterministic algorithms"
                                      if device.type == "cpu"
                                      else "cuda bf16 autocast, --deterministic")},
            "bit_exact_expected": device.type == "cpu",
            "note": ("CPU: deterministic kernels, bit-exact required" if device.type == "cpu"
                     else "CUDA: --deterministic fixes cuDNN's algorithms only; other kernels "
                          "(e.g. bilinear upsampling's backward, atomic adds) are not "
                          "promised bit-exact"),
            "rows": [rows[m] for m in MODELS]}


def compare(row: dict[str, Any], reference: Path, resumed: Path, cpu: bool) -> None:
    """The resumed run's final model, run.json and losses against the uninterrupted run."""
    from calf.layout import RUN_FILE
    from calf.train.rundir import read_run_record

    ref_ckpt = load_checkpoint(reference / CHECKPOINT_FILE)
    ckpt = load_checkpoint(resumed / CHECKPOINT_FILE)
    record = read_run_record(resumed) if (resumed / RUN_FILE).exists() else {}
    row["status"] = record.get("status")
    row["attempts"] = record.get("attempts")
    row["epochs_completed"] = record.get("epochs_completed")
    row["losses"] = _epochs(resumed)
    row["reference_losses"] = _epochs(reference)
    row["losses_finite"] = bool(row["losses"]) and all(math.isfinite(v) for v in row["losses"])
    row["losses_equal"] = row["losses"] == row["reference_losses"]
    row["checkpoint"] = ckpt is not None
    cost = record.get("cost") or {}  # run.json's cost record, summed over the two attempts
    row["cost"] = {k: cost.get(k) for k in ("device_s", "train_s", "attempts",
                                             "peak_memory_bytes", "peak_memory_kind", "energy_j")}
    if ckpt is not None and ref_ckpt is not None:
        a, b = ckpt["model_state"], ref_ckpt["model_state"]
        same_keys = a.keys() == b.keys()
        diffs = [float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0
                 for k in b if k in a and a[k].is_floating_point()]
        row["bit_exact"] = same_keys and all(torch.equal(a[k], b[k]) for k in b)
        row["max_abs_diff"] = max(diffs, default=0.0)
    else:
        row["bit_exact"], row["max_abs_diff"] = None, None
    problems = [
        ("the stopped run did not exit 75", row.get("stopped_exit") != 75),
        ("no checkpoint after the stop", not row.get("checkpoint_after_stop")),
        ("the resume did not complete", row["resumed_exit"] != 0 or row["status"] != "complete"),
        ("not resumed (attempts != 2)", row["attempts"] != 2),
        ("the uninterrupted run failed", row["reference_exit"] != 0),
        ("non-finite or missing losses", not row["losses_finite"]),
        ("no final checkpoint", not row["checkpoint"]),
        ("run.json cost does not count both attempts", row["cost"]["attempts"] != 2),
        ("run.json cost has no peak memory", not row["cost"]["peak_memory_bytes"]),
        ("not bit-exact on the CPU", cpu and not row["bit_exact"]),
    ]
    row["problem"] = next((what for what, bad in problems if bad), None)
    row["ok"] = row["problem"] is None


def _cost_cell(cost: dict[str, Any]) -> str:
    if not cost:
        return ""
    peak, energy = cost.get("peak_memory_bytes"), cost.get("energy_j")
    peak_text = "" if peak is None else f"{peak / 2**20:,.0f} ({cost.get('peak_memory_kind')})"
    energy_text = "none" if energy is None else f"{energy:,.1f}"
    return f"{cost.get('device_s')}, {peak_text}, {energy_text}"


# --------------------------------------------------------------------- 4. the data loader


def granted_cpus() -> tuple[int, str]:
    """``cluster.gpu_job.cpus_per_task`` of config/paper.yaml: the CPUs of a training job."""
    import yaml

    path = ROOT / "config" / "paper.yaml"
    try:
        cpus = yaml.safe_load(path.read_text())["cluster"]["gpu_job"]["cpus_per_task"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as err:
        raise RuntimeError(f"{path}: no cluster.gpu_job.cpus_per_task ({one_line(err)})") from None
    if not isinstance(cpus, int) or cpus < 1:
        raise RuntimeError(f"{path}: cluster.gpu_job.cpus_per_task {cpus!r} is not an integer >= 1")
    return cpus, f"{path.relative_to(ROOT)}: cluster.gpu_job.cpus_per_task"


def section_loader(s: Settings, device: torch.device, root: Path,
                   best_rate: float | None) -> dict[str, Any]:
    """Random batches from a memory-mapped store through ``make_loader``, copied to the
    device as training does, with the process confined to the job's CPUs; the loader then
    takes ``default_workers`` of a CUDA job (CPUs - 1, at most 8).

    The training set lists the store's slices several times over, so that one epoch (one
    random permutation, as a real epoch of 16,000 batches) holds every timed batch and no
    epoch restart refills the workers' queues inside the timing."""
    import numpy as np

    from calf.store import SliceStore
    from calf.train.data import TrainingSlices

    cpus, source = granted_cpus()
    store, csv = slice_store(root, s.size, cases=s.loader_cases, depth=s.loader_depth)
    data = load_slices([str(store)], str(csv), "--train-slices")
    repeats = -(-(s.loader_batches + 1) * s.batch // len(data))
    listing = TrainingSlices([SliceStore(store)], [np.tile(data.row_of, repeats)])
    available = sorted(os.sched_getaffinity(0))
    used = available[:cpus]
    os.sched_setaffinity(0, used)
    try:
        workers = default_workers(torch.device("cuda"))  # what a CUDA job's loader takes
        sampler = EpochSampler(len(listing), s.batch, seed=0)
        pin = device.type == "cuda"
        # as training does: uint8 from the workers, float32 made on the device
        loader = make_loader(listing, sampler, workers, pin=pin, seed=0, device=device)
        sampler.set_epoch(1)
        slices, batches, start = 0, 0, None
        for x, y in loader:
            if start is None:  # the first batch holds the workers' start
                sync(device)
                start = time.perf_counter()
                continue
            slices += x.shape[0]
            batches += 1
            if batches >= s.loader_batches:
                break
        sync(device)
        rate = slices / (time.perf_counter() - start)
        del loader
    finally:
        os.sched_setaffinity(0, available)
    ratio = rate / best_rate if best_rate else None
    return {"status": "ok", "size": s.size, "batch": s.batch, "store_slices": len(data),
            "cpus_granted": cpus, "cpus_source": source, "cpus_used": len(used),
            "workers": workers, "pinned": pin, "batches_timed": batches,
            "slices_per_s": rate, "best_training_slices_per_s": best_rate,
            "x_training": ratio,
            "gpu_waits_for_data": None if ratio is None else ratio < 1,
            "goal_x": LOADER_GOAL_X,
            "goal_met": None if ratio is None else ratio >= LOADER_GOAL_X,
            "note": "the store is small and sits in the page cache; a full store read from "
                    "disk may be slower"}


# ------------------------------------------------------------------------------ report


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    from calf.train.rundir import git_commit

    info: dict[str, Any] = {
        "type": device.type,
        "name": torch.cuda.get_device_name() if device.type == "cuda" else cpu_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "cpus": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}",
                    bf16=torch.cuda.is_bf16_supported(),
                    cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                    matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    return info


def _f(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    env, sec = report["environment"], report["sections"]
    sizes = ("--quick (tiny sizes: the ratios to the authors mean nothing)" if report["quick"]
             else "full sizes")
    lines = [f"# GPU check: {env['name']} ({env['type']})", "",
             f"torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, Python "
             f"{env['python']}, {env['cpus']} CPUs; {report['created']}; {sizes}; "
             f"{report['elapsed_s']:.0f} s of a {report['budget_s']:.0f} s budget"
             + ("" if report["complete"] else "; INCOMPLETE")
             + (f"; cuDNN TF32 {'on' if env['cudnn_allow_tf32'] else 'off'} for fp32 "
                "convolutions (torch's default)" if "cudnn_allow_tf32" in env else ""), ""]
    t = sec.get("training")
    if t:
        st = t.get("settings", {})
        lines += [f"## 1. Training throughput: {t['status']}", "",
                  (f"Forward + CALF batch-scope loss (float32) + backward + Adam, "
                   f"{st.get('size')} x {st.get('size')}, width {st.get('width')}, batch "
                  f"{st.get('batch')}; {st.get('warmup_steps')} warm-up steps, median of "
                  f"{st.get('blocks')} blocks of {st.get('timed_steps')} steps."), "",
                  "| model | mode | slices/s | peak MiB | x authors (high..low rate) | status |",
                  "|---|---|---:|---:|---|---|"]
        for r in t.get("rows", []):
            x = (f"{r['x_authors_high']:.2f}..{r['x_authors_low']:.2f}"
                 if "x_authors_high" in r else "")
            lines.append(f"| {r['model']} | {r['label']} | {_f(r.get('slices_per_s'))} | "
                         f"{_f(r.get('peak_memory_mib'), 0)} | {x} | {r['status']} |")
        rates = ", ".join(f"{m} {a['low']:,.0f}..{a['high']:,.0f}"
                          for m, a in t.get("authors", {}).items())
        lines += ["", f"Authors' implied rates (slices/s, from their per-run times): {rates}."]
        g = t.get("goal")
        if g:
            verdict = {None: "not measured", True: "reached", False: "not reached"}[g["reached"]]
            got = (f": best {g['best_mode']} {g['slices_per_s']:,.1f} slices/s = "
                   f"{g['x_authors_high']:.2f}x" if g["slices_per_s"] else "")
            lines.append(f"Goal {g['what']} ({g['target_slices_per_s']:,.0f} slices/s): "
                         f"**{verdict}**{got}.")
        lines.append("")
    lo = sec.get("losses")
    if lo:
        lines += [f"## 2. Loss steps: {lo['status']}", ""]
        if lo.get("rows"):
            lines += [(f"Forward + backward, logits {' x '.join(map(str, lo['shape']))}, median "
                      f"of {lo['repeats']}."), "", "| loss | ms/step | x BCE |", "|---|---:|---:|"]
            lines += [f"| {r['label']} | {r['ms']:.3f} | {r['x_bce']:.2f} |" for r in lo["rows"]]
            lines += ["", "| imbalance statistic of the batch | ms | x pixels |", "|---|---:|---:|"]
            lines += [f"| {r['statistic']}"
                      + (" (device-to-host copy included)" if r["statistic"] == "contour" else "")
                      + f" | {r['ms']:.3f} | {r['x_pixels']:.2f} |" for r in lo["statistic"]]
            if lo.get("contour_status", "ok") != "ok":
                lines.append(f"| contour | | {lo['contour_status']} |")
        lines.append("")
    rs = sec.get("resume")
    if rs:
        lines += [f"## 3. `calf train`: SIGTERM and resume: {rs['status']}", ""]
        if rs.get("rows"):
            st = rs["settings"]
            lines += [(f"{st['size']} x {st['size']}, width {st['width']}, batch {st['batch']}, "
                      f"{st['epochs']} epochs x {st['steps_per_epoch']} steps, {st['numerics']}. "
                      f"{rs['note']}."), "",
                      ("| model | stopped run | stopped at | resumed run | losses | final model "
                      "vs uninterrupted | run.json cost: device s, peak MiB, energy J |"),
                      "|---|---|---|---|---|---|---|"]
            for r in rs["rows"]:
                same = ("bit-exact" if r.get("bit_exact") else
                        f"max abs diff {r['max_abs_diff']:.3g}" if r.get("max_abs_diff")
                        is not None else "not compared")
                losses = ", ".join(f"{v:.5g}" for v in r.get("losses", []))
                lines.append(
                    f"| {r['model']} | exit {r.get('stopped_exit')} | {r.get('stopped_at', '')} "
                    f"| exit {r.get('resumed_exit')}, {r.get('status')}, {r.get('attempts')} "
                    f"attempts | {losses} | {same} | {_cost_cell(r.get('cost') or {})} |")
        lines.append("")
    ld = sec.get("loader")
    if ld:
        lines += [f"## 4. Data loader: {ld['status']}", ""]
        if "slices_per_s" in ld:
            waits = {None: "", True: "yes", False: "no"}[ld["gpu_waits_for_data"]]
            goal = {None: "", True: "met", False: "not met"}[ld["goal_met"]]
            lines += [("| store | CPUs (granted / used) | workers | pinned | slices/s | best "
                      "training slices/s | loader / training | GPU waits for data | goal >= 2x |"),
                      "|---|---|---:|---|---:|---:|---:|---|---|",
                      (f"| {ld['store_slices']} slices, {ld['size']} x {ld['size']}, batch "
                      f"{ld['batch']} | {ld['cpus_granted']} / {ld['cpus_used']} | "
                      f"{ld['workers']} | {'yes' if ld['pinned'] else 'no'} | "
                      f"{ld['slices_per_s']:,.0f} | {_f(ld['best_training_slices_per_s'])} | "
                      f"{_f(ld['x_training'], 2)} | {waits} | {goal} |"), "",
                      f"CPUs from {ld['cpus_source']}; {ld['note']}."]
        lines.append("")
    return "\n".join(lines)


def write_report(out: Path, report: dict[str, Any]) -> str:
    """gpu.json and gpu.md, each replaced atomically; returns the Markdown."""
    from calf import _fs
    from calf._json import json_safe

    text = markdown(report)
    # the benchmark's own results folder: each run replaces both files
    _fs.write_json(out / "gpu.json", json_safe(report))
    _fs.write_text(out / "gpu.md", text)
    return text


def run_section(report: dict, name: str, out: Path, fn, *args) -> dict[str, Any]:
    """Run one section; its error (one line) is recorded and the run goes on."""
    start = time.perf_counter()
    print(f"# section {name} ...", file=sys.stderr, flush=True)
    try:
        result = fn(*args)
    except Exception as err:  # noqa: BLE001 - recorded, the others go on
        traceback.print_exc(file=sys.stderr)
        result = {"status": f"error: {one_line(err)}"}
    result["seconds"] = round(time.perf_counter() - start, 2)
    report["sections"][name] = result
    report["elapsed_s"] = time.monotonic() - report["_start"]
    write_report(out, {k: v for k, v in report.items() if not k.startswith("_")})
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"),
                        default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (64 x 64, width 1/8, batch 4, 2 timed steps)")
    parser.add_argument("--out", type=Path, default=HERE / "results",
                        help="directory for gpu.json and gpu.md (default benchmarks/results)")
    parser.add_argument("--budget-s", type=float, default=300.0,
                        help="seconds for all sections together (default 300)")
    parser.add_argument("--compile-one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not (math.isfinite(args.budget_s) and args.budget_s > 0):
        parser.error(f"--budget-s {args.budget_s}: expected a positive number of seconds")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available (torch "
                     f"{torch.__version__}, built for CUDA {torch.version.cuda})")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out}: exists and is not a directory")
    if args.compile_one is not None and args.compile_one not in MODELS:
        parser.error(f"--compile-one {args.compile_one}: expected one of {', '.join(MODELS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    s = Settings.quick() if args.quick else Settings()
    if args.compile_one:
        return compile_one(args.compile_one, s, device)
    budget = Budget(args.budget_s)
    report: dict[str, Any] = {
        "benchmark": "benchmarks/gpu.py", "created": datetime.now(UTC).isoformat(
            timespec="seconds"), "quick": args.quick, "budget_s": args.budget_s,
        "complete": False, "elapsed_s": 0.0, "environment": environment(device),
        "settings": asdict(s), "sections": {}, "_start": budget.start,
    }
    # what the later sections reserve while the earlier ones run (seconds, full sizes)
    reserve = {"losses": 10.0, "resume": 60.0, "loader": 30.0}
    with tempfile.TemporaryDirectory(prefix="calf-gpu-") as tmp:
        root = Path(tmp)
        training = run_section(report, "training", args.out, section_training, s, device,
                               budget, args.quick, sum(reserve.values()))
        run_section(report, "losses", args.out, section_losses, s, device)
        if budget.fits(reserve["resume"], reserve["loader"]):
            deadline = time.monotonic() + budget.left() - reserve["loader"]
            run_section(report, "resume", args.out, section_resume, s, device, root, deadline)
        else:
            report["sections"]["resume"] = {"status": "skipped: budget"}
        rates = [r["slices_per_s"] for r in training.get("rows", []) if r["status"] == "ok"]
        if budget.fits(5.0):
            run_section(report, "loader", args.out, section_loader, s, device, root,
                        max(rates, default=None))
        else:
            report["sections"]["loader"] = {"status": "skipped: budget"}
        if "rows" in training:
            seconds = training["seconds"]
            run_section(report, "training", args.out, compile_modes, training, args.quick, device,
                        budget, 5.0)
            report["sections"]["training"]["seconds"] += seconds
    report["complete"] = True
    report["elapsed_s"] = time.monotonic() - budget.start
    text = write_report(args.out, {k: v for k, v in report.items() if not k.startswith("_")})
    print(text)
    ran = [sec for sec in report["sections"].values()
           if sec["status"] == "ok" or sec["status"].startswith("partial")]
    return 0 if ran else 1


if __name__ == "__main__":
    sys.exit(main())
