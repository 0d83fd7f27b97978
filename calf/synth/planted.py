"""Per-case rows with a planted effect that exists only for small tumours.

``planted_cases`` returns a table shaped like ``calf.stats.collect.load_case_metrics``'s
output (no files involved), for validating the "where does CALF help" analysis
(``calf.analysis``): every patient has a tumour volume drawn log-uniformly over a realistic
range (or none), and the CALF loss's Dice is higher than every baseline's by ``effect`` for
the smallest ``small_share`` of the tumour-bearing patients, and by exactly 0 for everyone
else. Every loss gets the same noise structure (an independent normal term per row), so
``effect=0`` is the null fixture. The other metrics follow from each row's Dice, truth and
prediction sizes under the suite's empty-mask conventions (``calf.evaluate.conventions``,
preset ``suite``), so that they agree with one another.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from calf.layout import NATURAL
from calf.stats.collect import CASE_TABLE_COLUMNS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

GRID = (240, 240, 155)  # the BraTS grid, 1 mm isotropic
GRID_SHAPE = "x".join(map(str, GRID))
SPACING_MM = "1x1x1"
VOXELS_PER_ML = 1000  # 1 mm^3 voxels
VOLUME_RANGE_ML = (0.5, 150.0)  # log-uniform tumour volumes
TUMOUR_FREE_SHARE = 0.1
N_FOLDS = 5
# Dice of a row: a size-dependent mean (small tumours are harder) plus a patient effect
DICE_SMALLEST, DICE_LARGEST = 0.45, 0.85
PATIENT_SD = 0.08
FALSE_POSITIVE_RATE = 0.1  # tumour-free rows where a loss predicts something
FALSE_POSITIVE_VOXELS = (20, 2000)
HD95_PER_DICE_LOSS = 30.0  # mm of HD95 per unit of (1 - Dice)
HD95_JITTER = 2.0  # mm
METRIC_SD = 0.03  # noise of NSD and the lesion metrics around their Dice-based value
MIN_DICE_FOR_SIZES = 0.05  # bounds the prediction/truth size ratio a Dice leaves possible
DETECTION_QUALITY = 0.9  # PQ = SQ x the recognition quality of the lesions


def _volumes(rng: "np.random.Generator", n_patients: int, exams: int,
             free_share: float) -> "np.ndarray":
    """(n_patients, exams) tumour volumes in ml: log-uniform per patient, each exam within
    20 % of it; a random ``free_share`` of the patients have none."""
    import numpy as np

    low, high = np.log(VOLUME_RANGE_ML)
    patient = np.exp(rng.uniform(low, high, n_patients))
    exam = patient[:, None] * rng.uniform(0.8, 1.2, (n_patients, exams))
    free = rng.permutation(n_patients)[: round(free_share * n_patients)]
    exam[free] = 0.0
    return np.round(exam * VOXELS_PER_ML) / VOXELS_PER_ML


def _small(volumes: "np.ndarray", small_share: float) -> "np.ndarray":
    """True for the smallest ``small_share`` of the tumour-bearing patients (by the mean
    volume of their exams)."""
    import numpy as np

    size = volumes.mean(axis=1)
    bearing = np.flatnonzero(size > 0)
    smallest = bearing[np.argsort(size[bearing], kind="stable")]
    flags = np.zeros(size.size, dtype=bool)
    flags[smallest[: round(small_share * bearing.size)]] = True
    return flags


def _expected_dice(volumes: "np.ndarray") -> "np.ndarray":
    """A case's expected Dice, rising linearly in log volume over ``VOLUME_RANGE_ML``."""
    import numpy as np

    low, high = np.log(VOLUME_RANGE_ML)
    position = (np.log(np.maximum(volumes, VOLUME_RANGE_ML[0])) - low) / (high - low)
    return DICE_SMALLEST + (DICE_LARGEST - DICE_SMALLEST) * np.clip(position, 0, 1)


