"""Tumour sizes, size classes, per-patient advantages and training-set regimes
(calf.analysis.strata), and the planted fixture they are validated on (calf.synth.planted)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from calf._fs import json_text
from calf.analysis.strata import (
    ADVANTAGE_COLUMNS,
    CASE_SIZE_COLUMNS,
    NO_TUMOUR,
    REGIME_COLUMNS,
    SIZES_COLUMNS,
    case_sizes,
    check_size_bins,
    patient_advantages,
    patient_sizes,
    training_regimes,
)
from calf.errors import CalfError
from calf.layout import Variant, training_file
from calf.profile import build_profile
from calf.stats.collect import CASE_TABLE_COLUMNS as CASE_COLUMNS
from calf.stats.collect import METRIC_COLUMNS
from calf.synth.planted import planted_cases

INF = math.inf


def truth_rows(ml: list[float], *, exams: int = 1, study: str = "s", dataset: str = "d",
               voxels_only: bool = False) -> pd.DataFrame:
    """Rows of one loss with patient i's every exam of ``ml[i]`` ml (1 mm voxels)."""
    rows = []
    for i, volume in enumerate(ml):
        for exam in range(exams):
            rows.append({"study": study, "dataset": dataset, "case_id": f"p{i}-{exam}",
                         "subject_id": f"{dataset}/p{i}", "tumour_voxels": volume * 1000,
                         "tumour_ml": math.nan if voxels_only else volume,
                         "source": f"{dataset}.csv"})
    return pd.DataFrame(rows)


def classes_of(sizes: pd.DataFrame) -> list[tuple[str, float, float]]:
    """(size_class, class_low, class_high) of each patient, in patient order."""
    ordered = sizes.sort_values("subject_id", key=lambda s: s.str.split("p").str[-1].astype(int))
    return list(ordered[["size_class", "class_low", "class_high"]].itertuples(index=False,
                                                                                name=None))


@pytest.mark.parametrize(
    ("ml", "size_bins", "expected", "n_notes"),
    [
        # quartile edges 1, 2.75, 4.5, 6.25, 8 (numpy's linear quantiles); right-closed
        ([1, 2, 3, 4, 5, 6, 7, 8], 4,
         [("Q1", 1, 2.75)] * 2 + [("Q2", 2.75, 4.5)] * 2 + [("Q3", 4.5, 6.25)] * 2
         + [("Q4", 6.25, 8)] * 2, 0),
        # a size equal to an edge: (0, 2.5), [2.5, 6), [6, inf)
        ([1, 2, 2.5, 5, 6, 8], [2.5, 6],
         [("B1", 0, 2.5)] * 2 + [("B2", 2.5, 6)] * 2 + [("B3", 6, INF)] * 2, 0),
        # an empty edge class: a note
        ([1, 2, 8], [2.5, 6], [("B1", 0, 2.5)] * 2 + [("B3", 6, INF)], 1),
        # six tied sizes: edges 1, 1, 1, 1.25, 3 merge into two classes
        ([1, 1, 1, 1, 1, 1, 2, 3], 4, [("Q1", 1, 1.25)] * 6 + [("Q2", 1.25, 3)] * 2, 1),
        # tumour-free patients are their own class and out of the quantiles (median 3)
        ([0, 2, 0, 4], 2, [(NO_TUMOUR, 0, 0), ("Q1", 2, 3), (NO_TUMOUR, 0, 0), ("Q2", 3, 4)], 0),
        # every patient the same size: one class
        ([5, 5, 5], 3, [("Q1", 5, 5)] * 3, 1),
    ],
)
def test_size_classes(ml, size_bins, expected, n_notes):
    sizes, notes = patient_sizes(truth_rows(ml), size_bins)
    assert list(sizes.columns) == list(SIZES_COLUMNS)
    assert classes_of(sizes) == [(c, pytest.approx(lo), pytest.approx(hi))
                                 for c, lo, hi in expected]
    assert len(notes) == n_notes
    assert set(sizes["size_unit"]) == {"ml"}


