"""Import the finished training runs of one study into MLflow (``calf mlflow-sync``).

The per-run files are the source of truth; this step copies them into an MLflow tracking
store, once per study, as its only writer (so a SQLite file is safe). Inputs:

- ``{runs_root}/{study}/{dataset}/{model}/{loss}[/ratio-{r}][/seed-{s}]/fold{N}/``: run
  directories (contract C: ``run.json``, ``epochs.csv``, ``checkpoint.pt``). A directory
  holding a ``run.json`` whose path does not follow this layout is an error naming it.
- ``{metrics_root}/{study}/{dataset}/{model}/{loss}[/ratio-{r}][/seed-{s}]/fold{N}.csv``
  (contract D) with its companions ``fold{N}.json``, ``fold{N}_slices.csv`` and
  ``fold{N}_overlays/``; optional (a run not evaluated yet is synced without them).
- the imbalance profile JSON that ``run.json`` names (``imbalance.profile``), else
  ``{profiles_root}/{study}/{dataset}[/ratio-{r}]/fold{N}.json`` when given.

In MLflow: an experiment named after the study; in it a parent run (tag ``calf.kind`` =
``study``) and one child run per training run (tags ``calf.kind`` = ``run``,
``calf.run_key`` = its path below the runs root, ``mlflow.parentRunId``). A child holds the
flattened ``run.json`` params; every numeric ``epochs.csv`` column as a metric with
step = epoch (branch counts included); final metrics ``{metric}_mean`` and
``{metric}_median`` of each per-case metric, ``n_cases`` and ``train_seconds``; tags for
git commit, calf version, device, loss definition and, for CALF, scope, branch, S and K;
artifacts ``run/`` (run.json, epochs.csv, checkpoint.pt only when asked), ``profile/``,
``metrics/`` and ``metrics/overlays/``.

What the run cost (run.json ``cost``) becomes system metrics at step 0 (``system/wall_s``,
``system/device_s``, ``system/device_s_per_epoch``, ``system/peak_memory_mb``,
``system/energy_j``, ...: ``calf.tracking.cost_metrics``). A run recorded before the cost
record existed gets ``system/wall_s`` (run.json ``seconds``) and ``system/train_s``
(epochs.csv ``seconds``) and the tag ``calf.cost_source`` saying so; the sync summary lists
those runs (``without_cost``). The training-set CSV (run.json ``params.train_slices``) and the
validation CSV, if any, are the run's dataset inputs (contexts ``training`` and
``validation``; ``calf.tracking.dataset_entity``). A CSV that is gone, or no longer has the
SHA-256 run.json recorded, is not logged; the summary lists it (``missing_datasets``) and the
run is synced without it.

Only runs whose ``run.json`` status is ``complete`` are imported; the others are reported
as skipped. Syncing is idempotent: runs are found by their ``calf.run_key`` tag (a run
that training logged live to the same server is completed, not duplicated); a run whose
inputs are unchanged since the last sync (tag ``calf.sync_fingerprint``) is left alone, and
a changed one gets only what it lacks: missing params, (step, value) pairs not in the
metric history, artifacts missing or of another size. A SQLite store is updated on a copy
that replaces the file only when the whole sync succeeded.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from calf import __version__
from calf.download.manifest import sha256_file
from calf.errors import CalfError
from calf.evaluate.metrics import METRICS
from calf.tracking import (
    KIND_TAG,
    MAX_BATCH_METRICS,
    MAX_BATCH_PARAMS_TAGS,
    MAX_TAG_VALUE,
    MLFLOW_STATUS,
    RUN_KEY_TAG,
    STATUS_TAG,
    SYSTEM_PREFIX,
    RunKey,
    cost_metrics,
    cost_tags,
    dataset_entity,
    dataset_input,
    dataset_name,
    finite_metrics,
    flatten_params,
    is_server_uri,
    mlflow_env,
    training_set_files,
)

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_TRACKING_URI = "sqlite:///results/mlflow.db"
FINGERPRINT_TAG = "calf.sync_fingerprint"
SYNC_FORMAT = 2  # bump when what a sync writes changes: every run is then re-checked
BRANCH_PREFIX = "branch_"
COST_FALLBACK = "run.json seconds and epochs.csv seconds (run.json has no cost record)"
_QUIET = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


@dataclass(frozen=True)
class TrainingSetFile:
    """A training or validation CSV of a run, as it is now and unchanged since training."""

    context: str  # the MLflow dataset context: training or validation
    name: str  # the MLflow dataset name (calf.tracking.dataset_name)
    path: Path
    sha256: str


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


@dataclass
class SyncResult:
    """What one sync did, by run key."""

    tracking_uri: str
    study: str
    experiment_id: str = ""
    parent_run_id: str = ""
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # key -> run.json status
    warnings: list[str] = field(default_factory=list)
    missing_datasets: list[str] = field(default_factory=list)  # CSVs not logged, and why
    without_cost: list[str] = field(default_factory=list)  # keys of runs with no cost record

    def summary(self) -> dict[str, Any]:
        return {"study": self.study, "tracking_uri": self.tracking_uri,
                "experiment_id": self.experiment_id, "parent_run_id": self.parent_run_id,
                "created": self.created, "updated": self.updated, "unchanged": self.unchanged,
                "skipped": self.skipped, "warnings": self.warnings,
                "missing_datasets": self.missing_datasets, "without_cost": self.without_cost,
                "calf_version": __version__,
                "synced": datetime.now(UTC).isoformat(timespec="seconds")}


# ----------------------------------------------------------------------------- reading


def find_run_dirs(study: str, runs_root: str | Path) -> list[tuple[RunKey, Path]]:
    """Every run directory of the study (a folder with a run.json), with its key."""
    root = Path(runs_root) / study
    if not root.is_dir():
        raise CalfError(f"{root}: no such study folder under the runs root")
    found = [(RunKey.from_run_dir(p.parent, runs_root), p.parent)
             for p in sorted(root.rglob("run.json"))]
    if not found:
        raise CalfError(f"{root}: no run directories (no run.json below it)")
    return found


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CalfError(f"{path}: unreadable JSON ({' '.join(str(err).split())})") from None


def _read_table(path: Path, required: Sequence[str], numeric: Sequence[str]) -> pd.DataFrame:
    """A CSV with the ``required`` columns; the ``numeric`` ones (where present) as numbers."""
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise CalfError(f"{path}: unreadable CSV ({' '.join(str(err).split())})") from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise CalfError(f"{path}: missing columns {', '.join(missing)}")
    for column in (c for c in numeric if c in table.columns):
        try:
            table[column] = pd.to_numeric(table[column])
        except (TypeError, ValueError):
            raise CalfError(f"{path}: column {column} holds values that are not numbers") from None
    return table


def _profile_path(key: RunKey, record: dict[str, Any], run_dir: Path,
                  profiles_root: Path | None, warnings: list[str]) -> Path | None:
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


def _training_sets(key: RunKey, record: dict[str, Any],
                   hashes: dict[Path, str]) -> tuple[list[TrainingSetFile], list[str]]:
    """The run's training and validation CSVs that still hold what it trained on, and a
    line for each one that does not (gone, or another SHA-256 than run.json's)."""
    found, missing = [], []
    for context, path_text, recorded in training_set_files(record.get("params") or {}):
        path = Path(path_text)
        if not path.is_file():
            missing.append(f"{key.key}: {context} set {path} not found")
            continue
        if path not in hashes:
            hashes[path] = sha256_file(path)
        if recorded is not None and hashes[path] != recorded:
            missing.append(f"{key.key}: {context} set {path} changed since training "
                           f"(sha256 {hashes[path][:12]}..., run.json {recorded[:12]}...)")
            continue
        found.append(TrainingSetFile(context, dataset_name(key, path, context), path,
                                     hashes[path]))
    return found, missing


def read_run(key: RunKey, run_dir: Path, metrics_root: Path | None, profiles_root: Path | None,
             checkpoints: bool, warnings: list[str],
             hashes: dict[Path, str] | None = None) -> RunInputs | str:
    """The run's inputs, checked; or its run.json status when it is not complete.
    ``hashes`` caches the SHA-256 of training-set CSVs, which many runs share."""
    run_file = run_dir / "run.json"
    record = _read_json(run_file)
    if not isinstance(record, dict) or not isinstance(record.get("status"), str):
        raise CalfError(f"{run_file}: not a calf training record (no status)")
    if record["status"] != "complete":
        return record["status"]
    if not isinstance(record.get("params") or {}, dict):
        raise CalfError(f"{run_file}: params is not an object")
    epochs_file = run_dir / "epochs.csv"
    if not epochs_file.is_file():
        raise CalfError(f"{epochs_file}: missing (run.json says complete)")
    epochs = _read_table(epochs_file, ("epoch",), ("epoch",))
    metrics = [c for c in epochs.columns if c != "epoch" and _is_numeric(epochs[c])]
    epochs = epochs[["epoch", *metrics]]
    if epochs.empty:
        raise CalfError(f"{epochs_file}: no epochs (run.json says complete)")
    epoch = epochs["epoch"]
    if epoch.isna().any() or epoch.duplicated().any() or (epoch % 1 != 0).any():
        raise CalfError(f"{epochs_file}: column epoch must hold distinct whole numbers")
    completed = record.get("epochs_completed")
    if completed is not None and completed != len(epochs):
        raise CalfError(
            f"{epochs_file}: {len(epochs)} epochs but {run_file} says epochs_completed {completed}"
        )

    artifacts = [("run", run_file), ("run", epochs_file)]
    if checkpoints:
        checkpoint = run_dir / "checkpoint.pt"
        if checkpoint.is_file():
            artifacts.append(("run", checkpoint))
        else:
            warnings.append(f"{key.key}: no {checkpoint} to upload")
    profile = None
    profile_file = _profile_path(key, record, run_dir, profiles_root, warnings)
    if profile_file is not None:
        profile = _read_json(profile_file)
        if not isinstance(profile, dict):
            raise CalfError(f"{profile_file}: not a profile (expected a JSON object)")
        artifacts.append(("profile", profile_file))
    cases = None
    if metrics_root is not None:
        csv = key.metrics_csv(metrics_root)
        if csv.is_file():
            cases = _read_table(csv, ("case_id", "modality", "dice"), METRICS)
            artifacts.append(("metrics", csv))
            for companion in (csv.with_suffix(".json"), csv.with_name(f"{csv.stem}_slices.csv")):
                if companion.is_file():
                    artifacts.append(("metrics", companion))
            overlays = csv.with_name(f"{csv.stem}_overlays")
            if overlays.is_dir():
                artifacts += [("metrics/overlays", p) for p in sorted(overlays.iterdir())
                              if p.is_file()]
        else:
            warnings.append(f"{key.key}: no per-case metrics at {csv} (not evaluated yet?)")

    digest = hashlib.sha256()
    for folder, path in artifacts:
        stat = path.stat()
        content = (f"{stat.st_size}:{stat.st_mtime_ns}" if path.name == "checkpoint.pt"
                   else sha256_file(path))
        digest.update(f"{folder}/{path.name}={content}\n".encode())
    datasets, missing = _training_sets(key, record, {} if hashes is None else hashes)
    for found in datasets:  # a CSV that comes back is logged by the next sync
        digest.update(f"dataset/{found.context}={found.sha256}\n".encode())
    return RunInputs(key, run_dir, record, epochs, cases, profile, artifacts, digest.hexdigest(),
                     datasets, missing)


def _is_numeric(column: pd.Series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


# ----------------------------------------------------------------- what goes to MLflow


def _millis(value: Any) -> int | None:
    """run.json's ``started``/``finished`` (ISO 8601 text or seconds) in ms since the epoch."""
    if isinstance(value, (int, float)) and math.isfinite(value):
        return int(value * 1000)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    return None


def loss_definition(record: dict[str, Any], key: RunKey) -> str | None:
    """Which definition of the loss ran (``authors``, ``monai``, ``calf``, ``import:...``),
    as the loss module itself states it; None when the loss cannot be built here."""
    params = record.get("params") or {}
    name = params.get("loss") if isinstance(params.get("loss"), str) else key.loss
    kwargs = params.get("loss_kwargs") if isinstance(params.get("loss_kwargs"), dict) else {}
    try:
        from calf.losses import LOSSES, build_loss

        # a class states it without being built (CALF in dataset scope needs S and K)
        definition = getattr(LOSSES.get(name), "definition", None)
        return str(definition or build_loss(name, **kwargs).definition)
    except Exception:  # noqa: BLE001 - an optional tag; the run is still synced
        return None


def run_tags(inputs: RunInputs, parent_id: str) -> dict[str, str]:
    """The child run's tags (without the fingerprint, which is set last)."""
    record = inputs.record
    imbalance = record.get("imbalance") or {}
    tags: dict[str, Any] = {
        **inputs.key.tags(),
        "mlflow.parentRunId": parent_id,
        STATUS_TAG: record["status"],
        "calf.run_dir": str(inputs.run_dir.resolve()),
        "calf.git_commit": record.get("git_commit"),
        "mlflow.source.git.commit": record.get("git_commit"),
        "calf.version": record.get("calf_version"),
        "calf.device": record.get("device"),
        "calf.model_parameters": record.get("model_parameters"),
        "calf.loss_definition": loss_definition(record, inputs.key),
        "calf.scope": imbalance.get("scope"),
        "calf.S": imbalance.get("skewness"),
        "calf.K": imbalance.get("kurtosis"),
        "calf.area_definition": (inputs.profile or {}).get("area_definition"),
        "calf.synced_by": f"calf {__version__}",
    }
    steps = {c[len(BRANCH_PREFIX):]: int(inputs.epochs[c].fillna(0).sum())
             for c in inputs.epochs.columns if c.startswith(BRANCH_PREFIX)}
    used = {b: n for b, n in steps.items() if n > 0}
    if used:
        tags["calf.branch_steps"] = " ".join(f"{b}:{n}" for b, n in sorted(used.items()))
    branch = imbalance.get("branch")
    if branch is None and used:  # batch scope: the branch chosen on most steps
        branch = max(sorted(used), key=used.get)
    tags["calf.branch"] = branch
    return {k: str(v)[:MAX_TAG_VALUE] for k, v in tags.items() if v is not None}


def run_params(inputs: RunInputs) -> dict[str, str]:
    record = inputs.record
    extra = {k: record[k] for k in ("model_parameters", "device") if record.get(k) is not None}
    return flatten_params({**(record.get("params") or {}), **extra})


def epoch_metrics(inputs: RunInputs) -> list[tuple[str, float, int, int]]:
    """(name, value, timestamp ms, step = epoch) for every finite value of epochs.csv."""
    epochs = inputs.epochs
    start = _millis(inputs.record.get("started")) or int(time.time() * 1000)
    seconds = epochs["seconds"].fillna(0).cumsum() if "seconds" in epochs else None
    rows = []
    for i, row in enumerate(epochs.to_dict("records")):
        stamp = start + int(1000 * seconds.iloc[i]) if seconds is not None else start
        values = finite_metrics({k: v for k, v in row.items() if k != "epoch"})
        rows += [(name, value, stamp, int(row["epoch"])) for name, value in values.items()]
    return rows


def run_cost(inputs: RunInputs) -> tuple[dict[str, float], dict[str, str]]:
    """The run's cost as system metrics and tags: from run.json ``cost``; for a run recorded
    before it existed, wall seconds from run.json ``seconds`` and training seconds from
    epochs.csv, with the tag ``calf.cost_source`` saying so."""
    cost = inputs.record.get("cost")
    if isinstance(cost, dict):
        return cost_metrics(cost), {**cost_tags(cost), "calf.cost_source": "run.json cost"}
    epochs = inputs.epochs
    values = {"wall_s": inputs.record.get("seconds"),
              "train_s": epochs["seconds"].sum(min_count=1) if "seconds" in epochs else None,
              "epochs": len(epochs)}
    metrics = {f"{SYSTEM_PREFIX}{k}": v for k, v in finite_metrics(values).items()}
    return metrics, {"calf.cost_source": COST_FALLBACK}


def final_metrics(inputs: RunInputs) -> dict[str, float]:
    """Mean and median of each per-case metric over the cases, n_cases, train_seconds."""
    values: dict[str, Any] = {"train_seconds": inputs.record.get("seconds")}
    if inputs.cases is not None:
        values["n_cases"] = len(inputs.cases)
        for metric in (m for m in METRICS if m in inputs.cases.columns):
            values[f"{metric}_mean"] = inputs.cases[metric].mean()
            values[f"{metric}_median"] = inputs.cases[metric].median()
    return finite_metrics(values)


# ------------------------------------------------------------------------------ syncing


class _Study:
    """The MLflow side of one sync: the experiment, its parent run, its child runs."""

    def __init__(self, client: Any, study: str, artifact_root: Path | None, result: SyncResult):
        from mlflow.entities import ViewType

        self.client, self.result = client, result
        self.created_artifacts: list[Path] = []  # local artifact folders of runs made here
        self.datasets: dict[TrainingSetFile, Any] = {}  # MLflow dataset entities, by CSV
        experiment = client.get_experiment_by_name(study)
        if experiment is None:
            location = None if artifact_root is None else (artifact_root / study).resolve().as_uri()
            experiment_id = client.create_experiment(study, artifact_location=location)
        elif experiment.lifecycle_stage != "active":
            raise CalfError(f"{result.tracking_uri}: experiment {study!r} is deleted; "
                            "restore it or delete it for good first")
        else:
            experiment_id = experiment.experiment_id
        runs, token = [], None
        while True:
            page = client.search_runs([experiment_id], "", ViewType.ACTIVE_ONLY, 1000,
                                      ["attributes.start_time ASC"], token)
            runs += page
            token = page.token
            if not token:
                break
        self.experiment_id = experiment_id
        parents = [r for r in runs if r.data.tags.get(KIND_TAG) == "study"]
        self.parent = parents[0] if parents else client.create_run(
            experiment_id, run_name=study, tags={KIND_TAG: "study", "calf.study": study})
        by_key: dict[str, list[Any]] = {}
        for run in runs:
            if run.data.tags.get(KIND_TAG) != "study" and RUN_KEY_TAG in run.data.tags:
                by_key.setdefault(run.data.tags[RUN_KEY_TAG], []).append(run)
        self.children: dict[str, Any] = {}
        for key, candidates in by_key.items():
            if len(candidates) > 1:
                ids = ", ".join(r.info.run_id for r in candidates)
                result.warnings.append(f"{key}: several MLflow runs carry this key ({ids})")
            # the one synced before, else the oldest
            self.children[key] = min(candidates, key=lambda r: (
                FINGERPRINT_TAG not in r.data.tags, r.info.start_time or 0))

    def sync_run(self, inputs: RunInputs) -> None:
        from mlflow.entities import Metric, Param, RunTag

        client, key = self.client, inputs.key.key
        parent_id = self.parent.info.run_id
        fingerprint = hashlib.sha256(
            f"{SYNC_FORMAT}|{key}|{parent_id}|{inputs.digest}".encode()).hexdigest()
        run = self.children.get(key)
        if run is not None and run.data.tags.get(FINGERPRINT_TAG) == fingerprint:
            self.result.unchanged.append(key)
            return
        if run is None:
            run = client.create_run(self.experiment_id, _millis(inputs.record.get("started")),
                                    run_name=inputs.key.name)
            if run.info.artifact_uri.startswith("file:"):
                local = url2pathname(urlparse(run.info.artifact_uri).path)
                self.created_artifacts.append(Path(local).parent)
            self.result.created.append(key)
        else:
            self.result.updated.append(key)
        run_id = run.info.run_id

        have = run.data.params
        params = []
        for name, value in run_params(inputs).items():
            if name not in have:
                params.append(Param(name, value))
            elif have[name] != value:  # MLflow params are write-once
                self.result.warnings.append(
                    f"{key}: param {name} is {have[name]!r} in MLflow, {value!r} in run.json; kept")
        cost, cost_tag_values = run_cost(inputs)
        tags = [RunTag(k, v) for k, v in {**run_tags(inputs, parent_id), **cost_tag_values}.items()]
        for i in range(0, max(len(params), len(tags)), MAX_BATCH_PARAMS_TAGS):
            client.log_batch(run_id, params=params[i:i + MAX_BATCH_PARAMS_TAGS],
                             tags=tags[i:i + MAX_BATCH_PARAMS_TAGS])

        metrics = []
        history: dict[str, set[tuple[int, float]]] = {}
        for name, value, stamp, step in epoch_metrics(inputs):
            if name not in history:
                history[name] = set() if name not in run.data.metrics else {
                    (m.step, m.value) for m in client.get_metric_history(run_id, name)}
            if (step, value) not in history[name]:
                metrics.append(Metric(name, value, stamp, step))
        now = int(time.time() * 1000)  # a later value must be the latest at step 0
        for name, value in {**final_metrics(inputs), **cost}.items():
            if run.data.metrics.get(name) != value:
                metrics.append(Metric(name, value, now, 0))
        for i in range(0, len(metrics), MAX_BATCH_METRICS):
            client.log_batch(run_id, metrics=metrics[i:i + MAX_BATCH_METRICS])

        self._log_datasets(run_id, inputs.datasets)
        self._upload(run_id, inputs.artifacts)
        end = _millis(inputs.record.get("finished")) or now
        client.set_terminated(run_id, MLFLOW_STATUS["complete"], end)
        client.set_tag(run_id, FINGERPRINT_TAG, fingerprint)

    def _log_datasets(self, run_id: str, files: list[TrainingSetFile]) -> None:
        """Log the training (and validation) sets as dataset inputs; MLflow keeps one copy of
        a dataset per experiment and of an input per run, so logging again adds nothing."""
        datasets = []
        for found in files:
            if found not in self.datasets:
                self.datasets[found] = dataset_entity(found.path, found.sha256, found.name)
            datasets.append(dataset_input(self.datasets[found], found.context))
        if datasets:
            self.client.log_inputs(run_id, datasets=datasets)

    def _upload(self, run_id: str, artifacts: list[tuple[str, Path]]) -> None:
        """Upload the files that are missing from the run or differ in size."""
        present: dict[str, int | None] = {}
        for folder in sorted({f for f, _ in artifacts}):
            present.update({info.path: info.file_size
                            for info in self.client.list_artifacts(run_id, folder)})
        for folder, path in artifacts:
            if present.get(f"{folder}/{path.name}") != path.stat().st_size:
                self.client.log_artifact(run_id, str(path), folder)

    def finish(self, n_runs: int) -> None:
        parent_id = self.parent.info.run_id
        if self.parent.data.tags.get("calf.n_runs") != str(n_runs):
            self.client.set_tag(parent_id, "calf.n_runs", str(n_runs))
        if self.parent.info.status != "FINISHED":
            self.client.set_terminated(parent_id, "FINISHED")
        self.result.experiment_id, self.result.parent_run_id = self.experiment_id, parent_id


def _sqlite_path(uri: str) -> Path:
    """The database file of a ``sqlite:///`` URI; an existing file must be an MLflow store."""
    path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
    if not path or path == ":memory:" or path.endswith("/"):
        raise CalfError(f"--tracking-uri {uri}: expected sqlite:///PATH/TO/FILE.db")
    db = Path(path)
    if db.exists():
        try:
            with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro",
                                                    uri=True)) as con:
                tables = {row[0] for row in con.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as err:
            raise CalfError(f"{db}: not an SQLite database ({err})") from None
        if not {"experiments", "runs", "alembic_version"} <= tables:
            raise CalfError(f"{db}: not an MLflow tracking database; refusing to change it")
    return db


@contextlib.contextmanager
def _sqlite_copy(db: Path) -> Iterator[Path]:
    """A private copy of the SQLite store that replaces it when the block succeeds; one
    sync at a time per folder (a lock on the folder)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(db.parent, os.O_RDONLY)
    tmp = db.with_name(f".{db.name}.tmp-{uuid.uuid4().hex}")
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        if db.exists():
            shutil.copy2(db, tmp)
        yield tmp
        os.replace(tmp, db)
    finally:
        tmp.unlink(missing_ok=True)
        os.close(folder)  # releases the lock


def _check_server(uri: str) -> None:
    import requests

    try:
        requests.get(f"{uri.rstrip('/')}/health", timeout=10)
    except requests.RequestException as err:
        raise CalfError(f"--tracking-uri {uri}: server unreachable "
                        f"({type(err).__name__})") from None


def sync_study(study: str, runs_root: str | Path, metrics_root: str | Path | None = None,
               profiles_root: str | Path | None = None,
               tracking_uri: str = DEFAULT_TRACKING_URI,
               checkpoints: bool = False) -> SyncResult:
    """Import the complete runs of ``study`` into the MLflow store at ``tracking_uri``
    (``sqlite:///FILE.db`` or an ``http(s)://`` server); see the module docstring."""
    scheme = tracking_uri.split("://", 1)[0].lower() if "://" in tracking_uri else ""
    if scheme != "sqlite" and not is_server_uri(tracking_uri):
        raise CalfError(f"--tracking-uri {tracking_uri}: expected sqlite:///FILE.db or "
                        "http(s)://HOST:PORT")
    db = _sqlite_path(tracking_uri) if scheme == "sqlite" else None
    result = SyncResult(tracking_uri, study)
    metrics_root = None if metrics_root is None else Path(metrics_root)
    profiles_root = None if profiles_root is None else Path(profiles_root)
    runs, hashes = [], {}
    for key, run_dir in find_run_dirs(study, runs_root):
        inputs = read_run(key, run_dir, metrics_root, profiles_root, checkpoints, result.warnings,
                          hashes)
        if isinstance(inputs, str):
            result.skipped[key.key] = inputs
            continue
        runs.append(inputs)
        result.missing_datasets += inputs.missing_datasets
        if not isinstance(inputs.record.get("cost"), dict):
            result.without_cost.append(key.key)

    if db is not None:
        with _sqlite_copy(db) as copy:
            _write(f"sqlite:///{copy}", study, runs, db.parent / f"{db.stem}-artifacts", result)
    else:
        _check_server(tracking_uri)
        _write(tracking_uri, study, runs, None, result)
    return result


def _write(uri: str, study: str, runs: list[RunInputs], artifact_root: Path | None,
           result: SyncResult) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    side = None
    try:
        with mlflow_env(_QUIET):
            side = _Study(MlflowClient(tracking_uri=uri), study, artifact_root, result)
            for inputs in runs:
                side.sync_run(inputs)
            side.finish(len(runs))
    except BaseException as err:
        if artifact_root is not None and side is not None:  # the store copy is thrown away
            for folder in side.created_artifacts:
                shutil.rmtree(folder, ignore_errors=True)
        if isinstance(err, MlflowException):
            raise CalfError(f"{result.tracking_uri}: {' '.join(err.message.split())}") from None
        raise
