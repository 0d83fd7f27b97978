"""The benchmark's compute budget: GPU-hours per study at the authors' per-run times and at
the suite's measured training rates (``benchmarks/gpu.py``'s table).

A run's cost is proportional to the slices it trains on times its epochs. The authors'
times are for their pooled training set (``reference.TRAIN_SLICES`` slices, 20 epochs), so a
run on ``n`` slices for ``e`` epochs costs ``n * e / (TRAIN_SLICES * 20)`` of their per-run
time; a measured rate (slices per second) gives ``n * e / rate`` seconds. The paper-scale
training sets follow from the authors' figures (the paper's data and results sections):

- the four datasets hold ``TRAIN_SLICES + TEST_SLICES`` slices together, shared out by
  patients x series x slices per volume (155 axial slices on the BraTS grid; the
  LGG-1p19qDeletion release has 3 slices per case);
- k-fold cross-validation trains each fold on (k - 1) / k of a dataset;
- the pooled protocol trains on ``TRAIN_SLICES``;
- a filtering ratio r keeps ``min(p / r, (1 - p) / (1 - r))`` of the training slices, p the
  natural tumour-slice fraction (about 0.41): all of the scarcer group.

Imports no torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calf.report.reference import EPOCHS, RUN_HOURS, TEST_SLICES, TRAIN_SLICES

NATURAL_TUMOUR_FRACTION = 0.41
# patients, series the authors used, axial slices per volume (the paper's data section)
PAPER_DATASETS = {
    "upenn_gbm": (611, 3, 155),
    "ucsf_pdgm": (495, 3, 155),
    "brats": (145, 3, 155),
    "lgg_1p19q": (159, 1, 3),
}


def dataset_slices(adapter: str) -> float:
    """Estimated slices of one of the four datasets at paper scale."""
    weights = {name: math.prod(v) for name, v in PAPER_DATASETS.items()}
    return (TRAIN_SLICES + TEST_SLICES) * weights[adapter] / sum(weights.values())


def filtered_fraction(ratio: float, natural: float = NATURAL_TUMOUR_FRACTION) -> float:
    """The share of a training set kept when it is filtered to tumour-slice ratio ``ratio``."""
    return min(natural / ratio, (1 - natural) / (1 - ratio))


@dataclass(frozen=True)
class StudyBudget:
    """One study's training runs and slice-epochs, per model."""

    study: str
    runs: dict[str, int]
    slice_epochs: dict[str, float]

    def authors_hours(self) -> tuple[float, float]:
        """(low, high) GPU-hours at the authors' per-run times."""
        low = high = 0.0
        for model, work in self.slice_epochs.items():
            runs = work / (TRAIN_SLICES * EPOCHS)
            low += runs * RUN_HOURS[model][0]
            high += runs * RUN_HOURS[model][1]
        return low, high

    def hours_at(self, rates: Mapping[str, float]) -> float | None:
        """GPU-hours at measured slices per second per model; None if a model is missing."""
        if any(not rates.get(model) for model in self.slice_epochs):
            return None
        return sum(work / rates[model] for model, work in self.slice_epochs.items()) / 3600


def study_budget(name: str, study: Mapping[str, Any], config: Mapping[str, Any],
                 losses: int) -> StudyBudget:
    """The budget of study ``name`` of ``config`` (a workflow config) with ``losses`` losses."""
    adapters = [config["datasets"][d].get("adapter", d) for d in study["datasets"]]
    unknown = [a for a in adapters if a not in PAPER_DATASETS]
    if unknown:
        raise ValueError(f"study {name}: dataset adapter {unknown[0]!r} has no paper-scale size")
    epochs = config["training"]["epochs"]
    if study.get("pool"):
        # the pooled training set: the authors' figure when all four are pooled, else a share
        pooled = sum(dataset_slices(a) for a in adapters)
        train = pooled * TRAIN_SLICES / (TRAIN_SLICES + TEST_SLICES)
        ratios = study.get("ratios") or [None]
        sets = [train * (1 if r is None else filtered_fraction(r)) for r in ratios]
    else:
        k = study["folds"]
        sets = [dataset_slices(a) * (k - 1) / k for a in adapters for _ in range(k)]
    runs, work = {}, {}
    for model in study["models"]:
        runs[model] = losses * len(sets)
        work[model] = losses * sum(sets) * epochs
    return StudyBudget(name, runs, work)


def read_rates(path: str | Path, mode: str) -> tuple[str, dict[str, float]]:
    """The label of ``mode`` and its training slices per second per model, from the JSON
    ``benchmarks/gpu.py`` writes (a full CUDA run: a ``--quick`` or CPU one is refused)."""
    record = json.loads(Path(path).read_text())
    env = record.get("environment") or {}
    if env.get("type") != "cuda" or record.get("quick"):
        raise ValueError(f"{path}: not a full CUDA run of benchmarks/gpu.py")
    label, rates = mode, {}
    for row in record["sections"]["training"]["rows"]:
        if row.get("mode") == mode and row.get("status") == "ok":
            label = row.get("label", mode)
            rates[row["model"]] = float(row["slices_per_s"])
    return label, rates


def budget_table(budgets: Sequence[StudyBudget], measured: Mapping[str, Mapping[str, float]]
                 | None = None, device: str | None = None) -> str:
    """The README's Markdown table: per study the runs, the authors' GPU-hours and, per
    measured mode, the GPU-hours at the suite's rates (or "not measured yet")."""
    measured = dict(measured or {})
    head = ["study", "training runs", "slice-epochs", "GPU-hours at the authors' times"]
    modes = list(measured) or [None]
    for mode in modes:
        head.append(f"GPU-hours, one {device or 'GPU'}, {mode}" if mode else
                    "GPU-hours at the suite's measured rates")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    total = [0, 0.0, 0.0, 0.0] + [0.0] * len(modes)
    for b in budgets:
        low, high = b.authors_hours()
        runs, work = sum(b.runs.values()), sum(b.slice_epochs.values())
        cells = [b.study, f"{runs}", f"{work / 1e6:,.0f} M", f"{low:,.0f}-{high:,.0f}"]
        total[:4] = [total[0] + runs, total[1] + work, total[2] + low, total[3] + high]
        for i, mode in enumerate(modes):
            hours = b.hours_at(measured[mode]) if mode else None
            cells.append("not measured yet" if hours is None else f"{hours:,.0f}")
            if hours is not None:
                total[4 + i] += hours
            else:
                total[4 + i] = math.nan
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["all", f"{total[0]}", f"{total[1] / 1e6:,.0f} M", f"{total[2]:,.0f}-{total[3]:,.0f}"]
    cells += ["not measured yet" if math.isnan(h) else f"{h:,.0f}" for h in total[4:]]
    lines.append("| " + " | ".join(f"**{c}**" for c in cells) + " |")
    return "\n".join(lines)
