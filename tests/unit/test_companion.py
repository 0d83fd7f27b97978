"""The metrics companion JSON: its one reader and writer (calf.evaluate.companion)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from calf.errors import CalfError
from calf.evaluate.companion import (
    companion_path,
    companion_text,
    read_companion,
    write_companion,
)
from calf.evaluate.pooled import POOLED_SUMMARY_KEY


def test_companion_path_of_csv_and_json(tmp_path):
    assert companion_path(tmp_path / "fold0.csv") == tmp_path / "fold0.json"
    assert companion_path(tmp_path / "fold0.json") == tmp_path / "fold0.json"
    with pytest.raises(CalfError, match=r"fold0.txt: neither a metrics .csv"):
        companion_path(tmp_path / "fold0.txt")


def test_write_then_read_round_trip(tmp_path):
    csv = tmp_path / "m" / "fold1.csv"
    record = {"format": 3, "summary": {"mean_dice": np.float32(0.5), POOLED_SUMMARY_KEY: np.nan},
              "files": {"cases": "fold1.csv"}, "overlays": {}}
    assert write_companion(csv, record) == tmp_path / "m" / "fold1.json"
    text = (tmp_path / "m" / "fold1.json").read_text()
    assert text == companion_text(record) and text.endswith("}\n")
    assert json.loads(text)["summary"] == {"mean_dice": 0.5, "batch_pooled_dice_32": None}
    assert read_companion(csv) == read_companion(csv.with_suffix(".json"))
    assert read_companion(csv)["summary"]["mean_dice"] == 0.5
    assert sorted(p.name for p in csv.parent.iterdir()) == ["fold1.json"]  # no temp left


def test_an_existing_companion_is_replaced_only_with_force(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{}\n")
    with pytest.raises(CalfError, match=r"x.json: already exists \(pass --force"):
        write_companion(tmp_path / "x.csv", {"format": 3}, force=False)
    assert path.read_text() == "{}\n"
    write_companion(tmp_path / "x.csv", {"format": 3}, force=True)
    assert read_companion(path) == {"format": 3}


def test_read_errors_name_the_file(tmp_path):
    csv = tmp_path / "fold0.csv"
    with pytest.raises(CalfError, match=r"fold0.json: no such file \(the metrics companion JSON "
                                        r"of .*fold0.csv\)"):
        read_companion(csv)
    assert read_companion(csv, missing_ok=True) == {}
    for text, message in [("[1, 2]", "not a metrics companion JSON object"),
                          ("{broken", "not a readable metrics companion JSON"),
                          ('{"summary": [0.5]}', "summary is not a JSON object"),
                          ('{"overlays": "best.png"}', "overlays is not a JSON object")]:
        csv.with_suffix(".json").write_text(text)
        with pytest.raises(CalfError, match="fold0.json: " + message) as err:
            read_companion(csv, missing_ok=True)  # a broken file is an error all the same
        assert "\n" not in str(err.value)


def test_importing_the_companion_imports_no_torch():
    code = ("import sys, calf.evaluate.companion; "
            "print(sorted(m for m in ('torch', 'monai', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