def test_size_is_the_mean_over_exams_and_voxels_without_ml():
    rows = truth_rows([2.0, 6.0], exams=2)
    rows.loc[1, ["tumour_voxels", "tumour_ml"]] = [4000.0, 4.0]  # p0's exams: 2 and 4 ml
    sizes, _ = patient_sizes(rows, 2)
    assert sizes["n_cases"].tolist() == [2, 2]
    assert sizes["size"].tolist() == pytest.approx([3.0, 6.0])
    old = truth_rows([2.0, 0.0, 6.0], voxels_only=True)
    old.loc[1, "tumour_ml"] = 0.0  # a tumour-free patient's ml does not decide the unit
    sizes, notes = patient_sizes(old, 2)
    assert sizes["size_unit"].unique().tolist() == ["voxels"]
    assert sizes["size"].tolist() == [2000.0, 0.0, 6000.0]
    assert any("voxels" in note for note in notes)


def test_classes_are_per_study_and_count_each_patient_once():
    # study a's patients are small and b's large: each gets its own quartiles
    rows = pd.concat([truth_rows([1, 2, 3, 4], study="a"), truth_rows([10, 20], study="b"),
                      truth_rows([1, 2, 3, 4], study="a")])  # a second loss: same truths
    sizes, _ = patient_sizes(rows, 2)
    a = sizes[sizes["study"] == "a"]
    assert a["size_class"].tolist() == ["Q1", "Q1", "Q2", "Q2"]
    assert a["class_high"].max() == 4
    assert sizes[sizes["study"] == "b"]["size_class"].tolist() == ["Q1", "Q2"]


def test_case_sizes_carry_the_patients_class():
    rows = truth_rows([1, 8], exams=2)
    sizes, _ = patient_sizes(rows, [4])
    cases = case_sizes(rows, sizes)
    assert list(cases.columns) == list(CASE_SIZE_COLUMNS)
    assert cases["size_class"].tolist() == ["B1", "B1", "B2", "B2"]
    assert cases["size"].tolist() == [1, 1, 8, 8]


@pytest.mark.parametrize(("column", "other"), [("tumour_voxels", 1200.0), ("tumour_ml", 1.2)])
def test_truth_disagreement_names_the_case_and_files(column, other):
    rows = pd.concat([truth_rows([1.0, 2.0]), truth_rows([1.0, 2.0])], ignore_index=True)
    rows["source"] = ["a.csv", "a.csv", "b.csv", "b.csv"]
    rows.loc[2, column] = other
    with pytest.raises(CalfError, match=rf"case p0-0 has {column} .* in a\.csv but "
                                        rf"{other:g} in b\.csv"):
        patient_sizes(rows)


@pytest.mark.parametrize("size_bins", [1, 0, -3, True, [], [3, 2], [2, 2], [0, 1], [-1.0],
                                       [1, math.nan], [1, INF], "4", 2.5, None])
def test_size_bins_are_checked(size_bins):
    with pytest.raises(CalfError, match="analysis.size_bins"):
        check_size_bins(size_bins)


@pytest.mark.parametrize(("size_bins", "expected"), [(2, 2), (10, 10), ([1.5], (1.5,)),
                                                     ((1, 10, 40), (1.0, 10.0, 40.0))])
def test_size_bins_accepted(size_bins, expected):
    assert check_size_bins(size_bins) == expected


def metric_rows(values: dict[str, list[float]], ml: list[float],
                modalities=("flair",)) -> pd.DataFrame:
    """Full per-case rows: loss -> Dice of patient i (every modality the same, plus 0.1 per
    later modality), HD95 = 10 x (1 - Dice)."""
    rows = []
    for loss, dice in values.items():
        for i, (d, volume) in enumerate(zip(dice, ml)):
            for m, modality in enumerate(modalities):
                row = dict.fromkeys(CASE_COLUMNS, math.nan)
                row.update({"study": "s", "dataset": "d", "model": "unet", "loss": loss,
                            "ratio": "natural", "fold": 0, "case_id": f"p{i}-0",
                            "patient_id": f"p{i}", "modality": modality,
                            "member_dataset": "d", "subject_id": f"d/p{i}",
                            "dice": d + 0.1 * m, "hd95": 10 * (1 - d - 0.1 * m),
                            "tumour_voxels": volume * 1000, "tumour_ml": volume,
                            "source": f"{loss}.csv"})
                rows.append(row)
    frame = pd.DataFrame(rows)
    frame["seed"] = pd.array([pd.NA] * len(frame), dtype="Int64")
    return frame


