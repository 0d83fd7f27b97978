"""calf.profile and ``calf profile``: S, K and branch of a training set's slice areas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from calf.datasets.base import Case
from calf.errors import CalfError
from calf.losses import select_branch
from calf.preprocess import PreprocessSettings, preprocess
from calf.profile import profile, read_profile
from calf.store import SliceStore

# side of the square tumour in each axial slice (0: none); 2 modalities per case
ALPHA = [0, 0, 0, 2, 3, 4, 10, 0]
BETA = [0, 5, 5, 0, 0, 0, 1, 0]


def _store(root: Path, dataset: str, sides: list[int], case_id: str = "c1") -> Path:
    folder = root / dataset / case_id
    folder.mkdir(parents=True)
    shape = (16, 16, len(sides))
    seg = np.zeros(shape, dtype=np.uint8)
    for z, side in enumerate(sides):
        seg[2 : 2 + side, 3 : 3 + side, z] = 1
    nib.save(nib.Nifti1Image(seg, np.eye(4)), folder / "seg.nii.gz")
    rng = np.random.default_rng(0)
    images = {}
    for modality in ("t1", "t2"):
        images[modality] = folder / f"{modality}.nii.gz"
        nib.save(
            nib.Nifti1Image(rng.normal(size=shape).astype(np.float32), np.eye(4)), images[modality]
        )
    case = Case(dataset, case_id, "p1", images, folder / "seg.nii.gz")
    out = root / f"{dataset}-store"
    # the training size equals the volume's, nearest: the stored areas are side ** 2
    preprocess([case], out, PreprocessSettings(size=16, mask_resize="nearest"), progress=False)
    return out


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("profile")
    return {
        name: _store(root, name, sides)
        for name, sides in (("alpha", ALPHA), ("beta", BETA), ("empty", [0, 0, 0]))
    }


def _expected(areas) -> tuple[float, float]:
    a = np.asarray(areas, dtype=float)
    return float(scipy.stats.skew(a)), float(scipy.stats.kurtosis(a))


@pytest.mark.parametrize(
    "area, per_side",
    # a k x k square: k^2 pixels; its OpenCV contour runs through pixel centres: (k-1)^2
    [("pixels", lambda k: k * k), ("contour", lambda k: (k - 1) ** 2 if k else 0)],
)
def test_all_slices_of_one_store(stores, tmp_path, area, per_side):
    out, fig = tmp_path / "p.json", tmp_path / "h.png"
    record = profile([stores["alpha"]], out, area=area, figure=fig, context={"dataset": "alpha"})
    areas = [per_side(k) for k in ALPHA] * 2
    s, k = _expected(areas)
    assert record["n_slices"] == 16 and record["n_tumour_slices"] == 8
    assert record["skewness"] == pytest.approx(s, rel=1e-12)
    assert record["kurtosis"] == pytest.approx(k, rel=1e-12)
    assert record["branch"] == select_branch(s, k)
    assert record["area_definition"] == area and record["dataset"] == "alpha"
    assert json.loads(out.read_text()) == record
    image = matplotlib.image.imread(fig)
    assert image.ndim == 3 and image.shape[0] > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.png", "p.json"]


@pytest.mark.parametrize(
    "area, per_side", [("pixels", lambda k: k * k), ("contour", lambda k: (k - 1) ** 2 if k else 0)]
)
def test_histogram_of_the_areas(stores, tmp_path, area, per_side):
    record = profile([stores["alpha"]], tmp_path / "p.json", area=area)
    areas = np.array([per_side(k) for k in ALPHA] * 2, dtype=float)
    histogram = record["histogram"]
    assert len(histogram["edges"]) == 51 and len(histogram["counts"]) == 50
    assert sum(histogram["counts"]) == record["n_slices"] == 16
    counts, edges = np.histogram(areas, bins=50, range=(0.0, areas.max()))
    assert histogram["counts"] == counts.tolist()
    np.testing.assert_allclose(histogram["edges"], edges, rtol=0, atol=1e-12)
    assert histogram["edges"][0] == 0 and histogram["edges"][-1] == areas.max()
    if area == "pixels":  # by hand: bins of width 2; areas 0 (x4), 4, 9, 16, 100, each twice
        expected = [0] * 50
        expected[0], expected[2], expected[4], expected[8], expected[49] = 8, 2, 2, 2, 2
        assert histogram["counts"] == expected
    assert json.loads((tmp_path / "p.json").read_text())["histogram"] == histogram


def test_histogram_without_tumour(stores, tmp_path):
    histogram = profile([stores["empty"]], tmp_path / "p.json")["histogram"]
    assert histogram["edges"][0] == 0 and histogram["edges"][-1] == 1
    assert histogram["counts"][0] == 6 and sum(histogram["counts"]) == 6


def test_training_set_csv_pooled(stores, tmp_path):
    alpha, beta = SliceStore(stores["alpha"]), SliceStore(stores["beta"])
    picks = {"alpha": [0, 3, 4, 5, 6, 11, 14], "beta": [1, 2, 9, 6, 3]}
    parts = []
    for name, store in (("alpha", alpha), ("beta", beta)):
        part = store.index.iloc[picks[name]].copy()
        part.insert(1, "row", picks[name])
        parts.append(part)
    csv = tmp_path / "train.csv"
    pd.concat(parts).to_csv(csv, index=False)
    record = profile([stores["alpha"], stores["beta"]], tmp_path / "p.json", train_slices=csv)
    areas = [ALPHA[r % 8] ** 2 for r in picks["alpha"]] + [BETA[r % 8] ** 2 for r in picks["beta"]]
    s, k = _expected(areas)
    assert record["n_slices"] == 12 and record["n_tumour_slices"] == sum(a > 0 for a in areas)
    assert record["skewness"] == pytest.approx(s, rel=1e-12)
    assert record["kurtosis"] == pytest.approx(k, rel=1e-12)
    assert record["branch"] == select_branch(s, k)
    assert record["train_slices"] == str(csv)


def test_numeric_looking_case_ids_match_the_store(tmp_path):
    # the folder adapter names cases like "001": the CSV's case_id must stay text
    store = _store(tmp_path, "folder", ALPHA, case_id="001")
    index = SliceStore(store).index
    csv = tmp_path / "train.csv"
    index.iloc[[1, 2]].assign(row=[1, 2]).to_csv(csv, index=False)
    record = profile([store], tmp_path / "p.json", train_slices=csv)
    assert record["n_slices"] == 2


def test_undefined_statistics_are_null(stores, tmp_path):
    record = profile([stores["empty"]], tmp_path / "p.json")
    assert record["skewness"] is None and record["kurtosis"] is None
    assert record["branch"] == "bce_dice" and record["n_tumour_slices"] == 0
    assert "null" in (tmp_path / "p.json").read_text()


def _csv(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "train.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"dataset": "gamma", "row": 0}], "dataset 'gamma' has no --store"),
        ([{"dataset": "alpha", "row": 16}], "row 16 of alpha outside"),
        ([{"dataset": "alpha", "row": 4, "area": 5}], "row 4 has area=5"),
        ([{"dataset": "alpha", "row": "x"}], "not a row number"),
        ([{"dataset": "alpha"}], "missing columns row"),
    ],
)
def test_bad_training_set(stores, tmp_path, rows, message):
    csv = _csv(tmp_path, rows)
    with pytest.raises(CalfError, match=message) as info:
        profile([stores["alpha"]], tmp_path / "p.json", train_slices=csv, figure=tmp_path / "h.png")
    assert str(csv) in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.csv"]


def test_one_store_per_dataset(stores, tmp_path):
    with pytest.raises(CalfError, match="dataset 'alpha' also in"):
        profile([stores["alpha"], stores["alpha"]], tmp_path / "p.json")


def _calf(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "calf", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_cli(stores, tmp_path):
    assert _calf("profile", "--help").returncode == 0
    out, fig = tmp_path / "sub" / "p.json", tmp_path / "sub" / "h.png"
    ok = _calf(
        "profile",
        "--store",
        str(stores["alpha"]),
        "--store",
        str(stores["beta"]),
        "--out",
        str(out),
        "--figure",
        str(fig),
        "--dataset",
        "pooled",
        "--fold",
        "2",
        "--ratio",
        "0.25",
    )
    assert ok.returncode == 0, ok.stderr
    record = json.loads(out.read_text())
    s, k = _expected([a * a for a in ALPHA] * 2 + [b * b for b in BETA] * 2)
    assert record["skewness"] == pytest.approx(s, rel=1e-12) and record["branch"] in ok.stdout
    assert (record["dataset"], record["fold"], record["ratio"]) == ("pooled", 2, 0.25)
    assert fig.stat().st_size > 0
    bad = _calf(
        "profile",
        "--store",
        str(stores["alpha"]),
        "--out",
        str(tmp_path / "q.json"),
        "--ratio",
        "1.5",
    )
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "1.5" in bad.stderr
    missing = _calf("profile", "--store", str(tmp_path / "nope"), "--out", str(tmp_path / "q.json"))
    assert missing.returncode == 2 and "nope" in missing.stderr
    assert not (tmp_path / "q.json").exists()


# ------------------------------------------------------------- existing outputs, reading


def test_an_existing_file_is_replaced_only_with_force(stores, tmp_path):
    out, fig = tmp_path / "p.json", tmp_path / "h.png"
    out.write_text("a user's notes\n")
    with pytest.raises(CalfError, match=f"{out}: already exists .*--force"):
        profile([stores["alpha"]], out, figure=fig)
    assert out.read_text() == "a user's notes\n" and not fig.exists()
    fig.write_bytes(b"png")
    with pytest.raises(CalfError, match=f"{fig}: already exists"):
        profile([stores["alpha"]], tmp_path / "new.json", figure=fig)
    assert not (tmp_path / "new.json").exists() and fig.read_bytes() == b"png"
    record = profile([stores["alpha"]], out, figure=fig, force=True)
    assert read_profile(out) == record and fig.stat().st_size > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.png", "p.json"]
    # the command line: refused, one line, exit 2; replaced with --force
    args = ["profile", "--store", str(stores["beta"]), "--out", str(out)]
    refused = _calf(*args)
    assert refused.returncode == 2 and refused.stderr.strip().count("\n") == 0
    assert "--force" in refused.stderr and read_profile(out) == record
    assert _calf(*args, "--force").returncode == 0
    assert read_profile(out)["stores"] == [str(stores["beta"])]


def test_read_profile_reads_what_profile_writes(stores, tmp_path):
    record = profile([stores["alpha"]], tmp_path / "p.json", context={"dataset": "alpha"})
    assert read_profile(tmp_path / "p.json") == record
    undefined = profile([stores["empty"]], tmp_path / "e.json")
    assert read_profile(tmp_path / "e.json") == undefined and undefined["skewness"] is None


_GOOD = {"n_slices": 10, "n_tumour_slices": 4, "skewness": 0.5, "kurtosis": None,
         "branch": "bce_dice", "area_definition": "pixels"}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"kurtosis": ...}, "missing key 'kurtosis'"),
        ({"n_slices": 2.5}, "n_slices is 2.5, not a count"),
        ({"n_tumour_slices": True}, "n_tumour_slices is True, not a count"),
        ({"n_tumour_slices": 11}, "n_tumour_slices 11 exceeds n_slices 10"),
        ({"skewness": "0.5"}, "skewness is '0.5', not a number or null"),
        ({"branch": None}, "branch is None"),
        ({"area_definition": "voxels"}, "area_definition is 'voxels', expected pixels or contour"),
        ({"histogram": {"edges": [0, 1], "counts": [1, 2]}}, "histogram has 2 edges for 2 counts"),
        ({"histogram": {"edges": "x"}}, "histogram needs numeric lists edges and counts"),
    ],
)
def test_read_profile_errors_name_the_file(tmp_path, change, message):
    record = {k: v for k, v in {**_GOOD, **change}.items() if v is not ...}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(record))
    with pytest.raises(CalfError, match=f"^{path}: {message}"):
        read_profile(path)
    with pytest.raises(CalfError, match=f"^--profile x: {message}"):
        read_profile(path, name="--profile x")


def test_read_profile_unreadable(tmp_path):
    with pytest.raises(CalfError, match="no such profile file"):
        read_profile(tmp_path / "none.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(CalfError, match="list.json: not a profile JSON object"):
        read_profile(tmp_path / "list.json")
    (tmp_path / "ok.json").write_text(json.dumps(_GOOD))
    assert read_profile(tmp_path / "ok.json") == _GOOD
