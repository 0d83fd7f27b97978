"""Objects named by import path (``package.module.Name``), as losses and models may be."""

from __future__ import annotations

import importlib
from typing import Any


def import_object(path: str, kind: str) -> Any:
    """The object at ``path``; ValueError naming the ``kind`` (loss, model) and the path."""
    module_name, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"cannot import {kind} {path!r}: {err}") from None
