"""What a metric is worth when an empty mask leaves it undefined: three named presets.

Every other value comes from the metric's definition (MONAI, or the BraTS code's for the
``brats`` preset's HD95); a preset fills only the undefined cells. Its name and values go
into the companion JSON of every metrics CSV and into every table caption.

| key | applies when | ``suite`` | ``brats`` | ``nnunet`` |
|---|---|---|---|---|
| ``dice_both_empty`` | truth and prediction empty | 1 | 1 | NaN |
| ``iou_both_empty`` | truth and prediction empty | 1 | 1 | NaN |
| ``hd95_both_empty`` | truth and prediction empty | 0 | 0 | NaN |
| ``hd95_one_empty`` | exactly one of them empty | diagonal | 374 (BraTS grid) | NaN |
| ``nsd_both_empty`` | truth and prediction empty | 1 | 1 | NaN |
| ``nsd_one_empty`` | exactly one of them empty | 0 | 0 | NaN |
| ``sensitivity_both_empty`` | truth and prediction empty | NaN | 1 | NaN |
| ``sensitivity_empty_truth`` | truth empty, prediction not | NaN | 0 | NaN |
| ``specificity_empty_background`` | truth fills the volume | NaN | 0 | NaN |
| ``precision_empty_prediction`` | prediction empty | NaN | NaN | NaN |

- ``brats``: the BraTS 2023/2024 challenge code (``rachitsaluja/BraTS-2023-Metrics``,
  ``brats_metrics.py``): Dice 1 and HD95 0 for an empty pair, HD95 374 where exactly one
  side is empty (its ``inf`` replaced), sensitivity 1 for an empty pair and 0 for a
  prediction without truth (``tp / (tp + fn + eps)``), specificity 0 without background.
  374 is a number for BraTS's grid only (240 x 240 x 155 at 1 mm, in any axis order): on
  any other grid, the training grid included, the one-empty HD95 is that grid's diagonal
  in mm. The code reports no IoU, NSD or precision: IoU and NSD follow Dice, precision
  stays undefined.
- ``nnunet``: NaN wherever a metric is undefined, as nnU-Net's evaluation leaves a Dice of
  two empty masks (``nan_for_nonexisting``); means and tests skip NaN cells.
- ``suite``: the suite's own: an empty pair is a correct "no tumour" (Dice 1, HD95 0, NSD
  1), a boundary missing on one side costs the image diagonal in mm (``diagonal``: the
  diagonal of the grid the case is scored on, never a BraTS number on a non-BraTS grid),
  sensitivity, specificity and precision without their denominator are NaN.

Dice and IoU where only one mask is empty are 0 (defined, not a convention). A value is a
number, NaN (JSON ``null`` or ``"nan"``), or, for ``hd95_one_empty``, ``"diagonal"``.
Overrides of single keys on top of a preset are allowed and recorded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from calf._json import read_json_object
from calf.errors import CalfError

NAN = float("nan")
DIAGONAL = "diagonal"
BRATS_GRID = (240, 240, 155)  # voxels at 1 mm, the SRI24 atlas grid of every BraTS release
BRATS_PENALTY = 374.0
PRESET_NAMES = ("suite", "brats", "nnunet")
# upper bound of each key's value (None: unbounded); every value is >= 0 or NaN
_BOUNDS: dict[str, float | None] = {
    "dice_both_empty": 1.0,
    "iou_both_empty": 1.0,
    "hd95_both_empty": None,
    "hd95_one_empty": None,
    "nsd_both_empty": 1.0,
    "nsd_one_empty": 1.0,
    "sensitivity_both_empty": 1.0,
    "sensitivity_empty_truth": 1.0,
    "specificity_empty_background": 1.0,
    "precision_empty_prediction": 1.0,
}


@dataclass(frozen=True)
class EmptyConventions:
    """The value of each metric where an empty mask leaves it undefined (module table).

    ``preset`` names the preset the values came from, ``overrides`` the keys set on top
    of it; ``hd95_one_empty_grid`` (brats) is the only grid on which ``hd95_one_empty``
    is used as a number, every other grid gets its diagonal.
    """

    preset: str = "suite"
    dice_both_empty: float = 1.0
    iou_both_empty: float = 1.0
    hd95_both_empty: float = 0.0
    hd95_one_empty: float | str = DIAGONAL
    nsd_both_empty: float = 1.0
    nsd_one_empty: float = 0.0
    sensitivity_both_empty: float = NAN
    sensitivity_empty_truth: float = NAN
    specificity_empty_background: float = NAN
    precision_empty_prediction: float = NAN
    hd95_one_empty_grid: tuple[int, int, int] | None = None
    overrides: tuple[str, ...] = field(default=())

    @classmethod
    def named(cls, name: str) -> EmptyConventions:
        """One of the presets ``suite``, ``brats``, ``nnunet``."""
        if name == "suite":
            return cls()
        if name == "brats":
            return cls(
                preset="brats",
                hd95_one_empty=BRATS_PENALTY,
                sensitivity_both_empty=1.0,
                sensitivity_empty_truth=0.0,
                specificity_empty_background=0.0,
                hd95_one_empty_grid=BRATS_GRID,
            )
        if name == "nnunet":
            return cls(preset="nnunet", **{k: NAN for k in _BOUNDS})
        raise CalfError(f"unknown conventions preset {name!r} (known: {', '.join(PRESET_NAMES)})")

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], source: str = "conventions", preset: str = "suite"
    ) -> EmptyConventions:
        """The preset overridden by ``data``; unknown keys and bad values are CalfErrors.

        ``data`` may name its own preset (key ``preset``). A value is a number (bool is
        not), ``None`` or ``"nan"`` (NaN), or ``"diagonal"`` for ``hd95_one_empty``; Dice,
        IoU, NSD, sensitivity, specificity and precision lie in [0, 1], HD95 values are
        >= 0. ``source`` names the file in error messages.
        """
        if not isinstance(data, Mapping):
            raise CalfError(f"{source}: expected a JSON object of convention keys")
        data = dict(data)
        name = data.pop("preset", preset)
        if name not in PRESET_NAMES:
            raise CalfError(
                f"{source}: preset {name!r} is not one of {', '.join(PRESET_NAMES)}"
            )
        values: dict[str, Any] = {}
        for key, raw in data.items():
            if key not in _BOUNDS:
                raise CalfError(
                    f"{source}: unknown convention key {key!r} (known: preset, "
                    f"{', '.join(_BOUNDS)})"
                )
            values[key] = _parse_value(key, raw, source)
        base = cls.named(name)
        if "hd95_one_empty" in values:  # a number the user set applies on every grid
            values["hd95_one_empty_grid"] = None
        return replace(base, **values, overrides=tuple(sorted(set(values) & set(_BOUNDS))))

    def one_empty_hd95(self, shape: Sequence[int], spacing: Sequence[float] | None) -> float:
        """The HD95 of a case where exactly one mask is empty, on the grid it is scored on.

        ``shape`` in voxels, ``spacing`` in mm per voxel (None: one per voxel).
        """
        step = [1.0] * len(shape) if spacing is None else [float(s) for s in spacing]
        value = self.hd95_one_empty
        if value == DIAGONAL:
            return _diagonal(shape, step)
        if self.hd95_one_empty_grid is not None:
            return grid_penalty(shape, step, float(value), self.hd95_one_empty_grid)
        return float(value)

    def to_dict(self) -> dict[str, Any]:
        """The conventions as JSON values: NaN becomes ``null``."""
        out: dict[str, Any] = {"preset": self.preset}
        for key in _BOUNDS:
            v = getattr(self, key)
            out[key] = None if isinstance(v, float) and math.isnan(v) else v
        if self.hd95_one_empty_grid is not None:
            shape = " x ".join(str(n) for n in self.hd95_one_empty_grid)
            out["hd95_one_empty_applies_on"] = f"{shape} voxels at 1 mm; elsewhere the diagonal"
        out["overrides"] = list(self.overrides)
        return out

    def label(self) -> str:
        """The preset's name for captions, ``+`` the overridden keys."""
        return self.preset + "".join(f"+{k}" for k in self.overrides)


