"""The official BraTS metrics: HD95 and NSD as ``brats-evaluation`` computes them, the
BraTS 2023 lesion-wise Dice and HD95, and ``brats-evaluation``'s instance-wise metrics.

Every function takes binary 3-D arrays ``pred`` and ``truth`` of one shape (nonzero =
tumour) and ``spacing``, three positive floats: mm per voxel along the array axes.
Distances are in mm, volumes in mm^3.

Two generations of official code, read for these definitions:

- ``brats-evaluation`` 0.0.10 on ``panoptica`` 2.1.7 (PyPI). A *surface voxel* is a mask
  voxel with a face neighbour outside the mask (``mask ^ binary_erosion(mask)`` with the
  6-connected cross; outside the array counts as background); a surface distance is the
  Euclidean distance in mm from a surface voxel's centre to the nearest surface voxel
  centre of the other mask (``panoptica.metrics._surface_distances``). HD95 is the 95th
  percentile (numpy's linear interpolation) of the two directions' distances *pooled*
  into one array (``_hd95_from_pair``), not the larger of two directional percentiles as
  MONAI's ``compute_hausdorff_distance`` takes it. NSD at tolerance ``tau`` is the *mean*
  of the two directional fractions of surface voxels within ``tau``
  (``_nsd_from_pair``), where MONAI's ``compute_surface_dice`` pools the counts.
  Instances are 26-connected components (``cc3d``), matched one-to-one by maximum
  bipartite matching (``scipy.optimize.linear_sum_assignment``) on Dice, pairs with Dice
  >= 1e-6 only (``config_gli.yaml``: ``MaxBipartiteMatching(DSC, 0.000001)``).
  Units as the package applies them: its *global* ``global_bin_hd95`` and
  ``global_bin_nsd`` are computed without the voxel spacing (``PanopticaResult.
  _calc_global_bin_metric`` calls the metric without ``voxelspacing``), so they are in
  voxel steps and the NSD tolerance is its default 0.5 voxel; its *instance* metrics
  (``sq_hd95``, ``sq_nsd``) get the spacing, in mm, the NSD tolerance then being
  ``min(spacing)`` mm. Read from NIfTI files (as its CLI does) the arrays come from
  SimpleITK in reversed axis order while the spacing stays in SimpleITK's order, so on an
  anisotropic grid its instance distances use the spacing reversed against the axes;
  ``instance_wise`` applies the spacing to the axes it belongs to (the package's own
  result when given arrays and ``voxelspacing``).
- BraTS 2023/2024 challenge code (``rachitsaluja/BraTS-2023-Metrics``, ``metrics.py``,
  ``get_LesionWiseScores`` and ``get_LesionWiseResults``): see ``lesion_wise``. Its
  lesion HD95 is DeepMind's ``surface-distance`` robust Hausdorff distance: surface
  elements on the voxel-corner lattice, each weighted by its area, the 95th percentile of
  each direction taken on the cumulative area, the larger of the two - a third definition,
  computed here from MONAI's port of DeepMind's surface-element table
  (``monai.metrics.utils.get_mask_edges`` with ``spacing``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from calf.errors import CalfError

if TYPE_CHECKING:
    import numpy as np

HD_PERCENTILE = 95.0
MATCHING_THRESHOLD = 1e-6  # brats-evaluation config_gli.yaml: a pair matches when Dice >= this
GLOBAL_NSD_TOLERANCE_VOXELS = 0.5  # panoptica's NSD default when no spacing reaches it
DILATION_CONNECTIVITY = 2  # generate_binary_structure(3, 2): 18-connected dilation element
_STRUCTURE_RANK = {6: 1, 18: 2, 26: 3}


@dataclass(frozen=True)
class LesionSettings:
    """The BraTS 2023 lesion-wise parameters (``get_LesionWiseResults``, ``BraTS-GLI``).

    - ``dilation``: iterations (>= 1) of ``binary_dilation`` with the 18-connected element
      applied to the truth before matching (3 for GLI, SSA, PED; 1 for MEN and MET);
    - ``volume_threshold``: truth lesions of at most this volume in mm^3 are dropped
      (50 for GLI; voxels x product of the NIfTI zooms);
    - ``penalty``: the HD95 in mm of a missed truth lesion and of each false positive;
      ``None`` (default): the BraTS code's 374 on BraTS's grid (240 x 240 x 155 at 1 mm),
      else the grid's diagonal in mm (``calf.evaluate.conventions.grid_penalty``), never a
      BraTS number on another grid;
    - ``connectivity``: of the connected components, 6, 18 or 26 (26).
    """

    dilation: int = 3
    volume_threshold: float = 50.0
    penalty: float | None = None
    connectivity: int = 26

    def __post_init__(self) -> None:
        dilation = self.dilation
        if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
            # scipy's binary_dilation repeats until nothing changes when iterations < 1
            raise CalfError(f"lesion dilation = {self.dilation!r} must be an integer >= 1")
        for key in ("volume_threshold", "penalty"):
            value = getattr(self, key)
            if key == "penalty" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and value >= 0
            ):
                raise CalfError(f"lesion {key} = {value!r} must be a finite number >= 0")
        if self.connectivity not in _STRUCTURE_RANK:
            raise CalfError(f"lesion connectivity = {self.connectivity!r} must be 6, 18 or 26")

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON values, with their units."""
        penalty = self.penalty if self.penalty is not None else (
            "374 on BraTS's grid (240 x 240 x 155 at 1 mm), else the grid's diagonal")
        return asdict(self) | {
            "penalty": penalty,
            "volume_threshold_unit": "mm^3",
            "penalty_unit": "mm",
            "dilation_structure":
                f"scipy.ndimage.generate_binary_structure(3, {DILATION_CONNECTIVITY})",
        }


