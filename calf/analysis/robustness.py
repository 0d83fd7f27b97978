"""Does CALF's verdict survive another empty-mask convention, or another metric?

A per-case CSV holds the values of one conventions preset (``calf.evaluate.conventions``);
only the cells an empty mask leaves undefined depend on it, and the CSV's counts say which
those are: ``tumour_voxels == predicted_voxels == 0`` (both empty: Dice, IoU, HD95 and NSD
are conventions) and exactly one of them 0 (one empty: HD95 and NSD are conventions; Dice
and IoU are 0 by definition). ``refill`` re-fills those cells under a named preset, the
one-empty HD95 from the case's grid (``grid_shape``, ``spacing_mm``: the diagonal in mm,
or BraTS's 374 on BraTS's grid). What cannot be re-filled, and stays as evaluated:

- ``lesion_dice`` (and ``lesion_hd95``): BraTS 2023's lesion-wise definition, the same
  under every preset;
- ``sq_dsc``, ``pq_dsc``, ``sq_hd95``: their undefined cells depend on instance counts the
  CSV does not hold;
- the HD95 of two non-empty masks: the brats preset's official definition is computed from
  the masks, not recomputable from the CSV (its defined cells keep the evaluated one);
- cells of a row without counts (an older CSV) or, for a one-empty HD95, without its grid.

``robustness`` then reruns the paired tests (``calf.stats.run.compute_stats``: patient
means, NaN rows left out of both losses, Wilcoxon, Holm over one group's tests of one
preset and metric) for every preset and metric, gives each comparison a verdict (CALF
"better", "worse" or "no difference") and lists the comparisons whose verdict changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from calf.analysis.size_effect import verdict
from calf.defaults import ALPHA, SEED
from calf.errors import CalfError
from calf.evaluate.conventions import PRESET_NAMES, EmptyConventions
from calf.evaluate.metrics import parse_grid
from calf.naming import CALF_LOSSES
from calf.stats.collect import GROUP_KEYS, HIGHER_IS_BETTER
from calf.stats.paired import ZERO_METHODS
from calf.stats.run import MISSING, RESAMPLES

if TYPE_CHECKING:
    import pandas as pd

# the metrics refill re-fills, and the convention key of each where both masks are empty
BOTH_EMPTY_KEYS = {"dice": "dice_both_empty", "iou": "iou_both_empty",
                   "hd95": "hd95_both_empty", "nsd": "nsd_both_empty"}
REFILLED_METRICS = tuple(BOTH_EMPTY_KEYS)
# preset-dependent, but their undefined cells are not known from the CSV: kept as evaluated
NOT_REFILLED = ("sq_dsc", "pq_dsc", "sq_hd95")
# the same under every preset (BraTS 2023's lesion-wise definition)
PRESET_FREE = ("lesion_dice", "lesion_hd95")
ROBUSTNESS_METRICS = ("dice", "lesion_dice", "nsd", "hd95")
VERDICT_KEYS = (*GROUP_KEYS, "calf_loss", "baseline")
ROBUSTNESS_COLUMNS = (*GROUP_KEYS, "preset", "metric", "calf_loss", "baseline", "n_patients",
                      "median_diff", "ci_low", "ci_high", "p_value", "p_holm", "verdict",
                      "n_refilled", "note")
# the ``compute_stats`` columns robustness.csv keeps
_TEST_COLUMNS = ("n_patients", "median_diff", "ci_low", "ci_high", "p_value", "p_holm")


@dataclass
class _Refill:
    """Rows re-filled under one preset: the copy, per metric the cells whose value changed
    and the one-empty HD95 cells kept for want of a grid, and notes."""

    cases: "pd.DataFrame"
    changed: dict[str, "pd.Series"]
    kept: "pd.Series"
    notes: list[str] = field(default_factory=list)


def _empty_masks(cases: "pd.DataFrame") -> tuple["pd.Series", "pd.Series", "pd.Series"]:
    """Rows whose masks are both empty, exactly one empty, and rows without both counts."""
    truth, pred = cases["tumour_voxels"], cases["predicted_voxels"]
    known = truth.notna() & pred.notna()
    both = known & (truth == 0) & (pred == 0)
    one = known & ((truth == 0) != (pred == 0))
    return both, one, ~known


def _one_empty_hd95(cases: "pd.DataFrame", conventions: EmptyConventions) -> "pd.Series":
    """Each row's one-empty HD95 under ``conventions`` on its grid; NaN where the row has
    no grid (``grid_shape``, ``spacing_mm``) and the preset's value needs one."""
    import pandas as pd

    if not _needs_grid(conventions):
        return pd.Series(math.nan, index=cases.index)
    shapes = cases.get("grid_shape", pd.Series(None, index=cases.index, dtype=object))
    spacings = cases.get("spacing_mm", pd.Series(None, index=cases.index, dtype=object))
    penalty: dict[tuple, float] = {}
    out = []
    for key in zip(shapes.astype(object), spacings.astype(object)):
        if key not in penalty:
            grid = parse_grid(*key)
            penalty[key] = math.nan if grid is None else conventions.one_empty_hd95(*grid)
        out.append(penalty[key])
    return pd.Series(out, index=cases.index, dtype=float)


