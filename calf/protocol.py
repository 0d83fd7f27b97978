"""The protocol switches: each place where the suite may depart from the authors, by name.

Every training run records its switches in run.json ``params["protocol"]`` (and so in its
MLflow params, ``protocol.<switch>``); ``protocol_summary`` turns the records of a study's
runs into one caption sentence that says, for each switch, what ran and whose choice it is.
Imports no torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Switch:
    """One switch: its caption label, the authors' value and the suite's default."""

    label: str
    authors: Any
    suite: Any


SWITCHES: dict[str, Switch] = {
    "scaling": Switch("intensity scaling per", "slice", "volume"),
    "area": Switch("CALF areas", "contour", "pixels"),
    "scope": Switch("CALF scope", "batch", "dataset"),
    "precision": Switch("precision", "fp32", "bf16"),
    "deterministic": Switch("deterministic cuDNN", True, False),
    "init": Switch("initialisation", "pytorch", "monai"),
    # the suite keeps the authors' stride; a config may choose the DeepLabV3 paper's 16 or 8
    "output_stride": Switch("DeepLabV3 output stride", 32, 32),
}

# the series the authors' code read per dataset (README.md, "The authors' protocol and the
# suite's switches"): their BraTS "T1" was the post-contrast t1c, their LGG-1p19qDeletion
# set one series (in a folder named T2)
AUTHORS_MODALITIES: dict[str, tuple[str, ...]] = {
    "upenn_gbm": ("t1", "t2", "flair"),
    "ucsf_pdgm": ("t1", "t2", "flair"),
    "brats": ("t1c", "t2", "flair"),
    "lgg_1p19q": ("t2",),
}

# the initialisation each registered network gets unless its kwargs name one
DEFAULT_INIT = {"unet": "pytorch", "deeplabv3": "pytorch", "fpn": "monai"}
INITS = ("pytorch", "monai")
PRECISIONS = ("bf16", "fp32")


def calf_switches(loss: str, loss_kwargs: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(scope, area) of a CALF loss (``calf``, ``calf_region``); (None, None) for others."""
    if loss == "calf":
        return loss_kwargs.get("scope", "batch"), loss_kwargs.get("area", "pixels")
    if loss == "calf_region":  # S and K of each region across the batch
        return "batch", loss_kwargs.get("area", "pixels")
    return None, None


def run_protocol(
    stores: Iterable[Mapping[str, Any]],
    model: str,
    model_kwargs: Mapping[str, Any],
    loss: str,
    loss_kwargs: Mapping[str, Any],
    precision: str,
    deterministic: bool,
) -> dict[str, Any]:
    """A run's switches (run.json ``params["protocol"]``).

    ``stores`` are the stores' ``store.json`` settings (``dataset``, ``scaling``,
    ``modalities``). ``scaling`` is one value, or ``mixed`` when pooled stores differ;
    ``modalities`` maps each dataset to its series; ``area`` and ``scope`` are None for a
    loss that is not CALF, ``init`` None for a network that is not the suite's,
    ``output_stride`` None for a network other than ``deeplabv3``.
    """
    stores = list(stores)
    scalings = sorted({str(s.get("scaling")) for s in stores})
    scope, area = calf_switches(loss, loss_kwargs)
    return {
        "scaling": scalings[0] if len(scalings) == 1 else "mixed",
        "modalities": {str(s.get("dataset")): ",".join(s.get("modalities") or []) for s in stores},
        "area": area,
        "scope": scope,
        "precision": precision,
        "deterministic": bool(deterministic),
        "init": model_kwargs.get("init", DEFAULT_INIT.get(model)),
        "output_stride": model_kwargs.get("output_stride", 32) if model == "deeplabv3" else None,
    }


def _whose(name: str, value: Any) -> str:
    switch = SWITCHES[name]
    if value == switch.authors:
        return "authors'"
    return "suite's" if value == switch.suite else "other"


def _word(name: str, value: Any) -> str:
    if name == "deterministic":
        return "on" if value else "off"
    return str(value)


def protocol_summary(records: Iterable[Mapping[str, Any]]) -> str:
    """One caption sentence naming every switch the runs used and whose choice each is.

    ``records`` are run.json objects (or their ``params``) or metrics companion JSONs
    (``protocol`` and ``execution`` at the top level). A switch that takes several
    values across the runs lists each; one no run records (e.g. CALF areas in a study
    without CALF) is left out; records without ``protocol`` (older runs) say so.
    """
    protocols, unrecorded = [], 0
    executed: set[str] = set()
    for record in records:
        params = record.get("params", record)
        protocol = params.get("protocol") if isinstance(params, Mapping) else None
        if not isinstance(protocol, Mapping):
            unrecorded += 1
            continue
        protocols.append(protocol)
        ran = (record.get("execution") or {}).get("precision")
        if ran and ran != protocol.get("precision"):
            executed.add(ran)
    if not protocols:
        return "Protocol switches: not recorded by these runs."
    parts = []
    for name, switch in SWITCHES.items():
        values = []
        for p in protocols:
            value = p.get(name)
            if value is not None and value not in values:
                values.append(value)
        if not values:
            continue
        text = " and ".join(f"{_word(name, v)} ({_whose(name, v)})" for v in values)
        if name == "precision" and executed:
            text += f", run as {', '.join(sorted(executed))} where the device lacked it"
        parts.append(f"{switch.label} {text}")
    parts += _modalities(protocols)
    sentence = "Protocol switches: " + "; ".join(parts) + "."
    if unrecorded:
        sentence += f" {unrecorded} run(s) recorded no switches."
    return sentence


def _modalities(protocols: list[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, list[str]] = {}
    for p in protocols:
        for dataset, series in (p.get("modalities") or {}).items():
            seen.setdefault(dataset, [])
            if series not in seen[dataset]:
                seen[dataset].append(series)
    out = []
    for dataset, values in seen.items():
        for series in values:
            authors = AUTHORS_MODALITIES.get(dataset)
            whose = ("authors'" if tuple(series.split(",")) == authors else "not the authors'"
                     ) if authors else "no authors' set"
            out.append(f"{dataset} series {series.replace(',', ', ')} ({whose})")
    return out
