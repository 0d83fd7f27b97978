"""What a run is built from besides its data and network: the loss (with the run's
imbalance record), the optimizer, the speed switches and the DataLoader's worker count."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from calf.errors import CalfError
from calf.train.config import TrainConfig


def _stat(value: float | None) -> float:
    return math.nan if value is None else float(value)


def build_run_loss(config: TrainConfig, n_slices: int) -> tuple[torch.nn.Module, dict | None]:
    """The loss module and the run's imbalance record (run.json ``imbalance``).

    CALF in dataset scope takes S and K from ``--profile`` (whose area definition must be
    the loss's); a profile given with any loss must describe this training set (same
    number of slices).
    """
    from calf.losses import CALFLoss, CALFRegionLoss, build_loss
    from calf.profile import read_profile

    kwargs = dict(config.loss_kwargs)
    profile = read_profile(config.profile, name=f"--profile {config.profile}") if (
        config.profile) else None
    if profile is not None and profile["n_slices"] != n_slices:
        raise CalfError(
            f"--profile {config.profile}: n_slices is {profile['n_slices']} but the training "
            f"set {config.train_slices} has {n_slices} slices; profile this training set"
        )
    dataset_scope = config.loss == "calf" and kwargs.get("scope", "batch") == "dataset"
    if dataset_scope and profile is not None:
        given = [k for k in ("skewness", "kurtosis") if k in kwargs]
        if given:
            raise CalfError(f"--loss-kwargs: {given[0]} given together with --profile; give one")
        area = kwargs.get("area", "pixels")
        if profile["area_definition"] != area:
            raise CalfError(
                f"--profile {config.profile}: area_definition is {profile['area_definition']!r} "
                f"but the loss uses area {area!r}; set it in --loss-kwargs or use a matching "
                "profile"
            )
        kwargs["skewness"] = _stat(profile["skewness"])
        kwargs["kurtosis"] = _stat(profile["kurtosis"])
    elif dataset_scope and not {"skewness", "kurtosis"} <= set(kwargs):
        raise CalfError(
            "--loss calf with scope 'dataset' needs --profile (the training set's imbalance "
            "profile JSON, from 'calf profile')"
        )
    # the slices come from slice stores, whose masks were checked to be {0, 1} once, when
    # written (SliceStore refuses a store without that record): no check on every step
    kwargs.setdefault("check_target", False)
    try:
        loss = build_loss(config.loss, **kwargs)
    except ValueError as err:
        raise CalfError(f"--loss {config.loss}: {err}") from None
    if not isinstance(loss, (CALFLoss, CALFRegionLoss)):  # no imbalance statistic
        return loss, None
    scope = "region" if isinstance(loss, CALFRegionLoss) else loss.scope
    if scope == "dataset":
        s, k, branch = loss.last_skewness, loss.last_kurtosis, loss.fixed_branch
    else:  # the branch varies by step; the profile's statistic, if given, for reference
        s = _stat(profile["skewness"]) if profile else math.nan
        k = _stat(profile["kurtosis"]) if profile else math.nan
        branch = None
    return loss, {
        "scope": scope,
        "skewness": None if math.isnan(s) else s,
        "kurtosis": None if math.isnan(k) else k,
        "branch": branch,
        "profile": None if config.profile is None else str(Path(config.profile).resolve()),
    }


def default_workers(device: torch.device) -> int:
    if device.type != "cuda":
        return 0  # CPU training: workers would compete with the model for the same cores
    return max(1, min(8, len(os.sched_getaffinity(0)) - 1))


def speed_switches(device: torch.device, deterministic: bool,
                   compile: bool) -> tuple[dict[str, Any], list[str]]:
    """The speed switches a run executes with (run.json ``execution``), and a line for each
    one asked for that does not apply here.

    On CUDA the suite's protocol (``deterministic`` off) uses Adam's fused kernel; the
    authors' (``deterministic``) keeps torch's default implementation. ``compile``
    (``torch.compile``) applies on CUDA outside ``deterministic`` only.
    """
    cuda = device.type == "cuda"
    compiled = compile and cuda and not deterministic
    notes = []
    if compile and not cuda:
        notes.append("--compile: running eagerly (torch.compile is used on CUDA only)")
    elif compile and not compiled:
        notes.append("--compile: running eagerly under --deterministic (the authors' protocol)")
    impl = "fused" if cuda and not deterministic else "default"
    return {"optimizer_impl": impl, "compile": compiled}, notes


def make_optimizer(model: torch.nn.Module, lr: float, impl: str) -> torch.optim.Adam:
    """Adam without weight decay; ``impl`` ``fused`` (one kernel for all parameters) or
    ``default`` (torch's choice: foreach on CUDA, a loop on the CPU). Their states load
    into each other, so a resume may change it."""
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=0.0,
                            fused=True if impl == "fused" else None)
