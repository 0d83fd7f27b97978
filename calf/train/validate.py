"""The validation Dice of every epoch row: (logit > 0) against the masks, pooled over all
the validation set's pixels, in batches, without gradients."""

from __future__ import annotations

import torch

from calf.train.data import TrainingSlices, eval_batches


def pooled_dice(model: torch.nn.Module, slices: TrainingSlices, batch_size: int,
                device: torch.device, amp_dtype: torch.dtype | None = None,
                channels_last: bool = False) -> float:
    """Dice of (logit > 0) against the masks of ``slices``, pooled over all their pixels.

    1.0 when prediction and truth are both empty. The model runs in eval mode and returns
    to the mode it was in.
    """
    was_training = model.training
    model.eval()
    counts = torch.zeros(3, dtype=torch.float64, device=device)
    with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype,
                                         enabled=amp_dtype is not None):
        for positions in eval_batches(len(slices), batch_size):
            x, y = slices[positions]
            x = x.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            pred = model(x) > 0
            truth = y.to(device, non_blocking=True) > 0.5
            counts += torch.stack([(pred & truth).sum(), (pred & ~truth).sum(),
                                   (~pred & truth).sum()]).double()
    model.train(was_training)
    tp, fp, fn = counts.tolist()
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
