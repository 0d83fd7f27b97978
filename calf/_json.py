"""JSON files: reading an object with one-line errors that name the file, and making
values JSON-safe (NaN as null, numpy scalars as Python numbers)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from calf.errors import CalfError


def read_json_object(path: str | Path, what: str, name: str | None = None) -> dict[str, Any]:
    """The JSON object in ``path``; ``what`` names the kind of file in the error, ``name``
    how to call the file there (default: its path, e.g. ``--profile x.json`` instead)."""
    name = str(path) if name is None else name
    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CalfError(f"{name}: no such {what} file") from None
    except (OSError, ValueError) as err:
        raise CalfError(f"{name}: not a readable {what} JSON ({' '.join(str(err).split())})") from None
    if not isinstance(record, dict):
        raise CalfError(f"{name}: not a {what} JSON object")
    return record


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf as None and numpy scalars as Python numbers, recursively."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
