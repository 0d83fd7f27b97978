"""Bring a case's predicted slices back to its original grid, and read its original truth.

The field scores each case on the grid it was acquired on, in mm (nnU-Net v2 resamples
its predicted logits to the original shape before taking the segmentation, then undoes its
cropping and axis transposition: ``nnunetv2/inference/export_prediction.py``,
``convert_predicted_logits_to_segmentation_with_correct_shape``; the BraTS evaluation
reads the released NIfTI masks as they are). ``logits`` is that order of operations and
the default. Preprocessing (``calf.preprocess``) reorients each volume to RAS
(``nibabel.as_closest_canonical``), takes the axial slices and resizes each from the
canonical in-plane shape ``(X, Y)`` to ``S x S``. ``to_native`` undoes that:

1. ``resample="logits"``: each ``S x S`` logit slice is resized to ``(X, Y)`` bilinearly
   (``calf.preprocess.resize_slices``, torch ``interpolate``, align_corners=False: the
   interpolation of the preprocessing) and thresholded ``> 0``;
   ``resample="nearest"``: thresholded ``> 0`` first, then resized with nearest-neighbour
   (torch ``nearest-exact``, the pixel-centre rule) and kept where ``> 0.5``;
2. the slices are stacked to the canonical volume ``(X, Y, Z)``;
3. the reorientation is undone: ``nibabel.orientations.apply_orientation`` with
   ``ornt_transform(RAS, io_orientation(affine))``, the inverse of what
   ``as_closest_canonical`` applied, so the result has the mask file's array layout.

``read_truth`` reads the mask file itself, without reorientation, and forms the binary
region from the labels recorded at preprocessing. Metrics then take
``spacing=geometry.spacing`` (header zooms in mm, native axis order).

The honest cost of the round trip through the training grid. A prediction equal to the
store's mask (logits +10 inside, -10 outside) has Dice 1 at training size, but not on the
native grid, where it is compared with the original mask. Measured by
``tests/unit/test_native.py::test_round_trip_dice`` for a ball of radius 20 mm, centred at voxel
(120, 120, 24) of a 240 x 240 x 48 grid at 1 mm (an axial crop of the BraTS 240 x 240 x 155
grid through the ball), S = 64 (3.75 mm training pixels):

================  =================  =================
store mask        resample=logits    resample=nearest
================  =================  =================
``nearest``       0.9590             0.9472
``bilinear``      0.9547             0.9451
================  =================  =================

(truth 33,401 voxels; ``bilinear`` store masks are the authors' way, bilinear then ``> 0``,
which grows each disc slightly: 35,346 native voxels after ``logits``.) A first-order check:
quantising a boundary to pixels of side h displaces it by h/4 on average for an edge
along a pixel axis and by about h/(4 sqrt 2) along a diagonal, so the symmetric difference is
about c h times the in-plane boundary length summed over slices, pi^2 r^2 for a ball, with
c in [0.18, 0.25]. Dice = 1 - |A xor B| / (|A| + |B|) ~ 1 - c h pi^2 r^2 / (2 * 4/3 pi r^3)
= 1 - c h 3 pi / (8 r), which is 0.945 to 0.960 for h = 3.75, r = 20: the table's range.
These are the Dice values a perfect network gets on this case.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from calf.errors import CalfError

if TYPE_CHECKING:
    import numpy as np

    from calf.store import CaseGeometry

RESAMPLES = ("logits", "nearest")


def _check_resample(resample: str) -> None:
    if resample not in RESAMPLES:
        raise CalfError(f"resample must be one of {', '.join(RESAMPLES)}, got {resample!r}")


def to_native(slices: Any, geometry: CaseGeometry, resample: str = "logits") -> np.ndarray:
    """Binary prediction of one case on its native grid, in the mask file's array layout.

    ``slices``: float logits ``(Z, S, S)`` in slice order (row = canonical x, column =
    canonical y, as in the store); ``Z`` must equal the canonical slice count. Returns a
    bool array of shape ``geometry.shape``.
    """
    import numpy as np
    import torch
    from nibabel.orientations import apply_orientation, ornt_transform

    from calf.preprocess import resize_slices

    _check_resample(resample)
    if isinstance(slices, torch.Tensor):
        logits = slices.detach().to("cpu", torch.float32)
    else:
        logits = torch.as_tensor(np.asarray(slices, dtype=np.float32))
    nx, ny, nz = geometry.canonical_shape
    if logits.ndim != 3 or logits.shape[1] != logits.shape[2]:
        raise CalfError(
            f"case mask {geometry.mask}: expected a (Z, S, S) stack of logits, "
            f"got shape {tuple(logits.shape)}"
        )
    if logits.shape[0] != nz:
        raise CalfError(
            f"case mask {geometry.mask}: {logits.shape[0]} predicted slices, the canonical "
            f"volume has {nz} (shape {list(geometry.canonical_shape)})"
        )
    if resample == "logits":
        planes = resize_slices(logits, (nx, ny), "bilinear") > 0
    else:
        planes = resize_slices((logits > 0).to(torch.float32), (nx, ny), "nearest") > 0.5
    canonical = planes.permute(1, 2, 0).numpy()  # (Z, X, Y) -> (X, Y, Z)
    ras = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
    back = ornt_transform(ras, np.asarray(geometry.orientation, dtype=float))
    native = np.ascontiguousarray(apply_orientation(canonical, back))
    if native.shape != tuple(geometry.shape):  # a geometry record that contradicts itself
        raise CalfError(
            f"case mask {geometry.mask}: reoriented prediction has shape {native.shape}, "
            f"the geometry says {list(geometry.shape)}"
        )
    return native.astype(bool, copy=False)


def read_truth(geometry: CaseGeometry) -> np.ndarray:
    """The case's binary target region on its native grid: the mask file read with nibabel
    without reorientation, True where its label is one of ``geometry.region_labels``.

    CalfError naming the file when it is gone, unreadable, or its shape or affine changed
    since preprocessing.
    """
    import zlib

    import nibabel as nib
    import numpy as np

    path = geometry.mask
    stale = "changed since preprocessing; rerun calf preprocess"
    try:
        img = nib.load(str(path))
    except FileNotFoundError as err:
        raise CalfError(f"{path}: mask file gone: {stale}") from err
    except Exception as err:  # nibabel raises many types for a bad header
        raise CalfError(f"{path}: mask file unreadable ({type(err).__name__}): {stale}") from err
    shape = tuple(int(n) for n in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if shape != tuple(geometry.shape):
        raise CalfError(
            f"{path}: mask shape {list(shape)} differs from {list(geometry.shape)} recorded at "
            f"preprocessing: {stale}"
        )
    if not np.allclose(img.affine, np.asarray(geometry.affine), rtol=0, atol=1e-4):
        raise CalfError(f"{path}: mask affine differs from the one recorded: {stale}")
    try:
        data = np.asanyarray(img.dataobj)
    except (OSError, EOFError, ValueError, zlib.error) as err:
        raise CalfError(f"{path}: cannot decode NIfTI data ({err}): {stale}") from err
    data = data.reshape(shape)
    return np.isin(data, np.asarray(geometry.region_labels))


def native_settings(resample: str) -> dict[str, Any]:
    """How predictions were brought to the native grid, for the metrics companion JSON."""
    _check_resample(resample)
    step = (
        "each S x S logit slice resized to the canonical in-plane shape bilinearly "
        "(torch interpolate, align_corners=False), then logit > 0"
        if resample == "logits"
        else "each S x S slice thresholded logit > 0, then resized to the canonical "
        "in-plane shape with nearest-neighbour (torch nearest-exact)"
    )
    return {
        "grid": "native",
        "resample": resample,
        "prediction": step,
        "orientation": "slices stacked to canonical RAS (X, Y, Z), then "
        "nibabel.orientations.apply_orientation(ornt_transform(RAS, io_orientation(affine))): "
        "the inverse of nibabel.as_closest_canonical",
        "truth": "the original mask file read with nibabel, no reorientation; "
        "region = mask labels in region_labels (geometry.json)",
        "spacing": "header zooms in mm, native axis order",
    }
