"""The files of a study's finished runs, read and checked before ``calf mlflow-sync`` writes
anything (the results tree of ``calf.layout``):

- run folders ``<runs>/<study>/<dataset>/<model>/<loss>/[ratio-R/][seed-N/]foldK/`` with
  ``run.json``, ``epochs.csv`` and ``checkpoint.pt``; a folder holding a ``run.json`` whose
  path does not follow this layout is an error naming it;
- the per-case metrics ``<metrics>/<study>/.../foldK.csv`` with their companions (the
  ``.json``, ``_slices.csv`` and ``_overlays/``); optional (a run not evaluated yet is synced
  without them);
- the imbalance profile JSON that ``run.json`` names (``imbalance.profile``), else
  ``<profiles>/<study>/<dataset>/[ratio-R/]foldK.json`` when a profiles folder is given.

Each format is read by the module that owns it: ``calf.train.rundir`` (run.json,
epochs.csv), ``calf.stats.collect`` (per-case metrics), ``calf.profile`` (profiles).
"""

from __future__ import annotations

import hashlib
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calf._fs import sha256_file
from calf.errors import CalfError
from calf.layout import CHECKPOINT_FILE, EPOCHS_FILE, RUN_FILE, RunKey, metrics_companions
from calf.tracking.datasets import TrainingSetFile, unchanged_training_sets

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class RunInputs:
    """One complete training run, read and checked before anything is written."""

    key: RunKey
    run_dir: Path
    record: dict[str, Any]
    epochs: pd.DataFrame
    cases: pd.DataFrame | None
    profile: dict[str, Any] | None
    artifacts: list[tuple[str, Path]]  # (artifact folder, local file)
    digest: str  # of every input file
    datasets: list[TrainingSetFile] = field(default_factory=list)
    missing_datasets: list[str] = field(default_factory=list)  # why a CSV is not logged


def find_run_dirs(study: str, runs_root: str | Path) -> list[tuple[RunKey, Path]]:
    """Every run directory of the study (a folder with a run.json), with its key."""
    root = Path(runs_root) / study
    if not root.is_dir():
        raise CalfError(f"{root}: no such study folder under the runs root")
    found = [(RunKey.from_path(p.parent, root=runs_root), p.parent)
             for p in sorted(root.rglob(RUN_FILE))]
    if not found:
        raise CalfError(f"{root}: no run directories (no {RUN_FILE} below it)")
    return found


def read_run_inputs(key: RunKey, run_dir: Path, metrics_root: Path | None,
                    profiles_root: Path | None, checkpoints: bool, warnings: list[str],
                    hashes: MutableMapping[Path, str] | None = None) -> RunInputs | str:
    """The run's inputs, checked; or its run.json status when it is not complete.
    ``hashes`` caches the SHA-256 of training-set CSVs, which many runs share."""
    from calf.train.rundir import read_run_record

    record = read_run_record(run_dir)
    if record["status"] != "complete":
        return record["status"]
    epochs = _completed_epochs(run_dir, record)
    artifacts = _run_files(key, run_dir, checkpoints, warnings)
    profile = None
    profile_file = _profile_path(key, record, run_dir, profiles_root, warnings)
    if profile_file is not None:
        from calf.profile import read_profile

        profile = read_profile(profile_file)
        artifacts.append(("profile", profile_file))
    cases = None
    if metrics_root is not None:
        cases, files = _evaluation(key, metrics_root, warnings)
        artifacts += files
    datasets, missing = unchanged_training_sets(key, record.get("params") or {},
                                                {} if hashes is None else hashes)
    return RunInputs(key, run_dir, record, epochs, cases, profile, artifacts,
                     _digest(artifacts, datasets), datasets, missing)


def _completed_epochs(run_dir: Path, record: dict[str, Any]) -> pd.DataFrame:
    """epochs.csv's epoch and numeric columns; one row per epoch run.json says completed."""
    import pandas as pd

    from calf.train.rundir import read_epochs

    epochs_file = run_dir / EPOCHS_FILE
    if not epochs_file.is_file():
        raise CalfError(f"{epochs_file}: missing (run.json says complete)")
    epochs = read_epochs(run_dir)
    metrics = [c for c in epochs.columns if c != "epoch"
               and pd.api.types.is_numeric_dtype(epochs[c])
               and not pd.api.types.is_bool_dtype(epochs[c])]
    epochs = epochs[["epoch", *metrics]]
    if epochs.empty:
        raise CalfError(f"{epochs_file}: no epochs (run.json says complete)")
    completed = record.get("epochs_completed")
    if completed is not None and completed != len(epochs):
        raise CalfError(f"{epochs_file}: {len(epochs)} epochs but {run_dir / RUN_FILE} says "
                        f"epochs_completed {completed}")
    return epochs


def _run_files(key: RunKey, run_dir: Path, checkpoints: bool,
               warnings: list[str]) -> list[tuple[str, Path]]:
    """The run folder's files to upload: run.json, epochs.csv and, when asked, the
    checkpoint."""
    files = [("run", run_dir / RUN_FILE), ("run", run_dir / EPOCHS_FILE)]
    if checkpoints:
        checkpoint = run_dir / CHECKPOINT_FILE
        if checkpoint.is_file():
            files.append(("run", checkpoint))
        else:
            warnings.append(f"{key.key}: no {checkpoint} to upload")
    return files


def _profile_path(key: RunKey, record: dict[str, Any], run_dir: Path,
                  profiles_root: Path | None, warnings: list[str]) -> Path | None:
    """The profile run.json names (absolute, or relative to the run folder), else the one
    at the run's place below ``profiles_root``; None when there is neither."""
    named = (record.get("imbalance") or {}).get("profile")
    if isinstance(named, str):
        for candidate in (Path(named), run_dir / named):
            if candidate.is_file():
                return candidate
        warnings.append(f"{key.key}: profile {named} named in run.json not found")
    if profiles_root is not None:
        path = key.profile_json(profiles_root)
        if path.is_file():
            return path
    return None


def _evaluation(key: RunKey, metrics_root: Path, warnings: list[str]
                ) -> tuple[pd.DataFrame | None, list[tuple[str, Path]]]:
    """The run's per-case metrics and the evaluation's files to upload (the CSV, its
    companions, the overlays); (None, []) with a warning when it is not evaluated yet."""
    from calf.stats.collect import load_case_metrics

    csv, companion, slices, overlays = metrics_companions(key.metrics_csv(metrics_root))
    if not csv.is_file():
        warnings.append(f"{key.key}: no per-case metrics at {csv} (not evaluated yet?)")
        return None, []
    cases = load_case_metrics([csv], metrics_root)
    files = [("metrics", path) for path in (csv, companion, slices) if path.is_file()]
    if overlays.is_dir():
        files += [("metrics/overlays", p) for p in sorted(overlays.iterdir()) if p.is_file()]
    return cases, files


def _digest(artifacts: list[tuple[str, Path]], datasets: list[TrainingSetFile]) -> str:
    """A digest of every input: each file's SHA-256 (the checkpoint's size and time, which
    is large and changes only with training), and each training set's."""
    digest = hashlib.sha256()
    for folder, path in artifacts:
        stat = path.stat()
        content = (f"{stat.st_size}:{stat.st_mtime_ns}" if path.name == CHECKPOINT_FILE
                   else sha256_file(path))
        digest.update(f"{folder}/{path.name}={content}\n".encode())
    for found in datasets:  # a CSV that comes back is logged by the next sync
        digest.update(f"dataset/{found.context}={found.sha256}\n".encode())
    return digest.hexdigest()