def _diagonal(shape: Sequence[int], spacing: Sequence[float]) -> float:
    return math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing)))


def grid_penalty(
    shape: Sequence[int],
    spacing: Sequence[float],
    value: float = BRATS_PENALTY,
    grid: Sequence[int] = BRATS_GRID,
) -> float:
    """A BraTS distance penalty where it means something: ``value`` (374) on BraTS's grid
    (``grid`` voxels at 1 mm, in any axis order), else the grid's diagonal in mm."""
    on_grid = sorted(int(n) for n in shape) == sorted(grid) and all(
        abs(float(s) - 1.0) < 1e-3 for s in spacing
    )
    return value if on_grid else _diagonal(shape, spacing)


def _parse_value(key: str, raw: Any, source: str) -> float | str:
    if key == "hd95_one_empty" and isinstance(raw, str) and raw.strip().lower() == DIAGONAL:
        return DIAGONAL
    if raw is None or (isinstance(raw, str) and raw.strip().lower() == "nan"):
        return NAN
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        extra = ", 'diagonal'" if key == "hd95_one_empty" else ""
        raise CalfError(f"{source}: {key} = {raw!r} is neither a number nor null/'nan'{extra}")
    value = float(raw)
    if math.isnan(value):
        return NAN
    upper = _BOUNDS[key]
    if value < 0 or not math.isfinite(value) or (upper is not None and value > upper):
        bound = f"in [0, {upper:g}]" if upper is not None else "a finite number >= 0"
        raise CalfError(f"{source}: {key} = {raw!r} must be {bound}, or null")
    return value


def read_conventions(path: str | Path | None, preset: str = "suite") -> EmptyConventions:
    """A preset, overridden by a JSON file or a JSON object given inline (text starting
    with ``{``) of the keys to override; ``None``: the preset as it is."""
    if path is None:
        return EmptyConventions.named(preset)
    if isinstance(path, str) and path.lstrip().startswith("{"):
        try:
            data = json.loads(path)
        except ValueError as err:
            raise CalfError(f"--conventions {path!r}: not valid JSON ({err})") from None
        return EmptyConventions.from_dict(data, "--conventions", preset)
    path = Path(path)
    if not path.is_file():
        raise CalfError(f"{path}: conventions file not found")
    return EmptyConventions.from_dict(read_json_object(path, "conventions"), str(path), preset)

