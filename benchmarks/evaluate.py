"""Evaluation benchmark: what scoring a case on its native grid costs, per metric family.

One BraTS-sized case (240 x 240 x 155 at 1 mm, a tumour of two ellipsoids plus a small
satellite) and a prediction of it with a shifted boundary and one false positive are made
in memory; the prediction is also taken to the 256 x 256 training grid and back as the
workflow does it. Timed in one run, best of ``--repeats`` (no asserts; ratios against the
first line, the training-grid scoring of the global metrics, which is what
``calf evaluate`` computed before native evaluation):

1. global metrics (Dice, IoU, HD95 by MONAI, NSD, confusion) on the training grid;
2. the same on the native grid, ``to_native`` (logits resampled) included;
3. the same under the ``brats`` preset (the official package's HD95);
4. the lesion-wise and instance-wise metrics added (native grid).

Run: ``.venv/bin/python benchmarks/evaluate.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from calf.evaluate.conventions import EmptyConventions
from calf.evaluate.metrics import MetricSettings, case_metrics
from calf.evaluate.native import to_native
from calf.preprocess import resize_slices
from calf.store import CaseGeometry

SHAPE, SIZE = (240, 240, 155), 256


def _ellipsoid(grid, centre, radii) -> np.ndarray:
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1


def make_case() -> tuple[np.ndarray, np.ndarray]:
    """(truth, prediction) on the native grid: bool (240, 240, 155)."""
    grid = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    truth = _ellipsoid(grid, (120, 110, 80), (30, 25, 20)) | _ellipsoid(grid, (95, 130, 70), (12, 10, 9))
    truth |= _ellipsoid(grid, (160, 80, 60), (4, 4, 3))  # a satellite lesion
    pred = _ellipsoid(grid, (122, 111, 81), (31, 24, 21)) | _ellipsoid(grid, (60, 60, 40), (5, 5, 4))
    return truth, pred


def training_logits(pred: np.ndarray) -> torch.Tensor:
    """The prediction as training-grid logits (Z, S, S), as the network would give them."""
    slices = torch.from_numpy(np.moveaxis(pred, -1, 0).astype(np.float32) * 20 - 10)
    return resize_slices(slices, SIZE, "bilinear")


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    truth, pred = make_case()
    logits = training_logits(pred)
    truth_training = resize_slices(
        torch.from_numpy(np.moveaxis(truth, -1, 0).astype(np.float32)), SIZE, "bilinear"
    ).numpy() > 0
    geometry = CaseGeometry(
        mask=Path("case.nii.gz"), shape=SHAPE, spacing=(1.0, 1.0, 1.0),
        affine=tuple(map(tuple, np.eye(4))), orientation=tuple((i, 1) for i in range(3)),
        canonical_shape=SHAPE, label_map="brats2023", region_labels=(1, 2, 3),
    )
    step = geometry.training_spacing(SIZE)
    suite, brats = EmptyConventions(), EmptyConventions.named("brats")
    globals_only = MetricSettings(lesion_metrics=False)
    case_metrics(truth[:8, :8, :8], truth[:8, :8, :8])  # imports MONAI outside the timing

    def training():
        p = np.moveaxis(logits.numpy() > 0, 0, -1)
        return case_metrics(p, np.moveaxis(truth_training, 0, -1), suite, step, globals_only)

    def native(conv=suite, settings=globals_only):
        return case_metrics(to_native(logits, geometry), truth, conv, geometry.spacing, settings)

    rows = [
        ("global metrics, training grid (baseline)", training),
        ("global metrics, native grid (to_native included)", native),
        ("global metrics, native grid, brats preset", lambda: native(brats)),
        ("+ lesion-wise and instance-wise, native grid", lambda: native(suite, MetricSettings())),
    ]
    print(f"one case of {SHAPE[0]} x {SHAPE[1]} x {SHAPE[2]} voxels at 1 mm, training grid "
          f"{SIZE} x {SIZE}; best of {args.repeats}; torch threads {torch.get_num_threads()}")
    print(f"{'':52s} {'seconds':>8s} {'ratio':>7s}")
    base = None
    for name, fn in rows:
        seconds = best(fn, args.repeats)
        base = base or seconds
        print(f"{name:52s} {seconds:8.2f} {seconds / base:6.2f}x")
    m = native(suite, MetricSettings())
    print("native metrics of the case: " + ", ".join(
        f"{k} {m[k]:.3f}" for k in ("dice", "hd95", "nsd", "lesion_dice", "lesion_hd95", "sq_dsc")))


if __name__ == "__main__":
    main()
