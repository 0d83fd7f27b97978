"""CALF's decision rule and the six per-branch losses (SPEC.md section 2)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BRANCHES = ("fisher", "logit", "arcsine", "log10", "ln", "bce_dice")
PROB_EPS = 1e-7  # clamp of the transformed branches
DICE_SMOOTH = 1e-7  # smoothing of the bce_dice branch
_LN10 = math.log(10.0)


def select_branch(skewness: float, kurtosis: float) -> str:
    """The branch for skewness S and excess kurtosis K, rules checked in the paper's order.

    NaN (an undefined statistic) falls through to ``bce_dice``.
    """
    s, k = float(skewness), float(kurtosis)
    if s <= -1:
        return "fisher"
    if -1 < s <= -0.5:
        return "logit"
    if -0.5 < s < 0:
        return "arcsine"
    if s >= 1:
        return "log10"
    if 0.5 <= s < 1:
        return "ln"
    if 0 < s < 0.5 and k < 0:
        return "log10"
    return "bce_dice"


def _transform(branch: str, q: torch.Tensor) -> torch.Tensor:
    if branch == "fisher":
        return torch.atanh(q)
    if branch == "logit":
        return torch.logit(q)
    if branch == "arcsine":
        return torch.asin(torch.sqrt(q))
    if branch == "log10":
        return torch.log10(q)
    if branch == "ln":
        return torch.log(q)
    raise ValueError(f"unknown CALF branch {branch!r}; known: {', '.join(BRANCHES)}")


def branch_loss(
    branch: str, x: torch.Tensor, y: torch.Tensor, dims: tuple[int, ...] | None = None
) -> torch.Tensor:
    """Loss of one branch for float32 logits ``x`` and a {0, 1} float32 target ``y``.

    Reduced over ``dims`` (all dimensions when None). For the transformed branches,
    ``-mean(y T(p) + (1 - y) T(1 - p))`` with ``p = clamp(sigmoid(x), 1e-7, 1 - 1e-7)``
    is evaluated as ``-mean(T(q))`` with ``q = clamp(sigmoid(+-x))`` (the probability given
    to the true class): equal for a {0, 1} target, one transform instead of two, and
    ``sigmoid(-x)`` is exact where ``1 - sigmoid(x)`` loses digits.
    """
    dims = tuple(range(x.ndim)) if dims is None else dims
    if branch == "bce_dice":
        bce = F.binary_cross_entropy_with_logits(x, y, reduction="none").mean(dim=dims)
        p = torch.sigmoid(x)
        inter = (p * y).sum(dim=dims)
        dice = (2 * inter + DICE_SMOOTH) / (p.sum(dim=dims) + y.sum(dim=dims) + DICE_SMOOTH)
        return bce + 1 - dice
    q = torch.sigmoid(torch.where(y > 0.5, x, -x)).clamp(PROB_EPS, 1 - PROB_EPS)
    return -_transform(branch, q).mean(dim=dims)
