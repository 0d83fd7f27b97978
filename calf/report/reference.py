"""The authors' published Dice values (the paper's results tables) as data, with their source.

Every value is the batch-pooled Dice of one training run under the authors' protocol: the
four datasets pooled, one patient-level split of about 90/10, the model after the last
epoch tested once on the pooled test set of 57,090 slices, Dice pooled over each test batch
of 32 slices, the batches drawn from one fixed random permutation of the test set (their
loader's ``DistributedSampler(shuffle=True)``, seed 0, ``set_epoch`` never called), and
averaged over batches (``calf.evaluate.pooled``). Models and losses are named as in the
suite (``unet``, ``calf_region``, ...); ``ratio`` is ``None`` for the natural tumour-slice
fraction, else the training set's filter ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = (
    "Alam et al., 'CALF: A Conditionally Adaptive Loss Function to Mitigate Class-Imbalanced "
    "Segmentation', arXiv:2504.04458 (2025); values from the authors' results file "
    "(Results.xlsx in github.com/masa-byte/MICCAI-Submission, Feb 2025)"
)
TEST_SLICES = 57_090

# the authors' training time per run on the full pooled training set, low and high, in hours
# (the paper's results section; GPU type and count not stated), for TRAIN_SLICES slices x EPOCHS
RUN_HOURS = {"unet": (12.0, 13.6), "deeplabv3": (1.8, 3.5), "fpn": (3.5, 4.9)}
TRAIN_SLICES = 532_748
EPOCHS = 20


def implied_rate(model: str) -> tuple[float, float]:
    """The authors' training rate of ``model`` implied by their per-run times: (low, high)
    slices per second (U-Net about 218-247, DeepLabV3 846-1,644, FPN 604-846)."""
    low_h, high_h = RUN_HOURS[model]
    slices = TRAIN_SLICES * EPOCHS
    return slices / (high_h * 3600), slices / (low_h * 3600)


@dataclass(frozen=True)
class PaperValue:
    """One published number: ``table`` is ``main`` or ``filtering``."""

    table: str
    model: str
    loss: str
    ratio: float | None
    dice: float


_MAIN_LOSSES = ("bce", "dice", "iou", "tversky", "focal", "combo", "calf", "calf_region")
_MAIN_ROWS = {
    "unet": (0.9589, 0.9098, 0.9067, 0.8898, 0.9552, 0.9351, 0.9577, 0.9509),
    "deeplabv3": (0.8597, 0.0864, 0.0754, 0.0867, 0.7998, 0.8569, 0.8598, 0.8541),
    "fpn": (0.9128, 0.8421, 0.8386, 0.8298, 0.8892, 0.8943, 0.9072, 0.8962),
}
# FPN trained on filtered training sets: ratio -> {loss: Dice}
_FILTERING_ROWS = {
    0.10: {"bce": 0.8187, "combo": 0.8265, "calf": 0.8267},
    0.25: {"bce": 0.8849, "calf": 0.8804},
    0.60: {"bce": 0.9057, "calf": 0.9041},
    0.85: {"bce": 0.8942, "calf": 0.8919},
}

MAIN_TABLE: tuple[PaperValue, ...] = tuple(
    PaperValue("main", model, loss, None, dice)
    for model, values in _MAIN_ROWS.items()
    for loss, dice in zip(_MAIN_LOSSES, values, strict=True)
)
FILTERING_TABLE: tuple[PaperValue, ...] = tuple(
    PaperValue("filtering", "fpn", loss, ratio, dice)
    for ratio, values in _FILTERING_ROWS.items()
    for loss, dice in values.items()
)
PAPER_VALUES: tuple[PaperValue, ...] = MAIN_TABLE + FILTERING_TABLE
