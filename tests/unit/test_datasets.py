"""Dataset adapters against small synthetic cohorts written as real gzipped NIfTI files."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from calf.datasets import ADAPTERS, adapter_options, discover
from calf.errors import CalfError
from calf.synth import write_cohort

SHAPE = (32, 32, 16)


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory) -> dict[str, Path]:
    """One small cohort per layout, shared read-only by the tests of this module."""
    base = tmp_path_factory.mktemp("cohorts")
    sizes = {
        "upenn_gbm": 5,
        "ucsf_pdgm": 5,
        "brats2023": 5,
        "brats2021": 3,
        "lgg_1p19q": 3,
        "folder": 3,
    }
    return {layout: _write(base / layout, layout, n) for layout, n in sizes.items()}


def _write(root: Path, layout: str, n: int, seed: int = 0) -> Path:
    write_cohort(layout, root, "moderate", n, SHAPE, seed)
    return root


def _copy(cohorts: dict[str, Path], layout: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(cohorts[layout], tmp_path / layout))


DATASET = {
    "upenn_gbm": "upenn_gbm",
    "ucsf_pdgm": "ucsf_pdgm",
    "brats2023": "brats",
    "brats2021": "brats",
    "lgg_1p19q": "lgg_1p19q",
    "folder": "folder",
}

# hand-written: case ID -> patient ID of each cohort (every 4th/5th exam a follow-up; the
# UPENN-GBM follow-up UPENN-GBM-00003_21 has no mask, as in the release, so it is no case)
EXPECTED_CASES = {
    "upenn_gbm": {
        "UPENN-GBM-00001_11": "UPENN-GBM-00001",
        "UPENN-GBM-00002_11": "UPENN-GBM-00002",
        "UPENN-GBM-00003_11": "UPENN-GBM-00003",
        "UPENN-GBM-00004_11": "UPENN-GBM-00004",
    },
    "ucsf_pdgm": {
        "UCSF-PDGM-0001": "UCSF-PDGM-0001",
        "UCSF-PDGM-0002": "UCSF-PDGM-0002",
        "UCSF-PDGM-0003": "UCSF-PDGM-0003",
        "UCSF-PDGM-0004": "UCSF-PDGM-0004",
        "UCSF-PDGM-0004_FU060d": "UCSF-PDGM-0004",
    },
    "brats2023": {
        "BraTS-GLI-00000-000": "BraTS-GLI-00000",
        "BraTS-GLI-00001-000": "BraTS-GLI-00001",
        "BraTS-GLI-00002-000": "BraTS-GLI-00002",
        "BraTS-GLI-00002-001": "BraTS-GLI-00002",
        "BraTS-GLI-00003-000": "BraTS-GLI-00003",
    },
    "brats2021": {f"BraTS2021_0000{i}": f"BraTS2021_0000{i}" for i in range(3)},
    "lgg_1p19q": {f"LGG-{i}": f"LGG-{i}" for i in (101, 102, 103)},
    "folder": {f"case-00{i}": f"case-00{i}" for i in (1, 2, 3)},
}

# hand-written: default modalities -> file name suffix, and the release's label set
EXPECTED_FILES = {
    "upenn_gbm": (
        {"t1": "_T1.nii.gz", "t2": "_T2.nii.gz", "flair": "_FLAIR.nii.gz"},
        "_automated_approx_segm.nii.gz",
        (0, 1, 2, 4),
    ),
    "ucsf_pdgm": (
        {"t1": "_T1.nii.gz", "t2": "_T2.nii.gz", "flair": "_FLAIR.nii.gz"},
        "_tumor_segmentation.nii.gz",
        (0, 1, 2, 4),
    ),
    "brats2023": (
        {"t1": "-t1n.nii.gz", "t2": "-t2w.nii.gz", "flair": "-t2f.nii.gz"},
        "-seg.nii.gz",
        (0, 1, 2, 3),
    ),
    "brats2021": (
        {"t1": "_t1.nii.gz", "t2": "_t2.nii.gz", "flair": "_flair.nii.gz"},
        "_seg.nii.gz",
        (0, 1, 2, 4),
    ),
    "lgg_1p19q": ({"t1c": "_T1.nii.gz", "t2": "_T2.nii.gz"}, "-Segmentation.nii.gz", (0, 1)),
    "folder": (
        {"t1": "/t1.nii.gz", "t2": "/t2.nii.gz", "flair": "/flair.nii.gz"},
        "/seg.nii.gz",
        (0, 1, 2, 3, 4),
    ),
}


@pytest.mark.parametrize("layout", sorted(EXPECTED_CASES))
def test_cases_patients_and_files(cohorts, layout):
    cases = discover(DATASET[layout], cohorts[layout])
    assert {c.case_id: c.patient_id for c in cases} == EXPECTED_CASES[layout]
    assert [c.case_id for c in cases] == sorted(c.case_id for c in cases)
    suffixes, mask_suffix, labels = EXPECTED_FILES[layout]
    for case in cases:
        assert case.dataset == DATASET[layout]
        assert set(case.images) == set(suffixes)
        for modality, suffix in suffixes.items():
            assert case.images[modality].as_posix().endswith(suffix)
            assert case.images[modality].is_absolute() and case.images[modality].is_file()
        assert case.mask.as_posix().endswith(mask_suffix)
        assert case.valid_labels == labels


@pytest.mark.parametrize(
    "layout, present",
    [
        ("upenn_gbm", {0, 1, 2, 4}),
        ("ucsf_pdgm", {0, 1, 2, 4}),
        ("brats2023", {0, 1, 2, 3}),
        ("brats2021", {0, 1, 2, 4}),
        ("lgg_1p19q", {0, 1}),
        ("folder", {0, 1}),
    ],
)
def test_masks_hold_the_release_labels(cohorts, layout, present):
    cases = discover(DATASET[layout], cohorts[layout])
    found = set()
    for case in cases:
        found |= set(np.unique(np.asarray(nib.load(case.mask).dataobj)).tolist())
    assert found == present
    assert found <= set(cases[0].valid_labels)


@pytest.mark.parametrize(
    "layout, modalities, suffixes",
    [
        ("upenn_gbm", ["t1c", "flair"], ["_T1GD.nii.gz", "_FLAIR.nii.gz"]),
        ("ucsf_pdgm", ["t1c"], ["_T1c.nii.gz"]),
        ("brats2023", ["t1c", "t1"], ["-t1c.nii.gz", "-t1n.nii.gz"]),
        ("brats2021", "t1c,t2", ["_t1ce.nii.gz", "_t2.nii.gz"]),
        ("folder", ["T1C"], ["/t1c.nii.gz"]),
    ],
)
def test_modality_list_picks_files(cohorts, layout, modalities, suffixes):
    cases = discover(DATASET[layout], cohorts[layout], modalities)
    for case in cases:
        paths = [p.as_posix() for p in case.images.values()]
        assert all(path.endswith(suffix) for path, suffix in zip(paths, suffixes, strict=True))


def test_upenn_segmentation_choice(cohorts):
    root = cohorts["upenn_gbm"]
    automated = discover("upenn_gbm", root, segmentation="automated")
    expert = discover("upenn_gbm", root, segmentation="expert")
    either = discover("upenn_gbm", root, segmentation="expert_or_automated")
    # expert-corrected masks exist for every third baseline: patients 1 and 4
    assert [c.case_id for c in expert] == ["UPENN-GBM-00001_11", "UPENN-GBM-00004_11"]
    assert all(c.mask.parent.name == "images_segm" for c in expert)
    assert [c.case_id for c in either] == [c.case_id for c in automated]
    assert [c.mask.parent.name for c in either] == [
        "images_segm",
        "automated_segm",
        "automated_segm",
        "images_segm",
    ]
    # the expert relabels sub-regions, the whole tumour stays the same
    for case in expert:
        manual = np.asarray(nib.load(case.mask).dataobj)
        auto = np.asarray(
            nib.load(
                root / "automated_segm" / f"{case.case_id}_automated_approx_segm.nii.gz"
            ).dataobj
        )
        assert not np.array_equal(manual, auto) and np.array_equal(manual > 0, auto > 0)
    with pytest.raises(CalfError, match="segmentation must be one of"):
        discover("upenn_gbm", root, segmentation="manual")


def test_exams_without_a_mask_are_skipped(cohorts, tmp_path):
    # the synthetic follow-up has images and, as in the release, no mask
    root = cohorts["upenn_gbm"]
    assert (root / "images_structural" / "UPENN-GBM-00003_21").is_dir()
    assert not list(root.glob("*/UPENN-GBM-00003_21_*segm.nii.gz"))
    cases = discover("upenn_gbm", root)
    assert "UPENN-GBM-00003_21" not in {c.case_id for c in cases}
    assert len(cases) == 4
    copy = _copy(cohorts, "upenn_gbm", tmp_path)
    (copy / "automated_segm" / "UPENN-GBM-00002_11_automated_approx_segm.nii.gz").unlink()
    assert [c.case_id for c in discover("upenn_gbm", copy)] == [
        "UPENN-GBM-00001_11",
        "UPENN-GBM-00003_11",
        "UPENN-GBM-00004_11",
    ]


def test_release_found_below_wrapper_folders(tmp_path):
    root = tmp_path / "download"
    _write(root / "PKG - UPENN-GBM-NIfTI" / "UPENN-GBM" / "NIfTI-files", "upenn_gbm", 2)
    assert [c.case_id for c in discover("upenn_gbm", root)] == [
        "UPENN-GBM-00001_11",
        "UPENN-GBM-00002_11",
    ]


@pytest.mark.parametrize("dataset", ADAPTERS)
def test_missing_root(tmp_path, dataset):
    missing = tmp_path / "nowhere"
    with pytest.raises(CalfError) as err:
        discover(dataset, missing)
    assert str(missing) in str(err.value) and "does not exist" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "dataset, expected",
    [
        ("upenn_gbm", "images_structural/UPENN-GBM-NNNNN_11"),
        ("ucsf_pdgm", "UCSF-PDGM-NNNN_nifti"),
        ("brats", "BraTS-GLI-NNNNN-NNN"),
        ("lgg_1p19q", "LGG-NNN/LGG-NNN_{T1,T2}"),
        ("folder", "<case>/seg.nii.gz"),
    ],
)
def test_root_without_cases_names_the_layout(tmp_path, dataset, expected):
    (tmp_path / "empty" / "something").mkdir(parents=True)
    with pytest.raises(CalfError) as err:
        discover(dataset, tmp_path / "empty")
    message = str(err.value)
    assert "no cases found under" in message and str(tmp_path / "empty") in message
    assert expected in message and "\n" not in message


def test_root_of_unlabelled_exams_says_so(cohorts, tmp_path):
    root = _copy(cohorts, "brats2021", tmp_path)
    for seg in root.glob("*/*_seg.nii.gz"):
        seg.unlink()
    with pytest.raises(CalfError, match=r"\(3 exam folders without a tumour mask\)"):
        discover("brats", root)


@pytest.mark.parametrize(
    "layout, relative",
    [
        ("upenn_gbm", "images_structural/UPENN-GBM-00002_11/UPENN-GBM-00002_11_FLAIR.nii.gz"),
        ("ucsf_pdgm", "UCSF-PDGM-0004_FU060d_nifti/UCSF-PDGM-0004_FU060d_T2.nii.gz"),
        ("brats2023", "BraTS-GLI-00001-000/BraTS-GLI-00001-000-t2f.nii.gz"),
        ("brats2021", "BraTS2021_00002/BraTS2021_00002_t1.nii.gz"),
        ("lgg_1p19q", "NiFTiSegmentationsEdited/LGG-102/LGG-102_T2.nii.gz"),
        ("folder", "case-002/flair.nii.gz"),
    ],
)
def test_missing_modality_file_is_named(cohorts, tmp_path, layout, relative):
    root = _copy(cohorts, layout, tmp_path)
    (root / relative).unlink()
    with pytest.raises(CalfError) as err:
        discover(DATASET[layout], root)
    message = str(err.value)
    assert message.endswith(f"missing file {(root / relative).resolve()}")
    assert "\n" not in message


def test_two_cases_with_one_id_in_side_by_side_folders(cohorts, tmp_path):
    root = tmp_path / "brats"
    shutil.copytree(cohorts["brats2023"], root / "TrainingData")
    case = "BraTS-GLI-00001-000"
    shutil.copytree(root / "TrainingData" / case, root / "AdditionalData" / case)
    with pytest.raises(CalfError) as err:
        discover("brats", root)
    message = str(err.value)
    assert f"two cases with ID {case}" in message and "\n" not in message
    assert (
        str(root / "AdditionalData" / case) in message
        and str(root / "TrainingData" / case) in message
    )


def test_two_folders_of_one_exam(cohorts, tmp_path):
    root = _copy(cohorts, "ucsf_pdgm", tmp_path)
    # the same exam under its four-digit and a three-digit folder name
    shutil.copytree(root / "UCSF-PDGM-0002_nifti", root / "UCSF-PDGM-002_nifti")
    with pytest.raises(
        CalfError,
        match="two cases with ID UCSF-PDGM-0002: .*UCSF-PDGM-0002_nifti and .*UCSF-PDGM-002_nifti",
    ):
        discover("ucsf_pdgm", root)


def test_folder_patient_mapping(cohorts, tmp_path):
    table = tmp_path / "patients.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "patient_id"])
        writer.writerows([["case-001", "P1"], ["case-003", "P1"]])
    cases = discover("folder", cohorts["folder"], patients=str(table))
    assert [c.patient_id for c in cases] == ["P1", "case-002", "P1"]
    assert [
        c.patient_id for c in discover("folder", cohorts["folder"], patients={"case-002": "P9"})
    ] == ["case-001", "P9", "case-003"]
    bad = tmp_path / "bad.csv"
    bad.write_text("case,patient\ncase-001,P1\n")
    with pytest.raises(CalfError, match="lacks column"):
        discover("folder", cohorts["folder"], patients=bad)


def test_valid_labels_override(cohorts):
    cases = discover("brats", cohorts["brats2023"], valid_labels="0,1,2,3,4")
    assert {c.valid_labels for c in cases} == {(0, 1, 2, 3, 4)}
    assert discover("lgg_1p19q", cohorts["lgg_1p19q"], valid_labels=[255, 0])[0].valid_labels == (
        0,
        255,
    )
    with pytest.raises(CalfError, match="valid_labels must be integers"):
        discover("brats", cohorts["brats2023"], valid_labels="0,one")
    with pytest.raises(CalfError, match="background label 0"):
        discover("brats", cohorts["brats2023"], valid_labels="1,2")


@pytest.mark.parametrize(
    "dataset, modalities, options, message",
    [
        ("nifti", None, {}, "unknown dataset 'nifti'"),
        ("brats", None, {"segmentation": "expert"}, "unknown option 'segmentation'"),
        ("brats", ["t1", "pd"], {}, "unknown modality 'pd'"),
        ("lgg_1p19q", ["flair"], {}, "has no flair images; it has t1c, t2"),
        ("folder", [], {}, "the modality list is empty"),
    ],
)
def test_bad_requests(cohorts, dataset, modalities, options, message):
    root = cohorts["lgg_1p19q"] if dataset == "lgg_1p19q" else cohorts["brats2023"]
    if dataset == "folder":
        root = cohorts["folder"]
    with pytest.raises(CalfError, match=message) as err:
        discover(dataset, root, modalities, **options)
    assert "\n" not in str(err.value)


def test_adapter_options():
    assert adapter_options("upenn_gbm") == ("segmentation", "valid_labels")
    assert adapter_options("folder") == ("patients", "valid_labels")
