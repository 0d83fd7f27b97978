"""A small but real synthetic results tree: what the train and evaluate steps write for a study.

``write_study`` writes, in the suite's results layout (``calf.layout``), per-case metrics
CSVs with their companion JSONs and overlays (a PNG and an ``.npz`` per rank), run folders
with ``run.json`` and ``epochs.csv``, and the training sets' imbalance profiles. Values are
drawn from one seeded generator, so a seed gives the same tree; ``effects`` shifts a loss's
Dice, so that a study can hold a real difference. The statistics and report tests and
``benchmarks/report.py`` run on it; it needs no data, no GPU and no training.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from calf.layout import (
    EPOCHS_FILE,
    NATURAL,
    RUN_FILE,
    TRAIN_DONE,
    RunKey,
    Variant,
    metrics_companions,
    ratio_text,
    training_file,
)

# every loss of the suite's paper benchmark (calf.naming.LOSS_NAMES's order)
LOSSES = ("bce", "dice", "iou", "tversky", "focal", "combo", "calf", "calf_region")
CALF_VARIANTS = ("calf", "calf_region")
RANKS = ("best", "median", "worst")
# branch probabilities of a synthetic batch-scope CALF step, in calf.losses.BRANCHES's order
BRANCH_SHARES = (0.05, 0.05, 0.1, 0.5, 0.1, 0.2)
# the cases' grid (BraTS's, 1 mm voxels) and tumour sizes (voxels = mm^3)
GRID_SHAPE, GRID_SPACING = "240x240x155", "1x1x1"
TUMOUR_VOXELS = (500, 120_000)
NO_TUMOUR_SHARE = 0.05
# the training-set area distribution's gamma shape and scale per dataset name (else default):
# a sparse cohort's areas are more skewed than a bulky one's
AREA_GAMMA = {"sparse": (0.8, 30.0), "bulky": (4.0, 60.0)}
DEFAULT_AREA_GAMMA = (1.5, 40.0)


def _case_tumours(rng, n: int):
    """Each case's tumour in voxels of 1 mm: none for about one case in twenty, else
    log-uniform over 0.5 to 120 ml; a case keeps its tumour in every run (one truth)."""
    import numpy as np

    volumes = np.exp(rng.uniform(np.log(TUMOUR_VOXELS[0]), np.log(TUMOUR_VOXELS[1]), size=n))
    return np.where(rng.random(n) < NO_TUMOUR_SHARE, 0, np.round(volumes)).astype(int)


def _case_rows(rng, cases, tumour, dataset, model, loss, fold, effect, ratio, seed):
    import numpy as np
    import pandas as pd

    n = len(cases)
    base = np.clip(rng.normal(0.6, 0.15, size=n) + effect, 0.0, 1.0)
    dice = np.where(tumour == 0, 1.0, base)
    iou = dice / (2 - dice)
    predicted = np.round(tumour * rng.uniform(0.6, 1.4, size=n)).astype(int)
    precision = np.where(predicted == 0, np.nan, np.clip(dice + rng.normal(0, 0.05, n), 0, 1))
    rows = {
        "case_id": cases,
        "patient_id": [c.rsplit("-", 1)[0] for c in cases],
        "modality": "flair",
        "dataset": dataset,
        "model": model,
        "loss": loss,
        "fold": fold,
        "dice": dice.round(4),
        "iou": iou.round(4),
        "hd95": np.where(tumour == 0, 0.0, (1 - dice) * 40 + rng.uniform(0, 2, n)).round(2),
        "sensitivity": np.where(tumour == 0, np.nan, np.clip(dice + 0.05, 0, 1)).round(4),
        "specificity": np.clip(1 - rng.uniform(0, 0.01, n), 0, 1).round(5),
        "precision": precision.round(4),
        "tumour_voxels": tumour,
        "predicted_voxels": predicted,
        "tumour_ml": tumour / 1000.0,
        "grid_shape": GRID_SHAPE,
        "spacing_mm": GRID_SPACING,
    }
    frame = pd.DataFrame(rows)
    if ratio is not None:
        frame["ratio"] = ratio
    if seed is not None:
        frame["seed"] = seed
    return frame


def _write_overlays(folder: Path, rng) -> None:
    """What evaluate writes per rank: a PNG (noise: the report's grid does not read it) and
    the shown slice's arrays (its image from the same noise, a 10 x 10 square of truth and
    the prediction shifted by 2 rows)."""
    import matplotlib.image
    import numpy as np

    from calf.evaluate.overlays import write_overlay_arrays

    folder.mkdir(parents=True, exist_ok=True)
    truth = np.zeros((32, 32), dtype=bool)
    truth[10:20, 12:22] = True
    for rank in RANKS:
        noise = rng.uniform(0, 1, size=(32, 32, 3))
        matplotlib.image.imsave(folder / f"{rank}.png", noise)
        image = np.rint(noise[..., 0] * 255).astype(np.uint8)
        write_overlay_arrays(folder / f"{rank}.npz", image, truth, np.roll(truth, 2, axis=0))


def _write_run(run_dir: Path, rng, loss: str, epochs: int) -> None:
    """A complete run folder: ``run.json`` and ``epochs.csv`` with branch counts for CALF."""
    import pandas as pd

    from calf.losses import BRANCHES

    run_dir.mkdir(parents=True, exist_ok=True)
    calf = loss in CALF_VARIANTS
    kwargs = {"scope": "batch", "area": "pixels"} if loss == "calf" else (
        {"grid": 4} if loss == "calf_region" else {})
    record = {"status": "complete", "params": {"loss": loss, "loss_kwargs": kwargs}}
    if calf:
        record["imbalance"] = {"scope": "batch", "skewness": None, "kurtosis": None, "branch": None}
    (run_dir / RUN_FILE).write_text(json.dumps(record, indent=2))
    steps = 5 * (16 if loss == "calf_region" else 1)
    rows = []
    for epoch in range(1, epochs + 1):
        counts = rng.multinomial(steps, BRANCH_SHARES) if calf else [0] * len(BRANCHES)
        rows.append({"epoch": epoch, "train_loss": float(rng.uniform(0.1, 1)), "steps": 5,
                     "seconds": 1.0, "slices_per_second": 80.0,
                     **{f"branch_{b}": int(c) for b, c in zip(BRANCHES, counts, strict=True)},
                     "val_dice": ""})
    pd.DataFrame(rows).to_csv(run_dir / EPOCHS_FILE, index=False)
    (run_dir / TRAIN_DONE).touch()


def _write_profile(path: Path, rng, dataset: str, fold: int, ratio) -> None:
    """An imbalance profile as ``calf profile`` writes it, from 60 empty and 20 tumour slices."""
    import numpy as np
    from scipy.stats import kurtosis, skew

    from calf.losses import select_branch

    shape, scale = AREA_GAMMA.get(dataset, DEFAULT_AREA_GAMMA)
    areas = np.concatenate([np.zeros(60), rng.gamma(shape, scale, size=20)])
    counts, edges = np.histogram(areas, bins=50, range=(0.0, float(areas.max())))
    s, k = float(skew(areas)), float(kurtosis(areas))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "n_slices": int(areas.size), "n_tumour_slices": int((areas > 0).sum()),
        "tumour_fraction": float((areas > 0).mean()), "skewness": s, "kurtosis": k,
        "branch": select_branch(s, k), "area_definition": "pixels", "dataset": dataset,
        "fold": fold, "ratio": NATURAL if ratio is None else ratio,
        "histogram": {"edges": edges.tolist(), "counts": counts.astype(int).tolist()},
    }, indent=2))


def _companion(frame, rng, key: RunKey, ratio, cases) -> dict:
    """The companion JSON of one run's metrics (an older format's fields: no native space)."""
    from calf.evaluate.pooled import POOLED_SUMMARY_KEY, pooled_settings

    return {
        "format": 2, "dataset": key.dataset, "model": key.model, "loss": key.loss,
        "fold": key.fold, "ratio": ratio, "seed": key.seed, "hd95_units": "voxels",
        "batch_pooled_dice": pooled_settings(),
        "protocol": {"scaling": "volume", "modalities": {key.dataset: "flair"},
                     "area": "pixels" if key.loss == "calf" else None,
                     "scope": "batch" if key.loss == "calf" else None,
                     "precision": "bf16", "deterministic": False, "init": "pytorch"},
        "execution": {"precision": "fp32"},
        "summary": {"mean_dice": float(frame["dice"].mean()),
                    POOLED_SUMMARY_KEY: float(rng.uniform(0.5, 0.95))},
        "overlays": {r: {"file": f"{r}.png", "arrays": f"{r}.npz", "case_id": cases[i],
                         "modality": "flair", "slice": 3, "dice": float(frame["dice"].iloc[i])}
                     for i, r in enumerate(RANKS)},
    }


def write_study(
    results: Path,
    study: str = "demo",
    datasets: Sequence[str] = ("sparse", "bulky"),
    models: Sequence[str] = ("unet", "fpn"),
    losses: Sequence[str] = LOSSES,
    folds: int = 2,
    cases_per_fold: int = 12,
    ratios: Sequence[float] | None = None,
    seeds: Sequence[int] | None = None,
    effects: dict[str, float] | None = None,
    epochs: int = 3,
    seed: int = 0,
) -> list[Path]:
    """Write a study's results under ``results`` (``metrics/``, ``runs/``, ``profiles/``);
    returns its per-case CSV paths.

    Every loss sees the same cases of a fold (paired). ``effects`` maps a loss to a Dice
    shift; ``ratios``/``seeds`` add the ratio-R / seed-N path parts and columns.
    """
    import numpy as np

    results = Path(results)
    rng = np.random.default_rng(seed)
    effects = effects or {}
    written = []
    for dataset in datasets:
        for fold in range(folds):
            cases = [f"{dataset.upper()}-{fold:02d}{i:03d}-000" for i in range(cases_per_fold)]
            tumour = _case_tumours(rng, cases_per_fold)
            for ratio in ratios or [None]:
                for run_seed in seeds or [None]:
                    if run_seed is None or run_seed == (seeds or [None])[0]:
                        profile = training_file(results / "profiles", study, dataset,
                                                Variant(fold, ratio_text(ratio)), ".json")
                        _write_profile(profile, rng, dataset, fold, ratio)
                    for model in models:
                        for loss in losses:
                            key = RunKey(study, dataset, model, loss, fold, ratio, run_seed)
                            csv, companion, _, overlays = metrics_companions(
                                key.metrics_csv(results / "metrics"))
                            frame = _case_rows(rng, cases, tumour, dataset, model, loss, fold,
                                               effects.get(loss, 0.0), ratio, run_seed)
                            csv.parent.mkdir(parents=True, exist_ok=True)
                            frame.to_csv(csv, index=False)
                            companion.write_text(json.dumps(
                                _companion(frame, rng, key, ratio, cases), indent=2))
                            _write_overlays(overlays, rng)
                            _write_run(key.run_dir(results / "runs"), rng, loss, epochs)
                            written.append(csv)
    return written
