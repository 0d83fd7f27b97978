"""The compute budget (calf/report/budget.py) and the README's GPU-hours table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from calf.report import budget
from calf.report.reference import RUN_HOURS, TEST_SLICES, TRAIN_SLICES, implied_rate

ROOT = Path(__file__).resolve().parents[2]
FOUR = ["upenn_gbm", "ucsf_pdgm", "brats", "lgg_1p19q"]


def config(epochs: int = 20, **study) -> dict:
    return {"datasets": {d: {"adapter": d} for d in FOUR}, "training": {"epochs": epochs},
            "studies": {"s": study}}


@pytest.mark.parametrize(
    "ratio, expected",
    [
        (0.10, 0.59 / 0.90),  # tumour slices are plenty: every tumour-free slice is kept
        (0.25, 0.59 / 0.75),
        (0.41, 1.0),  # the natural fraction keeps everything
        (0.60, 0.41 / 0.60),  # tumour slices are scarce: all of them are kept
        (0.85, 0.41 / 0.85),
    ],
)
def test_filtered_fraction_keeps_all_of_the_scarcer_group(ratio, expected):
    assert budget.filtered_fraction(ratio) == pytest.approx(expected)


def test_the_four_datasets_hold_the_authors_slices():
    total = sum(budget.dataset_slices(d) for d in FOUR)
    assert total == pytest.approx(TRAIN_SLICES + TEST_SLICES)
    # UPENN-GBM: 611 patients x 3 series x 155 slices of 611*465 + 495*465 + 145*465 + 159*3
    share = 611 * 465 / (1251 * 465 + 477)
    assert budget.dataset_slices("upenn_gbm") == pytest.approx(share * 589_838)


def test_a_pooled_run_costs_the_authors_per_run_time():
    c = config(datasets=FOUR, pool="pooled", holdout=0.1, models=["unet", "fpn"])
    b = budget.study_budget("s", c["studies"]["s"], c, losses=1)
    assert b.runs == {"unet": 1, "fpn": 1}
    assert b.slice_epochs["unet"] == pytest.approx(TRAIN_SLICES * 20)
    low, high = b.authors_hours()
    assert (low, high) == pytest.approx((12.0 + 3.5, 13.6 + 4.9))
    # at the authors' own implied rates the measured column gives their times back
    rates = {m: implied_rate(m)[0] for m in ("unet", "fpn")}
    assert b.hours_at(rates) == pytest.approx(high)
    assert b.hours_at({"unet": 100.0}) is None  # fpn not measured


def test_cross_validation_trains_each_dataset_k_minus_one_times_over_and_epochs_scale():
    c = config(epochs=10, datasets=["brats"], folds=5, models=["deeplabv3"])
    b = budget.study_budget("s", c["studies"]["s"], c, losses=3)
    assert b.runs == {"deeplabv3": 15}
    assert b.slice_epochs["deeplabv3"] == pytest.approx(
        3 * 4 * budget.dataset_slices("brats") * 10)
    runs = b.slice_epochs["deeplabv3"] / (TRAIN_SLICES * 20)
    assert b.authors_hours() == pytest.approx(tuple(runs * h for h in RUN_HOURS["deeplabv3"]))


def test_filtering_runs_one_training_set_per_ratio():
    c = config(datasets=FOUR, pool="pooled", holdout=0.1, ratios=[0.1, 0.6], models=["fpn"])
    b = budget.study_budget("s", c["studies"]["s"], c, losses=2)
    assert b.runs == {"fpn": 4}
    kept = budget.filtered_fraction(0.1) + budget.filtered_fraction(0.6)
    assert b.slice_epochs["fpn"] == pytest.approx(2 * kept * TRAIN_SLICES * 20)


def test_a_dataset_without_a_paper_scale_size_is_named():
    c = config(datasets=["toy"], folds=2, models=["unet"])
    c["datasets"]["toy"] = {"adapter": "folder"}
    with pytest.raises(ValueError, match="adapter 'folder'"):
        budget.study_budget("s", c["studies"]["s"], c, losses=1)


def gpu_json(path, rates, kind="cuda", quick=False):
    rows = [{"model": m, "mode": "bf16_cl", "label": "bf16 + channels-last", "status": "ok",
             "slices_per_s": r} for m, r in rates.items()]
    rows.append({"model": "unet", "mode": "fp32", "label": "fp32", "status": "error: x",
                 "slices_per_s": None})
    path.write_text(json.dumps({"quick": quick, "environment": {"type": kind,
                                                                "name": "NVIDIA H200"},
                                "sections": {"training": {"rows": rows}}}))
    return path


def test_measured_rates_fill_their_column(tmp_path):
    path = gpu_json(tmp_path / "gpu.json", {"unet": 2000.0, "deeplabv3": 4000.0})
    label, rates = budget.read_rates(path, "bf16_cl")
    assert (label, rates) == ("bf16 + channels-last", {"unet": 2000.0, "deeplabv3": 4000.0})
    assert budget.read_rates(path, "fp32") == ("fp32", {})  # its row failed: no rate
    c = config(datasets=FOUR, pool="pooled", holdout=0.1, models=["unet"])
    b = budget.study_budget("pooled", c["studies"]["s"], c, losses=1)
    table = budget.budget_table([b], {label: rates, "fp32": {}}, "NVIDIA H200")
    hours = TRAIN_SLICES * 20 / 2000 / 3600  # 1.48 h
    assert "GPU-hours, one NVIDIA H200, bf16 + channels-last" in table
    assert f"| pooled | 1 | 11 M | 12-14 | {hours:,.0f} | not measured yet |" in table


@pytest.mark.parametrize("kind, quick", [("cpu", False), ("cuda", True)])
def test_a_cpu_or_quick_gpu_table_is_refused(tmp_path, kind, quick):
    path = gpu_json(tmp_path / "gpu.json", {"unet": 1.0}, kind, quick)
    with pytest.raises(ValueError, match="gpu.json: not a full CUDA run"):
        budget.read_rates(path, "bf16_cl")


def test_readme_gpu_hours_table_is_the_scripts_output():
    """The README's table is what benchmarks/gpu_hours.py prints for config/paper.yaml."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_hours.py")],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out.count("\n") == 5  # header, rule, three studies, total
    assert out in (ROOT / "README.md").read_text()