# --------------------------------------------------------------------------- inputs


def _masks(
    pred: Any, truth: Any, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """``pred != 0``, ``truth != 0`` and the spacing as floats; CalfError on bad input."""
    import numpy as np

    p, t = np.asarray(pred) != 0, np.asarray(truth) != 0
    if p.ndim != 3 or p.shape != t.shape:
        raise CalfError(f"pred {p.shape} and truth {t.shape} must be 3-D arrays of one shape")
    try:
        step = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise CalfError(f"spacing = {spacing!r} must be 3 positive numbers (mm)") from None
    if len(step) != 3 or not all(math.isfinite(s) and s > 0 for s in step):
        raise CalfError(f"spacing = {spacing!r} must be 3 positive numbers (mm)")
    return p, t, step


def _bbox(mask: np.ndarray, pad: int = 0) -> tuple[slice, ...]:
    """The bounding box of ``mask``'s nonzero voxels, ``pad`` voxels wider, inside the array."""
    import numpy as np

    out = []
    for axis, n in enumerate(mask.shape):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        out.append(slice(max(int(hit[0]) - pad, 0), min(int(hit[-1]) + 1 + pad, n)))
    return tuple(out)


def _components(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """Connected components (``scipy.ndimage.label``) with 6-, 18- or 26-connectivity."""
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(3, _STRUCTURE_RANK[connectivity])
    labels, n = ndimage.label(mask, structure=structure)
    return labels, int(n)


def _dice(p: np.ndarray, t: np.ndarray) -> float:
    """Volumetric Dice 2|P & T| / (|P| + |T|) of two masks, not both empty."""
    import numpy as np

    return float(2.0 * np.count_nonzero(p & t) / (np.count_nonzero(p) + np.count_nonzero(t)))


# ------------------------------------------------------- brats-evaluation / panoptica


def _voxel_surface_distances(
    p: np.ndarray, t: np.ndarray, step: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """panoptica's two directional surface distances in mm of two non-empty masks:
    from each truth surface voxel to the prediction surface, and the reverse."""
    from scipy import ndimage

    box = _bbox(p | t, pad=1)  # exact: the surfaces and the nearest ones lie inside it
    p, t = p[box], t[box]
    cross = ndimage.generate_binary_structure(3, 1)
    surface_p = p ^ ndimage.binary_erosion(p, structure=cross)
    surface_t = t ^ ndimage.binary_erosion(t, structure=cross)
    to_p = ndimage.distance_transform_edt(~surface_p, sampling=step)
    to_t = ndimage.distance_transform_edt(~surface_t, sampling=step)
    return to_p[surface_t], to_t[surface_p]


def brats_hd95(pred: Any, truth: Any, spacing: Sequence[float]) -> float:
    """HD95 in mm as ``brats-evaluation`` / panoptica define it: the 95th percentile
    (linear interpolation) of both directions' surface-voxel distances pooled.

    ``math.inf`` when exactly one mask is empty, ``math.nan`` when both are (the
    conventions preset fills those). Two non-empty masks that do not overlap get their
    distance here; the package's global ``global_bin_hd95`` is ``inf`` for them (see
    ``brats_evaluation_global``).
    """
    import numpy as np

    p, t, step = _masks(pred, truth, spacing)
    empty_p, empty_t = not p.any(), not t.any()
    if empty_p and empty_t:
        return math.nan
    if empty_p or empty_t:
        return math.inf
    d_t, d_p = _voxel_surface_distances(p, t, step)
    return float(np.percentile(np.concatenate([d_t, d_p]), HD_PERCENTILE))


def _nsd_edge_case(p: np.ndarray, t: np.ndarray, tolerance: float) -> float | None:
    """NaN when both masks are empty, 0 when one is, None otherwise; checks the tolerance."""
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise CalfError(f"nsd tolerance = {tolerance!r} must be a finite number >= 0")
    empty_p, empty_t = not p.any(), not t.any()
    if empty_p and empty_t:
        return math.nan
    return 0.0 if empty_p or empty_t else None


def brats_nsd(pred: Any, truth: Any, spacing: Sequence[float], tolerance: float) -> float:
    """panoptica's normalised surface distance: the mean of the fraction of truth surface
    voxels within ``tolerance`` (mm, like ``spacing``) of the prediction surface and the
    fraction of prediction surface voxels within it of the truth surface (``<=``).

    ``math.nan`` when both masks are empty, ``0.0`` when exactly one is (panoptica's
    edge case for NSD). ``brats-evaluation`` applies it globally with spacing 1 and
    tolerance 0.5 (voxels) and per matched instance with the spacing and
    ``min(spacing)`` mm.
    """
    import numpy as np

    p, t, step = _masks(pred, truth, spacing)
    edge = _nsd_edge_case(p, t, tolerance)
    if edge is not None:
        return edge
    d_t, d_p = _voxel_surface_distances(p, t, step)
    return float((np.mean(d_t <= tolerance) + np.mean(d_p <= tolerance)) / 2.0)


def nsd(pred: Any, truth: Any, spacing: Sequence[float], tolerance_mm: float = 1.0) -> float:
    """MONAI's normalised surface distance (``compute_surface_dice``, class_thresholds =
    [tolerance_mm], Euclidean, spacing): surface voxels within ``tolerance_mm`` of the other
    surface, both directions' counts pooled, over the number of surface voxels of both.

    The same surface voxels and distances as ``brats_nsd``; the two differ in pooling the
    counts (MONAI) against averaging the two fractions (panoptica), equal only when both
    surfaces have as many voxels or both fractions are equal. ``math.nan`` when both masks
    are empty, ``0.0`` when exactly one is (no surface point within any tolerance).
    """
    import warnings

    import torch

    from calf._lazy import import_monai

    p, t, step = _masks(pred, truth, spacing)
    edge = _nsd_edge_case(p, t, tolerance_mm)
    if edge is not None:
        return edge
    import_monai()
    from monai.metrics import compute_surface_dice

    box = _bbox(p | t, pad=1)
    tp, tt = (torch.from_numpy(m[box].copy()).to(torch.float32)[None, None] for m in (p, t))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy")
        value = compute_surface_dice(
            tp, tt, class_thresholds=[tolerance_mm], include_background=True,
            distance_metric="euclidean", spacing=list(step),
        )
    return float(value.item())


def brats_evaluation_global(pred: Any, truth: Any) -> dict[str, float]:
    """``brats-evaluation``'s per-region global metrics exactly as it reports them:
    ``dice`` (``global_bin_dsc``), ``hd95`` (``global_bin_hd95``) and ``nsd``
    (``global_bin_nsd``).

    HD95 and NSD ignore the spacing: HD95 in voxel steps, NSD at 0.5 voxel (the package
    computes them without ``voxelspacing``); they equal mm on a 1 mm grid. Where the masks
    share no voxel the package's zero-TP edge case replaces the values: both empty: NaN,
    NaN, NaN; otherwise (one empty, or both non-empty and disjoint): 0, inf, 0.
    """
    p, t, _ = _masks(pred, truth, (1.0, 1.0, 1.0))
    if not (p & t).any():
        if not p.any() and not t.any():
            return {"dice": math.nan, "hd95": math.nan, "nsd": math.nan}
        return {"dice": 0.0, "hd95": math.inf, "nsd": 0.0}
    ones = (1.0, 1.0, 1.0)
    return {
        "dice": _dice(p, t),
        "hd95": brats_hd95(p, t, ones),
        "nsd": brats_nsd(p, t, ones, GLOBAL_NSD_TOLERANCE_VOXELS),
    }


def instance_wise(pred: Any, truth: Any, spacing: Sequence[float]) -> dict[str, float]:
    """``brats-evaluation``'s instance-wise metrics of one region (panoptica's result keys).

    Instances: 26-connected components of each mask. Matching: one-to-one, maximising the
    summed Dice over pairs with Dice >= 1e-6 (``linear_sum_assignment`` on cost 1 - Dice,
    1 + 1e-6 for other pairs; an assigned pair of cost >= 1 is no match). Keys:

    - ``instances_truth``, ``instances_pred``; ``instances_tp`` (matched pairs),
      ``instances_fp`` = pred - tp, ``instances_fn`` = truth - tp;
    - ``rq`` = tp / (tp + fp/2 + fn/2) (F1), 0 when tp = 0 and any instance exists, NaN
      when none does; ``prec`` = tp / (tp + fp), ``rec`` = tp / (tp + fn), NaN for 0 / 0;
    - ``sq_dsc``, ``sq_hd95`` (``brats_hd95``, mm), ``sq_nsd`` (``brats_nsd`` at
      ``min(spacing)`` mm): means over the matched pairs; with no match: NaN when neither
      mask has an instance, else Dice 0, HD95 inf, NSD 0 (``config_gli.yaml``'s edge cases);
    - ``pq_dsc`` = ``sq_dsc * rq``.
    """
    import numpy as np
    from scipy import ndimage
    from scipy.optimize import linear_sum_assignment

    p, t, step = _masks(pred, truth, spacing)
    lp, n_pred = _components(p, 26)
    lt, n_truth = _components(t, 26)
    dice: list[float] = []
    hd95: list[float] = []
    nsd_values: list[float] = []
    if n_pred and n_truth:
        both = (lt > 0) & (lp > 0)
        pairs, overlap = np.unique(
            np.stack([lt[both], lp[both]]), axis=1, return_counts=True
        )
        size_t = np.bincount(lt.ravel(), minlength=n_truth + 1)
        size_p = np.bincount(lp.ravel(), minlength=n_pred + 1)
        cost = np.full((n_truth, n_pred), 1.0 + 1e-6)
        for (i, j), n in zip(pairs.T, overlap):
            score = 2.0 * n / (size_t[i] + size_p[j])
            if score >= MATCHING_THRESHOLD:
                cost[i - 1, j - 1] = 1.0 - score
        boxes_t, boxes_p = ndimage.find_objects(lt), ndimage.find_objects(lp)
        tolerance = min(step)
        for i, j in zip(*linear_sum_assignment(cost)):
            if cost[i, j] >= 1.0:
                continue
            box = tuple(
                slice(min(a.start, b.start), max(a.stop, b.stop))
                for a, b in zip(boxes_t[i], boxes_p[j])
            )
            mt, mp = lt[box] == i + 1, lp[box] == j + 1
            dice.append(_dice(mp, mt))
            hd95.append(brats_hd95(mp, mt, step))
            nsd_values.append(brats_nsd(mp, mt, step, tolerance))
    tp = len(dice)
    fp, fn = n_pred - tp, n_truth - tp
    none = n_pred + n_truth == 0
    if tp:
        sq = {"sq_dsc": float(np.mean(dice)), "sq_hd95": float(np.mean(hd95)),
              "sq_nsd": float(np.mean(nsd_values))}
        rq = tp / (tp + 0.5 * fp + 0.5 * fn)
    elif none:
        sq, rq = {"sq_dsc": math.nan, "sq_hd95": math.nan, "sq_nsd": math.nan}, math.nan
    else:
        sq, rq = {"sq_dsc": 0.0, "sq_hd95": math.inf, "sq_nsd": 0.0}, 0.0
    return sq | {
        "pq_dsc": sq["sq_dsc"] * rq,
        "rq": rq,
        "prec": tp / (tp + fp) if tp + fp else math.nan,
        "rec": tp / (tp + fn) if tp + fn else math.nan,
        "instances_truth": n_truth,
        "instances_pred": n_pred,
        "instances_tp": tp,
        "instances_fp": fp,
        "instances_fn": fn,
    }


# ------------------------------------------------------------------ BraTS 2023 code


def _deepmind_hd95(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> float:
    """DeepMind ``surface-distance``'s robust Hausdorff distance at 95 %, in mm, as the
    BraTS 2023 code calls it (``compute_surface_distances(gt, pred, spacing)``, then
    ``compute_robust_hausdorff(..., 95)``).

    Surface elements sit on the voxel-corner lattice: each 2 x 2 x 2 neighbourhood with
    mixed occupancy is one, with its area from the marching-cubes table (MONAI's
    ``get_mask_edges(..., spacing)`` ports DeepMind's table and encoding). A direction's
    distance is the smallest sorted distance at which the cumulative area fraction reaches
    0.95 (``searchsorted``, side left); the result the larger direction. ``inf`` when one
    mask is empty (the caller penalises it); both masks must not be empty.
    """
    import warnings

    import numpy as np
    import torch
    from scipy import ndimage

    from calf._lazy import import_monai

    if not pred.any() or not truth.any():
        return math.inf
    import_monai()
    from monai.metrics.utils import get_mask_edges

    box = _bbox(pred | truth, pad=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy")
        edges_p, edges_t, areas_p, areas_t = get_mask_edges(
            torch.from_numpy(pred[box].copy()), torch.from_numpy(truth[box].copy()),
            crop=True, spacing=list(spacing),
        )
    edges_p, edges_t = edges_p.numpy().astype(bool), edges_t.numpy().astype(bool)
    areas_p, areas_t = areas_p.numpy().astype(np.float64), areas_t.numpy().astype(np.float64)
    to_p = ndimage.distance_transform_edt(~edges_p, sampling=spacing)
    to_t = ndimage.distance_transform_edt(~edges_t, sampling=spacing)

    def percentile(distances: np.ndarray, areas: np.ndarray) -> float:
        order = np.lexsort((areas, distances))  # DeepMind sorts (distance, area) pairs
        distances, areas = distances[order], areas[order]
        cumulative = np.cumsum(areas) / np.sum(areas)
        idx = int(np.searchsorted(cumulative, HD_PERCENTILE / 100.0))
        return float(distances[min(idx, len(distances) - 1)])

    return max(
        percentile(to_p[edges_t], areas_t[edges_t]), percentile(to_t[edges_p], areas_p[edges_p])
    )


def _lesion_scores(
    merged: np.ndarray, k: int, n_lesion: int, roi: tuple[slice, ...], lp: np.ndarray,
    hits: list[int], boxes_p: list, size_p: np.ndarray, step: tuple[float, ...],
) -> tuple[float, float]:
    """Dice and HD95 of lesion ``k`` of ``merged`` (``n_lesion`` voxels, within ``roi``)
    against the union of the prediction components ``hits`` of ``lp`` (their boxes
    ``boxes_p`` and sizes ``size_p``); (0, inf) without a hit."""
    import numpy as np

    if not hits:
        return 0.0, math.inf
    union_box = tuple(
        slice(min([r.start] + [boxes_p[h - 1][a].start for h in hits]),
              max([r.stop] + [boxes_p[h - 1][a].stop for h in hits]))
        for a, r in enumerate(roi)
    )
    mt = merged[union_box] == k
    mp = np.isin(lp[union_box], hits)
    n_hit = int(sum(size_p[h] for h in hits))
    score = 2.0 * np.count_nonzero(mp & mt) / (n_hit + n_lesion)
    return float(score), _deepmind_hd95(mp, mt, step)


def lesion_wise(
    pred: Any, truth: Any, spacing: Sequence[float], settings: LesionSettings = LesionSettings()
) -> dict[str, float]:
    """The BraTS 2023 lesion-wise Dice and HD95 (``metrics.py``, ``get_LesionWiseScores``
    and ``get_LesionWiseResults``).

    1. Components (``settings.connectivity``) of truth and prediction; the truth is dilated
       (``settings.dilation`` iterations, 18-connected element) and truth components lying
       in one component of the dilated truth are merged into one lesion.
    2. Per truth lesion: the prediction components meeting the lesion's own dilation are
       its hits; Dice and HD95 (``_deepmind_hd95``) of the lesion against their union (Dice
       0 and HD95 the penalty with no hit); its volume in mm^3.
    3. False positives: prediction components that are no lesion's hit.
    4. Lesions of volume <= ``settings.volume_threshold`` leave the scores and the counts;
       ``lesion_dice`` = sum of the kept lesions' Dice / (kept + FP) and ``lesion_hd95`` =
       (sum of their HD95 + FP x penalty) / (kept + FP); 1 and 0 when kept + FP = 0
       (both masks empty, or only small truth lesions and no false positive).

    Counts: ``lesions_truth`` (kept lesions), ``lesions_tp`` (kept lesions hit),
    ``lesions_fn`` (kept lesions missed), ``lesions_fp``. A prediction component may hit
    several lesions.
    """
    import numpy as np
    from scipy import ndimage

    from calf.evaluate.conventions import grid_penalty

    p, t, step = _masks(pred, truth, spacing)
    s = settings
    penalty = grid_penalty(p.shape, step) if s.penalty is None else float(s.penalty)
    if not (p.any() or t.any()):
        return {"lesion_dice": 1.0, "lesion_hd95": 0.0, "lesions_truth": 0, "lesions_tp": 0,
                "lesions_fp": 0, "lesions_fn": 0}
    box = _bbox(p | t, pad=s.dilation + 1)  # exact: dilations never reach past it
    p, t = p[box], t[box]
    element = ndimage.generate_binary_structure(3, DILATION_CONNECTIVITY)

    def dilate(mask: np.ndarray) -> np.ndarray:
        return ndimage.binary_dilation(mask, structure=element, iterations=s.dilation)

    lp, n_pred = _components(p, s.connectivity)
    merged, n_lesions = _components(dilate(t), s.connectivity)
    merged = np.where(t, merged, 0)  # a truth voxel takes its dilated component's label
    voxel_mm3 = float(np.prod(step))
    boxes_p = ndimage.find_objects(lp)
    size_p = np.bincount(lp.ravel(), minlength=n_pred + 1)
    hit_any: set[int] = set()
    kept_dice: list[float] = []
    kept_hd95: list[float] = []
    tp = fn = 0
    for k, lesion_box in enumerate(ndimage.find_objects(merged), start=1):
        if lesion_box is None:
            continue
        roi = tuple(
            slice(max(b.start - s.dilation, 0), min(b.stop + s.dilation, n))
            for b, n in zip(lesion_box, merged.shape)
        )
        lesion = merged[roi] == k
        hits = np.unique(lp[roi][dilate(lesion)])
        hits = [int(h) for h in hits if h != 0]
        hit_any.update(hits)
        n_lesion = int(np.count_nonzero(lesion))
        if n_lesion * voxel_mm3 <= s.volume_threshold:  # its hits are no false positives
            continue
        score, distance = _lesion_scores(merged, k, n_lesion, roi, lp, hits, boxes_p, size_p,
                                         step)
        kept_dice.append(float(score))
        kept_hd95.append(penalty if math.isinf(distance) else float(distance))
        tp, fn = (tp + 1, fn) if hits else (tp, fn + 1)
    fp = n_pred - len(hit_any)
    denominator = len(kept_dice) + fp
    if denominator == 0:
        dice_score, hd95 = 1.0, 0.0
    else:
        dice_score = sum(kept_dice) / denominator
        hd95 = (sum(kept_hd95) + fp * penalty) / denominator
    return {"lesion_dice": float(dice_score), "lesion_hd95": float(hd95),
            "lesions_truth": len(kept_dice), "lesions_tp": tp, "lesions_fp": fp,
            "lesions_fn": fn}


def lesion_settings(settings: LesionSettings = LesionSettings()) -> dict[str, Any]:
    """Every lesion-metric definition and setting, as JSON values (the metrics JSON)."""
    return {
        "lesion_wise": {
            "source": "BraTS 2023/2024 challenge code, rachitsaluja/BraTS-2023-Metrics "
            "metrics.py (get_LesionWiseScores, get_LesionWiseResults), BraTS-GLI parameters",
            "settings": settings.to_dict(),
            "components": f"scipy.ndimage.label, {settings.connectivity}-connected",
            "lesions": "truth components merged when one component of the dilated truth "
            "holds them; a lesion's hits are the prediction components meeting its dilation",
            "hd95": "DeepMind surface-distance robust Hausdorff 95 % (area-weighted "
            "surface elements, larger direction), mm; missed lesion and each false "
            "positive: penalty",
            "score": "sum over lesions above volume_threshold / (lesions + false positives); "
            "1 (Dice) and 0 (HD95) when that count is 0",
        },
        "instance_wise": {
            "source": "brats-evaluation 0.0.10 / panoptica 2.1.7, config_gli.yaml",
            "components": "26-connected",
            "matching": "maximum bipartite matching on Dice, pairs with Dice >= "
            f"{MATCHING_THRESHOLD:g}",
            "sq_dsc, sq_hd95, sq_nsd": "means over matched pairs; no match: NaN without "
            "instances, else 0, inf, 0",
            "sq_nsd_tolerance": "min(spacing) mm",
            "rq": "tp / (tp + fp/2 + fn/2)",
            "pq_dsc": "sq_dsc * rq",
        },
        "brats_hd95": "95th percentile (linear) of both directions' surface-voxel distances "
        "pooled; surface = mask ^ erosion (6-connected); mm",
        "brats_nsd": "mean of the two directional fractions of surface voxels within the "
        "tolerance",
        "brats_evaluation_global": "as the package reports it: HD95 in voxel steps, NSD at "
        f"{GLOBAL_NSD_TOLERANCE_VOXELS:g} voxel; no shared voxel: 0 / inf / 0 (NaN when "
        "both empty)",
    }
