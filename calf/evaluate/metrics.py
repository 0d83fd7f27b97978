"""Per-case and per-slice metrics of a binary prediction, computed with MONAI.

``case_metrics`` scores one volume (a case's slices, predicted one by one and stacked):
Dice (``compute_dice``), IoU (``compute_iou``), HD95 (``compute_hausdorff_distance``,
95th percentile of the symmetric surface distances, euclidean), and sensitivity,
specificity and precision (``get_confusion_matrix`` + ``compute_confusion_matrix_metric``).
Where an empty mask leaves a metric undefined the value comes from ``EmptyConventions``.

``slice_counts`` gives TP, FP, FN and TN per slice, from which
``calf.evaluate.pooled.batch_pooled_dice`` computes the authors' batch-pooled Dice.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from calf.evaluate.conventions import EmptyConventions

if TYPE_CHECKING:
    import numpy as np
    import torch

METRICS = ("dice", "iou", "hd95", "sensitivity", "specificity", "precision")
HD_PERCENTILE = 95.0


def metric_settings() -> dict[str, Any]:
    """The MONAI calls and their settings, for the companion JSON."""
    import monai

    return {
        "library": f"monai {monai.__version__}",
        "prediction": "logit > 0",
        "volume": "a case's axial slices at training size, predicted one by one, "
        "stacked in slice order",
        "dice": "monai.metrics.compute_dice(include_background=True, ignore_empty=False)",
        "iou": "monai.metrics.compute_iou(include_background=True, ignore_empty=False)",
        "hd95": "monai.metrics.compute_hausdorff_distance(include_background=True, "
        f"distance_metric='euclidean', percentile={HD_PERCENTILE:g}, directed=False)",
        "sensitivity, specificity, precision": "monai.metrics.get_confusion_matrix + "
        "compute_confusion_matrix_metric over the whole volume (counts exact)",
    }


def _volume(x: Any, name: str) -> torch.Tensor:
    """A binary array as a float64 ``(1, 1, *spatial)`` tensor (exact voxel sums)."""
    import numpy as np
    import torch

    arr = np.asarray(x)
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name} must be a 2-D or 3-D binary array, got shape {arr.shape}")
    return torch.from_numpy(arr != 0).to(torch.float64)[None, None]


def _spacing(spacing: Sequence[float] | None, ndim: int) -> list[float] | None:
    if spacing is None:
        return None
    values = [float(s) for s in spacing]
    if len(values) != ndim or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing must be {ndim} positive numbers, got {list(spacing)}")
    return values


def _confusion(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """MONAI's confusion matrix ``(1, 1, 4)``: tp, fp, tn, fn, exact in float64.

    MONAI counts in float32 (exact up to 2**24 voxels), so a 3-D volume is counted slice
    by slice along its last axis and the counts are summed in float64.
    """
    import torch
    from monai.metrics import get_confusion_matrix

    if p.ndim == 5:  # (1, 1, X, Y, Z) -> (Z, 1, X, Y)
        p, t = p[0].movedim(-1, 0), t[0].movedim(-1, 0)
    cm = get_confusion_matrix(p, t, include_background=True)
    return cm.to(torch.float64).sum(dim=0, keepdim=True)


def case_metrics(
    pred: Any,
    truth: Any,
    conventions: EmptyConventions = EmptyConventions(),
    spacing: Sequence[float] | None = None,
) -> dict[str, float]:
    """Dice, IoU, HD95, sensitivity, specificity and precision of one binary volume.

    ``pred`` and ``truth`` are arrays of one shape (2-D or 3-D; nonzero = tumour).
    ``spacing`` (one positive number per axis) puts HD95 in those units; without it a
    voxel step is 1. Also returns ``tumour_voxels`` and ``predicted_voxels``.
    """
    from monai.metrics import (
        compute_confusion_matrix_metric,
        compute_dice,
        compute_hausdorff_distance,
        compute_iou,
    )

    p, t = _volume(pred, "pred"), _volume(truth, "truth")
    if p.shape != t.shape:
        raise ValueError(
            f"pred {tuple(p.shape[2:])} and truth {tuple(t.shape[2:])} differ in shape"
        )
    step = _spacing(spacing, p.ndim - 2)
    cm = _confusion(p, t)
    tp, fp, tn, fn = (int(v) for v in cm.flatten().tolist())
    truth_empty, pred_empty = tp + fn == 0, tp + fp == 0
    c = conventions

    def confusion(name: str) -> float:
        return float(compute_confusion_matrix_metric(name, cm).item())

    if truth_empty and pred_empty:
        dice, iou, hd95 = c.dice_both_empty, c.iou_both_empty, c.hd95_both_empty
    else:
        dice = float(compute_dice(p, t, include_background=True, ignore_empty=False).item())
        iou = float(compute_iou(p, t, include_background=True, ignore_empty=False).item())
        if truth_empty or pred_empty:
            hd95 = c.hd95_one_empty
        else:
            with warnings.catch_warnings():  # MONAI's own deprecation notice, not ours
                warnings.filterwarnings("ignore", message=".*always_return_as_numpy")
                hd = compute_hausdorff_distance(
                    p,
                    t,
                    include_background=True,
                    distance_metric="euclidean",
                    percentile=HD_PERCENTILE,
                    directed=False,
                    spacing=step,
                )
            hd95 = float(hd.item())
    return {
        "dice": dice,
        "iou": iou,
        "hd95": hd95,
        "sensitivity": c.sensitivity_empty_truth if truth_empty else confusion("sensitivity"),
        "specificity": c.specificity_empty_background if tn + fp == 0 else confusion("specificity"),
        "precision": c.precision_empty_prediction if pred_empty else confusion("precision"),
        "tumour_voxels": tp + fn,
        "predicted_voxels": tp + fp,
    }


def slice_counts(pred: Any, truth: Any) -> np.ndarray:
    """TP, FP, FN, TN of each slice of ``(n, H, W)`` binary stacks: int64 ``(n, 4)``."""
    import numpy as np
    import torch
    from monai.metrics import get_confusion_matrix

    p, t = np.asarray(pred) != 0, np.asarray(truth) != 0
    if p.ndim != 3 or p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and truth {t.shape} must be equal (n, H, W) stacks")
    cm = get_confusion_matrix(
        torch.from_numpy(p).to(torch.float64)[:, None],
        torch.from_numpy(t).to(torch.float64)[:, None],
        include_background=True,
    )[
        :, 0
    ]  # (n, 4): tp, fp, tn, fn
    return cm[:, [0, 1, 3, 2]].round().to(torch.int64).numpy()
