"""Import the finished training runs of one study into MLflow (``calf mlflow-sync``).

The per-run files are the source of truth; this step copies them into an MLflow tracking
store, once per study, as its only writer (so a SQLite file is safe). What it reads is in
``calf.tracking.inputs``.

In MLflow: an experiment named after the study; in it a parent run (tag ``calf.kind`` =
``study``) and one child run per training run (tags ``calf.kind`` = ``run``,
``calf.run_key`` = its path below the runs root, ``mlflow.parentRunId``). A child holds the
flattened ``run.json`` params; every numeric ``epochs.csv`` column as a metric with
step = epoch (branch counts included); final metrics ``{metric}_mean`` and
``{metric}_median`` of each per-case metric, ``n_cases`` and ``train_seconds``; tags for
git commit, calf version, device, loss definition and, for CALF, scope, branch, S and K;
artifacts ``run/`` (run.json, epochs.csv, checkpoint.pt only when asked), ``profile/``,
``metrics/`` and ``metrics/overlays/`` (``calf.tracking.content``).

What the run cost (run.json ``cost``) becomes system metrics at step 0 (``system/wall_s``,
``system/device_s``, ``system/device_s_per_epoch``, ``system/peak_memory_mb``,
``system/energy_j``, ...: ``calf.tracking.cost``). A run recorded before the cost record
existed gets ``system/wall_s`` (run.json ``seconds``) and ``system/train_s`` (epochs.csv
``seconds``) and the tag ``calf.cost_source`` saying so; the sync summary lists those runs
(``without_cost``). The training-set CSV (run.json ``params.train_slices``) and the
validation CSV, if any, are the run's dataset inputs (``calf.tracking.datasets``). A CSV that
is gone, or no longer has the SHA-256 run.json recorded, is not logged; the summary lists it
(``missing_datasets``) and the run is synced without it.

Only runs whose ``run.json`` status is ``complete`` are imported; the others are reported
as skipped. Syncing is idempotent: runs are found by their ``calf.run_key`` tag (a run
that training logged live to the same server is completed, not duplicated); a run whose
inputs are unchanged since the last sync (tag ``calf.sync_fingerprint``) is left alone, and
a changed one gets only what it lacks: missing params, (step, value) pairs not in the
metric history, artifacts missing or of another size. A SQLite store is updated on a copy
that replaces the file only when the whole sync succeeded (``calf.tracking.stores``).
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from calf import __version__
from calf.errors import CalfError
from calf.tracking.client import (
    KIND_TAG,
    MLFLOW_STATUS,
    RUN_KEY_TAG,
    log_metrics,
    log_params_and_tags,
    mlflow_env,
    study_experiment,
)
from calf.tracking.content import (
    epoch_metrics,
    final_metrics,
    millis,
    run_cost,
    run_params,
    run_tags,
)
from calf.tracking.datasets import TrainingSetFile, dataset_entity, dataset_input
from calf.tracking.inputs import RunInputs, find_run_dirs, read_run_inputs
from calf.tracking.stores import (
    DEFAULT_TRACKING_URI,
    SQLITE_PREFIX,
    check_server,
    check_tracking_uri,
    sqlite_copy,
)

FINGERPRINT_TAG = "calf.sync_fingerprint"
SYNC_FORMAT = 2  # bump when what a sync writes changes: every run is then re-checked
_QUIET = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


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


class _Study:
    """The MLflow side of one sync: the experiment, its parent run, its child runs."""

    def __init__(self, client: Any, study: str, artifact_root: Path | None, result: SyncResult):
        self.client, self.result = client, result
        self.created_artifacts: list[Path] = []  # local artifact folders of runs made here
        self.datasets: dict[TrainingSetFile, Any] = {}  # MLflow dataset entities, by CSV
        location = None if artifact_root is None else (artifact_root / study).resolve().as_uri()
        self.experiment_id = study_experiment(client, study, location, result.tracking_uri)
        runs = self._all_runs()
        parents = [r for r in runs if r.data.tags.get(KIND_TAG) == "study"]
        self.parent = parents[0] if parents else client.create_run(
            self.experiment_id, run_name=study, tags={KIND_TAG: "study", "calf.study": study})
        self.children = self._children_by_key(runs)

    def _all_runs(self) -> list[Any]:
        """Every active run of the experiment, oldest first."""
        from mlflow.entities import ViewType

        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], "", ViewType.ACTIVE_ONLY, 1000,
                                           ["attributes.start_time ASC"], token)
            runs += page
            token = page.token
            if not token:
                return runs

    def _children_by_key(self, runs: Iterable[Any]) -> dict[str, Any]:
        """The child run of each key: the one synced before, else the oldest (a warning
        names keys that several runs carry)."""
        by_key: dict[str, list[Any]] = {}
        for run in runs:
            if run.data.tags.get(KIND_TAG) != "study" and RUN_KEY_TAG in run.data.tags:
                by_key.setdefault(run.data.tags[RUN_KEY_TAG], []).append(run)
        children = {}
        for key, candidates in by_key.items():
            if len(candidates) > 1:
                ids = ", ".join(r.info.run_id for r in candidates)
                self.result.warnings.append(f"{key}: several MLflow runs carry this key ({ids})")
            children[key] = min(candidates, key=lambda r: (
                FINGERPRINT_TAG not in r.data.tags, r.info.start_time or 0))
        return children

    def sync_run(self, inputs: RunInputs) -> None:
        """Bring the run's child run up to date with its files (nothing when the
        fingerprint says they are unchanged)."""
        key, parent_id = inputs.key.key, self.parent.info.run_id
        fingerprint = hashlib.sha256(
            f"{SYNC_FORMAT}|{key}|{parent_id}|{inputs.digest}".encode()).hexdigest()
        run = self.children.get(key)
        if run is not None and run.data.tags.get(FINGERPRINT_TAG) == fingerprint:
            self.result.unchanged.append(key)
            return
        run = self._child_run(inputs) if run is None else run
        (self.result.updated if key in self.children else self.result.created).append(key)
        run_id = run.info.run_id
        cost, cost_tags = run_cost(inputs)
        log_params_and_tags(self.client, run_id, self._new_params(run, inputs),
                            {**run_tags(inputs, parent_id), **cost_tags})
        now = int(time.time() * 1000)  # a later value must be the latest at step 0
        log_metrics(self.client, run_id, self._new_metrics(run, inputs, cost, now))
        self._log_datasets(run_id, inputs.datasets)
        self._upload(run_id, inputs.artifacts)
        end = millis(inputs.record.get("finished")) or now
        self.client.set_terminated(run_id, MLFLOW_STATUS["complete"], end)
        self.client.set_tag(run_id, FINGERPRINT_TAG, fingerprint)

    def _child_run(self, inputs: RunInputs) -> Any:
        """A new child run, started when the training run started."""
        run = self.client.create_run(self.experiment_id, millis(inputs.record.get("started")),
                                     run_name=inputs.key.name)
        if run.info.artifact_uri.startswith("file:"):
            local = url2pathname(urlparse(run.info.artifact_uri).path)
            self.created_artifacts.append(Path(local).parent)
        return run

    def _new_params(self, run: Any, inputs: RunInputs) -> dict[str, str]:
        """The run's params the MLflow run does not have; MLflow params are write-once, so a
        different value already there is kept, with a warning."""
        have, new = run.data.params, {}
        for name, value in run_params(inputs).items():
            if name not in have:
                new[name] = value
            elif have[name] != value:
                self.result.warnings.append(
                    f"{inputs.key.key}: param {name} is {have[name]!r} in MLflow, {value!r} "
                    "in run.json; kept")
        return new

    def _new_metrics(self, run: Any, inputs: RunInputs, cost: dict[str, float],
                     now: int) -> list[Any]:
        """The (step, value) pairs of epochs.csv not in the metric history, and the final
        and cost metrics (step 0) that differ from the run's latest."""
        from mlflow.entities import Metric

        metrics = []
        history: MutableMapping[str, set[tuple[int, float]]] = {}
        for name, value, stamp, step in epoch_metrics(inputs):
            if name not in history:
                history[name] = set() if name not in run.data.metrics else {
                    (m.step, m.value)
                    for m in self.client.get_metric_history(run.info.run_id, name)}
            if (step, value) not in history[name]:
                metrics.append(Metric(name, value, stamp, step))
        for name, value in {**final_metrics(inputs), **cost}.items():
            if run.data.metrics.get(name) != value:
                metrics.append(Metric(name, value, now, 0))
        return metrics

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


