"""Every loss of the benchmark under one name, and losses named by import path."""

from __future__ import annotations

from typing import Callable

from torch import nn

from calf._imports import constructor_parameters, import_object
from calf.losses import baselines
from calf.losses.calf_loss import CALFLoss, CALFRegionLoss

LOSSES: dict[str, Callable[..., nn.Module]] = {
    # CALF and its region-specific variant (README.md, "The method" and "Losses")
    "calf": CALFLoss,
    "calf_region": CALFRegionLoss,
    # the authors' baselines (README.md, "Losses")
    "bce": baselines.BCELoss,
    "dice": baselines.DiceLoss,
    "iou": baselines.IoULoss,
    "tversky": baselines.TverskyLoss,
    "focal": baselines.FocalLoss,
    "combo": baselines.ComboLoss,
    # the standard definitions, MONAI's losses on logits
    "monai_dice": baselines.monai_loss("DiceLoss", sigmoid=True),
    "monai_dicece": baselines.monai_loss("DiceCELoss", sigmoid=True),
    "monai_focal": baselines.monai_loss("FocalLoss", gamma=2.0, alpha=0.25),
    "monai_tversky": baselines.monai_loss("TverskyLoss", sigmoid=True, alpha=0.7, beta=0.3),
}


def register_loss(name: str, factory: Callable[..., nn.Module]) -> None:
    """Add a loss under ``name`` (for plugins and tests); names are unique."""
    if name in LOSSES:
        raise ValueError(f"loss name {name!r} is already registered")
    LOSSES[name] = factory


def _from_import_path(path: str, kwargs: dict) -> nn.Module:
    check_target = bool(kwargs.pop("check_target", True))  # the suite's check, not the loss's
    cls = import_object(path, "loss")
    if not callable(cls):
        raise ValueError(f"loss {path!r} is not a class or factory")
    # the suite's networks emit logits: a loss that can apply the sigmoid itself does so
    # unless the caller chose an activation
    names, _ = constructor_parameters(cls)
    activation_keys = {"sigmoid", "softmax", "other_act"}
    if "sigmoid" in names and not activation_keys & set(kwargs):
        kwargs = {"sigmoid": True, **kwargs}
    module = cls(**kwargs)
    if not callable(module):
        raise ValueError(f"loss {path!r} did not build a callable loss")
    return baselines.WrappedLoss(module, definition=f"import:{path}", check_target=check_target)


def build_loss(name: str, **kwargs) -> nn.Module:
    """Build a loss by registered name (see ``LOSSES``) or by import path.

    ``build_loss("calf", scope="dataset", skewness=1.8, kurtosis=2.4)``;
    ``build_loss("monai.losses.GeneralizedDiceLoss")`` (``sigmoid=True`` is added for losses
    that take it, since the suite's networks emit logits). Every loss takes
    ``check_target=False`` to skip the per-call check that the target holds only 0 and 1
    (for targets already known to be binary, such as a slice store's masks).
    """
    try:
        if name in LOSSES:
            return LOSSES[name](**kwargs)
        if "." in name:
            return _from_import_path(name, dict(kwargs))
    except TypeError as err:
        raise ValueError(f"loss {name!r}: {err}") from None
    known = ", ".join(sorted(LOSSES))
    raise ValueError(f"unknown loss {name!r}; known losses: {known}; or give an import path")
