"""Start-up cost of a workflow job: importing torch and MONAI, with and without hiding the
optional dependencies MONAI would load (calf._lazy), each in a fresh interpreter; then a
whole ``python -m calf train`` job on a tiny store (one step of one epoch), split by its
run.json ``timing``: process age at ``train()`` (interpreter, imports, argument parsing),
data (stores, training set, loss), model, steps, checkpoints, and the rest of the wall time
(writing the record, closing).

    .venv/bin/python benchmarks/startup.py [--repeats 5] [--train-repeats 3]

Prints medians and the ratio measured in the same run (no asserts: timings are noisy).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "python (empty)": "pass",
    "import calf, calf.cli": "import calf, calf.cli",
    "import torch": "import torch",
    "import torch, monai (plain)": "import torch, monai",
    "import torch, monai (calf._lazy)": (
        "import torch; from calf._lazy import import_monai; import_monai()"
    ),
}


def tiny_data(root: Path) -> tuple[Path, Path]:
    """A store of two 32 x 32 x 4 cases (one modality) and a training set of all slices."""
    import nibabel as nib
    import numpy as np

    from calf.datasets.base import Case
    from calf.preprocess import PreprocessSettings, preprocess
    from calf.split import read_indexes

    cases = []
    for c in range(2):
        folder = root / f"c{c}"
        folder.mkdir(parents=True)
        seg = np.zeros((32, 32, 4), np.uint8)
        seg[8 : 12 + 4 * c, 8:20, 1:] = 1
        image = np.random.default_rng(c).normal(100, 10, seg.shape).astype(np.float32)
        nib.save(nib.Nifti1Image(seg, np.eye(4)), folder / "seg.nii.gz")
        nib.save(nib.Nifti1Image(image + 80 * seg, np.eye(4)), folder / "t1.nii.gz")
        cases.append(Case("toy", f"c{c}", f"p{c}", {"t1": folder / "t1.nii.gz"},
                          folder / "seg.nii.gz"))
    store = root / "store"
    preprocess(cases, store, PreprocessSettings(size=32, mask_resize="nearest"),
               progress=False)
    index = read_indexes([store])
    train = root / "train.csv"
    index.assign(row=index.index)[["dataset", "case_id", "row"]].to_csv(train, index=False)
    return store, train


def train_job(store: Path, train: Path, out: Path) -> dict[str, float]:
    """Wall time of one fresh ``python -m calf train`` job and its run.json timing."""
    argv = [sys.executable, "-m", "calf", "train", "--store", str(store), "--train-slices",
            str(train), "--model", "unet", "--width", "0.0625", "--loss", "calf", "--epochs",
            "1", "--batch-size", "4", "--max-steps-per-epoch", "1", "--device", "cpu",
            "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, capture_output=True)
    wall = time.perf_counter() - start
    from calf.train.rundir import read_run_record

    timing = read_run_record(out)["timing"]
    parts = {"wall": wall, "start-up": timing["process_age_s"], "data": timing["data_s"],
             "model": timing["model_s"], "set-up": timing.get("setup_s", 0.0),
             "steps": timing["steps_s"],
             "checkpoints": timing["checkpoint_s"]}
    parts["other"] = wall - sum(v for k, v in parts.items() if k != "wall")
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-repeats", type=int, default=3,
                        help="fresh 'calf train' jobs timed (0: skip)")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.repeats):  # round-robin: load bursts hit every case alike
        for name, code in CASES.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"{'fresh interpreter':<36} {'median s':>9}")
    for name, seconds in medians.items():
        print(f"{name:<36} {seconds:>9.2f}")
    plain, lazy = medians["import torch, monai (plain)"], medians["import torch, monai (calf._lazy)"]
    print(f"\nMONAI's import with hidden optional deps: {lazy - medians['import torch']:.2f} s "
          f"vs {plain - medians['import torch']:.2f} s plain; whole start-up {lazy / plain:.2f}x")
    if args.train_repeats <= 0:
        return
    with tempfile.TemporaryDirectory(prefix="calf-bench-startup-") as tmp:
        store, train = tiny_data(Path(tmp) / "data")
        runs = [Path(tmp) / f"run{i}" for i in range(args.train_repeats)]
        jobs = [train_job(store, train, out) for out in runs]
    print(f"\n'python -m calf train', 1 step (U-Net width 0.0625, 32 x 32, CPU), "
          f"median of {len(jobs)} fresh jobs")
    print(f"{'part (run.json timing)':<36} {'median s':>9} {'share':>6}")
    wall = statistics.median(j["wall"] for j in jobs)
    for part in ("start-up", "data", "model", "steps", "checkpoints", "other", "wall"):
        seconds = statistics.median(j[part] for j in jobs)
        print(f"{part:<36} {seconds:>9.2f} {seconds / wall:>6.0%}")


if __name__ == "__main__":
    main()