def read_study(study: str, runs_root: str | Path, metrics_root: str | Path | None,
               profiles_root: str | Path | None, checkpoints: bool,
               result: SyncResult) -> list[RunInputs]:
    """The complete runs of the study, read and checked; the others go to
    ``result.skipped``, with their status."""
    metrics_root = None if metrics_root is None else Path(metrics_root)
    profiles_root = None if profiles_root is None else Path(profiles_root)
    runs, hashes = [], {}
    for key, run_dir in find_run_dirs(study, runs_root):
        inputs = read_run_inputs(key, run_dir, metrics_root, profiles_root, checkpoints,
                                 result.warnings, hashes)
        if isinstance(inputs, str):
            result.skipped[key.key] = inputs
            continue
        runs.append(inputs)
        result.missing_datasets += inputs.missing_datasets
        if not isinstance(inputs.record.get("cost"), dict):
            result.without_cost.append(key.key)
    return runs


def sync_study(study: str, runs_root: str | Path, metrics_root: str | Path | None = None,
               profiles_root: str | Path | None = None,
               tracking_uri: str = DEFAULT_TRACKING_URI,
               checkpoints: bool = False) -> SyncResult:
    """Import the complete runs of ``study`` into the MLflow store at ``tracking_uri``
    (``sqlite:///FILE.db`` or an ``http(s)://`` server); see the module docstring."""
    db = check_tracking_uri(tracking_uri)
    result = SyncResult(tracking_uri, study)
    runs = read_study(study, runs_root, metrics_root, profiles_root, checkpoints, result)
    if db is not None:
        artifact_root = db.parent / f"{db.stem}-artifacts"
        with sqlite_copy(db) as copy:
            _write(f"{SQLITE_PREFIX}{copy}", study, runs, artifact_root, result)
    else:
        check_server(tracking_uri)
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
