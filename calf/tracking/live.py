"""Live, best-effort MLflow logging from a training job (``LiveLogger``).

``LiveLogger`` sends a training job's parameters and per-epoch metrics to the tracking server
that ``MLFLOW_TRACKING_URI`` names, while the job runs. The run folder's files stay the
source of truth; the live view is a convenience, so the logger must never fail or slow down
training: it only talks to http(s) servers (many jobs writing one SQLite file fail with
"database is locked"), every request has a short timeout and no retries, and on the first
error it prints one warning line to stderr and turns itself off. ``mlflow`` is imported only
when a server is named, so a job without one pays nothing.

What the run cost goes in as system metrics (``calf.tracking.cost``), the training and
validation sets as dataset inputs (``calf.tracking.datasets``). While a live run is open,
MLflow's own system metrics monitor (``mlflow.system_metrics``: CPU, memory, disk, network
and, with ``pynvml``, GPU utilisation, memory and power) samples the machine in a background
thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from calf.layout import RunKey
from calf.tracking.client import (
    KIND_TAG,
    MLFLOW_STATUS,
    RUN_KEY_TAG,
    STATUS_TAG,
    finite_metrics,
    flatten_params,
    is_server_uri,
    key_tags,
    log_metrics,
    log_params_and_tags,
    mlflow_env,
    run_key_of,
    study_experiment,
)
from calf.tracking.cost import cost_metrics, cost_tags
from calf.tracking.datasets import dataset_entity, dataset_input, dataset_name, training_set_files

# the live logger's budget per request: one try, a few seconds; and no "View run" lines
# printed to the job's stdout
LIVE_TIMEOUT_S = 3
_LIVE_ENV = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": str(LIVE_TIMEOUT_S),
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}

# MLflow's system metrics monitor in a live run: a sample every 15 s, one point a minute (the
# mean of 4 samples), a few hundred points for a day-long run. MLflow's settings
# MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL and MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING
# override these; MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false turns the monitor off.
MONITOR_SAMPLING_S = 15.0
MONITOR_SAMPLES = 4


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
        from mlflow.tracking import MlflowClient

        run_dir = tags.get("run_dir")
        key = run_key_of(run_dir) if run_dir else None
        client = MlflowClient(tracking_uri=self.uri)
        experiment = key.study if key else os.environ.get("MLFLOW_EXPERIMENT_NAME") or "calf"
        experiment_id = study_experiment(client, experiment, where=str(self.uri))
        existing = _run_with_key(client, experiment_id, key) if key else None
        if existing is None:
            run = client.create_run(experiment_id, run_name=key.name if key else run_name)
            logged: dict[str, str] = {}
        else:
            run = existing
            client.update_run(run.info.run_id, status="RUNNING")
            logged = run.data.params
        # params are write-once in MLflow: send only those the run does not have yet
        new_params = {k: v for k, v in flatten_params(params).items() if k not in logged}
        log_params_and_tags(client, run.info.run_id, new_params, _start_tags(key, tags))
        self._client, self.run_id = client, run.info.run_id
        self._log_training_sets(key, params)
        self._resumed = existing is not None

    def _log_training_sets(self, key: RunKey | None, params: Mapping[str, Any]) -> None:
        """The training set as a dataset input (the job has just read the CSV; MLflow keeps
        one copy of a dataset and of a run's input, so a resumed run adds nothing)."""
        datasets = [dataset_input(dataset_entity(path, sha, dataset_name(key, path, context)),
                                  context)
                    for context, path, sha in training_set_files(params)
                    if sha is not None and Path(path).is_file()]
        if datasets:
            self._client.log_inputs(self.run_id, datasets=datasets)

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
        log_metrics(self._client, self.run_id,
                    [Metric(k, v, now, int(epoch)) for k, v in finite_metrics(metrics).items()])

    def _log_cost(self, cost: Mapping[str, Any] | None) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in cost_metrics(cost).items()]
        tags = [RunTag(k, v) for k, v in cost_tags(cost).items()]
        if metrics or tags:  # one request: a few metrics and tags, within MLflow's batch
            self._client.log_batch(self.run_id, metrics=metrics, tags=tags)

    def _end(self, status: str) -> None:
        self._client.set_tag(self.run_id, STATUS_TAG, status)
        self._client.set_terminated(self.run_id, MLFLOW_STATUS.get(status, "FAILED"))


def _start_tags(key: RunKey | None, tags: Mapping[str, str]) -> dict[str, str]:
    """The tags a live run starts with: the job's, the run's key, and running status."""
    start = {**{str(k): str(v) for k, v in tags.items()}, KIND_TAG: "run",
             STATUS_TAG: "running", "calf.live": "true"}
    run_dir = tags.get("run_dir")
    if run_dir:
        start["calf.run_dir"] = str(Path(run_dir).resolve())
    if key:
        start.update(key_tags(key))
    return start


def _run_with_key(client: Any, experiment_id: str, key: RunKey) -> Any:
    """The oldest run of the experiment tagged with ``key``, or None."""
    runs = client.search_runs([experiment_id], f"tags.`{RUN_KEY_TAG}` = '{key.key}'",
                              order_by=["attributes.start_time ASC"], max_results=1)
    return runs[0] if runs else None
