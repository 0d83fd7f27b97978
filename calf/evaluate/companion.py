"""The metrics companion JSON: ``X.json`` beside a per-case metrics file ``X.csv``.

``calf evaluate`` writes it (``write_companion``, or ``companion_text`` into a file that is
renamed into place with the CSV); the report, the statistics and the MLflow sync read it
(``read_companion``). It records the conventions preset that filled undefined metrics, the
metric settings, where the cases were scored, the run's protocol switches, the files beside
it (``files``), the overlay picks (``overlays``) and the summary, whose batch-pooled Dice
is ``summary[POOLED_SUMMARY_KEY]``. ``format`` counts its revisions (``RESULT_FORMAT``).
Imports no torch, MONAI or pandas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calf._fs import json_text, write_text
from calf._json import json_safe, read_json_object
from calf.errors import CalfError
from calf.layout import metrics_companions

# 3: native-space metrics in mm, conventions presets, NSD and lesion metrics
# (2: batch-pooled Dice in the authors' sampler order; 1: consecutive)
RESULT_FORMAT = 3
WHAT = "metrics companion"


def companion_path(path: str | Path) -> Path:
    """The companion JSON of a metrics CSV ``X.csv`` (``X.json``), or ``path`` itself when it
    already names a ``.json``; CalfError for any other name."""
    path = Path(path)
    if path.suffix == ".json":
        return path
    try:
        return metrics_companions(path)[1]
    except CalfError:
        raise CalfError(f"{path}: neither a metrics .csv nor its companion .json") from None


def read_companion(path: str | Path, missing_ok: bool = False) -> dict[str, Any]:
    """The companion JSON object of a metrics CSV (``path`` the CSV or the JSON).

    A missing file is a CalfError naming it, or ``{}`` with ``missing_ok`` (a metrics table
    made by hand has none); an unreadable one, or one that is not a JSON object or whose
    ``summary``, ``files`` or ``overlays`` is not an object, is always a CalfError."""
    json_path = companion_path(path)
    if missing_ok and not json_path.exists():
        return {}
    if not json_path.exists() and json_path != Path(path):
        raise CalfError(f"{json_path}: no such file (the {WHAT} JSON of {path})")
    record = read_json_object(json_path, WHAT)
    for key in ("summary", "files", "overlays"):
        if record.get(key) is not None and not isinstance(record[key], dict):
            raise CalfError(f"{json_path}: {key} is not a JSON object")
    return record


def companion_text(record: dict[str, Any]) -> str:
    """The companion's text: NaN as null, numpy scalars as numbers, the suite's JSON
    spelling (``calf._fs.json_text``)."""
    return json_text(json_safe(record))


def write_companion(path: str | Path, record: dict[str, Any], force: bool = True) -> Path:
    """Write ``record`` atomically as the companion of ``path`` (the CSV or the JSON); an
    existing file is replaced only with ``force``. Returns the JSON's path."""
    return write_text(companion_path(path), companion_text(record), force=force)
