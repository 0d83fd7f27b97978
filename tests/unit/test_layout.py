"""calf.layout: the one spelling of ratios, variants, run keys and result paths."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from calf import layout
from calf.errors import CalfError
from calf.layout import RunKey, Variant


@pytest.mark.parametrize("value, text", [
    (None, "natural"), ("natural", "natural"), (float("nan"), "natural"),
    (0.25, "0.25"), ("0.250", "0.25"), ("0.5", "0.5"), (0.1, "0.1"), ("1e-1", "0.1"),
])
def test_ratio_text(value, text):
    assert layout.ratio_text(value) == text


@pytest.mark.parametrize("value", ["Natural", "", "nan", "abc", 0, 1, "1", -0.5, 1.5, [0.2]])
def test_ratio_text_refuses(value):
    with pytest.raises(CalfError, match=r"expected 'natural' or a number in \(0, 1\)"):
        layout.ratio_text(value)


def test_ratio_sort_key_and_value():
    assert sorted(["0.5", "natural", "0.25"], key=layout.ratio_sort_key) == [
        "natural", "0.25", "0.5"]
    assert layout.ratio_value("natural") is None and layout.ratio_value("0.250") == 0.25


@pytest.mark.parametrize("fold, ratio, seed, variant, selection", [
    (0, None, None, "fold0", "fold0"),
    (3, "natural", 7, "seed-7/fold3", "fold3"),
    (1, 0.25, None, "ratio-0.25/fold1", "ratio-0.25/fold1"),
    (2, "0.50", 12345, "ratio-0.5/seed-12345/fold2", "ratio-0.5/fold2"),
])
def test_variants_round_trip(fold, ratio, seed, variant, selection):
    assert layout.format_variant(fold, ratio, seed) == variant
    assert layout.format_selection(fold, ratio) == selection
    parsed = layout.parse_variant(variant)
    assert parsed == Variant(fold, layout.ratio_text(ratio), seed)
    assert (parsed.path, parsed.selection) == (variant, selection)
    assert re.fullmatch(layout.VARIANT_PATTERN, variant)
    assert re.fullmatch(layout.SELECTION_PATTERN, selection)


@pytest.mark.parametrize("variant, message", [
    ("ratio-natural/fold0", "not a run variant"),
    ("seed-1/ratio-0.25/fold0", "not a run variant"),
    ("fold", "not a run variant"),
    ("ratio-0.250/fold0", "spelled ratio-0.25"),
    ("ratio-1.5/fold0", r"not a ratio in \(0, 1\)"),
])
def test_parse_variant_refuses(variant, message):
    with pytest.raises(CalfError, match=message):
        layout.parse_variant(variant)


def test_run_key_paths():
    key = RunKey("paper", "brats", "unet", "calf", 2, "0.25", 7)
    assert key.key == "paper/brats/unet/calf/ratio-0.25/seed-7/fold2"
    assert key.name == "brats/unet/calf/ratio-0.25/seed-7/fold2"
    assert key.run_dir("r/runs") == Path("r/runs/paper/brats/unet/calf/ratio-0.25/seed-7/fold2")
    assert key.metrics_csv("m") == Path("m/paper/brats/unet/calf/ratio-0.25/seed-7/fold2.csv")
    assert key.profile_json("p") == Path("p/paper/brats/ratio-0.25/fold2.json")
    assert key.training_csv("s") == Path("s/paper/brats/ratio-0.25/fold2.csv")
    natural = RunKey("cv", "lgg", "fpn", "bce", 0)
    assert natural.key == "cv/lgg/fpn/bce/fold0" and natural.ratio == "natural"
    assert natural.profile_json("p") == Path("p/cv/lgg/fold0.json")
    assert natural.as_dict() == {"study": "cv", "dataset": "lgg", "model": "fpn", "loss": "bce",
                                 "ratio": "natural", "seed": None, "fold": 0}


def test_run_key_normalises_and_refuses():
    assert RunKey("s", "d", "m", "l", "4", 0.250, "3") == RunKey("s", "d", "m", "l", 4, "0.25", 3)
    for bad in ("", ".", "..", "a/b", "it's"):
        with pytest.raises(CalfError, match="expected a plain path component"):
            RunKey("s", bad, "m", "l", 0)


@pytest.mark.parametrize("path, suffix", [
    ("results/runs/paper/brats/unet/calf/ratio-0.25/seed-7/fold2", ""),
    ("/x/results/metrics/paper/brats/unet/calf/ratio-0.25/seed-7/fold2.csv", ".csv"),
])
def test_run_key_from_path(path, suffix):
    assert RunKey.from_path(path, suffix) == RunKey("paper", "brats", "unet", "calf", 2, "0.25", 7)


def test_run_key_from_path_below_a_root(tmp_path):
    run = tmp_path / "runs" / "cv" / "d" / "m" / "l" / "fold1"
    assert RunKey.from_path(run, root=tmp_path / "runs") == RunKey("cv", "d", "m", "l", 1)
    with pytest.raises(CalfError, match="not under"):
        RunKey.from_path(run, root=tmp_path / "metrics")
    with pytest.raises(CalfError, match="not a results path"):
        RunKey.from_path(tmp_path / "runs" / "cv" / "d" / "m" / "fold1", root=tmp_path / "runs")
    with pytest.raises(CalfError, match="not a results path"):
        RunKey.from_path("runs/cv/d/m/l/ratio-natural/fold1")


def test_metrics_companions():
    assert layout.metrics_companions("m/a/fold0.csv") == (
        Path("m/a/fold0.csv"), Path("m/a/fold0.json"), Path("m/a/fold0_slices.csv"),
        Path("m/a/fold0_overlays"))
    with pytest.raises(CalfError, match="ends in .csv"):
        layout.metrics_companions("m/a/fold0.json")


@pytest.mark.parametrize("name", ["ratio-0.5", "seed-1", "fold0"])
def test_a_key_component_is_not_spelled_like_a_variant(name):
    with pytest.raises(CalfError, match="expected a plain path component"):
        RunKey("s", "d", "m", name, 0)


@pytest.mark.parametrize("fold, ratio", [(0, None), (3, 0.25), (1, "0.5")])
def test_training_key_round_trips(tmp_path, fold, ratio):
    path = layout.training_file(tmp_path, "study", "brats", Variant(fold, layout.ratio_text(ratio)),
                                ".json")
    study, dataset, variant = layout.training_key(path, tmp_path, ".json")
    assert (study, dataset) == ("study", "brats")
    assert variant == Variant(fold, layout.ratio_text(ratio))


@pytest.mark.parametrize("rel, message", [
    ("study/brats/ratio-0.250/fold1.json", "spelled ratio-0.25"),
    ("study/brats/seed-1/fold1.json", "not a training-set path"),
    ("study/brats/fold1.csv", "not a training-set path"),
    ("study/fold1.json", "not a training-set path"),
])
def test_training_key_refuses(tmp_path, rel, message):
    with pytest.raises(CalfError, match=message):
        layout.training_key(tmp_path / rel, tmp_path, ".json")
    with pytest.raises(CalfError, match="not under"):
        layout.training_key("/elsewhere/study/brats/fold1.json", tmp_path, ".json")