def _predicted(rng, dice: "np.ndarray", truth: "np.ndarray") -> "np.ndarray":
    """Predicted voxels that the Dice leaves possible: P/T within [D/(2-D), (2-D)/D]
    (true positives D(T+P)/2 can exceed neither T nor P), drawn log-uniformly over half
    of that range."""
    import numpy as np

    d = np.maximum(dice, MIN_DICE_FOR_SIZES)
    spread = np.log((2 - d) / d) / 2
    ratio = np.exp(rng.uniform(-1, 1, dice.size) * spread)
    return np.maximum(np.round(truth * ratio), 1.0)


def _overlap_metrics(dice, truth, predicted) -> dict[str, "np.ndarray"]:
    """IoU, sensitivity, specificity and precision of tumour-bearing rows from the Dice
    and the two sizes (true positives D(T+P)/2)."""
    import numpy as np

    tp = np.minimum(dice * (truth + predicted) / 2, np.minimum(truth, predicted))
    background = math.prod(GRID) - truth
    return {"iou": dice / (2 - dice), "sensitivity": tp / truth,
            "specificity": 1 - (predicted - tp) / background, "precision": tp / predicted}


def _tumour_rows(rng, dice, truth) -> dict[str, "np.ndarray"]:
    """Every metric of tumour-bearing rows, consistent with their Dice."""
    import numpy as np

    predicted = _predicted(rng, dice, truth)
    hd95 = (1 - dice) * HD95_PER_DICE_LOSS + rng.uniform(0, HD95_JITTER, dice.size)
    near = np.clip(dice + rng.normal(0, METRIC_SD, (3, dice.size)), 0, 1)
    sq_dsc = np.clip(near[2] + 0.05, 0, 1)
    return {"dice": dice, **_overlap_metrics(dice, truth, predicted), "hd95": hd95,
            "nsd": np.clip(near[0] + 0.05, 0, 1), "lesion_dice": near[1],
            "lesion_hd95": hd95 * rng.uniform(0.9, 1.1, dice.size), "sq_dsc": sq_dsc,
            "pq_dsc": sq_dsc * DETECTION_QUALITY, "sq_hd95": hd95 * 0.8,
            "predicted_voxels": predicted}


def _free_rows(rng, n: int) -> dict[str, "np.ndarray"]:
    """Every metric of tumour-free rows (suite conventions): nothing predicted scores Dice
    1, HD95 0, NSD 1 (sensitivity, precision undefined); a false positive Dice 0, HD95 the
    grid's diagonal, NSD 0."""
    import numpy as np

    fp = rng.uniform(0, 1, n) < FALSE_POSITIVE_RATE
    predicted = np.where(fp, rng.integers(*FALSE_POSITIVE_VOXELS, n), 0).astype(float)
    clean = np.where(fp, 0.0, 1.0)
    diagonal = math.dist((0, 0, 0), GRID)
    hd95 = np.where(fp, diagonal, 0.0)
    nan = np.full(n, np.nan)
    return {"dice": clean, "iou": clean, "hd95": hd95, "nsd": clean, "sensitivity": nan,
            "specificity": 1 - predicted / math.prod(GRID),
            "precision": np.where(fp, 0.0, np.nan), "lesion_dice": clean,
            "lesion_hd95": hd95, "sq_dsc": clean, "pq_dsc": clean, "sq_hd95": hd95,
            "predicted_voxels": predicted}


def _loss_metrics(rng, mean_dice, truth, lift, noise) -> dict[str, "np.ndarray"]:
    """One loss's metrics on every row: Dice = mean + lift + N(0, noise), clipped to [0, 1].
    Every draw happens whatever the lift, so that ``effect=0`` changes nothing else."""
    import numpy as np

    dice = np.clip(mean_dice + lift + rng.normal(0, noise, truth.size), 0, 1)
    bearing = truth > 0
    tumour = _tumour_rows(rng, dice, np.where(bearing, truth, 1.0))
    free = _free_rows(rng, truth.size)
    return {k: np.where(bearing, tumour[k], free[k]) for k in tumour}


