"""CALF and its region-specific variant (SPEC.md sections 2 and 3)."""

from __future__ import annotations

import math
from collections import Counter

import torch
from torch import nn

from calf.imbalance import AREA_DEFINITIONS, contour_areas, moments
from calf.losses._inputs import (
    bad_target_count,
    check_shapes,
    no_autocast,
    prepare,
    raise_bad_target,
)
from calf.losses.branches import branch_loss, select_branch

SCOPES = ("batch", "dataset")


class CALFLoss(nn.Module):
    """Conditionally adaptive loss: one transformed BCE chosen by the skew of tumour areas.

    Args:
        scope: ``"batch"`` (the authors' code) recomputes S and K from each batch's masks,
            so the branch can change from step to step; ``"dataset"`` (the paper's wording)
            fixes the branch from the ``skewness`` and ``kurtosis`` given here, usually the
            training set's profile.
        skewness, kurtosis: the dataset statistic; required for ``scope="dataset"``.
        area: ``"pixels"`` (foreground count, on device) or ``"contour"`` (the authors'
            OpenCV polygon area, 2-D only, needs opencv-python-headless).

    Called as ``loss(logits, target)`` with ``(B, 1, *spatial)`` logits and a {0, 1} target
    of the same shape (2-D or 3-D); returns a float32 scalar, also under autocast.

    After each call ``last_branch``, ``last_skewness`` and ``last_kurtosis`` hold what was
    used. Empty masks: an all-empty batch has zero area variance, S and K are undefined and
    the ``bce_dice`` branch runs (its Dice term is 1 - 1e-7 / (sum(p) + 1e-7), near 1 unless
    the prediction is empty too).
    """

    definition = "calf"

    def __init__(
        self,
        scope: str = "batch",
        skewness: float | None = None,
        kurtosis: float | None = None,
        area: str = "pixels",
    ):
        super().__init__()
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        if area not in AREA_DEFINITIONS:
            raise ValueError(f"area must be one of {AREA_DEFINITIONS}, got {area!r}")
        self.scope = scope
        self.area = area
        self.fixed_branch: str | None = None
        self.last_branch: str | None = None
        self.last_skewness = math.nan
        self.last_kurtosis = math.nan
        if scope == "dataset":
            if skewness is None or kurtosis is None:
                raise ValueError(
                    "scope='dataset' needs skewness and kurtosis (from the training set's "
                    "imbalance profile)"
                )
            self.last_skewness, self.last_kurtosis = float(skewness), float(kurtosis)
            self.fixed_branch = select_branch(self.last_skewness, self.last_kurtosis)
            self.last_branch = self.fixed_branch

    def extra_repr(self) -> str:
        fixed = f", branch={self.fixed_branch}" if self.fixed_branch else ""
        return f"scope={self.scope}, area={self.area}{fixed}"

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with no_autocast(logits.device):
            if self.fixed_branch is not None:
                # the transformed branches clamp the logits themselves
                x, y = prepare(logits, target, clamp_logits=self.fixed_branch == "bce_dice")
                return branch_loss(self.fixed_branch, x, y)
            check_shapes(logits, target)
            if self.area == "pixels":
                # equal to the count of non-zero pixels once the target is checked to be
                # 0/1 (below, in the same host transfer); one pass, no temporary mask;
                # float32 counts are exact up to 2**24 pixels per image (5x faster)
                flat = target.detach().flatten(1)
                exact32 = flat.shape[1] <= 2**24 and flat.dtype != torch.float64
                areas = flat.sum(dim=1, dtype=torch.float32 if exact32 else torch.float64)
            else:
                areas = contour_areas(target).to(target.device)
            s, k = moments(areas, dim=0)
            # one host transfer per step: the target check and the statistic together
            bad, s, k = torch.stack([bad_target_count(target).to(s.dtype), s, k]).tolist()
            if bad:
                raise_bad_target(target)
            self.last_skewness, self.last_kurtosis = s, k
            self.last_branch = select_branch(s, k)
            clamp = self.last_branch == "bce_dice"
            x, y = prepare(logits, target, check_target=False, clamp_logits=clamp)
            return branch_loss(self.last_branch, x, y)


