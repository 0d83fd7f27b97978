"""calf.analysis.robustness: re-filling undefined cells under another empty-mask preset and
the verdicts of CALF against each baseline under every preset and metric; and the per-case
CSV's grid columns it reads (calf.evaluate.metrics.grid_columns, parse_grid)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calf.analysis.robustness import (
    FIXED_NOTES,
    ROBUSTNESS_COLUMNS,
    VERDICT_KEYS,
    refill,
    robustness,
)
from calf.errors import CalfError
from calf.evaluate.metrics import grid_columns, parse_grid
from calf.evaluate.pipeline import CASE_COLUMNS
from calf.stats.collect import load_case_metrics

BRATS = ("240x240x155", "1x1x1")
BRATS_DIAGONAL = math.sqrt(240**2 + 240**2 + 155**2)  # 373.13...
SMALL = ("10x10x5", "1x1x2")  # diagonal sqrt(100 + 100 + 100)
SMALL_DIAGONAL = math.sqrt(300)


@pytest.mark.parametrize(
    "shape, spacing, voxels, expected",
    [
        ((240, 240, 155), (1.0, 1.0, 1.0), 1000, (1.0, "240x240x155", "1x1x1")),
        ((10, 12, 5), (0.5, 0.5, 2.0), 400, (0.2, "10x12x5", "0.5x0.5x2")),
        ((4, 4, 4), (0.9375, 0.9375, 3.3), 0, (0.0, "4x4x4", "0.9375x0.9375x3.3")),
    ],
)
def test_grid_columns(shape, spacing, voxels, expected):
    out = grid_columns(shape, spacing, voxels)
    assert (out["grid_shape"], out["spacing_mm"]) == expected[1:]
    assert out["tumour_ml"] == pytest.approx(expected[0], abs=1e-12)
    assert parse_grid(out["grid_shape"], out["spacing_mm"]) == (tuple(shape), tuple(spacing))


def test_grid_columns_without_spacing():
    out = grid_columns((8, 8, 3), None, 50)
    assert math.isnan(out["tumour_ml"]) and (out["grid_shape"], out["spacing_mm"]) == ("8x8x3", "")


@pytest.mark.parametrize(
    "shape, spacing",
    [("", ""), (np.nan, "1x1x1"), ("240x240x155", np.nan), ("240x240", "1x1x1"),
     ("axbxc", "1x1x1"), ("240x240x155", "1x0x1"), (None, None)],
)
def test_parse_grid_rejects_missing_or_malformed(shape, spacing):
    assert parse_grid(shape, spacing) is None


def _tiny(rows: list[dict]) -> pd.DataFrame:
    """Rows of one group and loss: the columns refill reads, defaults for the others."""
    base = {"study": "s", "dataset": "d", "model": "unet", "ratio": "natural", "loss": "calf",
            "dice": 0.5, "iou": 0.4, "hd95": 3.0, "nsd": 0.6, "lesion_dice": 0.5,
            "sq_dsc": 0.5, "pq_dsc": 0.5, "sq_hd95": 3.0, "tumour_voxels": 100.0,
            "predicted_voxels": 90.0, "grid_shape": BRATS[0], "spacing_mm": BRATS[1]}
    return pd.DataFrame([base | row for row in rows])


# suite-evaluated cells: a defined case, an empty pair, an empty truth with a prediction
SUITE_ROWS = [
    {},
    {"tumour_voxels": 0.0, "predicted_voxels": 0.0, "dice": 1.0, "iou": 1.0, "hd95": 0.0,
     "nsd": 1.0, "lesion_dice": 1.0, "sq_dsc": 1.0, "pq_dsc": 1.0, "sq_hd95": 0.0},
    {"tumour_voxels": 0.0, "predicted_voxels": 40.0, "dice": 0.0, "iou": 0.0,
     "hd95": BRATS_DIAGONAL, "nsd": 0.0, "lesion_dice": 0.0},
]


@pytest.mark.parametrize(
    "preset, empty_pair, one_empty_hd95, counts",
    [
        # nnunet: NaN wherever undefined; Dice 1 of the empty pair -> NaN
        ("nnunet", (math.nan, math.nan, math.nan, math.nan), math.nan,
         {"dice": 1, "iou": 1, "hd95": 2, "nsd": 2}),
        # brats: 374 on BraTS's grid (the CSV has the diagonal 373.13)
        ("brats", (1.0, 1.0, 0.0, 1.0), 374.0, {"dice": 0, "iou": 0, "hd95": 1, "nsd": 0}),
        ("suite", (1.0, 1.0, 0.0, 1.0), BRATS_DIAGONAL,
         {"dice": 0, "iou": 0, "hd95": 0, "nsd": 0}),
    ],
)
def test_refill_on_the_brats_grid(preset, empty_pair, one_empty_hd95, counts):
    cases = _tiny(SUITE_ROWS)
    before = cases.copy()
    out, n = refill(cases, preset)
    pd.testing.assert_frame_equal(cases, before)  # the input is left as it is
    np.testing.assert_array_equal(out.loc[1, ["dice", "iou", "hd95", "nsd"]].to_numpy(float),
                                  empty_pair)
    np.testing.assert_array_equal(out.loc[2, ["hd95"]].to_numpy(float), [one_empty_hd95])
    expected_nsd = math.nan if preset == "nnunet" else 0.0
    np.testing.assert_array_equal(out.loc[2, ["dice", "iou", "nsd"]].to_numpy(float),
                                  [0.0, 0.0, expected_nsd])  # one-empty Dice, IoU: defined 0
    pd.testing.assert_series_equal(out.loc[0], before.loc[0])  # defined cells untouched
    # lesion-wise and instance-wise metrics are never re-filled
    columns = ["lesion_dice", "sq_dsc", "pq_dsc", "sq_hd95"]
    pd.testing.assert_frame_equal(out[columns], before[columns])
    assert n == {**counts, "lesion_dice": 0, "sq_dsc": 0, "pq_dsc": 0, "sq_hd95": 0}


@pytest.mark.parametrize(
    "preset, grid, expected",
    [
        ("suite", SMALL, SMALL_DIAGONAL),  # the diagonal of the grid scored on
        ("brats", SMALL, SMALL_DIAGONAL),  # 374 means nothing off BraTS's grid
        ("brats", ("155x240x240", "1x1x1"), 374.0),  # any axis order
        ("suite", BRATS, BRATS_DIAGONAL),
    ],
)
def test_refill_one_empty_hd95_from_the_grid(preset, grid, expected):
    cases = _tiny([{"tumour_voxels": 30.0, "predicted_voxels": 0.0, "dice": 0.0,
                    "hd95": math.nan, "nsd": math.nan, "grid_shape": grid[0],
                    "spacing_mm": grid[1]}])
    out, n = refill(cases, preset)
    assert out.loc[0, "hd95"] == pytest.approx(expected) and out.loc[0, "nsd"] == 0.0
    assert (out.loc[0, "dice"], n["hd95"], n["nsd"], n["dice"]) == (0.0, 1, 1, 0)


def test_refill_keeps_what_it_cannot_know():
    """Rows without counts are left whole; a one-empty HD95 without a grid is kept (NaN
    under nnunet needs no grid); both are counted in the notes."""
    cases = _tiny([
        {"predicted_voxels": math.nan, "tumour_voxels": 0.0, "dice": 1.0, "hd95": 0.0},
        {"tumour_voxels": 0.0, "predicted_voxels": 7.0, "dice": 0.0, "hd95": 99.0,
         "grid_shape": math.nan, "spacing_mm": math.nan},
    ])
    out, n = refill(cases, "suite")
    assert (out.loc[0, "dice"], out.loc[0, "hd95"], out.loc[1, "hd95"]) == (1.0, 0.0, 99.0)
    assert n["hd95"] == 0
    out, n = refill(cases, "nnunet")
    assert math.isnan(out.loc[1, "hd95"]) and out.loc[0, "dice"] == 1.0 and n["hd95"] == 1
    _, _, notes = robustness(_tiny([{}]), calf_losses=[], presets=["suite"])
    assert notes == list(FIXED_NOTES)


def test_refill_unknown_preset():
    with pytest.raises(CalfError, match="unknown conventions preset 'strict'"):
        refill(_tiny([{}]), "strict")


# --- verdicts ---------------------------------------------------------------------------

# CALF - BCE Dice of the 10 tumour-bearing patients: no systematic difference (R+ 27, R- 28)
NOISE = [0.01, -0.012, 0.013, -0.011, 0.014, -0.015, 0.009, -0.008, 0.016, -0.017]


def _row(patient: str, tumour: int, predicted: int, dice: float, hd95: float,
         nsd: float) -> dict:
    return {"case_id": f"{patient}-e1", "patient_id": patient, "subject_id": f"d/{patient}",
            "modality": "t1", "dataset": "d", "model": "unet", "fold": 0, "dice": dice,
            "iou": dice, "hd95": hd95, "nsd": nsd, "sensitivity": 0.8, "specificity": 0.99,
            "precision": 0.7, "lesion_dice": dice, "lesion_hd95": hd95, "sq_dsc": dice,
            "pq_dsc": dice, "sq_hd95": hd95, "tumour_voxels": tumour,
            "predicted_voxels": predicted, "lesions_tp": 1, "lesions_fp": 0, "lesions_fn": 0,
            **grid_columns((240, 240, 155), (1.0, 1.0, 1.0), tumour)}


def _write(root: Path, loss: str, rows: list[dict]) -> Path:
    path = root / "s" / "d" / "unet" / loss / "fold0.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([{**row, "loss": loss} for row in rows])
    frame[list(CASE_COLUMNS)].to_csv(path, index=False)
    return path


def _empty_wins(root: Path) -> pd.DataFrame:
    """CALF ties BCE on 10 tumour-bearing patients and wins on 10 tumour-free ones only by
    predicting nothing there (Dice 1, HD95 0 under suite) where BCE predicts 50 voxels
    (Dice 0, HD95 the grid's diagonal): evaluated under suite."""
    calf, bce = [], []
    for i, noise in enumerate(NOISE):
        p = f"t{i:02d}"
        calf.append(_row(p, 500, 480, 0.8 + noise, 5.0 - noise, 0.7 + noise))
        bce.append(_row(p, 500, 470, 0.8, 5.0, 0.7))
    for i in range(10):
        p = f"n{i:02d}"
        calf.append(_row(p, 0, 0, 1.0, 0.0, 1.0))
        bce.append(_row(p, 0, 50, 0.0, BRATS_DIAGONAL, 0.0))
    paths = [_write(root, "calf", calf), _write(root, "bce", bce)]
    return load_case_metrics(paths, root)


OPTIONS = {"calf_losses": ["calf"], "resamples": 200}


def test_nnunet_preset_flips_a_win_made_of_empty_predictions(tmp_path):
    cases = _empty_wins(tmp_path)
    table, changes, notes = robustness(cases, **OPTIONS)
    assert list(table.columns) == list(ROBUSTNESS_COLUMNS) and len(table) == 12
    got = {(r.preset, r.metric): (r.verdict, r.n_patients, r.n_refilled)
           for r in table.itertuples()}
    assert got == {
        ("suite", "dice"): ("better", 20, 0), ("suite", "lesion_dice"): ("better", 20, 0),
        ("suite", "nsd"): ("better", 20, 0), ("suite", "hd95"): ("better", 20, 0),
        # the BraTS grid: BCE's 10 one-empty HD95 373.13 -> 374
        ("brats", "dice"): ("better", 20, 0), ("brats", "lesion_dice"): ("better", 20, 0),
        ("brats", "nsd"): ("better", 20, 0), ("brats", "hd95"): ("better", 20, 10),
        # CALF's 10 empty pairs NaN (and BCE's one-empty NSD, HD95): those patients drop out
        ("nnunet", "dice"): ("no difference", 10, 10),
        ("nnunet", "lesion_dice"): ("better", 20, 0),
        ("nnunet", "nsd"): ("no difference", 10, 20),
        ("nnunet", "hd95"): ("no difference", 10, 20),
    }
    assert (table["p_holm"] == table["p_value"]).all()  # one test per family
    nn = table[(table["preset"] == "nnunet") & (table["metric"] == "dice")].iloc[0]
    assert nn["p_value"] > 0.5 and nn["median_diff"] == pytest.approx(0.0005)
    assert "lesion-wise" in table.loc[table["metric"] == "lesion_dice", "note"].iloc[0]
    assert "not recomputable" in table[(table["preset"] == "brats")
                                       & (table["metric"] == "hd95")]["note"].iloc[0]
    assert len(changes) == 1
    row = changes.iloc[0]
    assert list(changes.columns[:len(VERDICT_KEYS)]) == list(VERDICT_KEYS)
    assert (row["calf_loss"], row["baseline"], row["ratio"]) == ("calf", "bce", "natural")
    assert (row["suite/dice"], row["nnunet/dice"], row["nnunet/lesion_dice"]) == (
        "better", "no difference", "better")
    assert set(FIXED_NOTES) <= set(notes)


def test_no_change_gives_an_empty_table(tmp_path):
    calf, bce = [], []
    for i in range(12):
        p = f"t{i:02d}"
        calf.append(_row(p, 400 + i, 390, 0.85 + i / 1000, 4.0 - i / 100, 0.8 + i / 1000))
        bce.append(_row(p, 400 + i, 380, 0.75, 6.0, 0.7))
    cases = load_case_metrics([_write(tmp_path, "calf", calf), _write(tmp_path, "bce", bce)],
                              tmp_path)
    table, changes, _ = robustness(cases, presets=["suite", "nnunet"], metrics=["dice", "hd95"],
                                   **OPTIONS)
    assert set(table["verdict"]) == {"better"} and (table["n_refilled"] == 0).all()
    assert changes.empty
    assert list(changes.columns) == [*VERDICT_KEYS, "suite/dice", "suite/hd95", "nnunet/dice",
                                     "nnunet/hd95"]


def test_unknown_preset_stops_before_any_test(tmp_path):
    with pytest.raises(CalfError, match="unknown conventions preset 'strict'"):
        robustness(_empty_wins(tmp_path), presets=["suite", "strict"], **OPTIONS)


def test_rows_without_a_grid_keep_their_one_empty_hd95(tmp_path):
    """An older table without grid_shape / spacing_mm: BCE's 10 one-empty HD95 cells stay
    373.13 under brats (not 374), counted in the row's note and the notes; nnunet needs no
    grid (NaN)."""
    cases = _empty_wins(tmp_path).drop(columns=["grid_shape", "spacing_mm"])
    table, _, notes = robustness(cases, metrics=["hd95"], **OPTIONS)
    rows = table.set_index("preset")
    assert (rows.loc["brats", "n_refilled"], rows.loc["nnunet", "n_refilled"]) == (0, 20)
    assert "10 one-empty cell(s) without a grid" in rows.loc["brats", "note"]
    assert "without a grid" not in rows.loc["nnunet", "note"]
    assert any(n.startswith("brats: 10 one-empty HD95 cell(s) without grid_shape")
               for n in notes)


def test_notes_say_why_patients_are_missing_or_untested(tmp_path):
    cases = _empty_wins(tmp_path)
    table, _, _ = robustness(cases, presets=["nnunet"], metrics=["dice"], **OPTIONS)
    assert table["note"].iloc[0] == "10 row(s) NaN for either loss left out"
    one = cases[cases["case_id"] == "t00-e1"]  # one patient: no test
    table, changes, _ = robustness(one, presets=["suite"], metrics=["dice"], **OPTIONS)
    assert table["verdict"].iloc[0] == "no difference" and math.isnan(table["p_value"].iloc[0])
    assert table["note"].iloc[0] == "no test: too few pairs (1 < 2)" and changes.empty


def test_refill_by_position_not_label():
    """Rows of two tables concatenated keep repeated index labels: filled by position."""
    cases = pd.concat([_tiny(SUITE_ROWS[1:]), _tiny(SUITE_ROWS[:1])])  # labels 0, 1, 0
    out, n = refill(cases, "brats")
    np.testing.assert_array_equal(out["hd95"].to_numpy(), [0.0, 374.0, 3.0])
    assert n["hd95"] == 1
