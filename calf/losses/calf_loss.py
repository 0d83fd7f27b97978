"""CALF and its region-specific variant (README.md, "The method" and "Losses")."""

from __future__ import annotations

import math
from collections import Counter

import torch
from torch import nn

from calf.imbalance import AREA_DEFINITIONS, contour_areas, moments
from calf.losses._inputs import (
    LOGIT_LIMIT,
    bad_target_count,
    bounded,
    check_shapes,
    no_autocast,
    prepare,
    raise_bad_target,
)
from calf.losses.branches import LOGIT_BOUND, branch_loss, select_branch

SCOPES = ("batch", "dataset")


def _region_views(t: torch.Tensor, grid: int) -> list[torch.Tensor]:
    """Views (B, S1 / g, ..., Sn / g) of the ``grid**n`` regions of (B, 1, S1, ..., Sn),
    row-major (the size is checked by the caller to be divisible by ``grid``)."""
    b, spatial = t.shape[0], t.shape[2:]
    split = [b]
    for s in spatial:
        split += [grid, s // grid]
    n = len(spatial)
    v = t.reshape(split).permute(*(1 + 2 * i for i in range(n)), 0, *(2 + 2 * i for i in range(n)))
    views = [v]  # (g, ..., g, B, S1 / g, ...): unbind the n grid axes, row-major
    for _ in range(n):
        views = [part for w in views for part in w.unbind(0)]
    return views


def _region_rows(t: torch.Tensor, grid: int, order: list[int]) -> torch.Tensor:
    """(R, B * pixels per region): region ``order[i]`` of every image in row i, one copy."""
    views = _region_views(t, grid)
    out = t.new_empty((len(order), *views[0].shape))
    for i, r in enumerate(order):
        out[i].copy_(views[r])
    return out.reshape(len(order), -1)


class _RegionRows(torch.autograd.Function):
    """``_region_rows`` with its backward: each row's gradient copied back into its region
    (``order`` is a permutation, so every pixel gets exactly one). One pass each way, where
    permute + reshape + index_select take two and index_add's backward more."""

    @staticmethod
    def forward(ctx, t, grid, order):
        ctx.grid, ctx.order, ctx.shape = grid, order, t.shape
        return _region_rows(t, grid, order)

    @staticmethod
    def backward(ctx, grad):
        out = grad.new_empty(ctx.shape)
        views = _region_views(out, ctx.grid)
        blocks = grad.reshape(len(ctx.order), *views[0].shape)
        for i, r in enumerate(ctx.order):
            views[r].copy_(blocks[i])
        return out, None, None


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

        check_target: check that the target holds only 0 and 1 on every call (default);
            ``False`` for targets known to be binary, such as a slice store's masks, which
            are checked once when the store is written (training builds its loss so).

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
        check_target: bool = True,
    ):
        super().__init__()
        self.check_target = bool(check_target)
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
                x, y = prepare(
                    logits,
                    target,
                    check_target=self.check_target,
                    clamp_logits=self.fixed_branch == "bce_dice",
                )
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
            # one host transfer per step: the statistic, the logits' range (where no clamp
            # holds, the clamps are skipped: the same values, a pass less each way) and the
            # target check
            lo, hi = torch.aminmax(logits.detach())
            stats = [s, k, lo.to(s.dtype), hi.to(s.dtype)]
            if self.check_target:
                stats.append(bad_target_count(target).to(s.dtype))
            s, k, lo, hi, *bad = torch.stack(stats).tolist()
            if bad and bad[0]:
                raise_bad_target(target)
            self.last_skewness, self.last_kurtosis = s, k
            self.last_branch = select_branch(s, k)
            # NaN logits fail both comparisons and take the clamped path
            inside = -LOGIT_BOUND < lo and hi < LOGIT_BOUND
            clamp = self.last_branch == "bce_dice" and not (-LOGIT_LIMIT < lo and hi < LOGIT_LIMIT)
            x, y = prepare(logits, target, check_target=False, clamp_logits=clamp)
            return branch_loss(self.last_branch, x, y, within_bound=inside)