class CALFRegionLoss(nn.Module):
    """Region-specific CALF: a CALF branch per grid region, weighted by its errors.

    Each image is cut into ``grid`` parts along every spatial axis (4 x 4 regions of
    64 x 64 for a 256 x 256 image by default). In region r the branch follows from S and K
    of that region's per-image areas across the batch; its loss L_r is that branch's loss
    over the region's pixels of the whole batch. The weight ``w_r = 1 + FP_r + FN_r`` counts
    the errors of the thresholded prediction (logit > 0) in r and is not differentiated.
    The result is ``sum(w_r L_r) / sum(w_r)``. Batch scope only, like the authors' code.

    After each call, ``last_branches`` holds the branch of every region (row-major),
    ``last_branch`` the most frequent one, ``last_skewness``/``last_kurtosis`` per region.
    Regions empty in every image have zero variance and take the ``bce_dice`` branch.
    """

    definition = "calf"

    def __init__(self, grid: int = 4, area: str = "pixels"):
        super().__init__()
        if int(grid) < 1:
            raise ValueError(f"grid must be a positive integer, got {grid!r}")
        if area not in AREA_DEFINITIONS:
            raise ValueError(f"area must be one of {AREA_DEFINITIONS}, got {area!r}")
        self.grid = int(grid)
        self.area = area
        self.last_branches: tuple[str, ...] = ()
        self.last_branch: str | None = None
        self.last_skewness: list[float] = []
        self.last_kurtosis: list[float] = []

    def extra_repr(self) -> str:
        return f"grid={self.grid}, area={self.area}"

    def _regions(self, t: torch.Tensor) -> torch.Tensor:
        """(B, 1, S1, ..., Sn) -> (B, grid**n, prod(S_i / grid)), regions row-major."""
        g, b, spatial = self.grid, t.shape[0], t.shape[2:]
        if any(s % g for s in spatial):
            raise ValueError(
                f"spatial size {tuple(spatial)} is not divisible by the region grid {g}"
            )
        n = len(spatial)
        split = [b]
        for s in spatial:
            split += [g, s // g]
        v = t.reshape(split)
        order = [0] + [1 + 2 * i for i in range(n)] + [2 + 2 * i for i in range(n)]
        return v.permute(order).reshape(b, g**n, -1)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with no_autocast(logits.device):
            x, y = prepare(logits, target)
            xr, yr = self._regions(x), self._regions(y)
            b, n_regions, _ = yr.shape
            if self.area == "pixels":
                areas = yr.sum(dim=2)
            else:
                if y.ndim != 4:
                    raise ValueError("area='contour' needs 2-D images (B, 1, H, W)")
                tile = (y.shape[2] // self.grid, y.shape[3] // self.grid)
                tiles = yr.reshape(b * n_regions, 1, *tile)
                areas = contour_areas(tiles).reshape(b, n_regions).to(y.device)
            s, k = moments(areas, dim=0)
            with torch.no_grad():
                errors = ((xr > 0) != (yr > 0.5)).sum(dim=(0, 2))
                weights = 1.0 + errors.float()
            s_list, k_list = torch.stack([s, k]).tolist()
            branches = tuple(select_branch(si, ki) for si, ki in zip(s_list, k_list))
            per_region = x.new_zeros(n_regions)
            for branch in sorted(set(branches)):
                idx = torch.tensor(
                    [i for i, br in enumerate(branches) if br == branch], device=x.device
                )
                values = branch_loss(branch, xr[:, idx], yr[:, idx], dims=(0, 2))
                per_region = per_region.index_add(0, idx, values)
            self.last_branches = branches
            self.last_branch = Counter(branches).most_common(1)[0][0]
            self.last_skewness, self.last_kurtosis = s_list, k_list
            return (weights * per_region).sum() / weights.sum()
