"""calf.analysis.run and calf.analysis.ranks: one study's analysis, its tables and files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from calf.analysis.ranks import COUNT_COLUMNS, MAP_COLUMNS, STABILITY_COLUMNS, rank_tables
from calf.analysis.run import (
    ANALYSIS_JSON,
    TABLE_SOURCES,
    AnalysisOptions,
    compute_analysis,
    read_analysis_record,
    read_table,
    table_columns,
    table_path,
    write_analysis,
)
from calf.errors import CalfError
from calf.synth.planted import planted_cases

LOSSES = ("bce", "dice", "calf")


@pytest.fixture(scope="module")
def planted():
    """Two models, three losses, 60 patients; CALF better by 0.2 Dice on the smallest 25%."""
    return planted_cases(60, effect=0.2, losses=LOSSES, models=("unet", "fpn"), seed=3)


@pytest.fixture(scope="module")
def analysis(planted):
    return compute_analysis(planted, study="planted", resamples=100, rank_resamples=200)


def test_rank_tables_shapes_and_the_planted_best(planted):
    tables, notes = rank_tables(planted, ["dice"], resamples=200)
    assert notes == []
    stability = tables["rank_stability"]
    assert list(stability.columns) == list(STABILITY_COLUMNS)
    assert len(stability) == 2 and set(stability["best"]) == {"calf"}
    assert (stability["n_patients"] == 60).all() and (stability["resamples"] == 200).all()
    counts = tables["rank_counts"]
    assert list(counts.columns) == list(COUNT_COLUMNS)
    # 2 groups x 3 losses x 3 ranks; each loss's shares sum to 1
    assert len(counts) == 18
    assert np.allclose(counts.groupby(["model", "loss"])["share"].sum(), 1.0)
    sig = tables["significance_map"]
    assert list(sig.columns) == list(MAP_COLUMNS)
    assert len(sig) == 2 * 3 * 2  # ordered pairs a != b per group
    assert (sig["p_holm"] >= sig["p_value"]).all()
    # Holm over a group's 6 ordered pairs: the smallest p is multiplied by 6
    first = sig.loc[sig.groupby("model")["p_value"].idxmin()]
    assert np.allclose(first["p_holm"], np.minimum(1, 6 * first["p_value"]))
    # CALF's share of rank 1 is the stability table's best_share
    calf_first = counts[(counts["loss"] == "calf") & (counts["rank"] == 1)]
    assert np.allclose(calf_first["share"].to_numpy(), stability["best_share"].to_numpy())


def test_rank_tables_notes_a_group_it_cannot_rank(planted):
    one_loss = planted[planted["loss"] == "bce"]
    tables, notes = rank_tables(one_loss, ["dice"], resamples=50)
    assert tables["rank_stability"].empty and len(notes) == 2
    assert "no ranking (1 loss(es)" in notes[0]


def test_every_table_has_its_columns(analysis):
    assert set(analysis.tables) == set(TABLE_SOURCES)
    for name, table in analysis.tables.items():
        columns = table_columns(name)
        if columns is not None:
            assert list(table.columns) == list(columns), name
    assert analysis.settings["calf_losses"] == ["calf"]
    assert analysis.settings["size_bins"] == 4
    # no profiles given: regimes empty, said so
    assert analysis.tables["regimes"].empty
    assert any("no training-set profiles" in note for note in analysis.notes)


def test_the_planted_effect_is_found_where_it_was_planted(analysis):
    classes = analysis.tables["size_classes"]
    dice = classes[classes["metric"] == "dice"]
    better = dice[dice["verdict"] == "better"]
    assert not better.empty and set(better["size_class"]) == {"Q1"}
    slopes = analysis.tables["interaction"]
    primary = slopes[slopes["primary"] & (slopes["metric"] == "dice")]
    # the advantage shrinks with volume: a negative slope per doubling for every comparison
    assert (primary["slope_per_doubling"] < 0).all()


@pytest.mark.parametrize("options, message", [
    ({"metrics": ["volume"]}, "metric 'volume'"),
    ({"metrics": []}, "at least one metric"),
    ({"presets": ["kaggle"]}, "preset 'kaggle'"),
    ({"alpha": 0}, "alpha"),
    ({"missing": "skip"}, "missing 'skip'"),
    ({"rank_resamples": 0}, "rank_resamples"),
])
def test_options_are_checked(options, message):
    with pytest.raises(CalfError, match=message):
        AnalysisOptions(**options)


def test_unknown_option_and_study(planted):
    with pytest.raises(TypeError, match="bins"):
        compute_analysis(planted, study="planted", bins=3)
    with pytest.raises(CalfError, match="study 'other'"):
        compute_analysis(planted, study="other")


def test_a_study_without_calf_says_so(planted):
    rows = planted[planted["loss"] != "calf"]
    result = compute_analysis(rows, study="planted", resamples=50, rank_resamples=50)
    assert any("has no CALF loss" in note for note in result.notes)
    assert result.tables["size_classes"].empty and result.tables["robustness"].empty
    assert len(result.tables["rank_stability"]) == 4  # 2 models x dice, hd95


def test_write_and_read_back(analysis, tmp_path):
    out = tmp_path / "analysis"
    paths = write_analysis(analysis, out)
    assert all(path.is_file() for path in paths) and paths[-1].name == ANALYSIS_JSON
    record = read_analysis_record(out)
    assert record["tables"]["size_classes"] == "size_classes.csv"
    table = read_table(out, "size_classes", ["verdict"])
    assert len(table) == len(analysis.tables["size_classes"])
    assert set(table["ratio"]) == {"natural"}
    # a second run replaces the folder it wrote; a folder it did not write is refused
    write_analysis(analysis, out)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("keep")
    with pytest.raises(CalfError, match="--force"):
        write_analysis(analysis, mine)
    assert (mine / "keep.txt").read_text() == "keep"


def test_read_table_names_the_file(tmp_path):
    with pytest.raises(CalfError, match=r"size_classes\.csv: no such file"):
        read_table(tmp_path, "size_classes")
    pd.DataFrame({"a": [1]}).to_csv(table_path(tmp_path, "interaction"), index=False)
    with pytest.raises(CalfError, match=r"interaction\.csv: missing column\(s\) primary"):
        read_table(tmp_path, "interaction", ["primary"])
    with pytest.raises(CalfError, match="not a table"):
        table_path(tmp_path, "paired")
    (tmp_path / ANALYSIS_JSON).write_text(json.dumps({"format": 99}))
    with pytest.raises(CalfError, match="format 99"):
        read_analysis_record(tmp_path)
