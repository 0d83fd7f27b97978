"""What a metric is worth when an empty mask leaves it undefined (0 / 0 or no surface).

Every other value comes from MONAI; these conventions fill only the undefined cells and
are written, with their values, into the companion JSON of every metrics CSV.

| key | applies when | default |
|---|---|---|
| ``dice_both_empty`` | truth and prediction empty | 1 |
| ``iou_both_empty`` | truth and prediction empty | 1 |
| ``hd95_both_empty`` | truth and prediction empty | 0 |
| ``hd95_one_empty`` | exactly one of them empty | 373.13 |
| ``sensitivity_empty_truth`` | truth empty (TP + FN = 0) | NaN |
| ``specificity_empty_background`` | truth fills the volume (TN + FP = 0) | NaN |
| ``precision_empty_prediction`` | prediction empty (TP + FP = 0) | NaN |

Why: an empty prediction on an empty truth is a correct "no tumour" (Dice 1 as in the
authors' notebooks and BraTS, no boundary error: HD95 0); a boundary missing on one side
gets BraTS's penalty 373.13, the diagonal of a 240 x 240 x 155 mm volume (here in the
HD95 units of the run, mm or voxels); sensitivity without tumour, precision without a
prediction and specificity without background are undefined and left out of means.
Dice and IoU when only one mask is empty are 0 (defined, not a convention). A value is a
number or NaN (JSON ``null`` or ``"nan"``); NaN marks a case that means and tests skip.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from calf._json import read_json_object
from calf.errors import CalfError

NAN = float("nan")
# upper bound of each key's value (None: unbounded); every value is >= 0 or NaN
_BOUNDS: dict[str, float | None] = {
    "dice_both_empty": 1.0,
    "iou_both_empty": 1.0,
    "hd95_both_empty": None,
    "hd95_one_empty": None,
    "sensitivity_empty_truth": 1.0,
    "specificity_empty_background": 1.0,
    "precision_empty_prediction": 1.0,
}


@dataclass(frozen=True)
class EmptyConventions:
    """The value of each metric where an empty mask leaves it undefined (module table)."""

    dice_both_empty: float = 1.0
    iou_both_empty: float = 1.0
    hd95_both_empty: float = 0.0
    hd95_one_empty: float = 373.13
    sensitivity_empty_truth: float = NAN
    specificity_empty_background: float = NAN
    precision_empty_prediction: float = NAN

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "conventions") -> EmptyConventions:
        """Defaults overridden by ``data``; unknown keys and bad values are CalfErrors.

        A value is a number (bool is not), ``None`` or ``"nan"`` (NaN); Dice, IoU,
        sensitivity, specificity and precision lie in [0, 1], HD95 values are >= 0.
        ``source`` names the file in error messages.
        """
        if not isinstance(data, Mapping):
            raise CalfError(f"{source}: expected a JSON object of convention keys")
        known = [f.name for f in fields(cls)]
        values: dict[str, float] = {}
        for key, raw in data.items():
            if key not in known:
                raise CalfError(
                    f"{source}: unknown convention key {key!r} (known: {', '.join(known)})"
                )
            values[key] = _parse_value(key, raw, source)
        return cls(**values)

    def to_dict(self) -> dict[str, float | None]:
        """The conventions as JSON values: NaN becomes ``null``."""
        return {k: None if math.isnan(v) else v for k, v in asdict(self).items()}


def _parse_value(key: str, raw: Any, source: str) -> float:
    if raw is None or (isinstance(raw, str) and raw.strip().lower() == "nan"):
        return NAN
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise CalfError(f"{source}: {key} = {raw!r} is neither a number nor null/'nan'")
    value = float(raw)
    if math.isnan(value):
        return NAN
    upper = _BOUNDS[key]
    if value < 0 or not math.isfinite(value) or (upper is not None and value > upper):
        bound = f"in [0, {upper:g}]" if upper is not None else "a finite number >= 0"
        raise CalfError(f"{source}: {key} = {raw!r} must be {bound}, or null")
    return value


def read_conventions(path: str | Path | None) -> EmptyConventions:
    """The conventions in a JSON file, or in a JSON object given inline (text starting
    with ``{``), each an object of the keys to override; ``None``: the defaults."""
    if path is None:
        return EmptyConventions()
    if isinstance(path, str) and path.lstrip().startswith("{"):
        try:
            data = json.loads(path)
        except ValueError as err:
            raise CalfError(f"--conventions {path!r}: not valid JSON ({err})") from None
        return EmptyConventions.from_dict(data, "--conventions")
    path = Path(path)
    if not path.is_file():
        raise CalfError(f"{path}: conventions file not found")
    return EmptyConventions.from_dict(read_json_object(path, "conventions"), str(path))
