"""Names of tracked runs, and live, best-effort MLflow logging from a training job.

A training run is named by its place in the results tree (the *run layout*)::

    {runs_root}/{study}/{dataset}/{model}/{loss}[/ratio-{ratio}][/seed-{seed}]/fold{fold}

``RunKey`` parses that path; its ``key`` (the path below the runs root, e.g.
``demo/synth/unet/calf/ratio-0.25/fold0``) is written to the MLflow tag ``calf.run_key`` by
both the live logger and ``calf mlflow-sync``, so the sync finds a run that training logged
live and completes it instead of creating a second one.

``LiveLogger`` sends a training job's parameters and per-epoch metrics to the tracking server
that ``MLFLOW_TRACKING_URI`` names, while the job runs. The per-run files (contract C) stay
the source of truth; the live view is a convenience, so the logger must never fail or slow
down training: it only talks to http(s) servers (many jobs writing one SQLite file fail with
"database is locked"), every request has a short timeout and no retries, and on the first
error it prints one warning line to stderr and turns itself off. ``mlflow`` is imported only
when a server is named, so a job without one pays nothing.

What a run cost (run.json ``cost``) goes to MLflow as *system metrics*: MLflow's ``system/``
prefix, at step 0 (``cost_metrics``). The training set (run.json ``params.train_slices``)
and the validation set, if any, are the run's MLflow *dataset inputs* (``mlflow.data``,
contexts ``training`` and ``validation``; ``dataset_input``): the CSV's rows as a pandas
dataset, its absolute path as the source, and as digest the CSV's SHA-256 (run.json
``params.train_slices_sha256``) cut to the 36 characters MLflow keeps. Both the live logger
and ``calf mlflow-sync`` log them, with the same names, so that syncing a live-logged run
adds nothing twice. While a live run is open, MLflow's own system metrics monitor
(``mlflow.system_metrics``: CPU, memory, disk, network and, with ``pynvml``, GPU
utilisation, memory and power) samples the machine in a background thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calf.errors import CalfError

# tags shared by the live logger and the sync
RUN_KEY_TAG = "calf.run_key"
KIND_TAG = "calf.kind"  # "study" (the parent run of a study) or "run" (one training run)
STATUS_TAG = "calf.status"  # run.json's status: complete, interrupted, failed, running

# limits of the MLflow REST API (mlflow.utils.validation)
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_BATCH_PARAMS_TAGS = 100
MAX_BATCH_METRICS = 1000

# the live logger's budget per request: one try, a few seconds; and no "View run" lines
# printed to the job's stdout
LIVE_TIMEOUT_S = 3
_LIVE_ENV = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": str(LIVE_TIMEOUT_S),
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}

# MLflow run status for each run.json status
MLFLOW_STATUS = {"complete": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}

# run.json cost as MLflow system metrics (the prefix of mlflow.system_metrics); megabytes
# are 10^6 bytes, as in MLflow's own memory metrics
SYSTEM_PREFIX = "system/"
COST_METRICS = ("wall_s", "device_s", "train_s", "cpu_s", "epochs", "device_s_per_epoch",
                "energy_j", "attempts")
# the training-set CSVs of a run: (run.json param, MLflow dataset context)
DATASET_PARAMS = (("train_slices", "training"), ("val_slices", "validation"))
MAX_DATASET_DIGEST = 36  # mlflow.utils.validation.MAX_DATASET_DIGEST_SIZE
SCHEMA_ROWS = 1000  # rows of a training-set CSV that MLflow's schema is inferred from

# MLflow's system metrics monitor in a live run: a sample every 15 s, one point a minute (the
# mean of 4 samples), a few hundred points for a day-long run. MLflow's settings
# MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL and MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING
# override these; MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false turns the monitor off.
MONITOR_SAMPLING_S = 15.0
MONITOR_SAMPLES = 4

_FOLD = re.compile(r"fold(\d+)")
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /:]")


@dataclass(frozen=True)
class RunKey:
    """The identity of one training run: (study, dataset, model, loss, fold, ratio, seed).

    ``ratio`` and ``seed`` keep the text of their path components (``"0.25"``, ``"natural"``,
    ``"7"``) so that the key round-trips through paths exactly.
    """

    study: str
    dataset: str
    model: str
    loss: str
    fold: int
    ratio: str | None = None
    seed: str | None = None

    def __post_init__(self) -> None:
        for name in ("study", "dataset", "model", "loss", "ratio", "seed"):
            value = getattr(self, name)
            if value is None:
                continue
            if not value or value in (".", "..") or "/" in value or "'" in value or '"' in value:
                raise CalfError(f"run key {name} {value!r}: expected a plain path component")

    @property
    def key(self) -> str:
        """The run's path below the runs root: the value of the ``calf.run_key`` tag."""
        parts = [self.study, self.dataset, self.model, self.loss, *self._variant()]
        return "/".join([*parts, f"fold{self.fold}"])

    @property
    def name(self) -> str:
        """A short run name: the key without the study."""
        return self.key.split("/", 1)[1]

    def _variant(self) -> list[str]:
        parts = [f"ratio-{self.ratio}"] if self.ratio is not None else []
        return parts + ([f"seed-{self.seed}"] if self.seed is not None else [])

    def metrics_csv(self, metrics_root: str | Path) -> Path:
        """The per-case metrics CSV of this run (contract D): ``{metrics_root}/{study}/
        {dataset}/{model}/{loss}[/ratio-{r}][/seed-{s}]/fold{fold}.csv``."""
        folder = Path(metrics_root, self.study, self.dataset, self.model, self.loss)
        return folder.joinpath(*self._variant(), f"fold{self.fold}.csv")

    def profile_json(self, profiles_root: str | Path) -> Path:
        """The imbalance profile of this run's training set: ``{profiles_root}/{study}/
        {dataset}[/ratio-{r}]/fold{fold}.json`` (seeds share a training set)."""
        folder = Path(profiles_root, self.study, self.dataset)
        ratio = [f"ratio-{self.ratio}"] if self.ratio is not None else []
        return folder.joinpath(*ratio, f"fold{self.fold}.json")

    def tags(self) -> dict[str, str]:
        """The key and its fields as MLflow tags."""
        tags = {RUN_KEY_TAG: self.key, KIND_TAG: "run", "calf.study": self.study,
                "calf.dataset": self.dataset, "calf.model": self.model, "calf.loss": self.loss,
                "calf.fold": str(self.fold)}
        if self.ratio is not None:
            tags["calf.ratio"] = self.ratio
        if self.seed is not None:
            tags["calf.seed"] = self.seed
        return tags

    @classmethod
    def from_parts(cls, parts: list[str] | tuple[str, ...]) -> RunKey | None:
        """Parse the trailing path components of a run directory; None when they do not
        follow the run layout."""
        parts = list(parts)
        if not parts or not _FOLD.fullmatch(parts[-1]):
            return None
        fold = parts.pop()
        seed = ratio = None
        if parts and parts[-1].startswith("seed-"):
            seed = parts.pop()[len("seed-"):]
        if parts and parts[-1].startswith("ratio-"):
            ratio = parts.pop()[len("ratio-"):]
        if len(parts) < 4:
            return None
        study, dataset, model, loss = parts[-4:]
        try:
            return cls(study, dataset, model, loss, int(fold[4:]), ratio, seed)
        except CalfError:
            return None

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, runs_root: str | Path) -> RunKey:
        """The key of a run directory below ``runs_root``; ``CalfError`` naming the
        directory when its path does not follow the run layout."""
        run_dir, runs_root = Path(run_dir), Path(runs_root)
        try:
            parts = run_dir.resolve().relative_to(runs_root.resolve()).parts
        except ValueError:
            raise CalfError(f"{run_dir}: not below the runs root {runs_root}") from None
        key = cls.from_parts(parts)
        if key is None or key.key != "/".join(parts):
            raise CalfError(
                f"{run_dir}: path below {runs_root} does not follow the run layout "
                "{study}/{dataset}/{model}/{loss}[/ratio-{r}][/seed-{s}]/fold{N}"
            )
        return key


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested parameters as MLflow params: keys joined with ``.``, values as text (strings
    as they are, everything else as JSON), cut to MLflow's length limit."""
    flat: dict[str, str] = {}
    for name, value in params.items():
        key = _UNSAFE.sub("_", f"{prefix}{name}")
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, f"{key}."))
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        flat[key] = text if len(text) <= MAX_PARAM_VALUE else text[: MAX_PARAM_VALUE - 3] + "..."
    return flat


def finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The entries that are finite numbers (MLflow metrics); others (None, NaN, text) dropped."""
    kept = {}
    for name, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            kept[_UNSAFE.sub("_", str(name))] = number
    return kept


def cost_metrics(cost: Mapping[str, Any] | None) -> dict[str, float]:
    """run.json's ``cost`` as MLflow system metrics: ``system/wall_s``, ``system/device_s``
    (GPU-seconds on CUDA), ``system/train_s``, ``system/cpu_s``, ``system/epochs``,
    ``system/device_s_per_epoch``, ``system/peak_memory_mb`` (10^6 bytes; what was measured
    is in ``cost_tags``), ``system/energy_j`` and ``system/attempts``; nulls are left out."""
    if not isinstance(cost, Mapping):
        return {}
    values = {name: cost.get(name) for name in COST_METRICS}
    peak = cost.get("peak_memory_bytes")
    values["peak_memory_mb"] = peak / 1e6 if isinstance(peak, (int, float)) else None
    return {f"{SYSTEM_PREFIX}{k}": v for k, v in finite_metrics(values).items()}


def cost_tags(cost: Mapping[str, Any] | None) -> dict[str, str]:
    """What the cost figures were measured on: ``calf.cost_device`` (cuda or cpu),
    ``calf.device_name`` and ``calf.peak_memory_kind`` (cuda_allocated or cpu_rss)."""
    if not isinstance(cost, Mapping):
        return {}
    names = {"calf.cost_device": "device", "calf.device_name": "device_name",
             "calf.peak_memory_kind": "peak_memory_kind"}
    return {tag: str(cost[k])[:MAX_TAG_VALUE] for tag, k in names.items()
            if isinstance(cost.get(k), str) and cost[k]}


def training_set_files(params: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    """(MLflow dataset context, CSV path, SHA-256 recorded in run.json or None) of the run's
    training set and its validation set, where run.json ``params`` name them."""
    found = []
    for param, context in DATASET_PARAMS:
        path = params.get(param)
        if isinstance(path, str) and path:
            sha = params.get(f"{param}_sha256")
            found.append((context, path, sha if isinstance(sha, str) and sha else None))
    return found


def dataset_name(key: RunKey | None, path: str | Path, context: str) -> str:
    """The MLflow dataset name of a run's training or validation set: by its place in the run
    layout (``{dataset}[/ratio-{r}]/fold{N}/{context}``: the runs of every loss, model and
    seed of one fold share it), else by the CSV's file name."""
    if key is None:
        return f"{Path(path).stem}/{context}"
    ratio = f"ratio-{key.ratio}/" if key.ratio is not None else ""
    return f"{key.dataset}/{ratio}fold{key.fold}/{context}"


