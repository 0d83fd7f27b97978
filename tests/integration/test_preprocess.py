"""calf.preprocess and ``calf preprocess``: hand-made NIfTI volumes with known answers."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from calf.datasets.base import Case
from calf.errors import CalfError
from calf.evaluate.conventions import EmptyConventions
from calf.preprocess import PreprocessSettings, preprocess
from calf.store import SliceStore

MODS = ("t1", "t2", "flair")


def write_case(
    root: Path,
    case_id: str,
    shape=(20, 20, 6),
    images: dict[str, np.ndarray] | None = None,
    seg: np.ndarray | None = None,
    affine: np.ndarray | None = None,
    valid_labels=(0, 1, 2, 4),
    patient_id: str | None = None,
) -> Case:
    """Write ``<root>/<case>/<modality>.nii.gz`` and ``seg.nii.gz``; return the Case."""
    folder = root / case_id
    folder.mkdir(parents=True, exist_ok=True)
    affine = np.eye(4) if affine is None else affine
    rng = np.random.default_rng(len(case_id))
    if images is None:
        images = {
            m: rng.uniform(0, 100 * (k + 1), size=shape).astype(np.float32)
            for k, m in enumerate(MODS)
        }
    if seg is None:
        seg = np.zeros(shape, dtype=np.uint8)
        seg[5:10, 5:10, 2:4] = 1
    paths = {}
    for modality, data in images.items():
        paths[modality] = folder / f"{modality}.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), paths[modality])
    mask = folder / "seg.nii.gz"
    nib.save(nib.Nifti1Image(seg, affine), mask)
    return Case("toy", case_id, patient_id or case_id, paths, mask, tuple(valid_labels))


def leftovers(folder: Path) -> list[str]:
    """``store`` and anything a build left beside it (staging folders are hidden)."""
    return sorted(p.name for p in folder.iterdir() if p.name.lstrip(".").startswith("store"))


def test_volume_and_slice_scaling_known_values(tmp_path):
    # values chosen so that 255 / span is exact: span 51 -> factor 5, span 17 -> factor 15
    vol = np.zeros((4, 4, 3), dtype=np.float32)
    vol[..., 0] = 7  # constant slice
    vol[..., 1] = 0
    vol[0, 0, 1] = 51  # holds the volume's min and max
    vol[..., 2] = 20
    vol[1, 1, 2] = 37
    seg = np.zeros((4, 4, 3), dtype=np.uint8)
    case = write_case(tmp_path / "in", "a", images={"t1": vol}, seg=seg)
    for scaling, expected in [
        ("volume", [np.full((4, 4), 35), 0, 100]),
        ("slice", [np.zeros((4, 4)), 0, 0]),
    ]:
        out = tmp_path / f"store-{scaling}"
        preprocess([case], out, PreprocessSettings(size=4, scaling=scaling), progress=False)
        images = SliceStore(out).images
        assert images.dtype == np.uint8 and images.shape == (3, 4, 4)
        np.testing.assert_array_equal(images[0], expected[0])
        assert images[1, 0, 0] == 255 and images[1, 2, 2] == 0
        assert images[2, 0, 0] == expected[2]
        assert images[2, 1, 1] == (185 if scaling == "volume" else 255)


def test_constant_volume_maps_to_zero(tmp_path):
    vol = np.full((8, 8, 2), 42.0, dtype=np.float32)
    case = write_case(tmp_path / "in", "a", images={"t1": vol}, seg=np.zeros((8, 8, 2), np.uint8))
    preprocess([case], tmp_path / "store", PreprocessSettings(size=16), progress=False)
    store = SliceStore(tmp_path / "store")
    assert store.images.shape == (2, 16, 16) and not store.images.any()


@pytest.mark.parametrize(
    "mask_resize, side",
    # a 5-pixel run upsampled x2: nearest gives 10; bilinear reaches one more output pixel
    # on each side (weights 0.25 beyond the edge), then > 0 keeps it: 2 * 5 + 2 = 12
    [("nearest", 10), ("bilinear", 12)],
)
def test_index_rows_areas_and_mask_resize(tmp_path, mask_resize, side):
    cases = [write_case(tmp_path / "in", c) for c in ("b", "a")]
    out = tmp_path / "store"
    summary = preprocess(
        cases, out, PreprocessSettings(size=40, mask_resize=mask_resize), progress=False
    )
    assert summary.built and (summary.n_cases, summary.n_images, summary.n_masks) == (2, 36, 12)
    store = SliceStore(out)
    index = store.index
    assert len(store) == 36 and store.images.shape == (36, 40, 40)
    assert store.masks.shape == (12, 40, 40) and set(np.unique(store.masks)) == {0, 1}
    # cases sorted by ID, modality-major then slice; every slice kept, tumour-free too
    assert index["case_id"].tolist() == ["a"] * 18 + ["b"] * 18
    assert index["modality"].tolist()[:18] == ["t1"] * 6 + ["t2"] * 6 + ["flair"] * 6
    assert index["slice"].tolist()[:6] == list(range(6))
    assert index["image_row"].tolist() == list(range(36))
    expected_area = np.where(np.isin(index["slice"], [2, 3]), side * side, 0)
    np.testing.assert_array_equal(index["area"], expected_area)
    # one mask per (case, slice), shared by the slice's three modalities
    for _, group in index.groupby(["case_id", "slice"]):
        assert group["mask_row"].nunique() == 1 and len(group) == 3
    per_mask = np.tile([0, 0, side**2, side**2, 0, 0], 2)
    np.testing.assert_array_equal(store.masks.reshape(12, -1).sum(1), per_mask)
    meta = json.loads((out / "store.json").read_text())
    assert meta["settings"]["mask_resize"] == mask_resize
    assert meta["settings"]["modalities"] == list(MODS)


def test_ras_reorientation(tmp_path):
    # voxel axis 0 runs along z (superior), axis 2 along -x: the axial axis is array axis 0
    affine = np.array([[0, 0, -1, 9], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    shape = (5, 10, 10)  # (z, y, -x)
    seg = np.zeros(shape, dtype=np.uint8)
    seg[3, 0:2, 0:4] = 2  # slice z=3, y in [0, 2), stored x index 0..3 = RAS x 9..6
    img = np.zeros(shape, dtype=np.float32)
    img[3, 0, 0] = 1.0  # RAS (x, y, z) = (9, 0, 3)
    case = write_case(tmp_path / "in", "a", images={"t1": img}, seg=seg, affine=affine)
    out = tmp_path / "store"
    preprocess([case], out, PreprocessSettings(size=10), progress=False)
    store = SliceStore(out)
    assert len(store) == 5 and store.masks.shape == (5, 10, 10)
    np.testing.assert_array_equal(store.index["area"], [0, 0, 0, 8, 0])
    expected = np.zeros((10, 10), dtype=np.uint8)
    expected[6:10, 0:2] = 1  # rows = x, columns = y
    np.testing.assert_array_equal(store.masks[3], expected)
    assert store.images[3, 9, 0] == 255 and int(store.images.sum()) == 255


def test_rerun_is_noop_and_changes_rebuild(tmp_path):
    case = write_case(tmp_path / "in", "a")
    out = tmp_path / "store"
    settings = PreprocessSettings(size=24)
    assert preprocess([case], out, settings, progress=False).built
    stamp = (out / "images.npy").stat().st_mtime_ns
    again = preprocess([case], out, settings, progress=False)
    assert not again.built and (out / "images.npy").stat().st_mtime_ns == stamp
    # changed settings: rebuilt, old content gone
    assert preprocess([case], out, PreprocessSettings(size=12), progress=False).built
    assert SliceStore(out).images.shape == (18, 12, 12)
    # changed input: a new mask with a bigger tumour
    seg = np.zeros((20, 20, 6), dtype=np.uint8)
    seg[0:20, 0:20, 0] = 1
    case = write_case(
        tmp_path / "in", "a", seg=seg, images={m: np.ones((20, 20, 6), np.float32) for m in MODS}
    )
    assert preprocess([case], out, PreprocessSettings(size=12), progress=False).built
    np.testing.assert_array_equal(SliceStore(out).index["area"][:6], [144, 0, 0, 0, 0, 0])
    assert leftovers(tmp_path) == ["store"]


def test_refuses_to_overwrite_foreign_directory(tmp_path):
    case = write_case(tmp_path / "in", "a")
    out = tmp_path / "store"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(CalfError, match="not a slice store.*--force"):
        preprocess([case], out, progress=False)
    assert (out / "notes.txt").read_text() == "mine"
    assert leftovers(tmp_path) == ["store"]
    # --force replaces it; an empty folder needs none
    assert preprocess([case], out, progress=False, force=True).built
    assert not (out / "notes.txt").exists() and len(SliceStore(out)) > 0
    empty = tmp_path / "store-empty"
    empty.mkdir()
    assert preprocess([case], empty, progress=False).built
    assert leftovers(tmp_path) == ["store", "store-empty"]


def _truncate(path: Path, keep: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def _bad_inputs(root: Path, kind: str) -> tuple[list[Case], Path]:
    good = write_case(root, "a")
    if kind == "truncated-data":
        bad = write_case(root, "b")
        raw = gzip.decompress(bad.images["t2"].read_bytes())
        bad.images["t2"].write_bytes(gzip.compress(raw)[: len(gzip.compress(raw)) // 2])
        return [good, bad], bad.images["t2"]
    if kind == "truncated-header":
        bad = write_case(root, "b")
        _truncate(bad.mask, 12)
        return [good, bad], bad.mask
    if kind == "mask-shape":
        bad = write_case(root, "b", seg=np.zeros((20, 20, 5), np.uint8))
        return [good, bad], bad.mask
    if kind == "nan":
        img = np.ones((20, 20, 6), np.float32)
        img[3, 3, 3] = np.nan
        bad = write_case(root, "b", images={"t1": img, "t2": img + 1, "flair": img + 2})
        return [good, bad], bad.images["t1"]
    if kind == "labels":
        seg = np.zeros((20, 20, 6), np.uint8)
        seg[1, 1, 1] = 3
        bad = write_case(root, "b", seg=seg, valid_labels=(0, 1, 2, 4))
        return [good, bad], bad.mask
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind, message, workers",
    [
        ("truncated-data", "cannot decode", 1),
        ("truncated-header", "not a readable NIfTI", 1),
        ("mask-shape", "mask shape", 1),
        ("nan", "NaN", 1),
        ("labels", "labels 3 outside", 2),
    ],
)
def test_bad_inputs_fail_cleanly(tmp_path, kind, message, workers):
    cases, culprit = _bad_inputs(tmp_path / "in", kind)
    with pytest.raises(CalfError, match=message) as info:
        preprocess(cases, tmp_path / "store", workers=workers, progress=False)
    text = str(info.value)
    assert str(culprit) in text and "\n" not in text
    assert leftovers(tmp_path) == []


def test_failed_rebuild_keeps_previous_store(tmp_path):
    cases, _ = _bad_inputs(tmp_path / "in", "nan")
    out = tmp_path / "store"
    preprocess(cases[:1], out, progress=False)
    before = (out / "store.json").read_text()
    with pytest.raises(CalfError):
        preprocess(cases, out, progress=False)
    assert (out / "store.json").read_text() == before and leftovers(tmp_path) == ["store"]


def test_parallel_equals_serial(tmp_path):
    cases = [write_case(tmp_path / "in", c) for c in ("a", "b", "c")]
    preprocess(cases, tmp_path / "s1", PreprocessSettings(size=16), workers=1, progress=False)
    preprocess(cases, tmp_path / "s2", PreprocessSettings(size=16), workers=2, progress=False)
    one, two = SliceStore(tmp_path / "s1"), SliceStore(tmp_path / "s2")
    np.testing.assert_array_equal(one.images, two.images)
    np.testing.assert_array_equal(one.masks, two.masks)
    assert one.index.equals(two.index)


def _calf(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "calf", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_help():
    result = _calf("preprocess", "--help", cwd=Path.cwd())
    assert result.returncode == 0 and "--mask-resize" in result.stdout


def test_cli_folder_layout_build_noop_and_error(tmp_path):
    root = tmp_path / "cohort"
    for c in ("case1", "case2"):
        write_case(root, c)
    args = [
        "preprocess",
        "--dataset",
        "folder",
        "--root",
        str(root),
        "--out",
        str(tmp_path / "store"),
        "--size",
        "16",
        "--workers",
        "2",
    ]
    first = _calf(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "wrote" in first.stdout and "preprocess" in first.stderr  # the progress bar
    second = _calf(*args, "--quiet", cwd=tmp_path)
    assert second.returncode == 0 and "up to date" in second.stdout
    assert len(SliceStore(tmp_path / "store")) == 2 * 3 * 6
    _truncate(root / "case2" / "seg.nii.gz", 10)
    bad = _calf(*args[:6], str(tmp_path / "other"), "--quiet", cwd=tmp_path)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and "case2/seg.nii.gz" in lines[0]
    assert not (tmp_path / "other").exists()


# native axis 0 -> -y (0.9 mm), axis 1 -> +z (3.0 mm), axis 2 -> -x (1.2 mm)
PERMUTED = np.array(
    [[0, 0, -1.2, 30], [-0.9, 0, 0, 40], [0, 3.0, 0, -20], [0, 0, 0, 1]], dtype=float
)


def test_geometry_json_from_the_mask_header(tmp_path):
    shape = (12, 5, 10)
    seg = np.zeros(shape + (1,), dtype=np.uint8)  # a 4-D singleton mask, 3-D images
    seg[2:4, 1, 3:6, 0] = 2
    images = {"t1": np.ones(shape, np.float32)}
    case = write_case(tmp_path / "in", "a", images=images, seg=seg, affine=PERMUTED)
    case = Case("toy", "a", "a", case.images, case.mask, (0, 1, 2, 4), "brats2021")
    out = tmp_path / "store"
    preprocess([case], out, PreprocessSettings(size=4, region="tc"), progress=False)
    data = json.loads((out / "geometry.json").read_text())
    assert data["format"] == 1 and list(data["cases"]) == ["a"]
    record = data["cases"]["a"]
    assert record["mask"] == os.path.abspath(case.mask)
    assert record["shape"] == [12, 5, 10]  # the singleton 4th axis dropped
    # header zooms, native order (float32 in the header: 0.9 -> 0.899999976...)
    assert record["spacing"] == pytest.approx([0.9, 3.0, 1.2], abs=1e-6)
    np.testing.assert_allclose(record["affine"], PERMUTED, atol=1e-6)
    # axis 0 -> RAS axis 1 flipped, axis 1 -> RAS 2, axis 2 -> RAS 0 flipped
    assert record["orientation"] == [[1, -1], [2, 1], [0, -1]]
    assert record["canonical_shape"] == [10, 12, 5]  # (x, y, z) = native (2, 0, 1)
    assert record["label_map"] == "brats2021" and record["region_labels"] == [1, 4]
    assert SliceStore(out).images.shape == (5, 4, 4)  # z = native axis 1
    g = SliceStore(out).geometry("a")
    # canonical zooms (1.2, 0.9, 3.0); in-plane extents 10 x 1.2 = 12 mm and 12 x 0.9 =
    # 10.8 mm over S = 4 pixels: 3.0 and 2.7 mm per pixel, slices stay 3.0 mm
    assert g.training_spacing(4) == pytest.approx((3.0, 2.7, 3.0), abs=1e-6)
    # native extents 12 x 0.9, 5 x 3.0, 10 x 1.2 = 10.8, 15, 12 mm: sqrt(485.64)
    assert EmptyConventions().one_empty_hd95(g.shape, g.spacing) == pytest.approx(22.037241, abs=1e-5)


def test_store_without_geometry_is_rebuilt(tmp_path):
    case = write_case(tmp_path / "in", "a")
    out = tmp_path / "store"
    settings = PreprocessSettings(size=8)
    preprocess([case], out, settings, progress=False)
    meta = json.loads((out / "store.json").read_text())
    assert meta["settings"]["algorithm"] == 2  # 2: the version that writes geometry.json
    (out / "geometry.json").unlink()
    assert preprocess([case], out, settings, progress=False).built
    assert (out / "geometry.json").is_file()
    # a store of the previous algorithm is rebuilt too, even with every file present
    meta = json.loads((out / "store.json").read_text())
    meta["settings"]["algorithm"] = 1
    (out / "store.json").write_text(json.dumps(meta))
    assert preprocess([case], out, settings, progress=False).built
    assert not preprocess([case], out, settings, progress=False).built


def test_store_without_the_mask_record_is_rebuilt(tmp_path):
    # SliceStore refuses a store whose masks were never checked; the same preprocess
    # command rebuilds it and writes the record
    case = write_case(tmp_path / "in", "a")
    out = tmp_path / "store"
    settings = PreprocessSettings(size=8)
    preprocess([case], out, settings, progress=False)
    meta = json.loads((out / "store.json").read_text())
    assert meta["mask_values"] == [0, 1]
    del meta["mask_values"]
    (out / "store.json").write_text(json.dumps(meta))
    assert preprocess([case], out, settings, progress=False).built
    assert json.loads((out / "store.json").read_text())["mask_values"] == [0, 1]
    assert not preprocess([case], out, settings, progress=False).built