def _design(n_patients: int, exams: int, modalities: Sequence[str], dataset: str):
    """The (patient, exam, modality) rows of one run: index arrays and identities."""
    import numpy as np

    patient, exam, modality = (a.ravel() for a in np.meshgrid(
        np.arange(n_patients), np.arange(exams), np.arange(len(modalities)), indexing="ij"))
    patient_ids = np.array([f"PT{i:03d}" for i in range(n_patients)], dtype=object)
    return {"patient": patient, "exam": exam,
            "case_id": patient_ids[patient] + "-" + (exam + 1).astype(str).astype(object),
            "patient_id": patient_ids[patient],
            "modality": np.array(list(modalities), dtype=object)[modality],
            "subject_id": f"{dataset}/" + patient_ids[patient]}


def planted_cases(
    n_patients: int = 80,
    *,
    effect: float = 0.15,
    small_share: float = 0.25,
    losses: Sequence[str] = ("bce", "calf"),
    calf_loss: str = "calf",
    models: Sequence[str] = ("unet",),
    dataset: str = "planted",
    study: str = "planted",
    noise: float = 0.05,
    seed: int = 0,
    exams: int = 1,
    modalities: Sequence[str] = ("flair",),
    tumour_free_share: float = TUMOUR_FREE_SHARE,
) -> "pd.DataFrame":
    """One row per (model, loss, patient, exam, modality), ``CASE_TABLE_COLUMNS``.

    Tumour volumes: log-uniform over ``VOLUME_RANGE_ML`` (1 mm voxels, so
    ``tumour_voxels = 1000 x tumour_ml``), ``tumour_free_share`` of the patients tumour-free;
    a case's truth is the same for every loss, model and modality. Dice: the case's
    expected Dice (rising with volume) plus a patient effect (shared by every loss), plus
    ``effect`` for ``calf_loss`` on the smallest ``small_share`` of tumour-bearing patients,
    plus N(0, ``noise``) per row, clipped to [0, 1]. Deterministic given ``seed``.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    volumes = _volumes(rng, n_patients, exams, tumour_free_share)
    small = _small(volumes, small_share)
    rows = _design(n_patients, exams, modalities, dataset)
    ml = volumes[rows["patient"], rows["exam"]]
    truth = np.round(ml * VOXELS_PER_ML)
    mean_dice = np.clip(_expected_dice(ml) + rng.normal(0, PATIENT_SD, n_patients)[
        rows["patient"]], 0, 1)
    folds = pd.Series(rows["patient"] % N_FOLDS, dtype=object)  # ints, as from the paths
    frames = []
    for model in models:
        for loss in losses:
            lift = effect * small[rows["patient"]] * (loss == calf_loss)
            metrics = _loss_metrics(rng, mean_dice, truth, lift, noise)
            frames.append(pd.DataFrame({
                "study": study, "dataset": dataset, "model": model, "loss": loss,
                "ratio": NATURAL, "fold": folds,
                "case_id": rows["case_id"], "patient_id": rows["patient_id"],
                "modality": rows["modality"], "member_dataset": dataset,
                "subject_id": rows["subject_id"], **metrics, "tumour_voxels": truth,
                "tumour_ml": ml, "grid_shape": GRID_SHAPE, "spacing_mm": SPACING_MM,
                "source": f"metrics/{study}/{dataset}/{model}/{loss}/fold"
                          + (rows["patient"] % N_FOLDS).astype(str).astype(object) + ".csv",
            }))
    cases = pd.concat(frames, ignore_index=True)
    cases["seed"] = pd.array([pd.NA] * len(cases), dtype="Int64")
    return cases[list(CASE_TABLE_COLUMNS)]
