"""Per-case and per-slice metrics of a binary prediction.

``case_metrics`` scores one volume:

- global overlap: Dice (``compute_dice``), IoU (``compute_iou``), sensitivity,
  specificity and precision (``get_confusion_matrix`` + ``compute_confusion_matrix_metric``),
  all MONAI;
- boundary: HD95 in mm, by MONAI's ``compute_hausdorff_distance`` (95th percentile of each
  direction's surface distances, the larger of the two) or, under the ``brats`` preset, as
  the official BraTS package computes it (``calf.evaluate.lesions.brats_hd95``); NSD at a
  tolerance in mm (MONAI's ``compute_surface_dice``, default 1 mm);
- per lesion: the BraTS 2023 lesion-wise Dice and HD95 and the instance-wise metrics of
  ``brats-evaluation`` (``calf.evaluate.lesions``).

Where an empty mask leaves a metric undefined the value comes from the conventions preset
(``EmptyConventions``). ``grid_columns`` describes the grid a case was scored on (its
tumour volume in ml, shape and spacing: the per-case CSV's ``GRID_COLUMNS``, from which
``calf.analysis`` sizes tumours and re-fills undefined cells under another preset;
``parse_grid`` reads them back). ``slice_counts`` gives TP, FP, FN and TN per slice, from which
``calf.evaluate.pooled.batch_pooled_dice`` computes the authors' batch-pooled Dice.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from calf.evaluate.conventions import EmptyConventions
from calf.evaluate.lesions import HD_PERCENTILE, LesionSettings

if TYPE_CHECKING:
    import numpy as np
    import torch

GLOBAL_METRICS = ("dice", "iou", "hd95", "nsd", "sensitivity", "specificity", "precision")
LESION_METRICS = ("lesion_dice", "lesion_hd95", "sq_dsc", "pq_dsc", "sq_hd95")
METRICS = GLOBAL_METRICS + LESION_METRICS
# metrics where a smaller value is better (distances in mm)
LOWER_IS_BETTER = frozenset({"hd95", "lesion_hd95", "sq_hd95"})
COUNT_COLUMNS = ("tumour_voxels", "predicted_voxels", "lesions_tp", "lesions_fp", "lesions_fn")
# the scored grid: tumour volume (ml), shape (voxels) and spacing (mm), e.g. "240x240x155"
GRID_COLUMNS = ("tumour_ml", "grid_shape", "spacing_mm")
GRID_SEPARATOR = "x"
MM3_PER_ML = 1000.0


@dataclass(frozen=True)
class MetricSettings:
    """How the boundary and lesion metrics are computed (the metrics JSON records it)."""

    nsd_tolerance_mm: float = 1.0
    lesions: LesionSettings = field(default_factory=LesionSettings)
    lesion_metrics: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.nsd_tolerance_mm) and self.nsd_tolerance_mm > 0):
            raise ValueError(
                f"nsd tolerance must be a positive number of mm, got {self.nsd_tolerance_mm}"
            )


def hd95_definition(conventions: EmptyConventions) -> str:
    """``brats`` under the brats preset (the official package's HD95), else ``monai``."""
    return "brats" if conventions.preset == "brats" else "monai"


def metric_settings(
    conventions: EmptyConventions = EmptyConventions(), settings: MetricSettings = MetricSettings()
) -> dict[str, Any]:
    """The metric definitions and their settings, for the companion JSON."""
    import monai

    from calf.evaluate.lesions import lesion_settings

    hd95 = (
        "calf.evaluate.lesions.brats_hd95: the official brats-evaluation / panoptica HD95"
        if hd95_definition(conventions) == "brats"
        else "monai.metrics.compute_hausdorff_distance(include_background=True, "
        f"distance_metric='euclidean', percentile={HD_PERCENTILE:g}, directed=False, spacing)"
    )
    return {
        "library": f"monai {monai.__version__}",
        "prediction": "logit > 0",
        "dice": "monai.metrics.compute_dice(include_background=True, ignore_empty=False)",
        "iou": "monai.metrics.compute_iou(include_background=True, ignore_empty=False)",
        "hd95": hd95,
        "hd95_definition": hd95_definition(conventions),
        "nsd": "monai.metrics.compute_surface_dice(class_thresholds=[tolerance], "
        "distance_metric='euclidean', spacing)",
        "nsd_tolerance_mm": settings.nsd_tolerance_mm,
        "sensitivity, specificity, precision": "monai.metrics.get_confusion_matrix + "
        "compute_confusion_matrix_metric over the whole volume (counts exact)",
        "lesion_metrics": lesion_settings(settings.lesions) if settings.lesion_metrics else None,
        "instance_wise_edge_cases": "no instance on either side: SQ and PQ Dice "
        "dice_both_empty, SQ HD95 hd95_both_empty; no match: SQ HD95 the preset's "
        "one-empty HD95 on the case's grid (panoptica: inf)",
    }


def grid_columns(
    shape: Sequence[int], spacing: Sequence[float] | None, tumour_voxels: int
) -> dict[str, float | str]:
    """The ``GRID_COLUMNS`` of a case scored on a ``shape`` grid with ``spacing`` mm per voxel.

    ``tumour_ml`` = tumour voxels x voxel volume (mm^3) / 1000, from the exact spacing;
    ``grid_shape`` the voxel counts joined by ``x`` (``"240x240x155"``), ``spacing_mm`` each
    spacing written with ``{:g}`` in the same axis order (``"1x1x1"``). Without a spacing
    the volume is unknown: ``tumour_ml`` NaN, ``spacing_mm`` empty.
    """
    step = _spacing(spacing, len(shape))
    dims = GRID_SEPARATOR.join(str(int(n)) for n in shape)
    if step is None:
        return {"tumour_ml": math.nan, "grid_shape": dims, "spacing_mm": ""}
    return {
        "tumour_ml": float(tumour_voxels) * math.prod(step) / MM3_PER_ML,
        "grid_shape": dims,
        "spacing_mm": GRID_SEPARATOR.join(f"{s:g}" for s in step),
    }


def parse_grid(
    grid_shape: Any, spacing_mm: Any
) -> tuple[tuple[int, ...], tuple[float, ...]] | None:
    """The shape and spacing that ``grid_columns`` wrote, or None when either cell is
    missing (an older CSV: empty or NaN) or not of that form (one positive number per axis)."""
    if not (isinstance(grid_shape, str) and isinstance(spacing_mm, str)):
        return None
    try:
        shape = tuple(int(n) for n in grid_shape.split(GRID_SEPARATOR))
        step = tuple(float(s) for s in spacing_mm.split(GRID_SEPARATOR))
    except ValueError:
        return None
    valid = len(shape) == len(step) and all(n > 0 for n in shape) and all(
        math.isfinite(s) and s > 0 for s in step)
    return (shape, step) if valid else None


def _volume(x: Any, name: str) -> torch.Tensor:
    """A binary array as a float64 ``(1, 1, *spatial)`` tensor (exact voxel sums)."""
    import numpy as np
    import torch

    arr = np.asarray(x)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a 3-D binary array, got shape {arr.shape}")
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

    MONAI counts in float32 (exact up to 2**24 voxels), so the volume is counted slice
    by slice along its last axis and the counts are summed in float64.
    """
    import torch
    from monai.metrics import get_confusion_matrix

    p, t = p[0].movedim(-1, 0), t[0].movedim(-1, 0)  # (1, 1, X, Y, Z) -> (Z, 1, X, Y)
    cm = get_confusion_matrix(p, t, include_background=True)
    return cm.to(torch.float64).sum(dim=0, keepdim=True)


def case_metrics(
    pred: Any,
    truth: Any,
    conventions: EmptyConventions = EmptyConventions(),
    spacing: Sequence[float] | None = None,
    settings: MetricSettings = MetricSettings(),
) -> dict[str, float]:
    """Every metric of ``METRICS`` for one binary volume, plus the ``COUNT_COLUMNS``.

    ``pred`` and ``truth`` are 3-D arrays of one shape (nonzero = tumour).
    ``spacing`` (one positive number per axis, mm) puts HD95 and NSD in mm; without it a
    voxel step is 1. ``settings.lesion_metrics`` False leaves the lesion metrics NaN.
    """
    import numpy as np
    from monai.metrics import compute_confusion_matrix_metric, compute_dice, compute_iou

    p, t = _volume(pred, "pred"), _volume(truth, "truth")
    if p.shape != t.shape:
        raise ValueError(
            f"pred {tuple(p.shape[2:])} and truth {tuple(t.shape[2:])} differ in shape"
        )
    shape = tuple(p.shape[2:])
    step = _spacing(spacing, len(shape))
    cm = _confusion(p, t)
    tp, fp, tn, fn = (int(v) for v in cm.flatten().tolist())
    truth_empty, pred_empty = tp + fn == 0, tp + fp == 0
    c = conventions

    def confusion(name: str) -> float:
        return float(compute_confusion_matrix_metric(name, cm).item())

    if truth_empty and pred_empty:
        dice, iou = c.dice_both_empty, c.iou_both_empty
        hd95, nsd = c.hd95_both_empty, c.nsd_both_empty
        sensitivity = c.sensitivity_both_empty
    else:
        dice = float(compute_dice(p, t, include_background=True, ignore_empty=False).item())
        iou = float(compute_iou(p, t, include_background=True, ignore_empty=False).item())
        sensitivity = c.sensitivity_empty_truth if truth_empty else confusion("sensitivity")
        if truth_empty or pred_empty:
            hd95, nsd = c.one_empty_hd95(shape, step), c.nsd_one_empty
        else:
            hd95 = _hd95(p, t, step, hd95_definition(c))
            nsd = _nsd(p, t, step, settings.nsd_tolerance_mm)
    out = {
        "dice": dice,
        "iou": iou,
        "hd95": hd95,
        "nsd": nsd,
        "sensitivity": sensitivity,
        "specificity": c.specificity_empty_background if tn + fp == 0 else confusion("specificity"),
        "precision": c.precision_empty_prediction if pred_empty else confusion("precision"),
    }
    out |= _lesion_metrics(np.asarray(pred) != 0, np.asarray(truth) != 0, step, settings, c)
    return out | {"tumour_voxels": tp + fn, "predicted_voxels": tp + fp}


def _hd95(p: torch.Tensor, t: torch.Tensor, step: list[float] | None, definition: str) -> float:
    """HD95 of two non-empty masks, by MONAI's or by the official BraTS definition."""
    if definition == "brats":
        from calf.evaluate.lesions import brats_hd95

        spacing = step or [1.0] * (p.ndim - 2)
        return float(brats_hd95(p[0, 0].numpy() > 0, t[0, 0].numpy() > 0, spacing))
    from monai.metrics import compute_hausdorff_distance

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
    return float(hd.item())


def _nsd(p: torch.Tensor, t: torch.Tensor, step: list[float] | None, tolerance: float) -> float:
    """MONAI's normalised surface distance of two non-empty masks at ``tolerance`` mm."""
    from calf.evaluate.lesions import nsd

    return nsd(p[0, 0].numpy() > 0, t[0, 0].numpy() > 0, step or [1.0] * 3, tolerance)


def _lesion_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    step: list[float] | None,
    settings: MetricSettings,
    conventions: EmptyConventions,
) -> dict[str, float]:
    """The BraTS 2023 lesion-wise and the instance-wise metrics of a 3-D volume; NaN for
    all of them when switched off.

    The instance-wise edge cases go through the preset as the global ones do: without any
    instance on either side, SQ and PQ Dice are ``dice_both_empty`` and SQ HD95
    ``hd95_both_empty``; with instances but no match (panoptica's HD95 inf), SQ HD95 is
    the preset's one-empty HD95 on this grid. No value is ever infinite.
    """
    from calf.evaluate.lesions import instance_wise, lesion_wise

    counts = ("lesions_tp", "lesions_fp", "lesions_fn")
    if not settings.lesion_metrics:
        return {k: math.nan for k in LESION_METRICS} | {k: math.nan for k in counts}
    spacing = step or [1.0] * 3
    lesions = lesion_wise(pred, truth, spacing, settings.lesions)
    inst = {k: float(v) for k, v in instance_wise(pred, truth, spacing).items()}
    if inst["instances_truth"] == 0 and inst["instances_pred"] == 0:
        inst |= {"sq_dsc": conventions.dice_both_empty, "pq_dsc": conventions.dice_both_empty,
                 "sq_hd95": conventions.hd95_both_empty}
    elif math.isinf(inst["sq_hd95"]):
        inst["sq_hd95"] = conventions.one_empty_hd95(pred.shape, spacing)
    return {
        "lesion_dice": float(lesions["lesion_dice"]),
        "lesion_hd95": float(lesions["lesion_hd95"]),
        **{k: inst[k] for k in ("sq_dsc", "pq_dsc", "sq_hd95")},
        **{k: int(lesions[k]) for k in counts},
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
