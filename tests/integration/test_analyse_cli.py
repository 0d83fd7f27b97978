"""`calf analyse` end to end on a small synthetic results tree (calf.synth.results)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from calf.analysis.run import TABLE_SOURCES, table_columns
from calf.cli import main
from calf.synth.results import write_study


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A study of 2 datasets x 2 models x 3 losses, 2 folds of 16 cases, and its analysis."""
    results = tmp_path_factory.mktemp("analyse") / "results"
    paths = write_study(results, datasets=("sparse", "bulky"), models=("unet", "fpn"),
                        losses=("bce", "dice", "calf"), folds=2, cases_per_fold=16,
                        effects={"calf": 0.1}, epochs=2)
    profiles = sorted((results / "profiles").rglob("*.json"))
    out = results / "analysis" / "demo"
    args = ["analyse", "--metrics-root", str(results / "metrics"), "--study", "demo",
            "--out-dir", str(out), "--profiles-root", str(results / "profiles"),
            *[w for p in profiles for w in ("--profile", str(p))], "--resamples", "200",
            "--rank-resamples", "200", *map(str, paths)]
    assert main(args) == 0
    return results, paths, out, args


def test_every_table_is_written_with_its_columns(tree):
    _, _, out, _ = tree
    record = json.loads((out / "analysis.json").read_text())
    assert record["format"] == 1 and record["study"] == "demo"
    assert set(record["tables"]) == set(TABLE_SOURCES)
    for name in TABLE_SOURCES:
        table = pd.read_csv(out / f"{name}.csv")
        columns = table_columns(name)
        if columns is not None:
            assert list(table.columns) == list(columns), name
    sizes = pd.read_csv(out / "sizes.csv")
    # 2 datasets x 2 folds x 16 cases, one exam each: 64 patients, sized in ml (1 mm voxels)
    assert len(sizes) == 64 and set(sizes["size_unit"]) == {"ml"}
    classes = pd.read_csv(out / "size_classes.csv")
    assert set(classes["baseline"]) == {"bce", "dice"} and set(classes["calf_loss"]) == {"calf"}
    regimes = pd.read_csv(out / "regimes.csv", dtype={"ratio": str})
    assert len(regimes) == 4 and set(regimes["dataset"]) == {"sparse", "bulky"}
    stability = pd.read_csv(out / "rank_stability.csv", dtype={"ratio": str})
    # one row per dataset x model and metric (dice, hd95)
    assert len(stability) == 8 and stability["best_share"].between(0, 1).all()


def test_a_folder_it_did_not_write_is_kept(tree, tmp_path, capsys):
    results, paths, _, args = tree
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    i = args.index("--out-dir")
    assert main([*args[:i + 1], str(mine), *args[i + 2:]]) != 0
    assert "--force" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("option, value, message", [
    ("--size-bins", "1", "size_bins"),
    ("--size-bins", "5,2", "size_bins"),
    ("--alpha", "1.5", "alpha"),
])
def test_bad_options_fail_with_one_line_and_write_nothing(tree, tmp_path, capsys, option, value,
                                                           message):
    _, _, _, args = tree
    out = tmp_path / "out"
    i = args.index("--out-dir")
    assert main([*args[:i + 1], str(out), *args[i + 2:], option, value]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_a_study_the_files_lack_is_named(tree, tmp_path, capsys):
    _, _, _, args = tree
    i = args.index("--study")
    assert main([*args[:i + 1], "other", *args[i + 2:i + 3], str(tmp_path / "o"),
                 *args[i + 4:]]) != 0
    assert "study 'other'" in capsys.readouterr().err
    assert not Path(tmp_path / "o").exists()
