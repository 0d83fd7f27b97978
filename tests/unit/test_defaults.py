"""The config schema's defaults are calf.defaults' values (they are defined once there)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from calf import defaults

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def _walk(node, path=()):
    """Every (path, default) in a JSON schema, path as the property names to it."""
    if isinstance(node, dict):
        if "default" in node and path:
            yield path, node["default"]
        for name, child in (node.get("properties") or {}).items():
            yield from _walk(child, (*path, name))
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                yield from _walk(node[key], (*path, "*"))


@pytest.mark.parametrize("key, value", [
    ("training.seed", defaults.SEED),
    ("studies.*.seeds", [defaults.SEED]),
    ("stats.seed", defaults.SEED),
    ("stats.alpha", defaults.ALPHA),
])
def test_schema_defaults_are_calf_defaults(key, value):
    found = {".".join(p): d for p, d in _walk(yaml.safe_load(SCHEMA.read_text()))}
    assert key in found, f"no default for {key} in {SCHEMA}"
    assert found[key] == value
