"""Where CALF helps by tumour size: CALF against each baseline within each size class.

``size_class_tests`` takes ``patient_advantage.csv`` (``calf.analysis.strata``) and runs,
per group (study, dataset, model, ratio), metric, size class, CALF loss and baseline, the
paired Wilcoxon test of ``calf.stats.paired.paired_test`` on the class's patients (the
unit, as in ``calf stats``), with the median difference's seeded bootstrap CI. Holm's
correction runs over one family per group and metric: all of its size classes x CALF
losses x baselines (``calf.stats.run.with_holm``). ``verdict``, in CALF's view:
``"better"`` (significant and favouring CALF), ``"worse"`` (significant and favouring the
baseline) or ``"no difference"``; the direction is the rank-biserial correlation's sign,
flipped for lower-is-better metrics (HD95). Classes come ``"no tumour"`` first, then by size.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from calf.analysis.strata import NO_TUMOUR
from calf.defaults import ALPHA, SEED
from calf.stats.collect import GROUP_KEYS, HIGHER_IS_BETTER, group_label
from calf.stats.paired import ZERO_METHODS
from calf.stats.run import RESAMPLES

if TYPE_CHECKING:
    import pandas as pd

BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no difference"
VERDICTS = (BETTER, WORSE, NO_DIFFERENCE)
CLASS_KEYS = ("size_class", "class_low", "class_high", "size_unit")
SIZE_CLASS_COLUMNS = (*GROUP_KEYS, "metric", "size_class", "class_low", "class_high",
                      "size_unit", "calf_loss", "baseline", "n_patients", "n_zero_diff",
                      "mean_calf", "mean_baseline", "median_diff", "ci_low", "ci_high",
                      "statistic", "p_value", "p_holm", "significant", "rank_biserial",
                      "verdict", "family", "family_size", "method")


def verdict(significant: bool, rank_biserial: float, higher_is_better: bool) -> str:
    """CALF's view of one test: better / worse when significant, else no difference."""
    if not significant or math.isnan(rank_biserial) or rank_biserial == 0:
        return NO_DIFFERENCE
    return BETTER if (rank_biserial > 0) == higher_is_better else WORSE


def class_order(classes: "pd.DataFrame") -> "pd.DataFrame":
    """The distinct ``CLASS_KEYS`` rows of ``classes``: ``"no tumour"`` first, then by
    size (low bound, then high bound)."""
    distinct = classes[list(CLASS_KEYS)].drop_duplicates()
    key = distinct.assign(_tumour=distinct["size_class"] != NO_TUMOUR)
    return key.sort_values(["_tumour", "class_low", "class_high", "size_class"]).drop(
        columns="_tumour")


def _class_test(rows: "pd.DataFrame", identity: tuple, *, zero_method: str, resamples: int,
                seed: int) -> dict:
    """The paired test of one class's patients (``calf_value`` against ``baseline_value``)."""
    from calf.stats.paired import paired_test
    from calf.stats.run import seeded_generator

    result = paired_test(rows["calf_value"].to_numpy(dtype=float),
                         rows["baseline_value"].to_numpy(dtype=float), zero_method=zero_method,
                         resamples=resamples, rng=seeded_generator(seed, identity))
    numbers = result.as_dict()
    numbers["n_patients"] = numbers.pop("n_pairs")
    return numbers


def _group_tests(key: tuple, rows: "pd.DataFrame", options: dict) -> list[dict]:
    """Every test of one group and metric (``key``: the group keys and the metric)."""
    ident = dict(zip((*GROUP_KEYS, "metric"), key))
    family = f"{group_label(ident)}/{ident['metric']}"
    pairs = rows[["calf_loss", "baseline"]].drop_duplicates().itertuples(index=False)
    pairs = list(pairs)
    out = []
    for klass in class_order(rows).itertuples(index=False):
        mine = rows[rows["size_class"] == klass.size_class]
        for calf, baseline in pairs:
            pair = mine[(mine["calf_loss"] == calf) & (mine["baseline"] == baseline)]
            identity = (*key, klass.size_class, calf, baseline)
            out.append({**ident, **klass._asdict(), "calf_loss": calf, "baseline": baseline,
                        **_class_test(pair, identity, **options), "family": family})
    return out


def size_class_tests(advantages: "pd.DataFrame", *, alpha: float = ALPHA,
                     zero_method: str = ZERO_METHODS[0], resamples: int = RESAMPLES,
                     seed: int = SEED) -> "pd.DataFrame":
    """``size_classes.csv``: one row per (group, metric, size class, CALF loss, baseline),
    ``SIZE_CLASS_COLUMNS`` (see the module docstring). ``advantages``: the rows of
    ``calf.analysis.strata.patient_advantages``; each test's resamples are seeded with
    ``seed`` and the test's identity (``calf.stats.run.seeded_generator``)."""
    import pandas as pd

    from calf.stats.run import with_holm

    options = {"zero_method": zero_method, "resamples": resamples, "seed": seed}
    rows = []
    for key, group in advantages.groupby([*GROUP_KEYS, "metric"], sort=False):
        rows += _group_tests(key, group, options)
    columns = [c for c in SIZE_CLASS_COLUMNS if c not in ("p_holm", "significant", "verdict",
                                                          "family_size")]
    table = with_holm(pd.DataFrame(rows, columns=columns), alpha)
    if table.empty:
        return pd.DataFrame(columns=list(SIZE_CLASS_COLUMNS))
    higher = table["metric"].map(HIGHER_IS_BETTER)
    table["verdict"] = [verdict(s, r, h) for s, r, h in zip(
        table["significant"], table["rank_biserial"], higher)]
    return table[list(SIZE_CLASS_COLUMNS)]
