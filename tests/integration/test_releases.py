"""The releases as they are: stand-in trees with the real file names (tiny real NIfTI),
read through ``calf.datasets.discover`` and ``calf preprocess``; regions per release."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from calf.datasets import discover
from calf.datasets.regions import region_labels
from calf.errors import CalfError
from calf.preprocess import PreprocessSettings, preprocess
from calf.store import SliceStore

SHAPE = (8, 8, 3)  # in-plane 8 = store size: no resize, so areas are voxel counts
BRATS23 = ("t1n", "t1c", "t2w", "t2f")


def _save(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))


def _labelled_mask(counts: dict[int, int]) -> np.ndarray:
    """A mask holding ``counts[label]`` voxels of each label, all in axial slice 1."""
    mask = np.zeros(SHAPE, dtype=np.uint8)
    flat = mask[:, :, 1].reshape(-1)
    start = 0
    for label, n in counts.items():
        flat[start : start + n] = label
        start += n
    mask[:, :, 1] = flat.reshape(SHAPE[:2])
    return mask


def _image() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 100, SHAPE).astype(np.float32)


def _brats_case(folder: Path, sep: str, tokens, mask: np.ndarray | None) -> None:
    for token in tokens:
        _save(folder / f"{folder.name}{sep}{token}.nii.gz", _image())
    if mask is not None:
        _save(folder / f"{folder.name}{sep}seg.nii.gz", mask)


# voxels per label, hand-placed: 1 NETC/necrosis 2, 2 SNFH/oedema 3, 3 ET 4, 4 (2021 ET or
# 2024 resection cavity) 5
POST = {1: 2, 2: 3, 3: 4, 4: 5}
OLD = {1: 2, 2: 3, 4: 5}


def _brats2024(root: Path) -> Path:
    """BraTS 2024 GLI post-treatment: training folders side by side, timepoints -100..-103
    of one patient, a validation folder without masks."""
    release = root / "BraTS2024-BraTS-GLI-TrainingData"
    for folder, exam in [
        ("training_data1_v2", "BraTS-GLI-00005-100"),
        ("training_data1_v2", "BraTS-GLI-00005-101"),
        ("training_data_additional", "BraTS-GLI-00005-102"),
        ("training_data_additional", "BraTS-GLI-00005-103"),
        ("training_data1_v2", "BraTS-GLI-00006-100"),
    ]:
        _brats_case(release / folder / exam, "-", BRATS23, _labelled_mask(POST))
    _brats_case(release / "validation_data" / "BraTS-GLI-00100-100", "-", BRATS23, None)
    return root


def _stores_tumour(cases, tmp_path: Path, region: str) -> tuple[int, dict]:
    out = tmp_path / f"store-{region}"
    preprocess(cases, out, PreprocessSettings(size=8, region=region), progress=False)
    store = SliceStore(out)
    return int(np.asarray(store.masks).sum()), store.meta["settings"]


def test_brats2024_folders_timepoints_and_validation_skipped(tmp_path):
    cases = discover("brats", _brats2024(tmp_path))
    assert {c.case_id: c.patient_id for c in cases} == {
        "BraTS-GLI-00005-100": "BraTS-GLI-00005",
        "BraTS-GLI-00005-101": "BraTS-GLI-00005",
        "BraTS-GLI-00005-102": "BraTS-GLI-00005",
        "BraTS-GLI-00005-103": "BraTS-GLI-00005",
        "BraTS-GLI-00006-100": "BraTS-GLI-00006",
    }
    assert {c.label_map for c in cases} == {"brats2024_post"}
    assert {c.valid_labels for c in cases} == {(0, 1, 2, 3, 4)}


@pytest.mark.parametrize(
    "region, per_case",
    [
        ("wt", 2 + 3 + 4),  # the cavity (5 voxels of label 4) excluded
        ("tc", 2 + 4),
        ("et", 4),
    ],
)
def test_brats2024_regions_through_preprocess(tmp_path, region, per_case):
    cases = discover("brats", _brats2024(tmp_path), ["t2"])
    total, settings = _stores_tumour(cases, tmp_path, region)
    assert total == 5 * per_case
    assert settings["region"] == region
    assert settings["region_labels"] == {
        "brats2024_post": {"wt": [1, 2, 3], "tc": [1, 3], "et": [3]}[region]
    }


@pytest.mark.parametrize("region, expected", [("wt", 2 + 3 + 5), ("tc", 2 + 5), ("et", 5)])
def test_brats2021_regions(tmp_path, region, expected):
    _brats_case(
        tmp_path / "BraTS2021_00001", "_", ("t1", "t1ce", "t2", "flair"), _labelled_mask(OLD)
    )
    cases = discover("brats", tmp_path, ["t2"])
    assert [c.label_map for c in cases] == ["brats2021"]
    total, settings = _stores_tumour(cases, tmp_path, region)
    assert total == expected
    assert settings["region_labels"] == {
        "brats2021": {"wt": [1, 2, 4], "tc": [1, 4], "et": [4]}[region]
    }


def test_brats2023_mask_with_label_4_names_the_rule(tmp_path):
    root = tmp_path / "ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData"
    _brats_case(root / "BraTS-GLI-00005-100", "-", BRATS23, _labelled_mask(POST))
    cases = discover("brats", root, ["t2"])
    assert [c.label_map for c in cases] == ["brats2023"]
    out = tmp_path / "store"
    with pytest.raises(CalfError) as err:
        preprocess(cases, out, PreprocessSettings(size=8), progress=False)
    message = str(err.value)
    assert "BraTS-GLI-00005-100-seg.nii.gz: mask labels 4 outside the valid set" in message
    assert "release=2024_post" in message and "\n" not in message
    assert not out.exists() and list(tmp_path.iterdir()) == [root]
    forced = discover("brats", root, ["t2"], release="2024_post")
    assert _stores_tumour(forced, tmp_path, "wt")[0] == 2 + 3 + 4
    with pytest.raises(CalfError, match="release must be one of auto, 2023, 2024_post"):
        discover("brats", root, release="2024")


def _lgg(root: Path, case: str, names: list[str]) -> None:
    for name in names:
        data = _labelled_mask({1: 6}) if "Segmentation" in name else _image()
        _save(root / "NiFTiSegmentationsEdited" / case / name, data)


def test_lgg_real_names_either_separator(tmp_path):
    _lgg(
        tmp_path,
        "LGG-104",
        ["LGG-104_T1.nii.gz", "LGG-104_T2.nii.gz", "LGG-104-Segmentation.nii.gz"],
    )
    _lgg(
        tmp_path,
        "LGG-210",
        ["LGG-210-T1.nii.gz", "LGG-210-T2.nii.gz", "LGG-210-Segmentation.nii.gz"],
    )
    # two names contain T2: the one named <case>_T2 wins
    _lgg(
        tmp_path,
        "LGG-301",
        [
            "LGG-301_T1.nii.gz",
            "LGG-301_T2.nii.gz",
            "LGG-301_T2_old.nii.gz",
            "LGG-301_Segmentation.nii.gz",
        ],
    )
    cases = discover("lgg_1p19q", tmp_path)
    names = {c.case_id: sorted(p.name for p in (*c.images.values(), c.mask)) for c in cases}
    assert names == {
        "LGG-104": ["LGG-104-Segmentation.nii.gz", "LGG-104_T1.nii.gz", "LGG-104_T2.nii.gz"],
        "LGG-210": ["LGG-210-Segmentation.nii.gz", "LGG-210-T1.nii.gz", "LGG-210-T2.nii.gz"],
        "LGG-301": ["LGG-301_Segmentation.nii.gz", "LGG-301_T1.nii.gz", "LGG-301_T2.nii.gz"],
    }
    assert {c.label_map for c in cases} == {"binary"}
    total, _ = _stores_tumour(cases, tmp_path, "wt")
    assert total == 3 * 6
    with pytest.raises(CalfError, match="region 'tc' is not defined for binary masks"):
        preprocess(cases, tmp_path / "tc", PreprocessSettings(size=8, region="tc"), progress=False)
    assert not (tmp_path / "tc").exists()


def test_lgg_missing_file_message_names_the_real_spelling(tmp_path):
    _lgg(tmp_path, "LGG-104", ["LGG-104_T1.nii.gz", "LGG-104-Segmentation.nii.gz"])
    with pytest.raises(CalfError) as err:
        discover("lgg_1p19q", tmp_path)
    expected = (tmp_path / "NiFTiSegmentationsEdited" / "LGG-104" / "LGG-104_T2.nii.gz").resolve()
    assert str(err.value) == f"lgg_1p19q case LGG-104: missing file {expected}"


def _ucsf(root: Path, exam: str) -> None:
    folder = root / f"{exam}_nifti"
    for token in ("T1", "T1c", "T2", "FLAIR"):
        _save(folder / f"{exam}_{token}.nii.gz", _image())
    _save(folder / f"{exam}_tumor_segmentation.nii.gz", _labelled_mask(OLD))


def test_ucsf_pre_v3_ids_join_their_patients(tmp_path):
    for number in (315, 433, 278, 431, 175, 138, 181, 289, 100):
        _ucsf(tmp_path, f"UCSF-PDGM-{number:04d}")
    _ucsf(tmp_path, "UCSF-PDGM-0429_FU003d")
    cases = discover("ucsf_pdgm", tmp_path)
    assert {c.case_id: c.patient_id for c in cases} == {
        "UCSF-PDGM-0100": "UCSF-PDGM-0100",
        "UCSF-PDGM-0138": "UCSF-PDGM-0429",
        "UCSF-PDGM-0175": "UCSF-PDGM-0396",
        "UCSF-PDGM-0181": "UCSF-PDGM-0409",
        "UCSF-PDGM-0278": "UCSF-PDGM-0431",
        "UCSF-PDGM-0289": "UCSF-PDGM-0391",
        "UCSF-PDGM-0315": "UCSF-PDGM-0433",
        "UCSF-PDGM-0429_FU003d": "UCSF-PDGM-0429",
        "UCSF-PDGM-0431": "UCSF-PDGM-0431",
        "UCSF-PDGM-0433": "UCSF-PDGM-0433",
    }
    assert {c.label_map for c in cases} == {"brats2021"}


@pytest.mark.parametrize(
    "files, seen",
    [
        ([], "saw 0 NIfTI files in folders up to 4 levels below it"),
        (
            ["notes.txt", "a/x.nii.gz", "b/y.nii.gz", "b/c/z.nii"],
            "saw 3 NIfTI files (a/x.nii.gz, b/y.nii.gz, b/c/z.nii) in folders",
        ),
        (
            ["a/1.nii.gz", "a/2.nii.gz", "a/3.nii.gz", "a/b/c/d/4.nii.gz", "a/b/c/d/e/5.nii.gz"],
            "saw 4 NIfTI files (a/1.nii.gz, a/2.nii.gz, a/3.nii.gz, ...) in folders",
        ),
    ],
)
def test_no_cases_message_says_what_it_searched_and_saw(tmp_path, files, seen):
    root = tmp_path / "download"
    (root / "empty").mkdir(parents=True)
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    with pytest.raises(CalfError) as err:
        discover("brats", root)
    message = str(err.value)
    assert message.startswith(f"brats: no cases found under {root.resolve()}; ")
    assert "looked for the layout up to 3 folder levels below it" in message
    assert seen in message and "\n" not in message


@pytest.mark.parametrize(
    "label_map, region, expected",
    [
        ("brats2021", "wt", (1, 2, 4)),
        ("brats2021", "tc", (1, 4)),
        ("brats2021", "et", (4,)),
        ("brats2023", "wt", (1, 2, 3)),
        ("brats2023", "tc", (1, 3)),
        ("brats2023", "et", (3,)),
        ("brats2024_post", "wt", (1, 2, 3)),
        ("brats2024_post", "et", (3,)),
        ("binary", "wt", (1,)),
        ("any", "wt", (1, 2, 3, 4)),
    ],
)
def test_region_table(label_map, region, expected):
    assert region_labels(label_map, region) == expected


def test_cli_region_recorded_in_store(tmp_path):
    _brats2024(tmp_path / "in")
    out = tmp_path / "store"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "calf",
            "preprocess",
            "--dataset",
            "brats",
            "--root",
            str(tmp_path / "in"),
            "--out",
            str(out),
            "--modalities",
            "t2",
            "--size",
            "8",
            "--mask-resize",
            "nearest",
            "--region",
            "et",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "store.json").read_text())
    assert meta["settings"]["region"] == "et"
    assert meta["settings"]["region_labels"] == {"brats2024_post": [3]}
    assert meta["counts"]["tumour_masks"] == 5  # one tumour slice per exam
    assert int(np.load(out / "masks.npy").sum()) == 5 * 4


def test_binary_override_labels_form_the_whole_tumour():
    # LGG with valid_labels "0,255": 255 is tumour, as label > 0 was
    assert region_labels("binary", "wt", (0, 255)) == (255,)
    assert region_labels("brats2023", "wt", (0, 1, 2, 3, 4)) == (1, 2, 3)
    with pytest.raises(CalfError, match="region 'et' is not defined for any masks"):
        region_labels("any", "et")
    with pytest.raises(CalfError, match="region must be one of wt, tc, et, got 'ncr'"):
        region_labels("brats2023", "ncr")
