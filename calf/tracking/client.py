"""What both MLflow writers (the live logger and the sync) share: the tags of a training run,
MLflow's limits, params and metrics as MLflow takes them, batched writes and the experiment
of a study."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from calf.errors import CalfError
from calf.layout import NATURAL, RunKey

# tags shared by the live logger and the sync
RUN_KEY_TAG = "calf.run_key"
KIND_TAG = "calf.kind"  # "study" (the parent run of a study) or "run" (one training run)
STATUS_TAG = "calf.status"  # run.json's status: complete, interrupted, failed, running

# limits of the MLflow REST API (mlflow.utils.validation)
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_BATCH_PARAMS_TAGS = 100
MAX_BATCH_METRICS = 1000

# MLflow run status for each run.json status
MLFLOW_STATUS = {"complete": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /:]")


def key_tags(key: RunKey) -> dict[str, str]:
    """A run's key and its fields as MLflow tags: ``calf.run_key``, ``calf.kind`` = run,
    ``calf.study``, ``calf.dataset``, ``calf.model``, ``calf.loss``, ``calf.fold``, and
    ``calf.ratio`` and ``calf.seed`` only in a run that has them (as the path spells them)."""
    tags = {RUN_KEY_TAG: key.key, KIND_TAG: "run", "calf.study": key.study,
            "calf.dataset": key.dataset, "calf.model": key.model, "calf.loss": key.loss,
            "calf.fold": str(key.fold)}
    if key.ratio != NATURAL:
        tags["calf.ratio"] = key.ratio
    if key.seed is not None:
        tags["calf.seed"] = str(key.seed)
    return tags


def run_key_of(path: str | Path) -> RunKey | None:
    """The key of a run folder whose trailing path follows the run layout; None otherwise."""
    try:
        return RunKey.from_path(Path(path).resolve())
    except CalfError:
        return None


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


def log_params_and_tags(client: Any, run_id: str, params: Mapping[str, str],
                        tags: Mapping[str, Any]) -> None:
    """Params and tags (values cut to MLflow's limit) in batches of MLflow's size."""
    from mlflow.entities import Param, RunTag

    param_list = [Param(k, v) for k, v in params.items()]
    tag_list = [RunTag(k, str(v)[:MAX_TAG_VALUE]) for k, v in tags.items()]
    for i in range(0, max(len(param_list), len(tag_list)), MAX_BATCH_PARAMS_TAGS):
        client.log_batch(run_id, params=param_list[i:i + MAX_BATCH_PARAMS_TAGS],
                         tags=tag_list[i:i + MAX_BATCH_PARAMS_TAGS])


def log_metrics(client: Any, run_id: str, metrics: Sequence[Any]) -> None:
    """``mlflow.entities.Metric`` values in batches of MLflow's size."""
    for i in range(0, len(metrics), MAX_BATCH_METRICS):
        client.log_batch(run_id, metrics=list(metrics[i:i + MAX_BATCH_METRICS]))


def study_experiment(client: Any, name: str, artifact_location: str | None = None,
                     where: str = "MLflow") -> str:
    """The id of the experiment called ``name``, created (with ``artifact_location``) when
    there is none; CalfError naming ``where`` when it is deleted."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException:  # another job created it first
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage != "active":
        raise CalfError(f"{where}: experiment {name!r} is deleted; "
                        "restore it or delete it for good first")
    return found.experiment_id