def test_patient_advantages_signs_and_pooling():
    # patients 0 (no tumour), 1 (1 ml), 2 (8 ml); two modalities pooled: Dice + 0.05
    rows = metric_rows({"bce": [1.0, 0.4, 0.7], "calf": [1.0, 0.6, 0.6]}, [0, 1, 8],
                       modalities=("flair", "t1"))
    sizes, _ = patient_sizes(rows, 2)
    table = patient_advantages(rows, sizes, ["calf"], ["dice", "hd95"])
    assert list(table.columns) == list(ADVANTAGE_COLUMNS)
    dice = table[table["metric"] == "dice"]
    assert dice["calf_value"].tolist() == pytest.approx([1.05, 0.65, 0.65])
    assert dice["baseline_value"].tolist() == pytest.approx([1.05, 0.45, 0.75])
    assert dice["diff"].tolist() == pytest.approx([0, 0.2, -0.1])
    assert dice["advantage"].tolist() == pytest.approx([0, 0.2, -0.1])
    hd95 = table[table["metric"] == "hd95"]
    assert hd95["diff"].tolist() == pytest.approx([0, -2, 1])
    assert hd95["advantage"].tolist() == pytest.approx([0, 2, -1])  # lower is better
    assert dice["size_class"].tolist() == [NO_TUMOUR, "Q1", "Q2"]
    assert set(table["baseline"]) == {"bce"} and set(table["calf_loss"]) == {"calf"}


def test_patient_advantages_pairs_every_calf_loss_with_every_baseline():
    rows = metric_rows({"bce": [0.5, 0.5], "dice": [0.4, 0.4], "calf": [0.6, 0.6],
                        "calf_region": [0.7, 0.7]}, [1, 2])
    sizes, _ = patient_sizes(rows, 2)
    table = patient_advantages(rows, sizes, ["calf_region", "calf"], ["dice"])
    pairs = list(dict.fromkeys(zip(table["calf_loss"], table["baseline"])))
    assert pairs == [("calf", "bce"), ("calf", "dice"), ("calf_region", "bce"),
                     ("calf_region", "dice")]
    assert patient_advantages(rows, sizes, ["absent"], ["dice"]).empty
    with pytest.raises(CalfError, match="analysis.metrics 'dsc': unknown metric"):
        patient_advantages(rows, sizes, ["calf"], ["dsc"])


def test_patient_advantages_missing_case_raises():
    rows = metric_rows({"bce": [0.5, 0.5], "calf": [0.6, 0.6]}, [1, 2])
    rows = rows.drop(index=3)  # calf lacks p1
    sizes, _ = patient_sizes(rows, 2)
    with pytest.raises(CalfError, match="p1-0"):
        patient_advantages(rows, sizes, ["calf"], ["dice"])


