"""The imbalance statistic of CALF: per-slice foreground areas and their shape.

S is the biased sample skewness g1 and K the biased excess kurtosis g2 of the areas,
the values ``scipy.stats.skew`` and ``scipy.stats.kurtosis`` return with their defaults.
Both are NaN when undefined: fewer than two areas, or all areas equal.

Two area definitions:

- ``pixels`` (default): foreground pixel (voxel) count per image, one reduction on the
  tensor's own device, no host round trip per image.
- ``contour``: the authors' definition, the summed OpenCV polygon areas of the external
  and hole contours (``RETR_TREE``, ``CHAIN_APPROX_SIMPLE``); a one-pixel blob has area 0.
  Needs the optional extra ``opencv-python-headless`` and 2-D images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch stays out of ``import calf.imbalance`` until it is needed
    import torch

AREA_DEFINITIONS = ("pixels", "contour")


@dataclass(frozen=True)
class ImbalanceStats:
    """Skewness (g1), excess kurtosis (g2) and number of areas."""

    skewness: float
    kurtosis: float
    n: int

    @property
    def defined(self) -> bool:
        return not (math.isnan(self.skewness) or math.isnan(self.kurtosis))


def _zero_variance(m2, mean):
    # scipy's rule: the variance is taken as zero below a relative floor, so that
    # rounding noise in the mean of equal values does not produce a huge g1/g2.
    import torch

    floor = (torch.finfo(m2.dtype).resolution * 10 * mean.abs()) ** 2
    return m2 <= floor


def moments(areas: "torch.Tensor", dim: int = -1) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Biased skewness and excess kurtosis along ``dim``, computed on the tensor's device.

    Returns float tensors (float64 where the device supports it), NaN where undefined.
    Used by the losses to keep the statistic on the accelerator.
    """
    import torch

    dtype = torch.float32 if areas.device.type == "mps" else torch.float64
    a = areas.to(dtype)
    n = a.shape[dim]
    mean = a.mean(dim=dim, keepdim=True)
    d = a - mean
    d2 = d * d
    m2 = d2.mean(dim=dim)
    m3 = (d2 * d).mean(dim=dim)
    m4 = (d2 * d2).mean(dim=dim)
    undefined = _zero_variance(m2, mean.squeeze(dim)) | (n < 2)
    safe_m2 = torch.where(undefined, torch.ones_like(m2), m2)
    skew = m3 / safe_m2**1.5
    kurt = m4 / safe_m2**2 - 3.0
    nan = torch.full_like(m2, float("nan"))
    return torch.where(undefined, nan, skew), torch.where(undefined, nan, kurt)


def imbalance_stats(areas: Any) -> ImbalanceStats:
    """S and K of a 1-D collection of areas (list, numpy array or tensor).

    >>> s = imbalance_stats([0, 0, 0, 10])
    >>> round(s.skewness, 4), round(s.kurtosis, 4), s.n
    (1.1547, -0.6667, 4)
    """
    import torch

    if isinstance(areas, torch.Tensor):
        t = areas.detach().reshape(-1)
    else:
        import numpy as np

        arr = np.asarray(areas, dtype=np.float64).reshape(-1)
        t = torch.from_numpy(arr)
    if t.numel() == 0:
        return ImbalanceStats(float("nan"), float("nan"), 0)
    if not bool(torch.isfinite(t).all()):
        raise ValueError("areas must be finite numbers, got NaN or infinite values")
    skew, kurt = moments(t, dim=0)
    return ImbalanceStats(float(skew), float(kurt), int(t.numel()))


def foreground_areas(masks: "torch.Tensor", area: str = "pixels") -> "torch.Tensor":
    """Foreground area of each image of a ``(B, 1, *spatial)`` (or ``(B, *spatial)``) batch.

    ``pixels`` counts non-zero pixels on the masks' own device; ``contour`` uses the
    authors' OpenCV polygon area (2-D only, computed on the host). Returns shape ``(B,)``.
    """
    import torch

    if area not in AREA_DEFINITIONS:
        raise ValueError(f"area must be one of {AREA_DEFINITIONS}, got {area!r}")
    if masks.ndim < 2:
        raise ValueError(f"masks must be batched (B, 1, *spatial), got shape {tuple(masks.shape)}")
    if area == "pixels":
        return (masks.detach() != 0).flatten(1).sum(dim=1)
    return contour_areas(masks).to(masks.device)


def contour_areas(masks: "torch.Tensor") -> "torch.Tensor":
    """The authors' area: sum of ``cv2.contourArea`` over every contour of each 2-D mask."""
    import torch

    cv2 = _import_cv2()
    m = masks.detach()
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3:
        raise ValueError(
            "contour areas need 2-D masks shaped (B, 1, H, W) or (B, H, W), "
            f"got shape {tuple(masks.shape)}"
        )
    binary = ((m != 0).to(torch.uint8) * 255).cpu().numpy()
    out = []
    for image in binary:
        contours, _ = cv2.findContours(image, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
        out.append(sum(cv2.contourArea(c) for c in contours))
    return torch.tensor(out, dtype=torch.float64)


def _import_cv2():
    try:
        import cv2
    except ImportError as err:  # pragma: no cover - exercised only where OpenCV is absent
        raise ImportError(
            "area='contour' needs OpenCV: pip install 'calf-bench[contour]' "
            "(or opencv-python-headless)"
        ) from err
    return cv2
