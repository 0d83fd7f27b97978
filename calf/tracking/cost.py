"""What a run cost (run.json ``cost``) as MLflow *system metrics*: MLflow's ``system/`` prefix,
at step 0, and what the figures were measured on as tags. Megabytes are 10^6 bytes, as in
MLflow's own memory metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from calf.tracking.client import MAX_TAG_VALUE, finite_metrics

SYSTEM_PREFIX = "system/"  # the prefix of mlflow.system_metrics
COST_METRICS = ("wall_s", "device_s", "train_s", "cpu_s", "epochs", "device_s_per_epoch",
                "energy_j", "attempts")


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
    return system_metrics(values)


def system_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite ``values`` with MLflow's ``system/`` prefix."""
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