def write_profile(root, study, dataset, variant, areas):
    areas = np.asarray(areas, dtype=float)
    record = build_profile(areas, areas.astype(int), "pixels", {"dataset": dataset})
    path = training_file(root, study, dataset, variant, ".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json_text(record))
    return path, record


def test_training_regimes(tmp_path):
    skewed = [0] * 6 + [10, 20, 400]
    b, rec_b = write_profile(tmp_path, "st", "brats", Variant(fold=1, ratio="0.25"), skewed)
    a, rec_a = write_profile(tmp_path, "st", "brats", Variant(fold=0), [0, 0, 5, 5])
    flat, _ = write_profile(tmp_path, "st", "lgg", Variant(fold=0), [7, 7, 7])
    table = training_regimes([b, flat, a], tmp_path)
    assert list(table.columns) == list(REGIME_COLUMNS)
    assert table[["dataset", "ratio", "fold"]].values.tolist() == [
        ["brats", "0.25", 1], ["brats", "natural", 0], ["lgg", "natural", 0]]
    first = table.iloc[0]
    assert (first["n_slices"], first["n_tumour_slices"]) == (9, 3)
    assert first["tumour_slice_ratio"] == pytest.approx(1 / 3)
    assert first["skewness"] == pytest.approx(rec_b["skewness"])
    assert first["branch"] == rec_b["branch"] and first["source"] == str(b)
    assert table.iloc[1]["tumour_slice_ratio"] == 0.5
    assert math.isnan(table.iloc[2]["skewness"])  # all areas equal: S undefined
    assert table.iloc[2]["tumour_slice_ratio"] == 1.0


def test_training_regimes_bad_path(tmp_path):
    path, _ = write_profile(tmp_path, "st", "brats", Variant(fold=0), [0, 1])
    moved = tmp_path / "elsewhere.json"
    path.rename(moved)
    with pytest.raises(CalfError, match="not a training-set path"):
        training_regimes([moved], tmp_path)


def test_planted_cases_shape_and_determinism():
    cases = planted_cases(40, exams=2, modalities=("flair", "t1"), losses=("bce", "dice",
                                                                          "calf"))
    assert list(cases.columns) == list(CASE_COLUMNS)
    assert len(cases) == 40 * 2 * 2 * 3
    assert cases["seed"].dtype == "Int64" and cases["seed"].isna().all()
    assert cases.equals(planted_cases(40, exams=2, modalities=("flair", "t1"),
                                      losses=("bce", "dice", "calf")))
    assert not cases.equals(planted_cases(40, exams=2, modalities=("flair", "t1"),
                                          losses=("bce", "dice", "calf"), seed=1))
    for metric in METRIC_COLUMNS:
        values = cases[metric].dropna()
        assert (values >= 0).all(), metric
        if metric not in ("hd95", "lesion_hd95", "sq_hd95"):
            assert (values <= 1).all(), metric
    assert cases["tumour_voxels"].to_numpy() == pytest.approx(cases["tumour_ml"] * 1000)
    free = cases["tumour_voxels"] == 0
    assert free.groupby(cases["subject_id"]).first().mean() == pytest.approx(0.1)
    assert cases.loc[free, "sensitivity"].isna().all()
    # a case's truth is the same in every row
    assert (cases.groupby("case_id")["tumour_voxels"].nunique() == 1).all()


@pytest.mark.parametrize("effect", [0.0, 0.15])
def test_planted_effect_only_on_the_smallest(effect):
    cases = planted_cases(80, effect=effect, noise=0.0)
    bce, calf = (cases[cases["loss"] == loss].set_index("case_id") for loss in ("bce", "calf"))
    size = bce["tumour_ml"]
    lift = calf["dice"] - bce["dice"]
    bearing = size[size > 0].sort_values()
    smallest = bearing.index[: round(0.25 * len(bearing))]
    others = bearing.index.difference(smallest)
    assert lift[smallest].to_numpy() == pytest.approx(effect)  # no clipping at 0.45 + 0.15
    assert (lift[others] == 0).all()
    # tumour-free cases: Dice 1, or 0 where a loss predicts something (for any loss alike)
    assert set(calf.loc[size == 0, "dice"]) | set(bce.loc[size == 0, "dice"]) <= {0.0, 1.0}


def test_planted_cases_load_like_metrics_files(tmp_path):
    """The fixture has load_case_metrics' columns and dtypes (written as per-case CSVs)."""
    from calf.stats.collect import load_case_metrics

    cases = planted_cases(10, losses=("bce", "calf"))
    paths = []
    for (model, loss, fold), rows in cases.groupby(["model", "loss", "fold"]):
        path = tmp_path / "planted" / "planted" / model / loss / f"fold{fold}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows.drop(columns=["study", "dataset", "ratio", "seed", "source"]).rename(
            columns={"member_dataset": "dataset"}).to_csv(path, index=False)
        paths.append(path)
    loaded = load_case_metrics(paths, tmp_path)
    assert list(loaded.columns) == list(cases.columns)
    assert loaded.dtypes.astype(str).to_dict() == cases.dtypes.astype(str).to_dict()
