"""Patient-grouped splits, crosswalk linking, tumour-ratio filtering and ``calf split``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from calf import split
from calf.crosswalk import Crosswalk
from calf.errors import CalfError
from calf.store import INDEX_FILE

# --------------------------------------------------------------------------- helpers


def slice_index(
    dataset: str, cases: dict[str, tuple[str, list[int]]], modalities=("t1", "t2")
) -> pd.DataFrame:
    """A slice index as the store writes it: ``cases`` maps case_id -> (patient_id, areas)."""
    rows = [
        (dataset, case_id, patient_id, modality, z, area)
        for case_id, (patient_id, areas) in cases.items()
        for modality in modalities
        for z, area in enumerate(areas)
    ]
    index = pd.DataFrame(
        rows, columns=["dataset", "case_id", "patient_id", "modality", "slice", "area"]
    )
    index["image_row"] = range(len(index))
    index["mask_row"] = index.groupby(["case_id", "slice"]).ngroup()
    index["row"] = range(len(index))
    return index


def cohort(dataset: str, visits: list[int], empty_every: int = 4) -> pd.DataFrame:
    """Patient p has ``visits[p]`` cases; every ``empty_every``-th case has no tumour."""
    cases, n = {}, 0
    for p, n_visits in enumerate(visits):
        for v in range(n_visits):
            areas = [0, 0, 0, 0] if n % empty_every == 0 else [0, 12, 40, 0]
            cases[f"{dataset.upper()}-{p:03d}_{v + 1}1"] = (f"{dataset.upper()}-{p:03d}", areas)
            n += 1
    return slice_index(dataset, cases)


def write_store(root: Path, index: pd.DataFrame) -> Path:
    store = root / index["dataset"].iat[0]
    store.mkdir(parents=True)
    index.drop(columns="row").to_parquet(store / INDEX_FILE)
    return store


def side_of(splits, fold: int) -> dict[str, str]:
    return {k: part for part in ("train", "val") for k in splits[fold][part]}


VISITS = [
    1,
    2,
    1,
    3,
    1,
    1,
    2,
    1,
    1,
    1,
    2,
    1,
    1,
    1,
    3,
    1,
    1,
    2,
    1,
    1,
    1,
    1,
    2,
]  # 23 patients, 32 cases


# ------------------------------------------------------------------------ k-fold


@pytest.mark.parametrize("n_folds, seed", [(5, 12345), (3, 7), (4, 0)])
def test_kfold_groups_patients_and_covers_every_case_once(n_folds, seed):
    index = cohort("upenn_gbm", VISITS)
    splits = split.make_splits(index, folds=n_folds, seed=seed)
    cases = split.case_table(index)
    assert len(splits) == n_folds
    val_counts = Counter(k for fold in splits for k in fold["val"])
    assert set(val_counts) == set(cases["key"]) and set(val_counts.values()) == {1}
    patient = dict(zip(cases["key"], cases["patient_id"]))
    for fold in range(n_folds):
        assert set(splits[fold]["train"]) == set(cases["key"]) - set(splits[fold]["val"])
        sides = {}
        for key, part in side_of(splits, fold).items():
            assert (
                sides.setdefault(patient[key], part) == part
            ), f"patient {patient[key]} straddles fold {fold}"
    sizes = [len(f["val"]) for f in splits]
    assert max(sizes) - min(sizes) <= max(VISITS)


def test_kfold_is_deterministic_by_seed():
    index = cohort("ucsf_pdgm", VISITS)
    first = split.make_splits(index, folds=5, seed=1)
    assert split.make_splits(index, folds=5, seed=1) == first
    assert split.make_splits(index, folds=5, seed=2) != first


@pytest.mark.parametrize(
    "visits, folds, message", [([2, 1, 3], 5, "only 3 patient"), ([1] * 10, 1, "at least 2 folds")]
)
def test_kfold_errors(visits, folds, message):
    with pytest.raises(CalfError, match=message):
        split.make_splits(cohort("brats", visits), folds=folds)


# ----------------------------------------------------------------------- holdout


@pytest.mark.parametrize("n_patients, fraction, n_val", [(40, 0.1, 4), (25, 0.1, 3), (20, 0.25, 5)])
def test_holdout_takes_the_fraction_of_patients(n_patients, fraction, n_val):
    index = cohort("brats", [1] * n_patients)
    (fold,) = split.make_splits(index, holdout=fraction, seed=3)
    assert len(fold["val"]) == n_val and len(fold["train"]) == n_patients - n_val
    assert not set(fold["val"]) & set(fold["train"])


def test_holdout_keeps_follow_ups_together():
    index = cohort("upenn_gbm", VISITS * 2)  # 46 patients, 64 cases
    cases = split.case_table(index)
    (fold,) = split.make_splits(index, holdout=0.1, seed=5)
    val_patients = set(cases.set_index("key").loc[fold["val"], "patient_id"])
    train_patients = set(cases.set_index("key").loc[fold["train"], "patient_id"])
    assert len(val_patients) == 5 and not val_patients & train_patients


@pytest.mark.parametrize("fraction, n_patients", [(0.0, 10), (1.0, 10), (0.5, 1)])
def test_holdout_errors(fraction, n_patients):
    with pytest.raises(CalfError, match="holdout"):
        split.make_splits(cohort("brats", [1] * n_patients), holdout=fraction)


# ----------------------------------------------------------- pooled and crosswalk


def pooled_with_overlap():
    """UPENN-GBM (12 patients, 4 with _21 follow-ups) and BraTS 2021 (14 subjects).

    BraTS subjects 0-6 are the baseline scans of UPENN patients 1-7, subject 7 is patient
    7's follow-up scan: 8 links, 18 distinct people.
    """
    upenn = {}
    for p in range(12):
        upenn[f"UPENN-GBM-{p + 1:05d}_11"] = (f"UPENN-GBM-{p + 1:05d}", [0, 5, 9])
        if p % 3 == 0:
            upenn[f"UPENN-GBM-{p + 1:05d}_21"] = (f"UPENN-GBM-{p + 1:05d}", [0, 3, 0])
    brats = {f"BraTS2021_{i:05d}": (f"BraTS2021_{i:05d}", [0, 7, 0]) for i in range(14)}
    index = pd.concat(
        [slice_index("upenn_gbm", upenn), slice_index("brats", brats)], ignore_index=True
    )
    # TCIA's mapping file, columns as published; other collections' rows match nothing
    tcia = pd.DataFrame(
        {
            "Data Collection (as on TCIA+additional)": ["UPENN-GBM"] * 8
            + ["UCSF-PDGM", "TCGA-GBM", "Collection 5"],
            "PatientID on TCIA Radiology Portal": [f"UPENN-GBM-{p + 1:05d}_11" for p in range(7)]
            + ["UPENN-GBM-00007_21", "433", "TCGA-02-0001", "new-not-previously-in-TCIA"],
            "BraTS2021 ID": [f"BraTS2021_{i:05d}" for i in range(8)]
            + ["BraTS2021_00100", "BraTS2021_00101", "BraTS2021_00102"],
            "MGMT value": ["1"] * 11,  # not an ID column: must not link anything
        }
    )
    columns = {"PatientID on TCIA Radiology Portal": "upenn_gbm", "BraTS2021 ID": "brats"}
    return index, Crosswalk("tcia.csv", tcia, columns), columns


def unlinked_cases(index: pd.DataFrame) -> pd.DataFrame:
    """The case table grouped by patient only: what a pool without crosswalks would split."""
    cases = split.case_table(index)
    cases["group"] = split.patient_groups(cases)
    return cases


def test_crosswalk_links_subjects_across_releases():
    index, tcia, columns = pooled_with_overlap()
    cases = split.case_table(index)
    edges = split.crosswalk_edges(tcia, cases)
    groups = dict(zip(cases["key"], split.patient_groups(cases, edges)))
    # 12 UPENN patients + 14 BraTS subjects, 8 of them UPENN patients: 18 groups
    assert len(set(groups.values())) == 18
    same = [
        "brats/BraTS2021_00006",
        "brats/BraTS2021_00007",
        "upenn_gbm/UPENN-GBM-00007_11",
        "upenn_gbm/UPENN-GBM-00007_21",
    ]
    assert len({groups[k] for k in same}) == 1
    assert groups["brats/BraTS2021_00008"] != groups["brats/BraTS2021_00009"]


def test_pooled_folds_keep_linked_subjects_on_one_side():
    index, tcia, columns = pooled_with_overlap()
    linked = [(f"upenn_gbm/UPENN-GBM-{i + 1:05d}_11", f"brats/BraTS2021_{i:05d}") for i in range(7)]
    linked.append(("upenn_gbm/UPENN-GBM-00007_21", "brats/BraTS2021_00007"))
    straddled_without = 0
    for seed in range(4):
        splits = split.make_splits(index, folds=5, seed=seed, crosswalks=[tcia])
        assert all(k.startswith(("upenn_gbm/", "brats/")) for f in splits for k in f["val"])
        for fold in range(5):
            sides = side_of(splits, fold)
            assert all(sides[a] == sides[b] for a, b in linked)
        plain = split.kfold_splits(unlinked_cases(index), 5, seed)
        straddled_without += sum(
            side_of(plain, f)[a] != side_of(plain, f)[b] for f in range(5) for a, b in linked
        )
    assert straddled_without > 0  # the crosswalk is what keeps them together


def test_subject_table_names_each_linked_group_once():
    index, tcia, _ = pooled_with_overlap()
    subjects = split.subject_table(split.grouped_cases(index, [tcia]))
    assert list(subjects.columns) == list(split.SUBJECT_COLUMNS)
    assert len(subjects) == 12 + 14  # one row per patient (follow-ups are the same patient)
    assert subjects["subject_id"].nunique() == 18  # the people, as the groups count them
    of = dict(zip(subjects["dataset"] + "/" + subjects["patient_id"], subjects["subject_id"]))
    # UPENN-GBM-00007's baseline is BraTS 2021 subject 6, its follow-up subject 7: one
    # person, named by the member that sorts first
    for patient in ("upenn_gbm/UPENN-GBM-00007", "brats/BraTS2021_00006", "brats/BraTS2021_00007"):
        assert of[patient] == "brats/BraTS2021_00006"
    assert of["upenn_gbm/UPENN-GBM-00001"] == of["brats/BraTS2021_00000"] == "brats/BraTS2021_00000"
    # unlinked patients are their own subject
    assert of["upenn_gbm/UPENN-GBM-00012"] == "upenn_gbm/UPENN-GBM-00012"
    assert of["brats/BraTS2021_00008"] == "brats/BraTS2021_00008"
    # without crosswalks every patient is a subject
    alone = split.subject_table(split.grouped_cases(index[index["dataset"] == "brats"]))
    assert (alone["subject_id"] == "brats/" + alone["patient_id"]).all()


def test_subjects_file_round_trip_and_errors(tmp_path):
    index, tcia, _ = pooled_with_overlap()
    subjects = split.subject_table(split.grouped_cases(index, [tcia]))
    path = split.write_subjects(subjects, tmp_path / "subjects.csv")
    table = split.read_subjects(path)
    assert table == dict(zip(zip(subjects["dataset"], subjects["patient_id"]),
                             subjects["subject_id"]))
    assert table[("upenn_gbm", "UPENN-GBM-00003")] == "brats/BraTS2021_00002"
    for text, message in [
        ("dataset,patient_id\nbrats,B1\n", "missing column(s) subject_id"),
        ("dataset,patient_id,subject_id\nbrats,,brats/B1\n", "column patient_id, row 2: empty"),
        ("dataset,patient_id,subject_id\nbrats,B1,brats/B1\nbrats,B1,brats/B2\n",
         "row 3: patient brats/B1 is listed more than once"),
        ("", "not a readable subjects CSV"),
    ]:
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(CalfError, match=re.escape(f"{bad}: {message}")):
            split.read_subjects(bad)
    with pytest.raises(CalfError, match="subjects file not found"):
        split.read_subjects(tmp_path / "none.csv")


def test_crosswalk_default_columns_zero_padding_and_chaining():
    ucsf = slice_index(
        "ucsf_pdgm", {f"UCSF-PDGM-{i:04d}": (f"UCSF-PDGM-{i:04d}", [0, 4]) for i in (4, 5, 6)}
    )
    brats = slice_index(
        "brats", {f"BraTS-GLI-{i:05d}-000": (f"BraTS-GLI-{i:05d}", [0, 4]) for i in (1, 2, 3)}
    )
    cases = split.case_table(pd.concat([ucsf, brats], ignore_index=True))
    # UCSF metadata style (3-digit IDs, BraTS 2021 names), then a 2021 -> 2023 name table
    metadata = pd.DataFrame(
        {
            "ID": ["UCSF-PDGM-004", "UCSF-PDGM-005"],
            "BraTS21 ID": ["BraTS2021_00001", "BraTS2021_00002"],
        }
    )
    renames = pd.DataFrame(
        {"brats2021": ["BraTS2021_00001", "BraTS2021_00002"], "brats": ["BraTS-GLI-00001-000", ""]}
    )
    columns = {
        "ID": "ucsf_pdgm",
        "BraTS21 ID": "brats2021",
        "brats2021": "brats2021",
        "brats": "brats",
    }
    edges = [
        e
        for t in (metadata, renames)
        for e in split.crosswalk_edges(Crosswalk("x", t, {c: columns[c] for c in t}), cases)
    ]
    groups = dict(zip(cases["key"], split.patient_groups(cases, edges)))
    assert groups["ucsf_pdgm/UCSF-PDGM-0004"] == groups["brats/BraTS-GLI-00001-000"]
    assert len(set(groups.values())) == 5
    # default columns: headers named after the loaded datasets
    direct = pd.DataFrame(
        {"ucsf_pdgm": ["UCSF-PDGM-0006"], "brats": ["BraTS-GLI-00003-000"], "note": ["x"]}
    )
    groups = split.patient_groups(cases, split.crosswalk_edges(Crosswalk("d", direct), cases))
    assert len(set(groups)) == 5


@pytest.mark.parametrize(
    "table, columns, message",
    [
        (pd.DataFrame({"upenn_gbm": ["UPENN-GBM-00001_11"]}), None, "at least two ID columns"),
        (
            pd.DataFrame({"a": ["UPENN-GBM-00001_11"], "b": ["x"]}),
            {"a": "upenn_gbm", "c": "brats"},
            "no column 'c'",
        ),
        (  # a column of a dataset that is not loaded is not used
            pd.DataFrame({"a": ["UPENN-GBM-00001_11"], "b": ["UCSF-PDGM-0001"]}),
            {"a": "upenn_gbm", "b": "ucsf_pdgm"},
            "at least two ID columns",
        ),
        (
            pd.DataFrame({"a": ["UPENN-GBM-00001_11"], "b": ["BraTS-GLI-00001-000"]}),
            {"a": "upenn_gbm", "b": "brats"},
            "column 'b' matches none",
        ),
    ],
)
def test_crosswalk_errors(table, columns, message):
    index, _, _ = pooled_with_overlap()
    with pytest.raises(CalfError, match=message):
        split.crosswalk_edges(Crosswalk("map.csv", table, columns or {}), split.case_table(index))


def test_parse_crosswalk_columns():
    spec = ["PatientID on TCIA Radiology Portal=upenn_gbm", "BraTS2021 ID=brats"]
    assert split.parse_crosswalk_columns(spec) == {
        "PatientID on TCIA Radiology Portal": "upenn_gbm",
        "BraTS2021 ID": "brats",
    }
    with pytest.raises(CalfError, match="'BraTS2021 ID'"):
        split.parse_crosswalk_columns(["BraTS2021 ID"])


# --------------------------------------------------------------- ratio filtering


def slices(n_tumour: int, n_empty: int) -> pd.DataFrame:
    areas = [0] * n_empty + [25] * n_tumour
    frame = pd.DataFrame({"area": areas, "row": range(len(areas))})
    return frame.sample(frac=1.0, random_state=0)  # interleave the groups


@pytest.mark.parametrize(
    "n_tumour, n_empty, ratio, kept_tumour, kept_empty",
    [
        (30, 70, 0.6, 30, 20),  # tumour scarce: 30 * 0.4 / 0.6 = 20 empty
        (30, 70, 0.85, 30, 5),  # 30 * 0.15 / 0.85 = 5.29 -> 5
        (30, 70, 0.3, 30, 70),  # the natural ratio: nothing dropped
        (30, 70, 0.25, 23, 70),  # empty scarce: 70 * 0.25 / 0.75 = 23.3 -> 23
        (30, 70, 0.1, 7, 70),  # 70 * 0.1 / 0.9 = 7.8 -> 7
        (3, 1000, 0.5, 3, 3),
    ],
)
def test_filter_ratio_counts(n_tumour, n_empty, ratio, kept_tumour, kept_empty):
    data = slices(n_tumour, n_empty)
    kept = split.filter_ratio(data, ratio, seed=11)
    assert ((kept["area"] > 0).sum(), (kept["area"] == 0).sum()) == (kept_tumour, kept_empty)
    assert kept["row"].is_unique and set(kept["row"]) <= set(data["row"])
    scarce = data["area"] > 0 if kept_tumour == n_tumour else data["area"] == 0
    assert set(data.loc[scarce, "row"]) <= set(kept["row"])  # all of the scarcer group
    assert list(kept.index) == [i for i in data.index if i in set(kept.index)]  # order kept


def test_filter_ratio_natural_and_seed():
    data = slices(30, 70)
    assert split.filter_ratio(data, None) is data
    first = split.filter_ratio(data, 0.6, seed=1)
    assert split.filter_ratio(data, 0.6, seed=1).equals(first)
    assert set(split.filter_ratio(data, 0.6, seed=2)["row"]) != set(first["row"])


@pytest.mark.parametrize("text", ["0", "1", "1.5", "-0.1", "nan", "abc", "Natural"])
def test_filter_ratio_rejects_a_bad_ratio(text):
    with pytest.raises(CalfError, match=f"ratio '?{text}"):
        split.filter_ratio(slices(3, 7), text)


@pytest.mark.parametrize("text", ["natural", None])
def test_filter_ratio_natural_keeps_every_slice(text):
    data = slices(3, 7)
    assert split.filter_ratio(data, text) is data


def test_filter_ratio_reads_a_ratio_as_text():
    # "0.50" and 0.5 are one ratio: the same seeded subset (3 tumour + 3 tumour-free)
    data = slices(3, 7)
    assert split.filter_ratio(data, "0.50", seed=4).equals(split.filter_ratio(data, 0.5, seed=4))
    assert len(split.filter_ratio(data, "0.50")) == 6


@pytest.mark.parametrize(
    "n_tumour, n_empty, ratio, message",
    [
        (0, 50, 0.25, "no tumour slices among the 50"),
        (40, 0, 0.6, "no tumour-free slices among the 40"),
        (30, 1, 0.1, "30 tumour and 1 tumour-free .* leave 0 tumour"),
        (1, 30, 0.9, "1 tumour and 30 tumour-free .* leave 1 tumour and 0 tumour-free"),
        (30, 70, 1.0, r"a number in \(0, 1\)"),
    ],
)
def test_filter_ratio_errors(n_tumour, n_empty, ratio, message):
    with pytest.raises(CalfError, match=message):
        split.filter_ratio(slices(n_tumour, n_empty), ratio)


# ------------------------------------------------------------- fold selection


def test_training_set_and_val_rows():
    index = cohort("upenn_gbm", VISITS)
    splits = split.make_splits(index, folds=5, seed=0)
    train = split.training_set(index, splits, 2, ratio=0.5, seed=0)
    assert list(train.columns) == list(split.TRAINING_SET_COLUMNS)
    assert set(train["case_id"]) <= set(split.train_cases(splits, 2))
    assert (train["area"] > 0).sum() == (train["area"] == 0).sum()
    # the rows point back into the store's index
    assert (index.loc[train["row"], "area"].to_numpy() == train["area"].to_numpy()).all()
    val = split.fold_rows(index, splits, 2, "val")
    assert set(val["case_id"]) == set(split.val_cases(splits, 2))
    natural = split.training_set(index, splits, 2)
    assert len(natural) + len(val) == len(index)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s[0]["val"].append("NOPE-1"), "1 case.* not in the slice store.*'NOPE-1'"),
        (lambda s: s[0]["val"].pop(), "leaves store case .* on neither side"),
        (
            lambda s: s[0]["train"].remove("UPENN_GBM-003_21")
            or s[0]["val"].append("UPENN_GBM-003_21"),
            "patient 'upenn_gbm/UPENN_GBM-003'",
        ),
    ],
)
def test_fold_rows_rejects_splits_that_do_not_fit(edit, message):
    index = cohort("upenn_gbm", VISITS)
    keys = sorted(split.case_table(index)["key"])
    splits = [
        {
            "train": [k for k in keys if not k.startswith("UPENN_GBM-003")],
            "val": [k for k in keys if k.startswith("UPENN_GBM-003")],
        }
    ]
    splits[0]["train"], splits[0]["val"] = (
        splits[0]["val"],
        splits[0]["train"],
    )  # 003 trains, rest validates
    edit(splits)
    with pytest.raises(CalfError, match=message):
        split.fold_rows(index, splits, 0)


def test_unknown_fold_and_bad_splits_shape():
    with pytest.raises(CalfError, match="no fold 5 .*folds 0 to 1"):
        split.val_cases([{"train": [], "val": []}] * 2, 5)
    for bad in (
        [],
        {"train": []},
        [{"train": ["a"]}],
        [{"train": ["a"], "val": [1]}],
        [{"train": ["a"], "val": ["a"]}],
    ):
        with pytest.raises(CalfError, match="s.json"):
            split.validate_splits(bad, "s.json")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda idx: idx.drop(columns="area"), "lacks column.*area"),
        (
            lambda idx: idx.assign(patient_id=[str(i) for i in range(len(idx))]),
            "more than one patient_id",
        ),
        (lambda idx: idx.iloc[:0], "holds no slices"),
    ],
)
def test_split_index_errors(tmp_path, damage, message):
    store = write_store(tmp_path, cohort("brats", [1, 1]))
    damage(pd.read_parquet(store / INDEX_FILE)).to_parquet(store / INDEX_FILE)
    with pytest.raises(CalfError, match=message) as info:
        split.read_indexes([store])
    assert str(store / INDEX_FILE) in str(info.value)
    with pytest.raises(CalfError, match="no slice store index"):
        split.read_indexes([tmp_path / "missing"])


# ----------------------------------------------------------------------- the CLI


def calf_split(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "calf", "split", *map(str, args)], capture_output=True, text=True
    )


def test_cli_folds_then_select(tmp_path):
    index, tcia, _ = pooled_with_overlap()
    stores = [write_store(tmp_path, index[index["dataset"] == d]) for d in ("upenn_gbm", "brats")]
    tcia.table.to_csv(tmp_path / "tcia.csv", index=False)
    out = tmp_path / "splits" / "splits_final.json"
    store_args = [a for s in stores for a in ("--store", s)]
    done = calf_split(
        "folds",
        *store_args,
        "--out",
        out,
        "--folds",
        3,
        "--crosswalk",
        tmp_path / "tcia.csv",
        "--crosswalk-column",
        "PatientID on TCIA Radiology Portal=upenn_gbm",
        "--crosswalk-column",
        "BraTS2021 ID=brats",
    )
    assert done.returncode == 0, done.stderr
    splits = json.loads(out.read_text())
    assert len(splits) == 3 and sum(len(f["val"]) for f in splits) == 16 + 14  # cases
    for fold in range(3):
        sides = side_of(splits, fold)
        assert sides["upenn_gbm/UPENN-GBM-00001_11"] == sides["brats/BraTS2021_00000"]
    # the subjects table beside it (default name): the linked patients share a subject
    subjects = pd.read_csv(out.with_name("splits_final_subjects.csv"), dtype=str)
    assert list(subjects.columns) == list(split.SUBJECT_COLUMNS) and len(subjects) == 26
    linked = subjects[subjects["patient_id"].isin(["UPENN-GBM-00001", "BraTS2021_00000"])]
    assert list(linked["subject_id"]) == ["brats/BraTS2021_00000"] * 2
    assert "26 patients as 18 subjects" in done.stdout

    train_csv = tmp_path / "train.csv"
    done = calf_split(
        "select", *store_args, "--splits", out, "--fold", 1, "--ratio", 0.6, "--out", train_csv
    )
    assert done.returncode == 0, done.stderr
    train = pd.read_csv(train_csv)
    assert list(train.columns) == list(split.TRAINING_SET_COLUMNS)
    expected = split.training_set(split.read_indexes(stores), splits, 1, 0.6)
    pd.testing.assert_frame_equal(train, expected, check_dtype=False)
    assert set(train["case_id"]) <= {k.split("/", 1)[1] for k in splits[1]["train"]}

    # an existing output is kept unless --force
    before = train_csv.read_text()
    done = calf_split("select", *store_args, "--splits", out, "--fold", 0, "--out", train_csv)
    assert (
        done.returncode == 2 and "already exists" in done.stderr and train_csv.read_text() == before
    )


def test_cli_folds_subjects_path_and_existing_outputs(tmp_path):
    store = write_store(tmp_path, cohort("brats", [1, 2, 1, 1]))
    out, subjects = tmp_path / "s" / "splits_final.json", tmp_path / "s" / "subjects.csv"
    args = ["folds", "--store", store, "--folds", 2, "--out", out, "--subjects", subjects]
    done = calf_split(*args)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["splits_final.json", "subjects.csv"]
    table = pd.read_csv(subjects, dtype=str)
    assert list(table["subject_id"]) == [f"brats/BRATS-{p:03d}" for p in range(4)]
    # an existing subjects table is kept, and no splits file written beside it
    out.unlink()
    before = subjects.read_text()
    done = calf_split(*args)
    assert done.returncode == 2 and f"{subjects}: already exists" in done.stderr
    assert not out.exists() and subjects.read_text() == before
    assert calf_split(*args, "--force").returncode == 0 and out.exists()
    done = calf_split("folds", "--store", store, "--out", out, "--subjects", out, "--force")
    assert done.returncode == 2 and "the same file as --out" in done.stderr


def test_writers_replace_only_with_force_and_clean_up(tmp_path):
    target = tmp_path / "splits_final.json"
    split.write_splits([{"train": ["a"], "val": ["b"]}], target)
    with pytest.raises(CalfError, match="already exists"):
        split.write_splits([{"train": ["b"], "val": ["a"]}], target)
    split.write_splits([{"train": ["b"], "val": ["a"]}], target, force=True)
    assert json.loads(target.read_text()) == [{"train": ["b"], "val": ["a"]}]

    class Unwritable:  # a cell that fails when pandas writes it, after the first row
        def __str__(self):
            raise OSError("disk full")

    rows = pd.DataFrame({"a": ["x"] * 5000 + [Unwritable()]})
    with pytest.raises(OSError, match="disk full"):
        split.write_training_set(rows, tmp_path / "train.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["splits_final.json"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["folds", "--store", "{a}", "--out", "{out}", "--folds", 5], "only 3 patient"),
        (
            ["select", "--store", "{a}", "--splits", "{splits}", "--fold", 3, "--out", "{out}"],
            "no fold 3",
        ),
        (
            ["select", "--store", "{b}", "--splits", "{splits}", "--fold", 0, "--out", "{out}"],
            "not in the slice store",
        ),
        (
            [
                "select",
                "--store",
                "{a}",
                "--splits",
                "{splits}",
                "--fold",
                0,
                "--ratio",
                1.2,
                "--out",
                "{out}",
            ],
            "ratio 1.2",
        ),
    ],
)
def test_cli_errors_exit_2_and_write_nothing(tmp_path, args, message):
    a = write_store(tmp_path, cohort("lgg_1p19q", [1, 2, 1]))
    b = write_store(tmp_path, cohort("brats", [1, 1, 1]))
    splits_file = tmp_path / "splits_final.json"
    splits_file.write_text(
        json.dumps(
            [
                {
                    "train": ["LGG_1P19Q-000_11", "LGG_1P19Q-001_11", "LGG_1P19Q-001_21"],
                    "val": ["LGG_1P19Q-002_11"],
                }
            ]
        )
    )
    out = tmp_path / "out" / "result"
    paths = {"a": a, "b": b, "splits": splits_file, "out": out}
    done = calf_split(*[str(x).format(**paths) for x in args])
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.rglob(".*tmp-*"))


def test_cli_help():
    for action in ([], ["folds"], ["select"]):
        done = calf_split(*action, "--help")
        assert done.returncode == 0 and "usage: calf split" in done.stdout
    done = calf_split("folds", "--store", "s", "--out", "o.json", "--seed", "-3")
    assert done.returncode == 2 and "seed -3 is outside" in done.stderr


# ------------------------------------- pooled releases with known overlaps (real files)

# Synthetic UPENN-GBM, UCSF-PDGM and BraTS 2023 releases (written by `calf synth` in the
# real layouts, preprocessed by `calf preprocess`), and the three linking files in their
# published formats, with the subjects below in two or three releases.
LINKED_GROUPS = [
    {"upenn_gbm/UPENN-GBM-00001_11", "brats/BraTS-GLI-00000-000"},
    # UPENN-GBM-00003's baseline and follow-up are two BraTS 2021 subjects, two 2023 ones
    {
        "upenn_gbm/UPENN-GBM-00003_11",
        "upenn_gbm/UPENN-GBM-00003_21",
        "brats/BraTS-GLI-00001-000",
        "brats/BraTS-GLI-00002-000",
        "brats/BraTS-GLI-00002-001",
    },
    {"ucsf_pdgm/UCSF-PDGM-0001", "brats/BraTS-GLI-00003-000"},
    # a follow-up exam in BraTS under its own 2021 ID: 4-digit ID in the metadata
    {"ucsf_pdgm/UCSF-PDGM-0004", "ucsf_pdgm/UCSF-PDGM-0004_FU060d", "brats/BraTS-GLI-00004-000"},
    # a chain through all three releases
    {"upenn_gbm/UPENN-GBM-00005_11", "ucsf_pdgm/UCSF-PDGM-0005", "brats/BraTS-GLI-00007-000"},
]
UNLINKED = [  # TCIA's placeholder rows and unmatched 2021 IDs must link nothing
    ("brats/BraTS-GLI-00005-000", "brats/BraTS-GLI-00006-000"),
    ("ucsf_pdgm/UCSF-PDGM-0002", "brats/BraTS-GLI-00008-000"),
]
N_GROUPS = 9 + 10 + 9 - 7  # patients of the three releases, less the 7 links


def _tcia_mapping(path: Path) -> Path:
    rows = [  # Data Collection, Site ID, PatientID on TCIA Radiology Portal, BraTS2021 ID
        ("UPENN-GBM", "18", "UPENN-GBM-00001_11", "BraTS2021_00101"),
        ("UPENN-GBM", "18", "UPENN-GBM-00003_11", "BraTS2021_00103"),
        ("UPENN-GBM", "18", "UPENN-GBM-00003_21", "BraTS2021_00104"),
        ("UPENN-GBM", "18", "UPENN-GBM-00005_11", "BraTS2021_00105"),
        ("UCSF-PDGM", "20", "57", "BraTS2021_00201"),  # UCSF rows hold the bare number
        ("UPENN-GBM_Additional", "18", "new-not-previously-in-TCIA", "BraTS2021_00301"),
        ("Collection 5", "5", "new-not-previously-in-TCIA", "BraTS2021_00302"),
        ("TCGA-GBM", "3", "TCGA-02-0001", "00169"),  # a Task-2-only row: bare 2021 ID
    ]
    columns = [
        "Data Collection (as on TCIA+additional)",
        "Site ID",
        "PatientID on TCIA Radiology Portal",
        "BraTS2021 ID",
    ]
    frame = pd.DataFrame(rows, columns=columns).assign(**{"MGMT value": "1"})
    frame.to_excel(path, index=False)
    return path


def _ucsf_metadata(path: Path) -> Path:
    ids = {  # the metadata writes 3 digits, follow-ups 4 (the folders use 4)
        "UCSF-PDGM-001": "BraTS2021_00201",
        "UCSF-PDGM-002": "BraTS2021_00202",
        "UCSF-PDGM-004": "",
        "UCSF-PDGM-0004_FU060d": "BraTS2021_00204",
        "UCSF-PDGM-005": "BraTS2021_00105",
        "UCSF-PDGM-006": "",
    }
    frame = pd.DataFrame(
        {
            "ID": list(ids),
            "Sex": "F",
            "Final pathologic diagnosis (WHO 2021)": "Glioblastoma, IDH-wildtype",
            "BraTS21 ID": list(ids.values()),
            "BraTS21 Segmentation Cohort": ["Training" if v else "" for v in ids.values()],
        }
    )
    frame.to_csv(path, index=False)
    return path


def _gli_mapping(path: Path) -> Path:
    pairs = {
        "BraTS-GLI-00000-000": "BraTS2021_00101",
        "BraTS-GLI-00001-000": "BraTS2021_00103",
        "BraTS-GLI-00002-000": "BraTS2021_00104",
        "BraTS-GLI-00003-000": "BraTS2021_00201",
        "BraTS-GLI-00004-000": "BraTS2021_00204",
        "BraTS-GLI-00005-000": "BraTS2021_00301",
        "BraTS-GLI-00006-000": "BraTS2021_00302",
        "BraTS-GLI-00007-000": "BraTS2021_00105",
        "BraTS-GLI-00008-000": "",
    }
    frame = pd.DataFrame(
        {
            "BraTS2023": list(pairs),
            "BraTS2021": list(pairs.values()),
            "BraTS2018": "",
            "Cohort Name (if publicly available)": "Private Collection",
            "Site No (represents the originating institution)": "1",
        }
    )
    frame.to_excel(path, index=False)
    return path


CROSSWALK_ARGS = {
    "tcia": [
        "PatientID on TCIA Radiology Portal=upenn_gbm",
        "BraTS2021 ID=brats2021",
    ],
    "ucsf": ["ID=ucsf_pdgm", "BraTS21 ID=brats2021"],
    "gli": ["BraTS2023=brats", "BraTS2021=brats2021"],
}


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """Stores of three synthetic releases and the linking files, made once."""
    root = tmp_path_factory.mktemp("releases")
    stores = []
    for dataset, layout in (("upenn_gbm", "upenn_gbm"), ("ucsf_pdgm", "ucsf_pdgm"),
                            ("brats", "brats2023")):
        for argv in (
            ["synth", "--layout", layout, "--cases", "12", "--shape", "8", "8", "8",
             "--out", root / layout],
            ["preprocess", "--dataset", dataset, "--root", root / layout, "--out",
             root / "stores" / dataset, "--modalities", "flair", "--size", "8",
             "--workers", "1", "--quiet"],
        ):
            done = subprocess.run([sys.executable, "-m", "calf", *map(str, argv)],
                                  capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            if argv[0] == "synth" and layout == "upenn_gbm":
                # the release (and calf synth) gives _21 follow-ups no mask; this one gets
                # one (as BraTS 2021 segmented it), so that its links are exercised
                segm = root / layout / "automated_segm"
                shutil.copy(segm / "UPENN-GBM-00003_11_automated_approx_segm.nii.gz",
                            segm / "UPENN-GBM-00003_21_automated_approx_segm.nii.gz")
        stores.append(root / "stores" / dataset)
    files = {
        "tcia": _tcia_mapping(root / "BraTS2021_MappingToTCIA.xlsx"),
        "ucsf": _ucsf_metadata(root / "UCSF-PDGM-metadata_v5.csv"),
        "gli": _gli_mapping(root / "BraTS2023_2017_GLI_Mapping.xlsx"),
    }
    return stores, files


def _folds_cli(releases, out, *mode, names=("tcia", "ucsf", "gli")):
    stores, files = releases
    args = [a for s in stores for a in ("--store", s)]
    for name in names:
        args += ["--crosswalk", files[name]]
        args += [a for c in CROSSWALK_ARGS[name] for a in ("--crosswalk-column", c)]
    return calf_split("folds", *args, *mode, "--out", out)


@pytest.mark.parametrize("mode", [["--folds", "3"], ["--holdout", "0.3"]])
def test_pooled_releases_with_known_overlaps_never_straddle(releases, tmp_path, mode):
    index = split.read_indexes(releases[0])
    cases = split.case_table(index)
    keys = set(cases["key"])
    assert set().union(*LINKED_GROUPS) <= keys and {k for p in UNLINKED for k in p} <= keys

    groups = dict(zip(cases["key"], split.patient_groups(
        cases, split.link_edges(cases, [
            split.load_crosswalk(releases[1][n], CROSSWALK_ARGS[n]) for n in CROSSWALK_ARGS
        ])
    )))
    assert len(set(groups.values())) == N_GROUPS
    assert all(len({groups[k] for k in linked}) == 1 for linked in LINKED_GROUPS)
    assert all(groups[a] != groups[b] for a, b in UNLINKED)

    straddled_without = 0
    for seed in (0, 1, 2):
        out = tmp_path / f"splits-{seed}.json"
        done = _folds_cli(releases, out, *mode, "--seed", str(seed))
        assert done.returncode == 0, done.stderr
        splits = split.read_splits(out)
        for fold in range(len(splits)):
            sides = side_of(splits, fold)
            assert set(sides) == keys
            for linked in LINKED_GROUPS:
                assert len({sides[k] for k in linked}) == 1, (seed, fold, linked)
        # one subject per linked group, in the table written beside the splits
        table = split.read_subjects(out.with_name(f"splits-{seed}_subjects.csv"))
        subject = {key: table[(d, p)] for key, d, p in
                   cases[["key", "dataset", "patient_id"]].itertuples(index=False)}
        assert len(set(subject.values())) == N_GROUPS
        assert all(len({subject[k] for k in linked}) == 1 for linked in LINKED_GROUPS)
        assert all(subject[a] != subject[b] for a, b in UNLINKED)
        # the same split without the links: linked subjects do straddle
        cases_unlinked = unlinked_cases(index)
        plain = (split.kfold_splits(cases_unlinked, 3, seed) if mode[0] == "--folds"
                 else split.holdout_split(cases_unlinked, 0.3, seed))
        straddled_without += sum(
            len({side_of(plain, f)[k] for k in linked}) > 1
            for f in range(len(plain)) for linked in LINKED_GROUPS
        )
    assert straddled_without > 0  # so the links are what keeps them together


@pytest.mark.parametrize(
    "names, missing",
    [
        (("ucsf", "gli"), ["upenn_gbm", "BraTS2021_MappingToTCIA.xlsx",
                           "cancerimagingarchive.net/wp-content/uploads/BraTS2021_MappingToTCIA.xlsx"]),
        (("tcia", "gli"), ["ucsf_pdgm", "UCSF-PDGM-metadata_v5.csv"]),
        (("tcia", "ucsf"), ["BraTS2023_2017_GLI_Mapping.xlsx", "Synapse:syn51514105",
                            "resources/crosswalk/BraTS2023_2017_GLI_Mapping.xlsx"]),
        ((), ["BraTS2021_MappingToTCIA.xlsx", "BraTS2023_2017_GLI_Mapping.xlsx"]),
    ],
)
def test_a_pool_without_its_links_is_refused_naming_the_missing_file(
    releases, tmp_path, names, missing
):
    out = tmp_path / "splits_final.json"
    done = _folds_cli(releases, out, "--folds", "3", names=names)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "straddle train and test" in done.stderr
    assert all(m in done.stderr for m in missing), done.stderr
    assert not out.exists()


def test_a_crosswalk_column_the_file_lacks_is_an_error(releases, tmp_path):
    stores, files = releases
    out = tmp_path / "splits_final.json"
    args = [a for s in stores for a in ("--store", s)]
    for name in CROSSWALK_ARGS:
        args += ["--crosswalk", files[name]]
        args += [a for c in CROSSWALK_ARGS[name] for a in ("--crosswalk-column", c)]
    done = calf_split("folds", *args, "--crosswalk-column", "BraTS21 ID=brats2021",
                      "--out", out)  # belongs to the last file, which has no such column
    assert done.returncode == 2 and not out.exists()
    assert "BraTS2023_2017_GLI_Mapping.xlsx: no column 'BraTS21 ID'" in done.stderr
    done = calf_split("folds", *args[:6], "--crosswalk-column", "ID=ucsf_pdgm", "--out", out)
    assert done.returncode == 2 and "give the --crosswalk FILE it belongs to first" in done.stderr


def test_read_crosswalk_finds_the_header_row_and_reads_ids_as_text(tmp_path):
    path = tmp_path / "mapping.xlsx"
    rows = [["BraTS 2023 mapping (title row)", "", ""],
            ["BraTS2023", "BraTS2021", "Site No"],
            ["BraTS-GLI-00495-000", "BraTS2021_00495", 7],
            ["BraTS-GLI-00496-000", "", 8]]
    pd.DataFrame(rows).to_excel(path, index=False, header=False)
    table = split.read_crosswalk(path, ["BraTS2023", "BraTS2021"])
    assert list(table.columns) == ["BraTS2023", "BraTS2021", "Site No"]
    assert table.to_dict("list") == {
        "BraTS2023": ["BraTS-GLI-00495-000", "BraTS-GLI-00496-000"],
        "BraTS2021": ["BraTS2021_00495", ""],
        "Site No": ["7", "8"],
    }
    with pytest.raises(CalfError, match=r"mapping.xlsx: no column 'BraTS2020'"):
        split.read_crosswalk(path, ["BraTS2023", "BraTS2020"])
    (tmp_path / "bad.xlsx").write_bytes(b"not a zip")
    with pytest.raises(CalfError, match="bad.xlsx: cannot read the crosswalk"):
        split.read_crosswalk(tmp_path / "bad.xlsx")


@pytest.mark.parametrize(
    "value, namespace, expected",
    [
        ("UCSF-PDGM-004", "ucsf_pdgm", "ucsf-pdgm-4"),
        ("UCSF-PDGM-0004", "ucsf_pdgm", "ucsf-pdgm-4"),
        ("UCSF-PDGM-0004_FU060d", "ucsf_pdgm", "ucsf-pdgm-4_fu60d"),
        ("BraTS2021_00495", "brats2021", "brats2021_495"),
        ("00495", "brats2021", "brats2021_495"),  # TCIA's bare Task-2-only IDs
        ("00495", "brats", "495"),
        (" BraTS-GLI-00495-000 ", "brats", "brats-gli-495-0"),
    ],
)
def test_normalise_id(value, namespace, expected):
    from calf.crosswalk import normalise_id

    assert normalise_id(value, namespace) == expected


def test_brats2021_ids_match_a_store_named_the_2021_way():
    upenn = slice_index("upenn_gbm", {"UPENN-GBM-00001_11": ("UPENN-GBM-00001", [0, 3])})
    brats = slice_index("brats", {f"BraTS2021_{i:05d}": (f"BraTS2021_{i:05d}", [0, 3])
                                  for i in (101, 102)})
    cases = split.case_table(pd.concat([upenn, brats], ignore_index=True))
    tcia = Crosswalk("tcia", pd.DataFrame({"P": ["UPENN-GBM-00001_11"], "B": ["BraTS2021_00101"]}),
                     {"P": "upenn_gbm", "B": "brats2021"})
    groups = dict(zip(cases["key"], split.patient_groups(cases, split.link_edges(cases, [tcia]))))
    assert groups["upenn_gbm/UPENN-GBM-00001_11"] == groups["brats/BraTS2021_00101"]
    assert len(set(groups.values())) == 2
    # the 2023 mapping's BraTS2023 column names none of this store's cases: an error
    gli = Crosswalk("gli.xlsx", pd.DataFrame({"BraTS2023": ["BraTS-GLI-00001-000"],
                                              "BraTS2021": ["BraTS2021_00101"]}),
                    {"BraTS2023": "brats", "BraTS2021": "brats2021"})
    with pytest.raises(CalfError, match="gli.xlsx: column 'BraTS2023' matches none"):
        split.link_edges(cases, [tcia, gli])
