"""Significance markers of the summary table, from the paired statistics (``paired.csv``).

A baseline's cells of a metric carry one marker per CALF loss that differs significantly
from that baseline on that metric (``significant``, after Holm) in the group that pools
the modalities (``modality == "all"``; per-modality groups carry no marker, the summary
table pools the modalities too); the legend under each
table says what the markers mean, which test and correction made them, at which alpha,
and which metrics were tested at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from calf.errors import CalfError
from calf.layout import ratio_text
from calf.naming import LOSS_NAMES, METRIC_NAMES, display, ordered
from calf.stats.collect import GROUP_KEYS, METRIC_COLUMNS, pooled_groups

if TYPE_CHECKING:
    import pandas as pd

MARKERS = {"calf": "†", "calf_region": "‡"}
SPARE_MARKERS = ("§", "¶", "‖")  # for other CALF variants, in the order given
PAIRED_COLUMNS = (*GROUP_KEYS, "modality", "metric", "calf_loss", "baseline", "significant")
FAMILY_TEXT = {
    "group": "over every test of this dataset, model and ratio",
    "study": "over every test of the study",
}
_FLAGS = {"True": True, "False": False, "true": True, "false": False}


def markers_for(calf_losses: Sequence[str]) -> dict[str, str]:
    """The marker of each CALF loss: † calf, ‡ calf_region, others §, ¶, ‖, then §4, §5, ..."""
    out, spare = {}, 0
    for loss in calf_losses:
        if loss in MARKERS:
            out[loss] = MARKERS[loss]
        else:
            out[loss] = SPARE_MARKERS[spare] if spare < len(SPARE_MARKERS) else f"§{spare + 1}"
            spare += 1
    return out


def check_paired(paired: "pd.DataFrame", present: set[tuple[str, ...]],
                 calf_losses: Sequence[str], alpha: float) -> "pd.DataFrame":
    """The pooled-modality rows of ``paired`` with text keys and boolean ``significant``, or
    a CalfError naming the row that does not fit: ``present`` holds the (study, dataset,
    model, ratio, loss) of the cases; ``significant`` must agree with ``p_holm < alpha``
    where ``p_holm`` is given."""
    missing = [c for c in PAIRED_COLUMNS if c not in paired.columns]
    if missing:
        raise CalfError(f"paired statistics: missing column(s) {', '.join(missing)}")
    paired = pooled_groups(paired, "paired statistics").copy()
    for key in (*GROUP_KEYS, "metric", "calf_loss", "baseline"):
        paired[key] = paired[key].astype(str)
    paired["ratio"] = paired["ratio"].map(ratio_text)
    flags = paired["significant"].map(lambda v: _FLAGS.get(v) if isinstance(v, str)
                                      else (bool(v) if v in (True, False) else None))
    if flags.isna().any():
        bad = paired.loc[flags.isna(), "significant"].iloc[0]
        raise CalfError(f"paired statistics: column significant holds {str(bad)!r}, "
                        "expected True/False")
    paired["significant"] = flags.astype(bool)
    for row in paired.itertuples(index=False):
        where = f"{row.study}/{row.dataset}/{row.model}/ratio {row.ratio}"
        if row.metric not in METRIC_COLUMNS:
            raise CalfError(f"paired statistics: unknown metric {row.metric!r} ({where})")
        if row.calf_loss not in calf_losses:
            raise CalfError(f"paired statistics: calf_loss {row.calf_loss!r} ({where}) is not "
                            f"among the CALF losses ({', '.join(calf_losses)})")
        for loss in (row.calf_loss, row.baseline):
            if (row.study, row.dataset, row.model, row.ratio, loss) not in present:
                raise CalfError(f"paired statistics: loss {loss!r} of {where} "
                                "is not in the per-case metrics")
    duplicated = paired.duplicated([*GROUP_KEYS, "metric", "calf_loss", "baseline"])
    if duplicated.any():
        row = paired[duplicated].iloc[0]
        raise CalfError(f"paired statistics: {row['calf_loss']} vs {row['baseline']} on "
                        f"{row['metric']} appears twice for {row['dataset']}/{row['model']}")
    if "p_holm" in paired.columns:
        p_holm = paired["p_holm"].astype(float)
        wrong = p_holm.notna() & ((p_holm < alpha) != paired["significant"])
        if wrong.any():
            row = paired[wrong].iloc[0]
            raise CalfError(
                f"paired statistics: significant={row['significant']} but p_holm="
                f"{row['p_holm']:.4g} for {row['calf_loss']} vs {row['baseline']} on "
                f"{row['metric']} at alpha={alpha:g}; pass the alpha the statistics used")
    return paired


def significant_vs(paired: "pd.DataFrame", calf_losses: Sequence[str]) -> "pd.Series":
    """';'-joined CALF losses (in ``calf_losses`` order) that differ significantly from a
    baseline on a metric, indexed by (study, dataset, model, ratio, baseline, metric)."""
    hits = paired[paired["significant"]]
    hits = hits.assign(order=hits["calf_loss"].map(list(calf_losses).index)).sort_values("order")
    return (hits.groupby([*GROUP_KEYS, "baseline", "metric"])["calf_loss"]
            .agg(";".join).rename("significant_vs"))


def _family_text(tests: "pd.DataFrame") -> str:
    """Which tests the Holm correction ran over, from the ``family`` (and ``family_size``)
    columns: 'group'/'study' or a family's label."""
    if "family" not in tests.columns:
        return "over its family of tests"
    sizes = tests["family_size"] if "family_size" in tests.columns else [None] * len(tests)
    parts = []
    for name, size in sorted(set(zip(tests["family"].astype(str), sizes))):
        if name in FAMILY_TEXT:
            parts.append(FAMILY_TEXT[name])
        elif size is None or size != size:  # absent or NaN
            parts.append(f"over the tests of family {name}")
        else:
            parts.append(f"over the {int(size)} tests of family {name}")
    return "; ".join(parts)


def legend(tests: "pd.DataFrame | None", calf_present: list[str], marks: dict[str, str],
           alpha: float) -> list[str]:
    """The notes under one block: bold, markers, test, correction, alpha, tested metrics."""
    bold = ("Bold: the best value of the column (highest; lowest for HD95), compared at the "
            "precision shown; equal values are all bold.")
    if tests is None:
        return [bold, "No significance markers: no paired statistics were given."]
    if tests.empty:
        return [bold, "No significance markers: the paired statistics hold no test for this "
                      "dataset, model and ratio."]
    family = _family_text(tests)
    names = ", ".join(f"{marks[c]} {display(c, LOSS_NAMES)}" for c in calf_present)
    metrics = ", ".join(display(m, METRIC_NAMES) for m in ordered(tests["metric"], METRIC_COLUMNS))
    return [bold,
            f"{names}: on a baseline's row, this CALF loss differs significantly from that "
            "baseline on that metric (paired Wilcoxon signed-rank test over patients, each "
            "patient's mean over modalities, then exams, then seeds; p-values "
            f"Holm-corrected {family}, α = {alpha:g}).",
            f"Tested metrics: {metrics} only; the other metrics were not tested and carry "
            "no marker."]
