"""calf.store.SliceStore: the memory-mapped reader and its batch gatherer."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from calf.datasets.base import Case
from calf.errors import CalfError
from calf.evaluate.conventions import EmptyConventions
from calf.preprocess import PreprocessSettings, preprocess
from calf.store import INDEX_COLUMNS, INDEX_FILE, SliceStore, read_index


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """Two cases of 12 x 12 x 4, two modalities; case k has a k+1 pixel wide tumour column."""
    root = tmp_path_factory.mktemp("store")
    cases = []
    for k, case_id in enumerate(("p0", "p1")):
        folder = root / case_id
        folder.mkdir()
        images = {}
        for modality in ("t1", "flair"):
            # distinct after min-max scaling per case and modality, so a mix-up of rows shows
            data = np.arange(12 * 12 * 4, dtype=np.float32).reshape(12, 12, 4) ** (k + 1)
            data = data[::-1].copy() if modality == "flair" else data
            images[modality] = folder / f"{modality}.nii.gz"
            nib.save(nib.Nifti1Image(data, np.eye(4)), images[modality])
        seg = np.zeros((12, 12, 4), dtype=np.int16)
        seg[0 : k + 1, :, 1:] = 1
        nib.save(nib.Nifti1Image(seg, np.eye(4)), folder / "seg.nii.gz")
        cases.append(Case("toy", case_id, case_id, images, folder / "seg.nii.gz"))
    out = root / "slices"
    preprocess(cases, out, PreprocessSettings(size=12, mask_resize="nearest"), progress=False)
    return out


def test_open_and_memmaps(store_path):
    store = SliceStore(store_path)
    assert len(store) == 16 and store.size == 12 and store.dataset == "toy"
    assert isinstance(store.images, np.memmap) and isinstance(store.masks, np.memmap)
    assert store.images.shape == (16, 12, 12) and store.masks.shape == (8, 12, 12)
    np.testing.assert_array_equal(store.areas(), [0, 12, 12, 12] * 2 + [0, 24, 24, 24] * 2)


def test_read_index_the_one_reader(store_path, tmp_path):
    index = read_index(store_path)
    assert list(index.columns) == list(INDEX_COLUMNS) and len(index) == 16
    assert list(index.index) == list(range(16))  # row label = position in the store
    # by hand: case p0 then p1, each t1 then flair, slices 0..3; one mask per (case, slice)
    assert index["case_id"].tolist() == ["p0"] * 8 + ["p1"] * 8
    assert index["modality"].tolist() == (["t1"] * 4 + ["flair"] * 4) * 2
    assert index["mask_row"].tolist() == [0, 1, 2, 3] * 2 + [4, 5, 6, 7] * 2
    assert SliceStore(store_path).index.equals(index)
    broken = tmp_path / "broken"
    broken.mkdir()
    with pytest.raises(CalfError, match=f"^{broken / INDEX_FILE}: no slice store index"):
        read_index(broken)
    index.drop(columns="mask_row").to_parquet(broken / INDEX_FILE)
    with pytest.raises(CalfError, match=f"^{broken / INDEX_FILE}: index lacks column.s. mask_row$"):
        read_index(broken)
    (broken / INDEX_FILE).write_bytes(b"not parquet")
    with pytest.raises(CalfError, match=f"^{broken / INDEX_FILE}: damaged slice store index"):
        read_index(broken)


def test_batch_values_order_and_duplicates(store_path):
    store = SliceStore(store_path)
    rows = [13, 2, 13, 0, 9]
    x, y = store.batch(rows)
    assert x.shape == (5, 1, 12, 12) and y.shape == (5, 1, 12, 12)
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    for b, r in enumerate(rows):
        entry = store.index.iloc[r]
        expected_x = store.images[entry["image_row"]].astype(np.float32) / 255
        np.testing.assert_allclose(x[b, 0].numpy(), expected_x, rtol=0, atol=1e-7)
        np.testing.assert_array_equal(y[b, 0].numpy(), store.masks[entry["mask_row"]])
        assert y[b].sum().item() == entry["area"]
    assert 0.0 <= x.min().item() and x.max().item() <= 1.0
    assert torch.equal(x[0], x[2])
    assert len({tuple(x[b].flatten().tolist()) for b in (0, 1, 3, 4)}) == 4
    # row 13 is case p1, flair, slice 1: its mask is that of p1's t1 slice 1 (row 9)
    assert torch.equal(y[0], y[4]) and not torch.equal(x[0], x[4])


def test_batch_numpy_index_and_bounds(store_path):
    store = SliceStore(store_path)
    x, _ = store.batch(np.array([3, 1]))
    assert x.shape[0] == 2
    x, y = store.batch([])
    assert x.shape == (0, 1, 12, 12) and y.shape == (0, 1, 12, 12)
    with pytest.raises(IndexError):
        store.batch([16])


def test_not_a_store(tmp_path):
    with pytest.raises(CalfError, match="not a slice store") as info:
        SliceStore(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_damaged_store(store_path, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("store.json", "index.parquet", "masks.npy"):
        (copy / name).write_bytes((store_path / name).read_bytes())
    with pytest.raises(CalfError, match="damaged slice store"):
        SliceStore(copy)  # images.npy missing
    meta = json.loads((copy / "store.json").read_text())
    meta["format"] = 99
    (copy / "store.json").write_text(json.dumps(meta))
    with pytest.raises(CalfError, match="unknown slice store format"):
        SliceStore(copy)


def _copy_store(src, dst, skip=()):
    dst.mkdir()
    for path in src.iterdir():
        if path.name not in skip:
            (dst / path.name).write_bytes(path.read_bytes())
    return dst


def test_geometry_of_a_case(store_path):
    g = SliceStore(store_path).geometry("p1")
    assert g.mask == store_path.parent / "p1" / "seg.nii.gz" and g.mask.is_absolute()
    assert g.shape == (12, 12, 4) and g.canonical_shape == (12, 12, 4)
    assert g.spacing == (1.0, 1.0, 1.0) and g.orientation == ((0, 1), (1, 1), (2, 1))
    assert g.affine == tuple(tuple(row) for row in np.eye(4).tolist())
    # the folder convention "any" with the default valid labels (0..4): wt = every label > 0
    assert g.label_map == "any" and g.region_labels == (1, 2, 3, 4)
    # S = 12: one pixel per voxel; S = 6: two voxels of 1 mm per pixel in-plane, z kept
    assert g.training_spacing(12) == (1.0, 1.0, 1.0)
    assert g.training_spacing(6) == (2.0, 2.0, 1.0)
    # sqrt(12^2 + 12^2 + 4^2) = sqrt(304)
    assert EmptyConventions().one_empty_hd95(g.shape, g.spacing) == pytest.approx(17.435595774)


def test_geometry_is_lazy_and_old_stores_ask_for_a_rebuild(store_path, tmp_path):
    copy = _copy_store(store_path, tmp_path / "old", skip=("geometry.json",))
    store = SliceStore(copy)  # training never reads geometry.json
    x, y = store.batch([0, 5])
    assert x.shape == (2, 1, 12, 12)
    rebuild = "no geometry.json .*rebuild it with 'calf preprocess'"
    with pytest.raises(CalfError, match=rebuild) as info:
        store.geometry("p0")
    assert str(copy) in str(info.value)


def test_geometry_unknown_case(store_path):
    with pytest.raises(CalfError, match="no geometry for case 'p9'") as info:
        SliceStore(store_path).geometry("p9")
    assert str(store_path / "geometry.json") in str(info.value)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("orientation", [[0, 1], [0, 1], [2, 1]], "orientation is not an axis permutation"),
        ("orientation", [[0, 1], [1, 2], [2, 1]], "orientation is not an axis permutation"),
        ("spacing", [1.0, 0.0, 1.0], "spacing must be positive mm"),
        ("shape", [12, 12], "shape must be 3 finite numbers"),
        ("canonical_shape", [12, 4, 12], "canonical_shape .* disagrees"),
        ("affine", [[1, 0, 0, 0]], "affine must be 4 x 4"),
        ("region_labels", ["1"], "region_labels must be a list of integers"),
        ("mask", None, "mask missing"),
    ],
)
def test_damaged_geometry(store_path, tmp_path, key, value, message):
    copy = _copy_store(store_path, tmp_path / "copy")
    data = json.loads((copy / "geometry.json").read_text())
    if value is None:
        del data["cases"]["p0"][key]
    else:
        data["cases"]["p0"][key] = value
    (copy / "geometry.json").write_text(json.dumps(data))
    with pytest.raises(CalfError, match=message) as info:
        SliceStore(copy).geometry("p0")
    assert "case 'p0'" in str(info.value) and "\n" not in str(info.value)
    SliceStore(copy).geometry("p1")  # the other record is intact


def test_geometry_format_checked(store_path, tmp_path):
    copy = _copy_store(store_path, tmp_path / "copy")
    (copy / "geometry.json").write_text(json.dumps({"format": 7, "cases": {}}))
    with pytest.raises(CalfError, match="unknown geometry format 7"):
        SliceStore(copy).geometry("p0")
    (copy / "geometry.json").write_text("{not json")
    with pytest.raises(CalfError, match="unreadable geometry"):
        SliceStore(copy).geometry("p0")


def test_masks_checked_once_and_recorded(store_path, tmp_path):
    # preprocess checks every mask and records it; training trusts the record
    meta = json.loads((store_path / "store.json").read_text())
    assert meta["mask_values"] == [0, 1]
    assert set(np.unique(SliceStore(store_path).masks).tolist()) == {0, 1}
    copy = tmp_path / "old"
    _copy_store(store_path, copy)
    del meta["mask_values"]  # a store written before the record
    (copy / "store.json").write_text(json.dumps(meta))
    with pytest.raises(CalfError, match=r"store.json: no mask_values \[0, 1\].*'calf preprocess'"):
        SliceStore(copy)


@pytest.mark.parametrize("workers", [0, 1])
def test_training_loader_ships_uint8_and_yields_the_store_batches(store_path, workers):
    from calf.train.data import EpochSampler, TrainingSlices, make_loader

    store = SliceStore(store_path)
    data = TrainingSlices([store], [np.arange(len(store))])
    sampler = EpochSampler(len(data), 5, seed=3)
    raw_x, _ = data.raw(np.array([4, 1]))
    assert raw_x.dtype == torch.uint8 and raw_x.shape == (2, 1, 12, 12)
    loader = make_loader(data, sampler, workers, pin=False, seed=0)
    assert loader.num_workers == workers and not loader.pin_memory
    batches = list(loader)
    assert len(batches) == len(sampler) == 3  # 16 slices: 5, 5, 5 and a single one left out
    for (x, y), positions in zip(batches, sampler):
        ex, ey = store.batch(positions)  # numpy's float32 divide: equal to the last bit
        assert x.dtype == torch.float32 and torch.equal(x, ex) and torch.equal(y, ey)


def test_training_tensors_equal_numpy_division():
    from calf.store import training_tensors

    levels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    x, y = training_tensors(torch.from_numpy(levels), torch.from_numpy(levels % 2))
    expected = np.divide(levels, np.float32(255), dtype=np.float32)
    assert x.shape == (1, 1, 16, 16) and np.array_equal(x[:, 0].numpy(), expected)
    assert y.dtype == torch.float32 and set(y.unique().tolist()) == {0.0, 1.0}
