"""The authors' test Dice: Dice pooled over each test batch, batches in their loader's order.

Their test loader (``scripts/run_training.py``, masa-byte/MICCAI-Submission) was
``DataLoader(test, batch_size=32, sampler=DistributedSampler(test, num_replicas=W,
rank=r, shuffle=True))``, the sampler's default seed 0, ``set_epoch`` never called on it.
``Solver.validate`` adds up, per batch, ``2 sum(pred * mask) / (sum pred + sum mask)``
(1.0 when both sums are 0) and divides by the number of batches, the last, shorter batch
counted like the others; with W GPUs each rank's mean is summed (``all_reduce``) and
divided by W.

The sampler's order (torch's ``DistributedSampler.__iter__``): ``g = torch.Generator();
g.manual_seed(seed + epoch)``, ``torch.randperm(n, generator=g)``, padded by repeating its
head to a multiple of W, rank r taking every W-th position from r. One replica pads
nothing. The permutation runs over the rows of the slice table in the order given (the
slice CSV: the validation cases in ``splits_final.json`` order, each case's modalities in
store order, each volume's slices in order). The authors' own dataset order was
``os.listdir`` order, so their batches cannot be rebuilt slice for slice: the procedure is
theirs, the draw is the suite's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

ORDER = "authors_sampler_randperm"  # the name recorded with every batch-pooled Dice
POOLED_BATCH = 32  # the authors' test batch (per GPU)
POOLED_SEED = 0  # DistributedSampler's default seed; epoch 0 (set_epoch never called)
# the key of the batch-pooled Dice in a metrics companion JSON's summary: "batch_pooled_dice_32"
POOLED_SUMMARY_KEY = f"batch_pooled_dice_{POOLED_BATCH}"
CONFUSION_COLUMNS = ("tp", "fp", "fn", "tn")  # a slice table's counts, as slice_counts gives them


def sampler_order(n: int, seed: int = POOLED_SEED, replicas: int = 1, rank: int = 0) -> np.ndarray:
    """Positions ``0..n-1`` in the order rank ``rank`` of ``replicas`` draws them (epoch 0)."""
    import numpy as np
    import torch

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if replicas < 1 or not 0 <= rank < replicas:
        raise ValueError(f"rank {rank} of {replicas} replicas: need 0 <= rank < replicas")
    g = torch.Generator()
    g.manual_seed(seed)
    order = torch.randperm(n, generator=g).numpy()
    total = -(-n // replicas) * replicas
    order = np.resize(order, total)  # repeats the head: the sampler's padding
    return order[rank::replicas]


def batch_pooled_dice(
    slices: pd.DataFrame,
    batch_size: int = POOLED_BATCH,
    seed: int = POOLED_SEED,
    replicas: int = 1,
) -> float:
    """The authors' test Dice from a slice table with columns tp, fp, fn, tn (docstring above).

    Each batch scores 2 TP / (2 TP + FP + FN) (MONAI's ``f1 score``), 1 for a batch without
    tumour and without prediction; the mean over each rank's batches, then over ranks.
    """
    import numpy as np
    import torch
    from monai.metrics import compute_confusion_matrix_metric

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    missing = [c for c in CONFUSION_COLUMNS if c not in slices.columns]
    if missing:
        raise ValueError(f"slice table lacks column(s) {', '.join(missing)}")
    if slices.empty:
        raise ValueError("slice table has no rows")
    counts = slices[["tp", "fp", "tn", "fn"]].to_numpy(dtype=np.float64)  # MONAI's order
    means = []
    for rank in range(replicas):
        drawn = counts[sampler_order(len(counts), seed, replicas, rank)]
        pooled = np.add.reduceat(drawn, np.arange(0, len(drawn), batch_size), axis=0)
        dice = compute_confusion_matrix_metric("f1 score", torch.from_numpy(pooled))
        means.append(float(torch.nan_to_num(dice, nan=1.0).mean().item()))
    return float(np.mean(means))


def pooled_settings(
    batch_size: int = POOLED_BATCH, seed: int = POOLED_SEED, replicas: int = 1
) -> dict[str, Any]:
    """How a batch-pooled Dice was drawn, for the metrics' companion JSON."""
    return {
        "order": ORDER,
        "seed": seed,
        "epoch": 0,
        "batch_size": batch_size,
        "replicas": replicas,
        "permuted": "the slice CSV's rows in file order (validation cases in splits order, "
        "modalities in store order, slices in order)",
        "sampler": "torch.utils.data.DistributedSampler(shuffle=True, "
        f"num_replicas={replicas}, seed={seed}), set_epoch never called",
        "dice": "2 TP / (2 TP + FP + FN) per batch, 1 for a batch without tumour and "
        "prediction; mean over batches (the last, shorter one included), then over replicas",
    }
