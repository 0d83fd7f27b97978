"""calf.stats.collect: identity from the path, reading and checking the per-case CSVs,
matching rows across losses and averaging them per patient."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from calf.errors import CalfError
from calf.stats.collect import (
    NO_SEED,
    check_complete,
    load_case_metrics,
    patient_table,
    row_table,
)

HEADER = ("case_id,patient_id,modality,dataset,model,loss,fold,dice,iou,hd95,sensitivity,"
          "specificity,precision,tumour_voxels")


IDENTITY = ["study", "dataset", "model", "loss", "ratio", "seed", "fold"]


@pytest.mark.parametrize(
    "rel, expected",
    [
        ("cv/brats/unet/calf/fold0.csv", ["cv", "brats", "unet", "calf", "natural", None, 0]),
        ("filt/brats/fpn/dice/ratio-0.1/fold3.csv",
         ["filt", "brats", "fpn", "dice", "0.1", None, 3]),
        ("s/pool/unet/bce/seed-7/fold1.csv", ["s", "pool", "unet", "bce", "natural", 7, 1]),
        ("s/d/m/calf_region/ratio-0.5/seed-12/fold2.csv",
         ["s", "d", "m", "calf_region", "0.5", 12, 2]),
    ],
)
def test_identity_from_the_path(tmp_path, rel, expected):
    loss = rel.split("/")[3]
    path = _write(tmp_path, rel, [_row("c-1", loss)])
    row = load_case_metrics([path], tmp_path)[IDENTITY].iloc[0].tolist()
    assert [None if pd.isna(v) else v for v in row] == expected


@pytest.mark.parametrize(
    "rel, message",
    [
        ("s/d/m/fold0.csv", "not a results path"),
        ("s/d/m/l/seed-1/ratio-0.1/fold0.csv", "not a results path"),
        ("s/d/m/l/fold0.json", "not a results path"),
        # the natural training set has no ratio component (calf.layout)
        ("s/d/m/l/ratio-natural/fold0.csv", "not a results path"),
        ("s/d/m/l/ratio-1.2.3/fold0.csv", "ratio-1.2.3 is not a ratio"),
        ("s/d/m/l/ratio-1.5/fold0.csv", "ratio-1.5 is not a ratio"),
        # one spelling per ratio: 0.10 and 0.1 would be two paths of one run
        ("s/d/m/l/ratio-0.10/fold0.csv", "ratio-0.10 is spelled ratio-0.1"),
    ],
)
def test_path_errors_name_the_file(tmp_path, rel, message):
    path = _write(tmp_path, rel, [_row("c-1", "l")])
    with pytest.raises(CalfError, match=message) as err:
        load_case_metrics([path], tmp_path)
    assert str(path) in str(err.value)


def test_path_outside_root(tmp_path):
    path = _write(tmp_path, "a/s/d/m/l/fold0.csv", [_row("c-1", "l")])
    with pytest.raises(CalfError, match="not under"):
        load_case_metrics([path], tmp_path / "b")


def _write(root: Path, rel: str, rows: list[str], header: str = HEADER) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _row(case: str, loss: str, dice: str = "0.5", hd95: str = "3.0", modality: str = "flair",
         dataset: str = "d") -> str:
    patient = case.split("-")[0]
    return (f"{case},{patient},{modality},{dataset},unet,{loss},0,{dice},0.3,{hd95},"
            "0.6,0.99,,120")


def test_load_reads_identity_and_nan(tmp_path):
    path = _write(tmp_path, "s/d/unet/calf/ratio-0.25/seed-3/fold0.csv",
                  [_row("007-a", "calf"), _row("008-b", "calf", dice="", hd95="373.13")])
    cases = load_case_metrics([path], tmp_path)
    assert len(cases) == 2
    first = cases.iloc[0]
    assert first["case_id"] == "007-a"  # text kept: leading zeros survive
    identity = (first["study"], first["model"], first["loss"], first["ratio"])
    assert identity == ("s", "unet", "calf", "0.25")
    assert first["seed"] == 3 and first["fold"] == 0 and first["member_dataset"] == "d"
    assert first["source"] == str(path)
    assert math.isnan(cases.iloc[1]["dice"]) and cases.iloc[1]["hd95"] == 373.13
    assert cases["precision"].isna().all()  # empty cells are NaN


@pytest.mark.parametrize(
    "header, row, message",
    [
        (HEADER.replace(",hd95", ""), "c-1,c,flair,d,unet,calf,0,0.5,0.3,0.6,0.99,,120",
         "missing column.s. hd95"),
        (HEADER, "c-1,c,flair,d,unet,calf,0,high,0.3,3,0.6,0.99,,120",
         "column dice, row 2: not a number: 'high'"),
        (HEADER, "c-1,c,flair,d,unet,calf,0,0.5,0.3,3,0.6,0.99,,",
         "column tumour_voxels, row 2: not a number"),
        (HEADER, "c-1,c,flair,d,unet,dice,0,0.5,0.3,3,0.6,0.99,,120",
         "column loss, row 2 holds dice, the path says 'calf'"),
    ],
)
def test_load_errors_name_file_and_column(tmp_path, header, row, message):
    path = _write(tmp_path, "s/d/unet/calf/fold0.csv", [row], header=header)
    with pytest.raises(CalfError, match=message) as err:
        load_case_metrics([path], tmp_path)
    assert str(path) in str(err.value)


def test_load_missing_file_and_no_files(tmp_path):
    with pytest.raises(CalfError, match="no such file"):
        load_case_metrics([tmp_path / "s/d/unet/calf/fold0.csv"], tmp_path)
    with pytest.raises(CalfError, match="no per-case metrics files"):
        load_case_metrics([], tmp_path)


def test_duplicate_case_names_case_and_files(tmp_path):
    # the same case in two folds of one run
    a = _write(tmp_path, "s/d/unet/calf/fold0.csv", [_row("c-1", "calf")])
    b = _write(tmp_path, "s/d/unet/calf/fold1.csv", [_row("c-1", "calf")])
    other = _write(tmp_path, "s/d/fpn/calf/fold0.csv", [_row("c-1", "calf")])
    with pytest.raises(CalfError, match="case c-1 .flair. appears more than once for loss calf"
                       ) as err:
        load_case_metrics([a, b, other], tmp_path)
    assert str(a) in str(err.value) and str(b) in str(err.value)
    assert str(other) not in str(err.value)
    # another modality of the same case is a different row
    c = _write(tmp_path, "s/d/unet/dice/fold0.csv",
               [_row("c-1", "dice"), _row("c-1", "dice", modality="t1")])
    assert len(load_case_metrics([c], tmp_path)) == 2


def _study(tmp_path: Path, values: dict[tuple[str, int | None], dict[str, str]]) -> pd.DataFrame:
    """values: (loss, seed) -> {case: dice} -> cases of one group."""
    paths = []
    for (loss, seed), dice in values.items():
        rel = f"s/d/unet/{loss}/" + (f"seed-{seed}/" if seed is not None else "") + "fold0.csv"
        paths.append(_write(tmp_path, rel, [_row(c, loss, dice=v) for c, v in dice.items()]))
    return load_case_metrics(paths, tmp_path)


def test_seed_means_and_nan(tmp_path):
    # patients a, b, c (the case id's prefix), one case and modality each, two seeds
    cases = _study(tmp_path, {
        ("calf", 1): {"a-1": "0.2", "b-1": "0.5", "c-1": "0.9"},
        ("calf", 2): {"a-1": "0.4", "b-1": "", "c-1": "0.7"},
        ("bce", 1): {"a-1": "0.1", "b-1": "0.1", "c-1": "0.1"},
        ("bce", 2): {"a-1": "0.3", "b-1": "0.4", "c-1": "0.3"},
    })
    wide, dropped = row_table(cases, "dice", ["calf", "bce"], "error")
    assert len(wide) == 6 and dropped == [] and list(wide.columns) == ["calf", "bce"]
    assert math.isnan(wide.loc[("d/b", "b-1", "flair", 2), "calf"])
    table = patient_table(wide, ["calf", "bce"])
    assert table.values.loc["d/a"].tolist() == pytest.approx([0.3, 0.2])
    assert table.values.loc["d/c"].tolist() == pytest.approx([0.8, 0.2])
    # b's seed-2 row is NaN for calf: left out for bce too, so both sides are seed 1
    assert table.values.loc["d/b"].tolist() == pytest.approx([0.5, 0.1])
    assert (table.n_patients, table.n_rows, table.n_dropped_nan,
            table.n_patients_dropped_nan) == (3, 5, 1, 0)
    # bce alone keeps b's seed-2 row
    assert patient_table(wide, ["bce"]).values.loc["d/b", "bce"] == pytest.approx(0.25)


def test_rows_without_seed_and_patient_without_rows(tmp_path):
    cases = _study(tmp_path, {("calf", None): {"a-1": "0.2", "b-1": ""},
                              ("bce", None): {"a-1": "0.1", "b-1": "0.3"}})
    wide, _ = row_table(cases, "dice", ["calf", "bce"], "error")
    assert set(wide.index.get_level_values("seed")) == {NO_SEED}
    table = patient_table(wide, ["calf", "bce"])
    assert list(table.values.index) == ["d/a"]  # subject_id: d/a
    assert (table.n_patients, table.n_dropped_nan, table.n_patients_dropped_nan) == (1, 1, 1)


def test_case_of_two_patients_names_case_and_files(tmp_path):
    a = _write(tmp_path, "s/d/unet/calf/fold0.csv", [_row("a-1", "calf")])
    b = _write(tmp_path, "s/d/unet/bce/fold0.csv",
               [_row("a-1", "bce").replace("a-1,a,", "a-1,z,", 1)])
    cases = load_case_metrics([a, b], tmp_path)
    with pytest.raises(CalfError, match="case a-1 belongs to patient d/a in .* but to d/z in"
                       ) as err:
        row_table(cases, "dice", ["calf", "bce"], "error")
    assert str(a) in str(err.value) and str(b) in str(err.value)


@pytest.mark.parametrize("row, message", [
    (",a,flair,d,unet,calf,0,0.5,0.3,3,0.6,0.99,,120", "column case_id, row 2: empty"),
    ("a-1,,flair,d,unet,calf,0,0.5,0.3,3,0.6,0.99,,120", "column patient_id, row 2: empty"),
    ("a-1,a,all,d,unet,calf,0,0.5,0.3,3,0.6,0.99,,120", "'all' is reserved"),
])
def test_empty_ids_and_reserved_modality(tmp_path, row, message):
    path = _write(tmp_path, "s/d/unet/calf/fold0.csv", [row])
    with pytest.raises(CalfError, match=message) as err:
        load_case_metrics([path], tmp_path)
    assert str(path) in str(err.value)


def test_missing_case_error_and_drop(tmp_path):
    cases = _study(tmp_path, {
        ("calf", None): {"a-1": "0.2", "b-1": "0.5", "c-1": "0.9"},
        ("bce", None): {"a-1": "0.1", "c-1": "0.1"},
    })
    with pytest.raises(CalfError, match=r"case b-1 \(flair\) is in .*calf/fold0.csv but missing "
                                        r"for loss bce") as err:
        check_complete(cases, ["calf", "bce"], "error")
    assert "s/d/unet" in str(err.value)
    wide, dropped = row_table(cases, "dice", ["calf", "bce"], "drop")
    assert dropped == [("b-1", "flair")]
    assert list(wide.index.get_level_values("case_id")) == ["a-1", "c-1"]


def test_missing_seed_and_absent_loss(tmp_path):
    cases = _study(tmp_path, {
        ("calf", 1): {"a-1": "0.2"}, ("calf", 2): {"a-1": "0.3"}, ("bce", 1): {"a-1": "0.1"},
        ("bce", 2): {"b-1": "0.1"},
    })
    with pytest.raises(CalfError, match=r"missing for loss bce \(seed 2\)"):
        check_complete(cases, ["calf", "bce"], "error")
    with pytest.raises(CalfError, match="no metrics file for loss.es. dice"):
        check_complete(cases, ["calf", "bce", "dice"], "drop")
    with pytest.raises(CalfError, match="stats.missing: 'skip'"):
        check_complete(cases, ["calf", "bce"], "skip")


GRID_HEADER = HEADER + ",predicted_voxels,tumour_ml,grid_shape,spacing_mm"


def test_load_keeps_the_grid_columns(tmp_path):
    """tumour_ml a number (NaN where empty), grid_shape and spacing_mm text, after
    predicted_voxels and before source; an older file without them: all missing."""
    new = _write(tmp_path, "s/d/unet/calf/fold0.csv",
                 [_row("c-1", "calf") + ",110,0.12,240x240x155,1x1x1",
                  _row("c-2", "calf") + ",0,,240x240x155,"], header=GRID_HEADER)
    old = _write(tmp_path, "s/d/unet/bce/fold0.csv", [_row("c-1", "bce")])
    cases = load_case_metrics([new, old], tmp_path)
    columns = list(cases.columns)
    assert columns[columns.index("predicted_voxels"):] == [
        "predicted_voxels", "tumour_ml", "grid_shape", "spacing_mm", "source"]
    assert cases["tumour_ml"].dtype == float and cases["tumour_ml"].iloc[0] == 0.12
    assert list(cases["grid_shape"].iloc[:2]) == ["240x240x155"] * 2
    assert cases["spacing_mm"].iloc[0] == "1x1x1" and pd.isna(cases["spacing_mm"].iloc[1])
    assert cases.iloc[1:][["tumour_ml"]].isna().all().all()
    assert cases.iloc[2][["tumour_ml", "grid_shape", "spacing_mm"]].isna().all()


def test_load_checks_tumour_ml_is_a_number(tmp_path):
    path = _write(tmp_path, "s/d/unet/calf/fold0.csv",
                  [_row("c-1", "calf") + ",110,big,240x240x155,1x1x1"], header=GRID_HEADER)
    with pytest.raises(CalfError, match="column tumour_ml, row 2: not a number: 'big'"):
        load_case_metrics([path], tmp_path)
