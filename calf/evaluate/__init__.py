"""Per-case evaluation of a trained run: the field's metrics, conventions presets, outputs.

``evaluate(run, stores, splits, fold, out, ...)`` (``calf evaluate``) predicts every
validation case of a fold, brings it back to the case's original grid
(``calf.evaluate.native``) and writes the per-case CSV, its JSON, the slice CSV and
overlays (``calf.evaluate.pipeline``); ``read_companion`` and ``write_companion`` are the
one reader and writer of that JSON, the metrics companion (``calf.evaluate.companion``);
``case_metrics`` and ``slice_counts`` score arrays
(``calf.evaluate.metrics``, with the BraTS lesion-wise and instance-wise metrics of
``calf.evaluate.lesions``); ``batch_pooled_dice`` is the authors' test Dice from a slice
table, the batches drawn as their seeded sampler drew them (``calf.evaluate.pooled``);
``EmptyConventions`` holds the values of metrics an empty mask leaves undefined, in three
named presets (``calf.evaluate.conventions``). Importing this package imports no torch,
MONAI or pandas.
"""

from calf.evaluate.companion import read_companion, write_companion
from calf.evaluate.conventions import EmptyConventions, read_conventions
from calf.evaluate.metrics import METRICS, MetricSettings, case_metrics, slice_counts
from calf.evaluate.pipeline import CASE_COLUMNS, SLICE_COLUMNS, Labels, OutputPaths, evaluate
from calf.evaluate.pooled import batch_pooled_dice, sampler_order

__all__ = [
    "CASE_COLUMNS",
    "METRICS",
    "SLICE_COLUMNS",
    "EmptyConventions",
    "Labels",
    "MetricSettings",
    "OutputPaths",
    "batch_pooled_dice",
    "case_metrics",
    "evaluate",
    "read_companion",
    "read_conventions",
    "sampler_order",
    "slice_counts",
    "write_companion",
]
