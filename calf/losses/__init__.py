"""Losses of the CALF benchmark: CALF, its region variant, and the baselines.

Conventions (MONAI's): an ``nn.Module`` per loss, called as ``loss(logits, target)`` with
``(B, 1, *spatial)`` logits (2-D or 3-D) and a {0, 1} target of the same shape, returning
a float32 scalar computed with autocast disabled. Targets other than 0/1 and mismatched
shapes raise ``ValueError``; NaN logits give a NaN loss; +-inf logits give finite values.
"""

from calf.losses.branches import BRANCHES, branch_loss, select_branch
from calf.losses.calf_loss import CALFLoss, CALFRegionLoss
from calf.losses.registry import LOSSES, build_loss, register_loss

__all__ = [
    "BRANCHES",
    "LOSSES",
    "CALFLoss",
    "CALFRegionLoss",
    "branch_loss",
    "build_loss",
    "register_loss",
    "select_branch",
]
