"""Training throughput per model, and the cost of the suite's per-epoch bookkeeping.

    .venv/bin/python benchmarks/train.py [--device auto|cpu|cuda] [--threads N] [--mlflow]
        [--demo-width 0.125] [--demo-size 64] [--demo-batch 32] [--demo-steps 8]
        [--full-size 256] [--full-batch 8] [--full-steps 2]
        [--overhead-model unet] [--epochs 3] [--steps-per-epoch 10] [--repeats 2]

1. Slices per second of one training step (forward, CALF batch-scope loss, backward, Adam)
   for unet, deeplabv3 and fpn at the demo width and size and at full width (256 x 256,
   a few steps), channels-last, on the CPU (and there also in the default layout, with
   the ratio) and, when CUDA is available, on the GPU with autocast (bf16, else fp16), as
   ``calf train`` runs them. Synthetic batches: discs of
   varied size, a third of the slices tumour-free.
2. Overhead of ``calf.train.train`` (per-step loss check and branch counts; after every
   epoch an atomic checkpoint, epochs.csv, run.json and the live MLflow call) over a bare
   loop of the same steps on the same slice store, sampler and DataLoader: the ratio of
   the median epoch wall times (epochs 2.., target <= 5 %), and of the whole runs, which
   add the one-off start (input hashing, git, MLflow run creation). With ``--mlflow`` a
   local ``mlflow server`` is started and the live logger talks to it; otherwise only the
   files are written (the logger is then a no-op). The table says which.

Prints tables; asserts nothing (timings on a shared machine are noisy: runs alternate
and the median is reported).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch

from calf.device import amp_dtype, determinism, resolve_device, seed_everything
from calf.losses import build_loss
from calf.models import build_model, count_parameters
from calf.train import TrainConfig, train
from calf.train.build import make_optimizer, speed_switches
from calf.train.data import EpochSampler, load_slices, make_loader

MODELS = ("unet", "deeplabv3", "fpn")


def train_step(model, loss_fn, optimizer, scaler, amp, device, x, y) -> None:
    """One optimisation step as calf train takes it (autocast forward, float32 loss)."""
    with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        logits = model(x)
    loss = loss_fn(logits, y)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


def synthetic_batch(batch: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    y = torch.zeros(batch, 1, size, size)
    for i in range(batch):
        if i % 3:
            r = float(torch.rand(1, generator=g)) * size / 6 + 1
            y[i, 0] = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= r * r).float()
    x = (torch.rand(batch, 1, size, size, generator=g) * 0.3 + 0.6 * y).clamp(0, 1)
    return x, y


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_throughput(name: str, width: float, size: int, batch: int, steps: int,
                    device: torch.device, amp: torch.dtype | None,
                    channels_last: bool = True) -> tuple[float, int]:
    """(slices per second over ``steps`` timed steps after one warm-up step, parameters);
    channels-last as ``calf train`` runs, or the default layout to compare."""
    torch.manual_seed(0)
    model = build_model(name, width=width).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    loss_fn = build_loss("calf")
    x, y = synthetic_batch(batch, size)
    x, y = x.to(device), y.to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def one() -> None:
        train_step(model, loss_fn, optimizer, scaler, amp, device, x, y)

    one()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        one()
    sync(device)
    return batch * steps / (time.perf_counter() - start), count_parameters(model)


# --------------------------------------------------------------------------- overhead


def make_store(root: Path, size: int, cases: int = 6, depth: int = 16) -> tuple[Path, Path]:
    """A slice store of synthetic discs (NIfTI -> ``calf.preprocess``) and its training CSV."""
    import nibabel as nib

    from calf.datasets.base import Case
    from calf.preprocess import PreprocessSettings, preprocess
    from calf.split import make_splits, read_indexes, training_set, write_training_set

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    found = []
    for c in range(cases):
        folder = root / f"c{c}"
        folder.mkdir(parents=True)
        seg = np.zeros((size, size, depth), np.uint8)
        image = rng.normal(100, 10, seg.shape).astype(np.float32)
        for z in range(depth):
            radius = (z * 7 + c * 3) % 11 * size / 64
            disc = (yy - size / 2) ** 2 + (xx - size / 2 + c) ** 2 <= radius**2
            seg[..., z][disc], image[..., z][disc] = 1, image[..., z][disc] + 80
        nib.save(nib.Nifti1Image(seg, np.eye(4)), folder / "seg.nii.gz")
        images = {}
        for modality, sign in (("t1", 1.0), ("t2", -1.0)):
            images[modality] = folder / f"{modality}.nii.gz"
            nib.save(nib.Nifti1Image(sign * image, np.eye(4)), images[modality])
        found.append(Case("bench", f"c{c}", f"p{c}", images, folder / "seg.nii.gz"))
    store = root / "store"
    preprocess(found, store, PreprocessSettings(size=size, mask_resize="nearest"), progress=False)
    index = read_indexes([store])
    csv = root / "train.csv"
    write_training_set(training_set(index, make_splits(index, folds=3, seed=1), 0), csv)
    return store, csv


def bare_loop(config: TrainConfig) -> list[float]:
    """The same steps as ``train(config)``, with the same kernels (deterministic ones on the
    CPU) but no bookkeeping: the start time, the end time of every epoch, the end time."""
    stamps = [time.perf_counter()]
    device = resolve_device(config.device)
    amp = amp_dtype(device, config.precision)
    data = load_slices(config.stores, config.train_slices, "--train-slices")
    sampler = EpochSampler(len(data), config.batch_size, config.seed, config.max_steps_per_epoch)
    # as calf train: uint8 batches made float32 on the device, the same Adam kernel, the
    # loss without the per-step target check (the store's masks were checked when written)
    loader = make_loader(data, sampler, config.workers or 0, pin=device.type == "cuda",
                         seed=config.seed, device=device)
    with determinism(device):
        seed_everything(config.seed)
        model = build_model(config.model, width=config.width).to(device).train()
        model = model.to(memory_format=torch.channels_last)
        speed, _ = speed_switches(device, config.deterministic, compile=False)
        optimizer = make_optimizer(model, config.lr, speed["optimizer_impl"])
        scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
        loss_fn = build_loss(config.loss, check_target=False)
        for epoch in range(1, config.epochs + 1):
            sampler.set_epoch(epoch)
            for x, y in loader:
                x = x.contiguous(memory_format=torch.channels_last)
                train_step(model, loss_fn, optimizer, scaler, amp, device, x, y)
            sync(device)
            stamps.append(time.perf_counter())
    return stamps + stamps[-1:]


def suite_run(config: TrainConfig) -> tuple[list[float], list[float]]:
    """``train(config)`` into a fresh directory: (the start time, the time of every epoch's
    log line (after its checkpoint, epochs.csv and run.json; the live MLflow call of an
    epoch follows its line) and the end time; the seconds of each epoch's steps alone, as
    epochs.csv records them)."""
    shutil.rmtree(config.out, ignore_errors=True)
    stamps = [time.perf_counter()]

    def log(line: str) -> None:
        if line.startswith("epoch "):
            stamps.append(time.perf_counter())

    result = train(config, log=log)
    if result.status != "complete":
        raise RuntimeError(f"training ended {result.status}")
    stamps.append(time.perf_counter())
    from calf.train.rundir import read_epochs

    return stamps, read_epochs(config.out, columns=("seconds",))["seconds"].tolist()


def epoch_seconds(stamps: list[float]) -> list[float]:
    """Seconds of epochs 2.. (the first holds the warm-up and the start-up)."""
    ends = stamps[1:-1]
    return [b - a for a, b in zip(ends, ends[1:])]


def start_mlflow(root: Path, timeout: float = 90) -> tuple[subprocess.Popen, str] | None:
    """A local ``mlflow server`` (SQLite store) on a free port, once /health answers."""
    mlflow = Path(sys.executable).parent / "mlflow"
    if not mlflow.exists():
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(root / "mlflow.log", "wb")
    proc = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--default-artifact-root", str(root / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=1) as answer:
                if answer.status == 200:
                    return proc, uri
        except OSError:
            time.sleep(0.5)
    stop_mlflow(proc)
    return None


def stop_mlflow(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: the CPU, and CUDA too when available")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--demo-width", type=float, default=0.125)
    parser.add_argument("--demo-size", type=int, default=64)
    parser.add_argument("--demo-batch", type=int, default=32)
    parser.add_argument("--demo-steps", type=int, default=8)
    parser.add_argument("--full-size", type=int, default=256)
    parser.add_argument("--full-batch", type=int, default=8)
    parser.add_argument("--full-steps", type=int, default=2)
    parser.add_argument("--skip-full", action="store_true", help="no full-width rows")
    parser.add_argument("--overhead-model", default="unet")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--mlflow", action="store_true",
                        help="start a local mlflow server for the live logger")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = {"auto": ["cpu"] + (["cuda"] if torch.cuda.is_available() else []),
               "cpu": ["cpu"], "cuda": ["cuda"]}[args.device]

    print(f"# torch {torch.__version__}, CPU threads {torch.get_num_threads()}, "
          f"CUDA: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
    print(f"\n{'model':<10} {'setting':<22} {'device':<10} {'params':>11} {'slices/s':>10}")
    settings = [("demo", args.demo_width, args.demo_size, args.demo_batch, args.demo_steps)]
    if not args.skip_full:
        settings.append(("full", 1.0, args.full_size, args.full_batch, args.full_steps))
    for kind in devices:
        device = resolve_device(kind)
        amp = amp_dtype(device)  # the suite's bf16 autocast on CUDA
        label = kind if amp is None else f"{kind} {str(amp).split('.')[-1][:4]}"
        for tag, width, size, batch, steps in settings:
            for name in MODELS:
                speed, n = step_throughput(name, width, size, batch, steps, device, amp)
                setting = f"{tag} w{width:g} {size}px b{batch}"
                line = f"{name:<10} {setting:<22} {label:<10} {n:>11,} {speed:>10.1f}"
                if kind == "cpu":  # the layout calf train chose for the CPU, against the default
                    plain, _ = step_throughput(name, width, size, batch, steps, device, amp,
                                               channels_last=False)
                    line += f"   default layout {plain:.1f}: channels-last {speed / plain:.2f}x"
                print(line, flush=True)

    root = Path(tempfile.mkdtemp(prefix="calf-bench-train-"))
    server = None
    try:
        # two thirds of the slices train (3 folds): enough for the asked steps per epoch
        per_case = 16 * 2
        cases = -(-args.steps_per_epoch * args.demo_batch * 3 // (2 * per_case)) + 1
        store, csv = make_store(root / "data", args.demo_size, cases=cases)
        if args.mlflow:
            server = start_mlflow(root)
            if server is not None:
                os.environ["MLFLOW_TRACKING_URI"] = server[1]
                os.environ["MLFLOW_EXPERIMENT_NAME"] = "calf-bench-train"
        if server is not None:
            tracking = f"live MLflow to {server[1]}"
        else:
            tracking = "files only (no MLflow server" + (
                ": it did not start)" if args.mlflow else ")")
        for kind in devices:
            config = TrainConfig(
                stores=(str(store),), train_slices=str(csv), out=str(root / "run"),
                model=args.overhead_model, loss="calf", width=args.demo_width,
                epochs=args.epochs, batch_size=args.demo_batch,
                max_steps_per_epoch=args.steps_per_epoch, device=kind, workers=0,
            )
            bare, suite = [], []
            for _ in range(args.repeats):  # alternate, so load bursts hit both alike
                bare.append(bare_loop(config))
                suite.append(suite_run(config))
            steps = EpochSampler(len(load_slices(config.stores, config.train_slices, "-")),
                                 args.demo_batch, config.seed, args.steps_per_epoch)
            print(f"\noverhead of calf.train over a bare loop: {args.overhead_model} "
                  f"w{args.demo_width:g} {args.demo_size}px, batch {args.demo_batch}, "
                  f"{args.epochs} epochs x {steps.batches_per_epoch} steps, {kind}, "
                  f"{args.repeats} runs each; tracking: {tracking}")
            print(f"{'':<30} {'bare s':>8} {'suite s':>8} {'extra s':>8} {'overhead':>9}")
            # inside the suite's runs: each epoch's wall time (log line to log line) less the
            # time of its steps (epochs.csv) is what it spent on bookkeeping
            inside = [(wall - steps, steps) for stamps, seconds in suite
                      for wall, steps in zip(epoch_seconds(stamps), seconds[1:])]
            rows = [
                ("per epoch (epochs 2.., median)",
                 statistics.median(t for s in bare for t in epoch_seconds(s)),
                 statistics.median(t for s, _ in suite for t in epoch_seconds(s))),
                ("whole run (median)", statistics.median(s[-1] - s[0] for s in bare),
                 statistics.median(s[-1] - s[0] for s, _ in suite)),
            ]
            for label, b, s in rows:
                print(f"{label:<30} {b:>8.2f} {s:>8.2f} {s - b:>8.2f} {100 * (s / b - 1):>8.1f}%")
            book = statistics.median(i for i, _ in inside)
            steps_s = statistics.median(s for _, s in inside)
            print(f"{'bookkeeping inside the suite':<30} {steps_s:>8.2f} {steps_s + book:>8.2f} "
                  f"{book:>8.3f} {100 * book / steps_s:>8.1f}%   (steps alone vs whole epoch)")
            print("target: per-epoch overhead <= 5%; the whole run adds the one-off start "
                  "(input hashing, git, MLflow run creation)")
    finally:
        if server is not None:
            stop_mlflow(server[0])
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
