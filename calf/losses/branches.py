"""CALF's decision rule and the six per-branch losses (README.md, "The method")."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from calf.losses._inputs import bounded

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


# clamp(sigmoid(x), eps, 1 - eps) == sigmoid(clamp(x, -L, L)) with L = logit(1 - eps): the
# clamp moves onto the logits, where every branch has a closed form in torch's fused ops
LOGIT_BOUND = math.log((1 - PROB_EPS) / PROB_EPS)
_LN2 = math.log(2.0)


def branch_loss(
    branch: str,
    x: torch.Tensor,
    y: torch.Tensor,
    dims: tuple[int, ...] | None = None,
    within_bound: bool = False,
) -> torch.Tensor:
    """Loss of one branch for float32 logits ``x`` and a {0, 1} float32 target ``y``.

    Reduced over ``dims`` (all dimensions when None). The transformed branches,
    ``-mean(y T(p) + (1 - y) T(1 - p))`` with ``p = clamp(sigmoid(x), 1e-7, 1 - 1e-7)``,
    are evaluated in closed form on the clamped logit ``s`` of the true class's
    probability q (``T(q)`` for a {0, 1} target): ``ln`` and ``log10`` as BCE with logits,
    ``logit`` as ``s``, ``fisher`` as ``softplus(s + ln 2) / 2``, ``arcsine`` as
    ``arctan(exp(s / 2))``. The values are the formula's; no ``1 - p`` loses digits, and the
    gradient is zero where the clamp holds, as the formula's is. ``within_bound=True``
    says that every logit lies strictly inside ``+-LOGIT_BOUND`` (the caller checked), so
    the clamp is the identity, with gradient 1, and is skipped: the same values, one pass
    less each way.
    """
    dims = tuple(range(x.ndim)) if dims is None else dims
    if branch not in BRANCHES:
        raise ValueError(f"unknown CALF branch {branch!r}; known: {', '.join(BRANCHES)}")
    if branch == "bce_dice":
        bce = F.binary_cross_entropy_with_logits(x, y, reduction="none").mean(dim=dims)
        p = torch.sigmoid(x)
        inter = (p * y).sum(dim=dims)
        dice = (2 * inter + DICE_SMOOTH) / (p.sum(dim=dims) + y.sum(dim=dims) + DICE_SMOOTH)
        return bce + 1 - dice
    xc = x if within_bound else bounded(x, LOGIT_BOUND)
    if branch in ("ln", "log10"):
        # -[y ln p + (1 - y) ln(1 - p)] is BCE with logits
        if len(dims) == x.ndim:
            bce = F.binary_cross_entropy_with_logits(xc, y)
        else:
            bce = F.binary_cross_entropy_with_logits(xc, y, reduction="none").mean(dim=dims)
        return bce / _LN10 if branch == "log10" else bce
    # logit of q, the probability of the true class: xc where y = 1, -xc where y = 0 (a
    # product, exact for a {0, 1} target, with a one-pass backward unlike torch.where's)
    s = xc * (2 * y - 1)
    if branch == "logit":  # ln(q / (1 - q)) = s
        t = s
    elif branch == "fisher":  # atanh(q) = 1/2 ln(1 + 2 e^s)
        t = 0.5 * F.softplus(s + _LN2)
    else:  # arcsine: arcsin(sqrt(q)) = arctan(e^(s/2))
        t = torch.atan(torch.exp(0.5 * s))
    return -t.mean(dim=dims)
