"""A small but real results tree for the statistics and report tests.

``write_study`` writes what the evaluate and train steps write for one study: per-case CSVs
with their companion JSONs and overlays (a PNG and an ``.npz`` per rank), run folders with
``run.json`` and ``epochs.csv``, and the training sets' profile JSONs. Values are drawn from
a seeded generator; ``effects`` shifts a loss's Dice so that tests can ask for a real
difference.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from calf.evaluate.pooled import pooled_settings

BRANCHES = ("fisher", "logit", "arcsine", "log10", "ln", "bce_dice")
LOSSES = ("bce", "dice", "iou", "tversky", "focal", "combo", "calf", "calf_region")


def _variant(ratio, seed, fold) -> str:
    parts = [f"ratio-{ratio:g}" if ratio is not None else None,
             f"seed-{seed}" if seed is not None else None, f"fold{fold}"]
    return "/".join(p for p in parts if p)


def _case_rows(rng, cases, dataset, model, loss, fold, effect, ratio, seed):
    n = len(cases)
    tumour = rng.integers(0, 400, size=n)
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
    }
    frame = pd.DataFrame(rows)
    if ratio is not None:
        frame["ratio"] = ratio
    if seed is not None:
        frame["seed"] = seed
    return frame


def _write_overlays(folder: Path, rng) -> None:
    """What evaluate writes per rank: a PNG (noise: the grid does not read it) and the
    shown slice's arrays (its image from the same noise, a 10 x 10 square of truth and the
    prediction shifted by 2 rows). One draw per rank, as before the arrays were added, so
    the rest of the study's values stay the same."""
    import matplotlib.image

    from calf.evaluate.overlays import write_overlay_arrays

    folder.mkdir(parents=True, exist_ok=True)
    truth = np.zeros((32, 32), dtype=bool)
    truth[10:20, 12:22] = True
    for rank in ("best", "median", "worst"):
        noise = rng.uniform(0, 1, size=(32, 32, 3))
        matplotlib.image.imsave(folder / f"{rank}.png", noise)
        image = np.rint(noise[..., 0] * 255).astype(np.uint8)
        write_overlay_arrays(folder / f"{rank}.npz", image, truth, np.roll(truth, 2, axis=0))


def _write_run(run_dir: Path, rng, loss: str, epochs: int) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    calf = loss in ("calf", "calf_region")
    kwargs = {"scope": "batch", "area": "pixels"} if loss == "calf" else (
        {"grid": 4} if loss == "calf_region" else {})
    record = {"status": "complete", "params": {"loss": loss, "loss_kwargs": kwargs}}
    if calf:
        record["imbalance"] = {"scope": "batch", "skewness": None, "kurtosis": None, "branch": None}
    (run_dir / "run.json").write_text(json.dumps(record, indent=2))
    steps = 5 * (16 if loss == "calf_region" else 1)
    rows = []
    for epoch in range(1, epochs + 1):
        counts = rng.multinomial(steps, [0.05, 0.05, 0.1, 0.5, 0.1, 0.2]) if calf else [0] * 6
        rows.append({"epoch": epoch, "train_loss": float(rng.uniform(0.1, 1)), "steps": 5,
                     "seconds": 1.0, "slices_per_second": 80.0,
                     **{f"branch_{b}": int(c) for b, c in zip(BRANCHES, counts)},
                     "val_dice": ""})
    pd.DataFrame(rows).to_csv(run_dir / "epochs.csv", index=False)
    (run_dir / "train.done").touch()


def _write_profile(path: Path, rng, dataset: str, fold: int, ratio) -> None:
    areas = np.concatenate([np.zeros(60), rng.gamma(1.5, 40, size=20)])
    counts, edges = np.histogram(areas, bins=50, range=(0.0, float(areas.max())))
    from scipy.stats import kurtosis, skew

    from calf.losses import select_branch

    s, k = float(skew(areas)), float(kurtosis(areas))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "n_slices": int(areas.size), "n_tumour_slices": int((areas > 0).sum()),
        "tumour_fraction": float((areas > 0).mean()), "skewness": s, "kurtosis": k,
        "branch": select_branch(s, k), "area_definition": "pixels", "dataset": dataset,
        "fold": fold, "ratio": "natural" if ratio is None else ratio,
        "histogram": {"edges": edges.tolist(), "counts": counts.astype(int).tolist()},
    }, indent=2))


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
    """Write a study's results under ``results``; returns its per-case CSV paths.

    Every loss sees the same cases of a fold (paired). ``effects`` maps a loss to a Dice
    shift; ``ratios``/``seeds`` add the ratio-R / seed-N path parts and columns.
    """
    rng = np.random.default_rng(seed)
    effects = effects or {}
    written = []
    for dataset in datasets:
        for fold in range(folds):
            cases = [f"{dataset.upper()}-{fold:02d}{i:03d}-000" for i in range(cases_per_fold)]
            for ratio in ratios or [None]:
                for run_seed in seeds or [None]:
                    if run_seed is None or run_seed == (seeds or [None])[0]:
                        _write_profile(
                            results / "profiles" / study / dataset / (_variant(ratio, None, fold) + ".json"),
                            rng, dataset, fold, ratio)
                    for model in models:
                        for loss in losses:
                            variant = _variant(ratio, run_seed, fold)
                            base = results / "metrics" / study / dataset / model / loss / variant
                            frame = _case_rows(rng, cases, dataset, model, loss, fold,
                                               effects.get(loss, 0.0), ratio, run_seed)
                            base.parent.mkdir(parents=True, exist_ok=True)
                            frame.to_csv(f"{base}.csv", index=False)
                            companion = {
                                "format": 2, "dataset": dataset, "model": model, "loss": loss,
                                "fold": fold, "ratio": ratio, "seed": run_seed,
                                "hd95_units": "voxels",
                                "batch_pooled_dice": pooled_settings(),
                                "protocol": {"scaling": "volume",
                                             "modalities": {dataset: "flair"},
                                             "area": "pixels" if loss == "calf" else None,
                                             "scope": "batch" if loss == "calf" else None,
                                             "precision": "bf16", "deterministic": False,
                                             "init": "pytorch"},
                                "execution": {"precision": "fp32"},
                                "summary": {"mean_dice": float(frame["dice"].mean()),
                                            "batch_pooled_dice_32": float(rng.uniform(0.5, 0.95))},
                                "overlays": {r: {"file": f"{r}.png", "arrays": f"{r}.npz",
                                                 "case_id": cases[i],
                                                 "modality": "flair", "slice": 3,
                                                 "dice": float(frame["dice"].iloc[i])}
                                             for i, r in enumerate(("best", "median", "worst"))},
                            }
                            Path(f"{base}.json").write_text(json.dumps(companion, indent=2))
                            _write_overlays(Path(f"{base}_overlays"), rng)
                            _write_run(results / "runs" / study / dataset / model / loss / variant,
                                       rng, loss, epochs)
                            written.append(Path(f"{base}.csv"))
    return written
