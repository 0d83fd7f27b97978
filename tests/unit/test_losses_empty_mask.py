"""The README's "Losses" table, column "an empty mask", against every registered loss.

Each row's cell reads ``<loss at -10> / <loss at +10>; gradient <g at -10> / <g at +10>``
then optional words: the loss of one 256 x 256 slice with an all-empty mask and every
logit -10 or +10, and the largest |dL/dlogit| over its pixels. A number is the measured
value rounded to the digits shown (an integer exactly), ``< b`` a bound. "no gradient"
is claimed exactly where the gradient at +10 is below ``NO_GRADIENT``; "`bce_dice` runs"
is claimed where CALF's branch (every region's, for the region variant) is ``bce_dice``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from calf.losses import LOSSES, build_loss

README = Path(__file__).resolve().parents[2] / "README.md"
SIZE = 256  # the training size
LOGITS = (-10.0, 10.0)
NO_GRADIENT = 1e-12
NUMBER = r"(?:< )?\d+(?:\.\d+)?(?:e[+-]?\d+)?"
CELL = re.compile(
    rf"^(?P<v_neg>{NUMBER}) / (?P<v_pos>{NUMBER}); "
    rf"gradient (?P<g_neg>{NUMBER}) / (?P<g_pos>{NUMBER})(?P<words>.*)$"
)


def _readme_cells() -> dict[str, str]:
    """Loss name -> the empty-mask cell of the README's "Losses" table."""
    section = README.read_text().split("\n## Losses\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| `")]
    cells = {}
    for line in lines:
        parts = [p.strip() for p in line.strip().strip("|").split(" | ")]
        cells[parts[0].strip("`")] = parts[-1]
    return cells


CELLS = _readme_cells()


def _agrees(stated: str, measured: float) -> bool:
    """Whether ``measured`` is the stated number at the digits shown, or within its bound."""
    if stated.startswith("< "):
        return abs(measured) < float(stated[2:])
    value = float(stated)
    mantissa, _, exponent = stated.partition("e")
    if "." not in mantissa:  # an integer: exactly (float32 round-off aside)
        return abs(measured - value) <= 1e-6 * abs(value)
    unit = 10.0 ** (int(exponent or 0) - len(mantissa.split(".")[1]))
    return abs(measured - value) <= 0.5 * unit + 1e-6 * abs(value)


def _empty_mask_response(name: str, logit: float) -> tuple[float, float, torch.nn.Module]:
    """Loss and largest |dL/dlogit| on one all-empty slice with every logit ``logit``."""
    loss = build_loss(name)
    x = torch.full((1, 1, SIZE, SIZE), logit, requires_grad=True)
    value = loss(x, torch.zeros_like(x))
    value.backward()
    return value.item(), x.grad.abs().max().item(), loss


def test_every_registered_loss_has_a_measured_cell():
    assert sorted(CELLS) == sorted(LOSSES)
    for name, cell in CELLS.items():
        assert CELL.match(cell), f"README row {name!r}: {cell!r} is not in the measured form"


@pytest.mark.parametrize("name", sorted(CELLS))
def test_readme_empty_mask_cell_matches_the_loss(name):
    claim = CELL.match(CELLS[name])
    assert claim, CELLS[name]
    (v_neg, g_neg, _), (v_pos, g_pos, loss) = (_empty_mask_response(name, v) for v in LOGITS)
    measured = {"v_neg": v_neg, "v_pos": v_pos, "g_neg": g_neg, "g_pos": g_pos}
    for key, value in measured.items():
        assert _agrees(
            claim[key], value
        ), f"{name}: README {key} {claim[key]}, measured {value:.6g}"
    words = claim["words"]
    assert ("no gradient" in words) == (g_pos < NO_GRADIENT), f"{name}: {g_pos:.3g} at +10"
    if "`bce_dice` runs" in words:
        branches = getattr(loss, "last_branches", None) or (loss.last_branch,)
        assert set(branches) == {"bce_dice"}


@pytest.mark.parametrize(
    "stated, measured, agrees",
    [
        ("0.999997", 0.9999967, True),
        ("0.999997", 0.9999950, False),
        ("1", 1.0, True),
        ("1", 0.99999, False),
        ("0", 0.0, True),
        ("0", 5e-11, False),
        ("1.5e-05", 1.526e-05, True),
        ("1.5e-05", 1.56e-05, False),
        ("< 1e-12", 1.1e-19, True),
        ("< 1e-12", 5e-11, False),
        ("11.0", 11.0000458, True),
    ],
)
def test_agrees_reads_numbers_at_their_digits(stated, measured, agrees):
    assert _agrees(stated, measured) is agrees


def test_monai_dice_claims_of_the_text():
    # the paragraph under the table: 65,536 x sigmoid(-10) = 3.0 of soft prediction, and
    # a right, empty prediction scores near 0 only below about -30 (0.0006 at -30)
    assert SIZE * SIZE * torch.sigmoid(torch.tensor(-10.0)).item() == pytest.approx(3.0, abs=0.05)
    value, _, _ = _empty_mask_response("monai_dice", -30.0)
    assert value == pytest.approx(0.0006, abs=0.00005)
    assert _empty_mask_response("monai_dice", -20.0)[0] > 0.5