def dataset_entity(path: str | Path, sha256: str, name: str) -> Any:
    """The CSV at ``path`` as an MLflow dataset entity (``mlflow.data.from_pandas``: its
    schema and row count; source the path; digest the file's SHA-256, cut to MLflow's 36
    characters)."""
    import warnings

    import mlflow.data
    import pandas as pd
    from mlflow.entities import Dataset

    table = pd.read_csv(path)
    with warnings.catch_warnings():
        # MLflow's notes on integer columns and on a local path matching two source kinds
        warnings.simplefilter("ignore", UserWarning)
        # MLflow infers the schema of a text column value by value (16 s for a 532,748-row
        # training set); the columns of a CSV read by pandas are uniform, so the schema of
        # the first rows is the table's. The profile (row and value counts) is the table's.
        dataset = mlflow.data.from_pandas(table.head(SCHEMA_ROWS),
                                          source=str(Path(path).resolve()), name=name,
                                          digest=sha256[:MAX_DATASET_DIGEST])
        fields = dataset.to_dict()
    fields["profile"] = json.dumps({"num_rows": len(table), "num_elements": int(table.size)})
    return Dataset(**fields)


def dataset_input(dataset: Any, context: str) -> Any:
    """An MLflow dataset entity as a run input in ``context`` (training or validation)."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    return DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])


def is_server_uri(uri: str | None) -> bool:
    """True for an http(s) tracking server URI, the only kind the live logger writes to."""
    return bool(uri) and uri.split("://", 1)[0].lower() in ("http", "https")


@contextlib.contextmanager
def mlflow_env(settings: Mapping[str, str]) -> Iterator[None]:
    """MLflow settings for the calls inside the block. MLflow reads them from the
    environment at call time; the previous values come back afterwards."""
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class LiveLogger:
    """Best-effort live logging of one training run to an MLflow tracking server.

    Build it with ``from_env``; an inactive logger (no server named, or after an error)
    accepts every call and does nothing. No method ever raises (except for
    ``KeyboardInterrupt`` and other ``BaseException`` that are not errors).

    While the run is open, MLflow's ``SystemMetricsMonitor`` samples the machine in a
    daemon thread (when ``psutil`` imports; GPU figures need ``pynvml``) and logs to the
    same run. That thread's requests read MLflow's HTTP settings from the environment like
    every other, so the logger's short timeout and no retries hold in this process for as
    long as the monitor runs. The monitor's own log lines are silenced (the logger's one
    warning line reports a lost server; a monitor that fails just stops sampling).
    """

    def __init__(self, uri: str | None = None):
        self.uri = uri
        self.run_id: str | None = None
        self._client: Any = None  # an MlflowClient while active
        self._monitor: Any = None  # MLflow's SystemMetricsMonitor while it samples
        self._env: contextlib.ExitStack | None = None  # the live settings while it samples
        self._resumed = False  # whether the run was on the server already

    @property
    def active(self) -> bool:
        """Whether calls still go to the server."""
        return self._client is not None

    @classmethod
    def from_env(cls, run_name: str, params: Mapping[str, Any],
                 tags: Mapping[str, str]) -> LiveLogger:
        """A logger for the server named by ``MLFLOW_TRACKING_URI``, or an inactive one.

        The run directory is ``tags["run_dir"]`` (what ``calf train`` passes). When its
        path follows the run layout, the run is named by its key, goes to the experiment
        named after the study and carries the ``calf.run_key`` tag, and a run
        with that key already on the server (a resumed job) is continued. Otherwise the run
        is called ``run_name`` and goes to ``MLFLOW_EXPERIMENT_NAME``, or ``calf``.
        """
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        logger = cls(uri)
        if is_server_uri(uri):
            logger._guard(logger._start, run_name, params, tags)
            if logger.active:
                logger._start_monitor()
        return logger

    def log_epoch(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Log one completed epoch's metrics at step ``epoch``; non-finite values are left out."""
        self._call(self._log_metrics, epoch, metrics)

    def log_cost(self, cost: Mapping[str, Any] | None) -> None:
        """Log run.json's ``cost`` (all attempts so far) as system metrics at step 0, and
        what it was measured on as tags (``cost_metrics``, ``cost_tags``); call it before
        ``finish``. A resumed run logs its larger totals again: the latest value counts."""
        self._call(self._log_cost, cost)

    def finish(self, status: str) -> None:
        """End the run with run.json's status (complete, interrupted, failed); the logger
        is inactive afterwards."""
        self._stop_monitor()  # its last points go in while the run is still open
        self._call(self._end, status)
        self._client = None

    # -- the calls to MLflow; each runs under _guard

    def _call(self, method, *args) -> None:
        if self._client is not None:
            self._guard(method, *args)

    def _guard(self, method, *args) -> None:
        try:
            with mlflow_env(_LIVE_ENV):
                method(*args)
        except Exception as err:  # noqa: BLE001 - live tracking must never stop training
            self._client = None
            self._stop_monitor()
            message = " ".join(str(err).split())
            message = message if len(message) <= 200 else message[:200] + "..."
            print(f"calf: MLflow live logging to {self.uri} disabled after an error "
                  f"({type(err).__name__}: {message}); run 'calf mlflow-sync' later",
                  file=sys.stderr, flush=True)

    def _start(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        from mlflow.entities import Param, RunTag
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        run_dir = tags.get("run_dir")
        key = RunKey.from_parts(Path(run_dir).resolve().parts) if run_dir else None
        experiment = key.study if key else os.environ.get("MLFLOW_EXPERIMENT_NAME") or "calf"
        all_tags = {**{str(k): str(v) for k, v in tags.items()}, KIND_TAG: "run",
                    STATUS_TAG: "running", "calf.live": "true"}
        if run_dir:
            all_tags["calf.run_dir"] = str(Path(run_dir).resolve())
        if key:
            all_tags.update(key.tags())
        client = MlflowClient(tracking_uri=self.uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            try:
                experiment_id = client.create_experiment(experiment)
            except MlflowException:  # another job created it first
                experiment_id = client.get_experiment_by_name(experiment).experiment_id
        else:
            experiment_id = found.experiment_id
        existing = None
        if key is not None:
            runs = client.search_runs([experiment_id], f"tags.`{RUN_KEY_TAG}` = '{key.key}'",
                                      order_by=["attributes.start_time ASC"], max_results=1)
            existing = runs[0] if runs else None
        if existing is None:
            run = client.create_run(experiment_id, run_name=key.name if key else run_name)
            logged: dict[str, str] = {}
        else:
            run = existing
            client.update_run(run.info.run_id, status="RUNNING")
            logged = run.data.params
        # params are write-once in MLflow: send only those the run does not have yet
        new_params = [Param(k, v) for k, v in flatten_params(params).items() if k not in logged]
        tag_list = [RunTag(k, v[:MAX_TAG_VALUE]) for k, v in all_tags.items()]
        for i in range(0, max(len(new_params), len(tag_list)), MAX_BATCH_PARAMS_TAGS):
            client.log_batch(run.info.run_id, params=new_params[i:i + MAX_BATCH_PARAMS_TAGS],
                             tags=tag_list[i:i + MAX_BATCH_PARAMS_TAGS])
        self._client, self.run_id = client, run.info.run_id
        # the training set as a dataset input (the job has just read the CSV; MLflow keeps one
        # copy of a dataset and of a run's input, so a resumed run adds nothing)
        datasets = [dataset_input(dataset_entity(path, sha, dataset_name(key, path, context)),
                                  context)
                    for context, path, sha in training_set_files(params)
                    if sha is not None and Path(path).is_file()]
        if datasets:
            client.log_inputs(self.run_id, datasets=datasets)
        self._resumed = existing is not None

    def _start_monitor(self) -> None:
        """MLflow's system metrics monitor on this run, unless turned off or without psutil;
        the live settings stay in the environment until it stops (entered here, outside
        any one call's settings, so that stopping it restores the process's own)."""
        setting = os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "").strip().lower()
        if setting in ("false", "0"):
            return
        try:
            from mlflow.system_metrics.system_metrics_monitor import (
                SystemMetricsMonitor,
            )
        except ImportError:  # no psutil: no system metrics
            return
        logging.getLogger("mlflow.system_metrics").setLevel(logging.CRITICAL)
        self._env = contextlib.ExitStack()
        self._env.enter_context(mlflow_env(_LIVE_ENV))
        self._guard(self._new_monitor, SystemMetricsMonitor)

    def _new_monitor(self, monitor_class: Any) -> None:
        self._monitor = monitor_class(
            self.run_id, sampling_interval=MONITOR_SAMPLING_S,
            samples_before_logging=MONITOR_SAMPLES, resume_logging=self._resumed,
            tracking_uri=self.uri)
        self._monitor.start()

    def _stop_monitor(self) -> None:
        """Stop the sampling thread (it wakes at once, makes at most one more request) and
        send its last points; then MLflow's HTTP settings are the process's own again.
        Called outside any one call's settings (which would restore the live ones)."""
        monitor, self._monitor = self._monitor, None
        try:
            if monitor is not None:
                with contextlib.suppress(Exception):  # it logs its own errors (silenced)
                    monitor.finish()
        finally:
            env, self._env = self._env, None
            if env is not None:
                env.close()

    def _log_metrics(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, int(epoch)) for k, v in finite_metrics(metrics).items()]
        for i in range(0, len(batch), MAX_BATCH_METRICS):
            self._client.log_batch(self.run_id, metrics=batch[i:i + MAX_BATCH_METRICS])

    def _log_cost(self, cost: Mapping[str, Any] | None) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in cost_metrics(cost).items()]
        tags = [RunTag(k, v) for k, v in cost_tags(cost).items()]
        if metrics or tags:
            self._client.log_batch(self.run_id, metrics=metrics, tags=tags)

    def _end(self, status: str) -> None:
        self._client.set_tag(self.run_id, STATUS_TAG, status)
        self._client.set_terminated(self.run_id, MLFLOW_STATUS.get(status, "FAILED"))
