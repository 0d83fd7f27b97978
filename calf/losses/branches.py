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
    return torch.log(q)


# Derivative of T(q) * dq/ds for q = sigmoid(s): T'(q) q (1 - q), simplified per branch.
def _slope(branch: str, q: torch.Tensor) -> torch.Tensor:
    if branch == "fisher":  # 1/(1-q^2) * q(1-q) = q/(1+q)
        return q / (1 + q)
    if branch == "logit":  # 1/(q(1-q)) * q(1-q) = 1
        return torch.ones_like(q)
    if branch == "arcsine":  # 1/(2 sqrt(q(1-q))) * q(1-q) = sqrt(q(1-q))/2
        return (q * (1 - q)).sqrt_().mul_(0.5)
    if branch == "log10":
        return torch.sub(1, q).div_(_LN10)
    return torch.sub(1, q)  # ln


_CHUNK = 1 << 16  # elements per chunk: a few such tensors stay in cache


class _TransformedMean(torch.autograd.Function):
    """-mean(T(q)) over all elements, in cache-sized chunks with an analytic gradient.

    The same value as the composite ``-T(clamp(sigmoid(where(y, x, -x)))).mean()`` but
    reading the logits and target once per pass instead of once per elementwise op:
    the CPU cost is memory traffic, and the composite form makes about ten passes.
    The gradient is zero where the clamp is active, as torch.clamp's is.
    """

    @staticmethod
    def forward(ctx, x, y, branch):
        xf, yf = x.reshape(-1), y.reshape(-1)
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        for xs, ys in zip(xf.split(_CHUNK), yf.split(_CHUNK)):
            q = torch.where(ys > 0.5, xs, -xs).sigmoid_().clamp_(PROB_EPS, 1 - PROB_EPS)
            total += _transform(branch, q).sum(dtype=torch.float64)
        ctx.save_for_backward(x, y)
        ctx.branch = branch
        return (-total / max(xf.numel(), 1)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        x, y = ctx.saved_tensors
        xf, yf = x.reshape(-1), y.reshape(-1)
        grad = torch.empty_like(xf)
        scale = -grad_out / max(xf.numel(), 1)
        for xs, ys, gs in zip(xf.split(_CHUNK), yf.split(_CHUNK), grad.split(_CHUNK)):
            pos = ys > 0.5
            q = torch.where(pos, xs, -xs).sigmoid_()
            d = _slope(ctx.branch, q)
            d = d.masked_fill_((q < PROB_EPS) | (q > 1 - PROB_EPS), 0).mul_(scale)
            torch.where(pos, d, -d, out=gs)
        return grad.view_as(x), None, None


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
    if branch not in BRANCHES:
        raise ValueError(f"unknown CALF branch {branch!r}; known: {', '.join(BRANCHES)}")
    if len(dims) == x.ndim:
        return _TransformedMean.apply(x.contiguous(), y.contiguous(), branch)
    q = torch.sigmoid(torch.where(y > 0.5, x, -x)).clamp(PROB_EPS, 1 - PROB_EPS)
    return -_transform(branch, q).mean(dim=dims)
