"""Per-case evaluation of a trained run: MONAI metrics, empty-mask conventions, outputs.

``evaluate(run, stores, splits, fold, out, ...)`` (``calf evaluate``) predicts every
validation case of a fold and writes the per-case CSV, its JSON, the slice CSV and
overlays (``calf.evaluate.pipeline``); ``case_metrics`` and ``slice_counts`` score arrays
(``calf.evaluate.metrics``); ``batch_pooled_dice`` is the authors' test Dice from a slice
table, the batches drawn as their seeded sampler drew them (``calf.evaluate.pooled``);
``EmptyConventions`` holds the values of metrics an empty mask leaves undefined. Importing this package imports
no torch, MONAI or pandas.
"""

from calf.evaluate.conventions import EmptyConventions, read_conventions
from calf.evaluate.metrics import METRICS, case_metrics, slice_counts
from calf.evaluate.pipeline import CASE_COLUMNS, SLICE_COLUMNS, Labels, OutputPaths, evaluate
from calf.evaluate.pooled import batch_pooled_dice, sampler_order

__all__ = [
    "CASE_COLUMNS",
    "METRICS",
    "SLICE_COLUMNS",
    "EmptyConventions",
    "Labels",
    "OutputPaths",
    "batch_pooled_dice",
    "case_metrics",
    "evaluate",
    "read_conventions",
    "sampler_order",
    "slice_counts",
]