def _changed(old: "pd.Series", new: "pd.Series") -> "pd.Series":
    """Cells whose value differs (NaN and NaN are the same value)."""
    return ~((old == new) | (old.isna() & new.isna()))


def _refill(cases: "pd.DataFrame", preset: str) -> _Refill:
    """``cases`` with the undefined cells of ``REFILLED_METRICS`` re-filled under ``preset``
    (see the module docstring); the original is left as it is."""
    conventions = EmptyConventions.named(preset)
    both, one, unknown = _empty_masks(cases)
    out = cases.copy()
    for metric, key in BOTH_EMPTY_KEYS.items():
        out.loc[both.to_numpy(), metric] = getattr(conventions, key)
    out.loc[one.to_numpy(), "nsd"] = conventions.nsd_one_empty
    hd95 = _one_empty_hd95(cases, conventions)
    kept = one & hd95.isna() & _needs_grid(conventions)
    filled = (one & ~kept).to_numpy()  # positions: the index need not be unique
    out.loc[filled, "hd95"] = hd95.to_numpy()[filled]
    changed = {m: _changed(cases[m], out[m]) for m in cases.columns
               if m in (*REFILLED_METRICS, *NOT_REFILLED, *PRESET_FREE)}
    notes = []
    if unknown.any():
        notes.append(f"{preset}: {int(unknown.sum())} row(s) without tumour_voxels or "
                     "predicted_voxels (an older CSV): their cells kept as evaluated")
    if kept.any():
        notes.append(f"{preset}: {int(kept.sum())} one-empty HD95 cell(s) without grid_shape "
                     "and spacing_mm (an older CSV): kept as evaluated")
    return _Refill(out, changed, kept, notes)


def _needs_grid(conventions: EmptyConventions) -> bool:
    """Whether the preset's one-empty HD95 depends on the grid (not NaN everywhere)."""
    value = conventions.hd95_one_empty
    return not (isinstance(value, float) and math.isnan(value))


def refill(cases: "pd.DataFrame", preset: str) -> tuple["pd.DataFrame", dict[str, int]]:
    """A copy of ``cases`` (``calf.stats.collect.load_case_metrics`` rows) whose undefined
    Dice, IoU, NSD and HD95 cells hold ``preset``'s values, and per metric the number of
    cells whose value that changed. ``sq_dsc``, ``pq_dsc`` and ``sq_hd95`` are not
    re-filled (the CSV lacks their instance counts), ``lesion_dice`` and ``lesion_hd95``
    need not be (preset-free); both are counted (0). Unknown preset: CalfError."""
    done = _refill(cases, preset)
    return done.cases, {m: int(c.sum()) for m, c in done.changed.items()}


# notes that hold for every table of robustness.csv
FIXED_NOTES = (
    "robustness: lesion_dice and lesion_hd95 follow BraTS 2023's lesion-wise definition, the "
    "same under every preset: not re-filled",
    "robustness: sq_dsc, pq_dsc and sq_hd95 (and sensitivity, specificity, precision) are not "
    "re-filled: their cells stay as evaluated under every preset",
    "robustness: the HD95 of two non-empty masks keeps the definition it was evaluated with; "
    "the brats preset's official HD95 is not recomputable from the CSV, so brats differs from "
    "the CSV's HD95 only in its undefined cells",
)


def _row_note(preset: str, metric: str, test: dict, n_kept: int) -> str:
    """Why a robustness row's numbers are what they are, in a few words ("" when plain);
    ``test``: its ``compute_stats`` paired row."""
    parts = []
    if metric in PRESET_FREE:
        parts.append("lesion-wise: the same under every preset")
    elif metric not in REFILLED_METRICS:
        parts.append("not re-filled: cells as evaluated")
    if metric == "hd95" and preset == "brats":
        parts.append("defined cells: the evaluated HD95 (brats's official one not recomputable)")
    if n_kept:
        parts.append(f"{n_kept} one-empty cell(s) without a grid kept as evaluated")
    if test["n_dropped_nan"]:
        parts.append(f"{test['n_dropped_nan']} row(s) NaN for either loss left out")
    if math.isnan(test["p_value"]):
        parts.append(f"no test: {test['method']}")
    return "; ".join(parts)


def _per_loss(cases: "pd.DataFrame", flags: "pd.Series") -> dict[tuple, int]:
    """The number of flagged cells per ``(*GROUP_KEYS, loss)``."""
    keys = [cases[k].astype(object) for k in (*GROUP_KEYS, "loss")]
    return {tuple(k): int(v) for k, v in flags.astype(int).groupby(keys, sort=False).sum().items()}


