"""Load a finished training run and predict slices of a slice store with it.

A run directory (written by ``calf train``) holds ``run.json`` (``status`` must be
``complete``) and ``checkpoint.pt`` (``format`` 1, ``epoch``, ``model_state`` and
``config``, whose ``params`` name the model: ``model``, ``width``, ``model_kwargs``, and
the ``loss``). The checkpoint is a pickle: load only runs you trust (your own results).
Prediction runs in eval mode without gradients, batch by batch, channels-last (and on CUDA
with autocast) as in training: the device and the autocast dtype come from ``calf.device``,
as training's do. A pixel is tumour where its logit is > 0. Imports no torch until a
function needs it, and never the training loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calf.errors import CalfError
from calf.layout import CHECKPOINT_FILE, RUN_FILE
from calf.train.rundir import read_run_record

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from calf.store import SliceStore

PREDICT_BATCH = 64  # slices per forward pass unless told otherwise


@dataclass
class TrainedRun:
    """A loaded run: its network (eval mode, on ``device``) and what trained it."""

    path: Path
    model: nn.Module
    model_name: str
    config: dict[str, Any]
    epoch: int
    device: torch.device


def _params(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The training parameters of a checkpoint config: its ``params`` (as ``calf train``
    writes them), or the config itself when it is flat."""
    params = config.get("params")
    return params if isinstance(params, Mapping) else config


def model_spec(config: Mapping[str, Any], source: str) -> tuple[str, float, dict[str, Any]]:
    """``(name, width, kwargs)`` of the network a checkpoint config's parameters name
    (keys ``model``, ``width``, ``model_kwargs``)."""
    params = _params(config)
    name, width = params.get("model"), params.get("width", 1.0)
    kwargs = params.get("model_kwargs") or {}
    if not isinstance(name, str) or not name:
        raise CalfError(f"{source}: config has no model name (key 'model')")
    if isinstance(width, bool) or not isinstance(width, (int, float)):
        raise CalfError(f"{source}: config model width {width!r} is not a number")
    if not isinstance(kwargs, Mapping):
        raise CalfError(f"{source}: config model kwargs {kwargs!r} is not a mapping")
    return name, float(width), dict(kwargs)


def loss_name(config: Mapping[str, Any]) -> str | None:
    """The loss a checkpoint config's parameters name (key ``loss``), if any."""
    loss = _params(config).get("loss")
    return loss if isinstance(loss, str) and loss else None


def load_run(run: str | Path, device: torch.device) -> TrainedRun:
    """Check a run, rebuild its network from the checkpoint config and load the weights."""
    import torch

    from calf.models import build_model
    from calf.train.checkpoint import load_checkpoint

    path = Path(run)
    info = read_run_record(path, complete=True)
    ckpt_path = path / CHECKPOINT_FILE
    ckpt = load_checkpoint(ckpt_path)  # checks the format
    if ckpt is None:
        raise CalfError(f"{ckpt_path}: no checkpoint in the run directory")
    for key in ("model_state", "config", "epoch"):
        if key not in ckpt:
            raise CalfError(f"{ckpt_path}: checkpoint lacks the {key!r} entry")
    completed = info.get("epochs_completed")
    if isinstance(completed, int) and completed != ckpt["epoch"]:
        raise CalfError(
            f"{ckpt_path}: checkpoint is from epoch {ckpt['epoch']} but "
            f"{path / RUN_FILE} says {completed} epochs completed"
        )
    if not isinstance(ckpt["config"], Mapping):
        raise CalfError(f"{ckpt_path}: checkpoint 'config' is not a mapping")
    config = dict(ckpt["config"])
    name, width, kwargs = model_spec(config, str(ckpt_path))
    try:
        model = build_model(name, width=width, **kwargs)
    except ValueError as err:
        raise CalfError(f"{ckpt_path}: cannot build the config's model: {err}") from None
    try:
        model.load_state_dict(ckpt["model_state"])
    except (RuntimeError, TypeError) as err:
        first = str(err).strip().splitlines()[0]
        raise CalfError(
            f"{ckpt_path}: model_state does not fit model {name!r} width {width:g}: {first}"
        ) from None
    model.eval().to(device)
    model.to(memory_format=torch.channels_last)  # as in training, on every device
    return TrainedRun(path, model, name, config, int(ckpt["epoch"]), device)


def predict_rows(
    trained: TrainedRun, store: SliceStore, rows: Sequence[int], batch_size: int = PREDICT_BATCH
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (float32 in [0, 1]), truth (bool) and logits (float32) ``(n, S, S)`` of
    store rows; a pixel is predicted tumour where its logit is > 0.

    Rows go through the network ``batch_size`` at a time, in the given order.
    """
    import numpy as np
    import torch

    from calf.device import amp_dtype
    from calf.train.rundir import run_precision

    device = trained.device
    # the precision switch the run trained with (its params, as in run.json), on this device
    dtype = amp_dtype(device, run_precision(trained.config))
    images, truths, preds = [], [], []
    for start in range(0, len(rows), batch_size):
        x, y = store.batch(rows[start : start + batch_size])
        xd = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        try:
            autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
            with torch.no_grad(), autocast:
                logits = trained.model(xd)
        except ValueError as err:  # the suite's networks check their input size
            raise CalfError(f"{store.path}: slices of {store.size} x {store.size}: {err}") from None
        if tuple(logits.shape) != tuple(x.shape):
            raise CalfError(
                f"{trained.path}: model {trained.model_name!r} gives output "
                f"{tuple(logits.shape)} for input {tuple(x.shape)} from {store.path}"
            )
        preds.append(logits[:, 0].float().cpu().numpy())
        images.append(x[:, 0].numpy())
        truths.append(y[:, 0].numpy() > 0.5)
    return np.concatenate(images), np.concatenate(truths), np.concatenate(preds)
