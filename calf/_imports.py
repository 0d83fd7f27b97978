"""Objects named by import path (``package.module.Name``), as losses and models may be."""

from __future__ import annotations

import importlib
import inspect
from typing import Any


def import_object(path: str, kind: str) -> Any:
    """The object at ``path``; ValueError naming the ``kind`` (loss, model) and the path."""
    module_name, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"cannot import {kind} {path!r}: {err}") from None


def constructor_parameters(factory: Any) -> tuple[set[str], bool]:
    """The keyword names a class or factory takes, and whether it also takes ``**kwargs``
    (a factory whose signature cannot be read is taken to accept anything)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return set(), True
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return set(params), var_kw