def _preset_rows(done: _Refill, preset: str, metrics: Sequence[str], calf_losses,
                 tests: dict) -> tuple[list[dict], list[str]]:
    """The robustness rows of one preset: every study, metric and comparison."""
    import pandas as pd

    from calf.stats.run import compute_stats

    rows, notes = [], list(done.notes)
    none = pd.Series(False, index=done.cases.index)
    for study in sorted(set(done.cases["study"])):
        for metric in metrics:
            stats = compute_stats(done.cases, study=study, calf_losses=calf_losses,
                                  metrics=[metric], friedman_metrics=(), family="group",
                                  **tests)
            notes += [f"{preset}: {note}" for note in stats.notes]
            changed = _per_loss(done.cases, done.changed.get(metric, none))
            kept = _per_loss(done.cases, done.kept if metric == "hd95" else none)
            for test in stats.paired.to_dict(orient="records"):
                group = tuple(test[k] for k in GROUP_KEYS)
                pair = (test["calf_loss"], test["baseline"])
                n_kept = sum(kept.get((*group, loss), 0) for loss in pair)
                rows.append({
                    **{k: test[k] for k in (*GROUP_KEYS, "calf_loss", "baseline")},
                    "preset": preset, **{k: test[k] for k in _TEST_COLUMNS},
                    "verdict": verdict(bool(test["significant"]), test["rank_biserial"],
                                       HIGHER_IS_BETTER[metric]),
                    "n_refilled": sum(changed.get((*group, loss), 0) for loss in pair),
                    "note": _row_note(preset, metric, test, n_kept),
                    "metric": metric,
                })
    return rows, notes


def verdict_changes(table: "pd.DataFrame", presets: Sequence[str],
                    metrics: Sequence[str]) -> "pd.DataFrame":
    """One row per comparison (``VERDICT_KEYS``) of ``table`` (robustness rows) whose verdict
    is not the same in every (preset, metric): a column ``"<preset>/<metric>"`` each."""
    import pandas as pd

    columns = [f"{p}/{m}" for p in presets for m in metrics]
    if table.empty:
        return pd.DataFrame(columns=[*VERDICT_KEYS, *columns])
    keyed = table.assign(combination=table["preset"] + "/" + table["metric"])
    wide = keyed.pivot(index=list(VERDICT_KEYS), columns="combination", values="verdict")
    wide = wide.reindex(columns=columns)
    changes = wide[wide.nunique(axis=1, dropna=True) > 1]
    changes.columns.name = None
    return changes.reset_index()[[*VERDICT_KEYS, *columns]]


def robustness(
    cases: "pd.DataFrame",
    *,
    calf_losses: Sequence[str] = CALF_LOSSES,
    presets: Sequence[str] = PRESET_NAMES,
    metrics: Sequence[str] = ROBUSTNESS_METRICS,
    alpha: float = ALPHA,
    zero_method: str = ZERO_METHODS[0],
    resamples: int = RESAMPLES,
    seed: int = SEED,
    missing: str = MISSING[0],
) -> tuple["pd.DataFrame", "pd.DataFrame", list[str]]:
    """CALF against every baseline under every preset and metric (``robustness.csv``), the
    comparisons whose verdict changes (``verdict_changes.csv``) and notes.

    ``cases``: ``calf.stats.collect.load_case_metrics`` rows. For each preset the rows are
    re-filled (``refill``), then per study and metric ``calf.stats.run.compute_stats`` runs
    the paired tests on patient means with Holm over one group's tests (its CALF losses x
    baselines) of that preset and metric. ``verdict``: "better" / "worse" when Holm's p <
    ``alpha`` and the rank-biserial effect favours CALF / the baseline, else "no
    difference" (also when no test could run). ``n_refilled``: cells of the two losses in
    the group whose value the preset changed. Unknown preset or metric: CalfError.
    """
    import pandas as pd

    presets, metrics = tuple(dict.fromkeys(presets)), tuple(dict.fromkeys(metrics))
    for preset in presets:
        EmptyConventions.named(preset)  # a CalfError for an unknown name, before any test
    if not presets or not metrics:
        raise CalfError("robustness: at least one preset and one metric are needed")
    tests = {"alpha": alpha, "zero_method": zero_method, "resamples": resamples,
             "seed": seed, "missing": missing}
    rows, notes = [], list(FIXED_NOTES)
    if len(cases) and calf_losses:
        for preset in presets:
            preset_rows, preset_notes = _preset_rows(_refill(cases, preset), preset, metrics,
                                                     calf_losses, tests)
            rows += preset_rows
            notes += preset_notes
    table = pd.DataFrame(rows, columns=list(ROBUSTNESS_COLUMNS))
    return table, verdict_changes(table, presets, metrics), list(dict.fromkeys(notes))
