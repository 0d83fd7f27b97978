"""Display names and the canonical order of the suite's losses, models and metrics.

One table for the statistics, the comparison tables and the figures: baselines in the
paper's order, then CALF (batch scope, then dataset scope) and its region-specific variant;
names not listed here (a user's new loss or model) are shown as they are, after the known
ones, sorted.
"""

from __future__ import annotations

from collections.abc import Iterable

LOSS_NAMES = {
    "bce": "BCE",
    "dice": "Dice",
    "iou": "IoU",
    "tversky": "Tversky",
    "focal": "Focal",
    "combo": "Combo",
    "calf": "CALF",
    "calf_dataset": "CALF (dataset scope)",
    "calf_region": "Region-specific",
}
MODEL_NAMES = {"unet": "U-Net", "deeplabv3": "DeepLabV3", "fpn": "FPN"}
METRIC_NAMES = {
    "dice": "Dice",
    "iou": "IoU",
    "hd95": "HD95",
    "nsd": "NSD",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "precision": "Precision",
    "lesion_dice": "Lesion-wise Dice",
    "lesion_hd95": "Lesion-wise HD95",
    "sq_dsc": "SQ Dice",
    "pq_dsc": "PQ Dice",
    "sq_hd95": "SQ HD95",
}
# CALF in batch scope (the authors' code), in dataset scope (the paper's wording), by region
CALF_LOSSES = ("calf", "calf_dataset", "calf_region")


def display(name: str, names: dict[str, str]) -> str:
    """The display name of a model, loss or metric; unknown names as they are."""
    return names.get(name, name)


def ordered(names: Iterable[str], known: Iterable[str]) -> list[str]:
    """``names`` in the order of ``known``, then the others sorted."""
    known = list(known)
    names = set(names)
    return [n for n in known if n in names] + sorted(names - set(known))
