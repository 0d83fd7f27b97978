"""Synthetic cohorts: exact release layouts, NIfTI headers, determinism, contrasts, presets
-> CALF branches (read back through the adapters), atomic writing, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from calf.datasets import discover
from calf.errors import CalfError
from calf.imbalance import imbalance_stats
from calf.losses import select_branch
from calf.synth import (
    DATASET_OF,
    DEFAULT_CASES,
    DEFAULT_SHAPE,
    LAYOUTS,
    PRESETS,
    cohort,
    write_cohort,
)

TINY = (16, 16, 8)


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _upenn(cid: str, mask: bool = True) -> set[str]:
    images = {f"images_structural/{cid}/{cid}_{t}.nii.gz" for t in ("T1", "T1GD", "T2", "FLAIR")}
    return images | ({f"automated_segm/{cid}_automated_approx_segm.nii.gz"} if mask else set())


def _ucsf(cid: str) -> set[str]:
    names = ("T1", "T1c", "T2", "FLAIR", "tumor_segmentation", "brain_segmentation")
    return {f"{cid}_nifti/{cid}_{t}.nii.gz" for t in names}


# hand-written file lists of small cohorts (follow-ups: every 4th exam for UPENN-GBM and
# BraTS 2023, every 5th for UCSF-PDGM; UPENN-GBM expert masks for every third baseline and,
# as in the release, no mask for the _21 follow-up)
EXPECTED_LAYOUT = {
    ("upenn_gbm", 4): _upenn("UPENN-GBM-00001_11")
    | _upenn("UPENN-GBM-00002_11")
    | _upenn("UPENN-GBM-00003_11")
    | _upenn("UPENN-GBM-00003_21", mask=False)
    | {"images_segm/UPENN-GBM-00001_11_segm.nii.gz"},
    ("ucsf_pdgm", 5): set().union(*(_ucsf(f"UCSF-PDGM-000{i}") for i in range(1, 5)))
    | _ucsf("UCSF-PDGM-0004_FU060d"),
    ("brats2023", 4): {
        f"{c}/{c}-{t}.nii.gz"
        for c in (
            "BraTS-GLI-00000-000",
            "BraTS-GLI-00001-000",
            "BraTS-GLI-00002-000",
            "BraTS-GLI-00002-001",
        )
        for t in ("t1n", "t1c", "t2w", "t2f", "seg")
    },
    ("brats2021", 2): {
        f"{c}/{c}_{t}.nii.gz"
        for c in ("BraTS2021_00000", "BraTS2021_00001")
        for t in ("t1", "t1ce", "t2", "flair", "seg")
    },
    ("lgg_1p19q", 2): {
        f"NiFTiSegmentationsEdited/{c}/{c}{t}.nii.gz"
        for c in ("LGG-101", "LGG-102")
        for t in ("_T1", "_T2", "-Segmentation")  # the release's real names
    },
    ("folder", 2): {
        f"{c}/{t}.nii.gz"
        for c in ("case-001", "case-002")
        for t in ("t1", "t1c", "t2", "flair", "seg")
    },
}


@pytest.mark.parametrize("layout, n", sorted(EXPECTED_LAYOUT))
def test_exact_release_layout(tmp_path, layout, n):
    root = tmp_path / layout
    ids = write_cohort(layout, root, "moderate", n, TINY, seed=3)
    assert _files(root) == EXPECTED_LAYOUT[(layout, n)] | {"calf_synth.json"}
    provenance = json.loads((root / "calf_synth.json").read_text())
    assert provenance["case_ids"] == ids == sorted(ids)
    assert provenance["dataset"] == DATASET_OF[layout]
    assert [c.case_id for c in discover(DATASET_OF[layout], root)] == ids
    assert sorted(p.name for p in tmp_path.iterdir()) == [layout]  # no staging left


def test_nifti_headers(tmp_path):
    write_cohort("brats2021", tmp_path / "c", "moderate", 1, (48, 40, 31), seed=0)
    for name, dtype in (("t1", np.int16), ("flair", np.int16), ("seg", np.uint8)):
        path = tmp_path / "c" / "BraTS2021_00000" / f"BraTS2021_00000_{name}.nii.gz"
        assert path.read_bytes()[:2] == b"\x1f\x8b"  # gzip
        image = nib.load(path)
        assert image.shape == (48, 40, 31) and image.get_data_dtype() == dtype
        assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
        # the BraTS/SRI24 field of view: 240 x 240 x 155 mm, centred on the origin
        np.testing.assert_allclose(image.header.get_zooms(), (5.0, 6.0, 5.0))
        np.testing.assert_allclose(image.affine @ [23.5, 19.5, 15, 1], [0, 0, 0, 1], atol=1e-9)
        assert int(image.header["qform_code"]) == 1 and int(image.header["sform_code"]) == 1


def _arrays(root: Path) -> dict[str, np.ndarray]:
    return {
        p.relative_to(root).as_posix(): np.asarray(nib.load(p).dataobj)
        for p in sorted(root.rglob("*.nii.gz"))
    }


def test_same_seed_same_arrays_other_seed_other_arrays(tmp_path):
    write_cohort("upenn_gbm", tmp_path / "a", "sparse", 4, TINY, seed=11)
    write_cohort("upenn_gbm", tmp_path / "b", "sparse", 4, TINY, seed=11)
    write_cohort("upenn_gbm", tmp_path / "c", "sparse", 4, TINY, seed=12)
    a, b, c = (_arrays(tmp_path / k) for k in "abc")
    assert a.keys() == b.keys() == c.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), key
    assert all(not np.array_equal(a[key], c[key]) for key in a if "images_structural" in key)
    assert any(not np.array_equal(a[key], c[key]) for key in a if "segm" in key)
    # the masks do not depend on whether the images are made
    exams = cohort.synthesize("upenn_gbm", "sparse", 4, TINY, 11, images=False)
    quick = [e.mask for e in exams if e.files.mask is not None]
    assert len(quick) == 3  # the _21 follow-up has no mask
    written = [a[k] for k in sorted(a) if k.startswith("automated_segm/")]
    assert all(np.array_equal(q, w) for q, w in zip(quick, written, strict=True))


def test_sequences_have_distinct_tissue_contrast(tmp_path):
    root = tmp_path / "ucsf"
    write_cohort("ucsf_pdgm", root, "moderate", 2, (48, 48, 24), seed=5)
    case = root / "UCSF-PDGM-0001_nifti"
    labels = np.asarray(nib.load(case / "UCSF-PDGM-0001_tumor_segmentation.nii.gz").dataobj)
    brain = np.asarray(nib.load(case / "UCSF-PDGM-0001_brain_segmentation.nii.gz").dataobj) > 0
    normal, oedema, enhancing = brain & (labels == 0), labels == 2, labels == 4

    def ratio(sequence: str, region: np.ndarray) -> float:
        image = np.asarray(nib.load(case / f"UCSF-PDGM-0001_{sequence}.nii.gz").dataobj).astype(
            float
        )
        return float(np.median(image[region]) / np.median(image[normal]))

    assert ratio("T2", oedema) > 1.2 and ratio("FLAIR", oedema) > 1.3  # oedema bright on T2/FLAIR
    assert ratio("T1", oedema) < 0.9  # and dark on T1
    assert ratio("T1c", enhancing) > 1.2 > ratio("T1", enhancing)  # the rim enhances with contrast
    assert not brain.all() and np.count_nonzero(labels[~brain]) == 0


def test_skull_kept_only_where_the_release_keeps_it(tmp_path):
    write_cohort("lgg_1p19q", tmp_path / "lgg", "moderate", 1, (32, 32, 16), seed=0)
    write_cohort("brats2023", tmp_path / "brats", "moderate", 1, (32, 32, 16), seed=0)
    lgg = np.asarray(
        nib.load(tmp_path / "lgg/NiFTiSegmentationsEdited/LGG-101/LGG-101_T2.nii.gz").dataobj
    )
    brats = np.asarray(
        nib.load(tmp_path / "brats/BraTS-GLI-00000-000/BraTS-GLI-00000-000-t2w.nii.gz").dataobj
    )
    assert np.mean(brats == 0) > 0.4  # skull-stripped: zero outside the brain
    assert np.mean(lgg == 0) < 0.1  # skull, scalp and noisy air
    mask = np.asarray(
        nib.load(
            tmp_path / "lgg/NiFTiSegmentationsEdited/LGG-101/LGG-101-Segmentation.nii.gz"
        ).dataobj
    )
    drawn = np.flatnonzero(mask.any(axis=(0, 1)))
    assert len(drawn) == 3 and np.all(np.diff(drawn) == 1)  # three adjacent axial slices


def _slice_areas(dataset: str, root: Path, size: int | None = None) -> np.ndarray:
    """Per-axial-slice tumour areas of every case, native or resized to size x size
    (bilinear, then > 0: the authors' mask resize)."""
    areas = []
    for case in discover(dataset, root):
        tumour = np.asarray(nib.load(case.mask).dataobj) > 0
        if size is None:
            areas.append(tumour.sum(axis=(0, 1)))
        else:
            stack = torch.from_numpy(np.moveaxis(tumour, 2, 0).astype(np.float32)).unsqueeze(1)
            resized = (
                F.interpolate(stack, size=(size, size), mode="bilinear", align_corners=False) > 0
            )
            areas.append(resized.flatten(1).sum(1).numpy())
    return np.concatenate(areas)


# each preset through a different layout, at the default grid and case count
@pytest.mark.parametrize(
    "preset, layout",
    [
        ("sparse", "upenn_gbm"),
        ("focal", "brats2023"),
        ("moderate", "ucsf_pdgm"),
        ("extensive", "brats2021"),
        ("bulky", "brats2023"),
    ],
)
def test_preset_lands_in_its_branch(tmp_path, preset, layout):
    root = tmp_path / layout
    write_cohort(layout, root, preset, DEFAULT_CASES, DEFAULT_SHAPE, seed=0)
    for size in (None, 256):
        stats = imbalance_stats(_slice_areas(DATASET_OF[layout], root, size))
        # every slice of every case (UPENN-GBM: its _21 follow-ups have no mask), tumour-free
        # ones too
        assert stats.n == len(discover(DATASET_OF[layout], root)) * DEFAULT_SHAPE[2]
        assert select_branch(stats.skewness, stats.kurtosis) == PRESETS[preset].branch, (
            size,
            stats,
        )


def test_readme_preset_table_is_what_the_presets_give():
    """The README's table of the presets (64 x 64 x 32 voxels, 10 cases, seed 0, the
    brats2021 layout, masks only): each row's tumour-slice share, S and K as computed."""
    import re

    import scipy.stats

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| (\d+) % \| ([+-][\d.]+) \| ([+-][\d.]+) \| `(\w+)` \|$",
                      readme, flags=re.M)
    assert {r[0] for r in rows} == set(PRESETS)
    for name, share, skew, kurt, branch in rows:
        areas = np.concatenate([
            (exam.mask > 0).reshape(-1, exam.mask.shape[2]).sum(axis=0)
            for exam in cohort.synthesize("brats2021", name, 10, (64, 64, 32), 0, images=False)
        ]).astype(float)
        assert round(100 * float(np.mean(areas > 0))) == int(share), name
        assert f"{scipy.stats.skew(areas):+.2f}" == skew, name
        assert f"{scipy.stats.kurtosis(areas):+.1f}" == f"{float(kurt):+.1f}", name
        assert branch == PRESETS[name].branch


