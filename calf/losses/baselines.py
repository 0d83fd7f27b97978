"""Baseline losses: the authors' definitions and MONAI's standard ones
(README.md, "Losses").

Every loss takes ``(B, 1, *spatial)`` logits and a {0, 1} target, checks both (the target's
values unless built with ``check_target=False``), and is computed in float32 with autocast
disabled.

Empty masks, authors' definitions: Dice, IoU and Tversky are averaged over images without
numerator smoothing, so an image with an empty mask scores 0 whatever the prediction and
adds a constant 1 to its loss term (no gradient towards an empty prediction); this is why
they collapse on DeepLabV3. The ``monai_*`` losses smooth numerator and denominator
(1e-5), which changes little at realistic logits: on a 256 x 256 empty mask with logits
-10, ``monai_dice`` is 0.999997, and at +10 its gradient is below 1e-12 (measured in
tests/unit/test_losses_empty_mask.py against the README's table).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from calf.losses._inputs import no_autocast, prepare

# the authors' denominator smoothing of Dice, IoU, Tversky (and Combo's Dice)
SMOOTH = 1e-5


class BinaryLoss(nn.Module):
    """Base: input checks, float32, no autocast; subclasses implement ``compute(x, y)``."""

    definition = "authors"

    def __init__(self, check_target: bool = True):
        super().__init__()
        # False only for targets known to be {0, 1} (a slice store's masks, checked once)
        self.check_target = bool(check_target)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with no_autocast(logits.device):
            x, y = prepare(logits, target, check_target=self.check_target)
            return self.compute(x, y)

    def compute(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _per_image_sums(x: torch.Tensor, y: torch.Tensor):
    """Soft TP, FP, FN per image (summed over every non-batch dimension)."""
    p = torch.sigmoid(x)
    dims = tuple(range(1, x.ndim))
    tp = (p * y).sum(dim=dims)
    fp = (p * (1 - y)).sum(dim=dims)
    fn = ((1 - p) * y).sum(dim=dims)
    return tp, fp, fn


class BCELoss(BinaryLoss):
    """BCE with logits, mean over pixels."""

    def compute(self, x, y):
        return F.binary_cross_entropy_with_logits(x, y)


class DiceLoss(BinaryLoss):
    """1 - mean over images of 2 sum(p y) / (sum p + sum y + smooth); no numerator smoothing."""

    def __init__(self, smooth: float = SMOOTH, check_target: bool = True):
        super().__init__(check_target)
        self.smooth = smooth

    def compute(self, x, y):
        tp, fp, fn = _per_image_sums(x, y)
        return 1 - (2 * tp / (2 * tp + fp + fn + self.smooth)).mean()


class IoULoss(BinaryLoss):
    """1 - mean over images of sum(p y) / (sum p + sum y - sum(p y) + smooth)."""

    def __init__(self, smooth: float = SMOOTH, check_target: bool = True):
        super().__init__(check_target)
        self.smooth = smooth

    def compute(self, x, y):
        tp, fp, fn = _per_image_sums(x, y)
        return 1 - (tp / (tp + fp + fn + self.smooth)).mean()


class TverskyLoss(BinaryLoss):
    """1 - mean over images of TP / (TP + alpha FP + beta FN + smooth); alpha 0.7, beta 0.3."""

    def __init__(
        self, alpha: float = 0.7, beta: float = 0.3, smooth: float = SMOOTH,
        check_target: bool = True,
    ):
        super().__init__(check_target)
        self.alpha, self.beta, self.smooth = alpha, beta, smooth

    def compute(self, x, y):
        tp, fp, fn = _per_image_sums(x, y)
        return 1 - (tp / (tp + self.alpha * fp + self.beta * fn + self.smooth)).mean()


class FocalLoss(BinaryLoss):
    """Focal loss as the authors ran it: p clamped to [1e-6, 1 - 1e-6],
    ``alpha (1-p)^gamma BCE`` on tumour pixels, ``(1-alpha) p^gamma BCE`` on background,
    mean over pixels."""

    def __init__(
        self, alpha: float = 0.25, gamma: float = 2.0, eps: float = 1e-6, check_target: bool = True
    ):
        super().__init__(check_target)
        self.alpha, self.gamma, self.eps = alpha, gamma, eps

    def compute(self, x, y):
        # probability of the true class, clamped like the authors' probabilities
        q = torch.sigmoid(torch.where(y > 0.5, x, -x)).clamp(self.eps, 1 - self.eps)
        alpha_t = self.alpha * y + (1 - self.alpha) * (1 - y)
        return (alpha_t * (1 - q) ** self.gamma * -torch.log(q)).mean()


class ComboLoss(BinaryLoss):
    """BCE with logits + the authors' Dice loss."""

    def __init__(self, smooth: float = SMOOTH, check_target: bool = True):
        super().__init__(check_target)
        self.bce = BCELoss()
        self.dice = DiceLoss(smooth)

    def compute(self, x, y):
        return self.bce.compute(x, y) + self.dice.compute(x, y)


class WrappedLoss(BinaryLoss):
    """Any loss module called as ``inner(logits, target)``, with the suite's input checks
    and float32 computation around it (MONAI's losses, or one named by import path)."""

    definition = "monai"

    def __init__(self, inner: nn.Module, definition: str = "monai", check_target: bool = True):
        super().__init__(check_target)
        self.inner = inner
        self.definition = definition

    def compute(self, x, y):
        return self.inner(x, y)


def monai_loss(class_name: str, **defaults):
    """Factory for a MONAI loss taking logits (sigmoid inside), kwargs over ``defaults``."""

    def build(check_target: bool = True, **kwargs) -> WrappedLoss:
        from calf._lazy import import_monai

        import_monai()
        import monai.losses

        cls = getattr(monai.losses, class_name)
        inner = cls(**{**defaults, **kwargs})
        return WrappedLoss(inner, definition="monai", check_target=check_target)

    build.__doc__ = f"monai.losses.{class_name} on logits; defaults {defaults}"
    return build
