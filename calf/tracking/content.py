"""What a finished run becomes in MLflow (``calf mlflow-sync``): its tags, params, per-epoch
and final metrics, and what it cost."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from calf import __version__
from calf.evaluate.metrics import METRICS
from calf.layout import RunKey
from calf.tracking.client import MAX_TAG_VALUE, STATUS_TAG, finite_metrics, flatten_params, key_tags
from calf.tracking.cost import cost_metrics, cost_tags, system_metrics
from calf.train.rundir import BRANCH_PREFIX

if TYPE_CHECKING:
    import pandas as pd

    from calf.tracking.inputs import RunInputs

COST_FALLBACK = "run.json seconds and epochs.csv seconds (run.json has no cost record)"


def millis(value: Any) -> int | None:
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


def branch_steps(epochs: pd.DataFrame) -> dict[str, int]:
    """The training steps on each CALF branch (epochs.csv ``branch_*``), those above 0."""
    steps = {c[len(BRANCH_PREFIX):]: int(epochs[c].fillna(0).sum())
             for c in epochs.columns if c.startswith(BRANCH_PREFIX)}
    return {b: n for b, n in steps.items() if n > 0}


def run_tags(inputs: RunInputs, parent_id: str) -> dict[str, str]:
    """The child run's tags (without the fingerprint, which is set last)."""
    record = inputs.record
    imbalance = record.get("imbalance") or {}
    tags: dict[str, Any] = {
        **key_tags(inputs.key),
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
    used = branch_steps(inputs.epochs)
    if used:
        tags["calf.branch_steps"] = " ".join(f"{b}:{n}" for b, n in sorted(used.items()))
    branch = imbalance.get("branch")
    if branch is None and used:  # batch scope: the branch chosen on most steps
        branch = max(sorted(used), key=used.get)
    tags["calf.branch"] = branch
    return {k: str(v)[:MAX_TAG_VALUE] for k, v in tags.items() if v is not None}


def run_params(inputs: RunInputs) -> dict[str, str]:
    """run.json ``params`` with the model's size and the device, flattened."""
    record = inputs.record
    extra = {k: record[k] for k in ("model_parameters", "device") if record.get(k) is not None}
    return flatten_params({**(record.get("params") or {}), **extra})


def epoch_metrics(inputs: RunInputs) -> list[tuple[str, float, int, int]]:
    """(name, value, timestamp ms, step = epoch) for every finite value of epochs.csv."""
    epochs = inputs.epochs
    start = millis(inputs.record.get("started")) or int(time.time() * 1000)
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
    return system_metrics(values), {"calf.cost_source": COST_FALLBACK}


def final_metrics(inputs: RunInputs) -> dict[str, float]:
    """Mean and median of each per-case metric over the cases, n_cases, train_seconds."""
    values: dict[str, Any] = {"train_seconds": inputs.record.get("seconds")}
    if inputs.cases is not None:
        values["n_cases"] = len(inputs.cases)
        for metric in (m for m in METRICS if m in inputs.cases.columns):
            values[f"{metric}_mean"] = inputs.cases[metric].mean()
            values[f"{metric}_median"] = inputs.cases[metric].median()
    return finite_metrics(values)