def test_presets_cover_three_branches_or_more():
    assert len({p.branch for p in PRESETS.values()}) >= 3


def test_lgg_masks_make_every_preset_sparse():
    exams = cohort.synthesize("lgg_1p19q", "bulky", DEFAULT_CASES, DEFAULT_SHAPE, 0, images=False)
    stats = imbalance_stats(np.concatenate([(e.mask > 0).sum(axis=(0, 1)) for e in exams]))
    assert select_branch(stats.skewness, stats.kurtosis) == "log10"


@pytest.mark.parametrize("seed, n_cases", [(1, 6), (2, 14)])
def test_presets_robust_to_seed_and_case_count(seed, n_cases):
    for name, preset in PRESETS.items():
        exams = cohort.synthesize("folder", name, n_cases, DEFAULT_SHAPE, seed, images=False)
        areas = np.concatenate([(exam.mask > 0).sum(axis=(0, 1)) for exam in exams])
        stats = imbalance_stats(areas)
        assert select_branch(stats.skewness, stats.kurtosis) == preset.branch, (name, stats)


def test_refuses_a_non_empty_root(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    with pytest.raises(CalfError, match="already exists .no calf_synth.json.*--force"):
        write_cohort("folder", root, "sparse", 1, TINY)
    assert _files(root) == {"notes.txt"} and (root / "notes.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_cohort("folder", empty, "sparse", 1, TINY) == ["case-001"]
    # an earlier cohort (it holds calf_synth.json) is replaced whole; --force replaces any
    assert write_cohort("folder", empty, "sparse", 2, TINY) == ["case-001", "case-002"]
    assert json.loads((empty / "calf_synth.json").read_text())["n_cases"] == 2
    assert write_cohort("folder", root, "sparse", 1, TINY, force=True) == ["case-001"]
    assert "notes.txt" not in _files(root)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "mine"]


def test_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    real_save, calls = cohort._save, []

    def failing_save(array, path, affine):  # the disk fills up at the seventh file
        calls.append(path)
        if len(calls) == 7:
            raise OSError(28, "No space left on device")
        real_save(array, path, affine)

    monkeypatch.setattr(cohort, "_save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        write_cohort("brats2021", tmp_path / "cohort", "moderate", 3, TINY)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "arguments, message",
    [
        (("nope", "moderate", 2, TINY), "unknown layout 'nope'"),
        (("folder", "giant", 2, TINY), "unknown preset 'giant'"),
        (("folder", "moderate", 0, TINY), "at least 1"),
        (("folder", "moderate", 2, (16, 16)), "three voxel counts"),
        (("folder", "moderate", 2, (16, 16, 4)), "three voxel counts"),
    ],
)
def test_bad_arguments(tmp_path, arguments, message):
    layout, preset, n, shape = arguments
    with pytest.raises(CalfError, match=message):
        write_cohort(layout, tmp_path / "x", preset, n, shape)
    assert not (tmp_path / "x").exists()


def _calf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "calf", "synth", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_writes_a_cohort(tmp_path):
    out = tmp_path / "brats"
    result = _calf(
        "--layout",
        "brats2023",
        "--preset",
        "sparse",
        "--cases",
        "3",
        "--shape",
        "24",
        "24",
        "12",
        "--seed",
        "4",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"calf synth: wrote 3 cases to {out} (brats2023 layout, preset sparse: expected CALF branch log10)"
    )
    assert [c.case_id for c in discover("brats", out)] == [
        "BraTS-GLI-00000-000",
        "BraTS-GLI-00001-000",
        "BraTS-GLI-00002-000",
    ]
    assert nib.load(out / "BraTS-GLI-00000-000" / "BraTS-GLI-00000-000-seg.nii.gz").shape == (
        24,
        24,
        12,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layout", "brats2019"], "unknown layout 'brats2019'"),
        (
            ["--layout", "folder", "--preset", "huge", "--shape", "4", "64", "32"],
            "unknown preset 'huge'",
        ),
    ],
)
def test_cli_errors_are_one_line(tmp_path, args, message):
    result = _calf(*args, "--out", str(tmp_path / "x"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("calf synth: error: ") and message in lines[0]
    assert not (tmp_path / "x").exists()


def test_cli_refuses_non_empty_out(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "data.nii.gz").write_bytes(b"user data")
    result = _calf("--layout", "folder", "--out", str(tmp_path / "taken"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"calf synth: error: {tmp_path / 'taken'}: already exists (no calf_synth.json, so not "
        "written by this step; pass --force to replace it)"
    )
    assert (tmp_path / "taken" / "data.nii.gz").read_bytes() == b"user data"


def test_cli_help_lists_layouts_and_presets():
    result = _calf("--help")
    assert result.returncode == 0
    for name in (*LAYOUTS, *PRESETS):
        assert name in result.stdout
    for preset in PRESETS.values():
        assert f"{preset.name:10s} {preset.branch}" in result.stdout
