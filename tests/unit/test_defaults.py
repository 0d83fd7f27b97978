"""The config schema's defaults are calf.defaults' values (they are defined once there)."""

from __future__ import annotations

import re
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


ROOT = SCHEMA.parents[2]
INSTALL_FILES = ("Makefile", "pyproject.toml", "environment.yml", "workflow/envs/calf.yaml",
                 ".ci/run", "benchmarks/gpu_wheels.sh")


def test_torch_is_pinned_once_and_the_readme_quotes_that_pin():
    constraints = (ROOT / "workflow/envs/constraints.txt").read_text()
    pins = re.findall(r"^torch==(\S+)$", constraints, re.M)
    assert len(pins) == 1, pins
    for name in INSTALL_FILES:
        text = (ROOT / name).read_text()
        # comments may show an example; no install line pins torch
        lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        assert not [line for line in lines if re.search(r"torch==[0-9]", line)], name
    quoted = set(re.findall(r"torch==([0-9][0-9.]*[0-9])", (ROOT / "README.md").read_text()))
    assert quoted == set(pins), quoted