class CALFRegionLoss(nn.Module):
    """Region-specific CALF: a CALF branch per grid region, weighted by its errors.

    Each image is cut into ``grid`` parts along every spatial axis (4 x 4 regions of
    64 x 64 for a 256 x 256 image by default). In region r the branch follows from S and K
    of that region's per-image areas across the batch; its loss L_r is that branch's loss
    over the region's pixels of the whole batch. The weight ``w_r = 1 + FP_r + FN_r`` counts
    the errors of the thresholded prediction (logit > 0) in r and is not differentiated.
    The result is ``sum(w_r L_r) / sum(w_r)``. Batch scope only, like the authors' code.
    ``check_target`` as in :class:`CALFLoss`.

    After each call, ``last_branches`` holds the branch of every region (row-major),
    ``last_branch`` the most frequent one, ``last_skewness``/``last_kurtosis`` per region.
    Regions empty in every image have zero variance and take the ``bce_dice`` branch.
    """

    definition = "calf"

    def __init__(self, grid: int = 4, area: str = "pixels", check_target: bool = True):
        super().__init__()
        self.check_target = bool(check_target)
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

    def _tiled(self, t: torch.Tensor) -> torch.Tensor:
        """(B, 1, S1, ..., Sn) -> the view (B, g, S1 / g, ..., g, Sn / g): no copy."""
        g, spatial = self.grid, t.shape[2:]
        if any(s % g for s in spatial):
            raise ValueError(
                f"spatial size {tuple(spatial)} is not divisible by the region grid {g}"
            )
        split = [t.shape[0]]
        for s in spatial:
            split += [g, s // g]
        return t.reshape(split)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with no_autocast(logits.device):
            # the logits are clamped below, once their range is known
            x, y = prepare(logits, target, check_target=self.check_target, clamp_logits=False)
            yv = self._tiled(y)
            b, n = y.shape[0], y.ndim - 2
            n_regions = self.grid**n
            if self.area == "pixels":
                # float32 counts, exact up to 2**24 pixels per region
                tile_dims = tuple(2 + 2 * i for i in range(n))
                areas = yv.detach().sum(dim=tile_dims).reshape(b, n_regions)
            else:
                if y.ndim != 4:
                    raise ValueError("area='contour' needs 2-D images (B, 1, H, W)")
                tile = (y.shape[2] // self.grid, y.shape[3] // self.grid)
                tiles = yv.detach().permute(0, 1, 3, 2, 4).reshape(b * n_regions, 1, *tile)
                areas = contour_areas(tiles).reshape(b, n_regions).to(y.device)
            s, k = moments(areas, dim=0)
            # one host transfer: S and K of every region and the logits' range (where no
            # clamp holds, the clamps are skipped: the same values, a pass less each way)
            lo, hi = torch.aminmax(x.detach())
            *stats, lo, hi = torch.cat([s, k, torch.stack([lo, hi]).to(s.dtype)]).tolist()
            s_list, k_list = stats[:n_regions], stats[n_regions:]
            if not (-LOGIT_LIMIT < lo and hi < LOGIT_LIMIT):  # NaN included
                x = bounded(x, LOGIT_LIMIT)
            inside = -LOGIT_BOUND < lo and hi < LOGIT_BOUND
            branches = tuple(select_branch(si, ki) for si, ki in zip(s_list, k_list))
            # regions grouped by branch, each region one contiguous row of its pixels in
            # the whole batch; each branch then runs on its block of rows
            present = sorted(set(branches))
            order = [i for br in present for i, bi in enumerate(branches) if bi == br]
            xs = _RegionRows.apply(x, self.grid, order)
            ys = _region_rows(y, self.grid, order)
            with torch.no_grad():
                # y != 0 is y > 0.5 for a {0, 1} target; the fastest of the compares and
                # counts tried (torch.where on floats is 3x slower)
                errors = torch.count_nonzero((xs > 0) != ys.bool(), dim=1)
                weights = 1.0 + errors.float()  # in the order of the rows
            counts = [branches.count(br) for br in present]
            values = [
                branch_loss(br, xi, yi, dims=(1,), within_bound=inside)
                for br, xi, yi in zip(present, xs.split(counts), ys.split(counts))
            ]
            loss = (weights * torch.cat(values)).sum() / weights.sum()
            self.last_branches = branches
            self.last_branch = Counter(branches).most_common(1)[0][0]
            self.last_skewness, self.last_kurtosis = s_list, k_list
            return loss
