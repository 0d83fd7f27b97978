"""Running the real workflow from tests: a copy of it in a temporary folder, small configs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

# the checkout: the first folder above this file that holds the workflow
REPO = next(p for p in Path(__file__).resolve().parents if (p / "workflow/Snakefile").is_file())
BIN = Path(sys.executable).parent
WORKFLOW_FILES = ("Snakefile", "workflow", "config", "profiles", "calf")


def env() -> dict[str, str]:
    """The test's environment with the venv's bin first, as `make demo` runs it."""
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    return e


def snakemake(*args, cwd: Path | str = REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "snakemake"), *args],
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def copy_workflow(dest: Path) -> Path:
    """A private copy of the workflow (and the calf package it runs) to edit and run."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def tiny_config(**studies) -> dict:
    """One tiny synthetic cohort, a tiny U-Net, one epoch: seconds per job."""
    return {
        "datasets": {
            "tiny": {
                "adapter": "folder",
                "source": "synth",
                "synth": {"layout": "folder", "preset": "moderate", "cases": 4,
                          "shape": [32, 32, 8], "seed": 3},
                "modalities": ["flair"],
            }
        },
        "preprocess": {"size": 32},
        "models": {"unet": {"width": 0.125}},
        "training": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "device": "cpu", "workers": 0},
        "cluster": {"gpu_job": {"cpus_per_task": 1, "mem_mb": 1500, "runtime": 30}},
        "studies": studies or {"t": {"datasets": ["tiny"], "folds": 2, "models": ["unet"],
                                     "losses": ["bce", "calf"]}},
    }


def job_counts(dry_run_output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    counts, inside = {}, False
    for line in dry_run_output.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            inside = True
            continue
        if inside:
            if len(parts) == 2 and parts[1].isdigit():
                counts[parts[0]] = int(parts[1])
            elif counts:
                break
    return counts
