"""``calf train``: train one model with one loss on one training set into a run directory.

``--run LOSS KWARGS RUN`` (repeatable, instead of ``--loss``/``--loss-kwargs``/``--out``)
trains several runs of one model and training set in one process, one after the other,
each into its own run directory exactly as separate commands would: the workflow's
``training.group_losses`` uses it to pay the start-up (Python, torch, MONAI) once per
(dataset, model, fold) instead of once per loss. A run that stops on a non-finite loss
does not stop the others; a stop signal ends the command after the current run's
checkpoint, and the same command resumes it (complete runs are confirmed, not retrained).

Exit codes: 0 complete (or already complete), 75 interrupted by SIGTERM/SIGUSR1 after a
checkpoint (run the same command again to resume), 3 stopped on a NaN or infinite loss
(with ``--run``: some run did, the others completed), 2 bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from calf.defaults import SEED
from calf.device import DEVICE_CHOICES
from calf.errors import CalfError
from calf.train.config import TrainConfig

DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Exit codes: 0 complete, 75 interrupted by SIGTERM/SIGUSR1 (checkpoint saved; run "
        "the same command again to resume), 3 stopped on a non-finite loss, 2 bad input."
    )
    data = parser.add_argument_group("data")
    data.add_argument("--store", action="append", metavar="STORE",
                      help="slice store directory (repeat for a pooled training set)")
    data.add_argument("--train-slices", metavar="CSV",
                      help="training-set CSV from 'calf split' (columns dataset, row, ...)")
    data.add_argument("--val-slices", metavar="CSV", default=None,
                      help="validation-set CSV: adds a pooled validation Dice to every epoch")
    data.add_argument("--profile", metavar="JSON", default=None,
                      help="the training set's imbalance profile ('calf profile'); required "
                           "for CALF in dataset scope")
    model = parser.add_argument_group("model and loss")
    model.add_argument("--model", help="unet, deeplabv3, fpn, or a network's import path")
    model.add_argument("--width", type=float, default=DEFAULTS["width"],
                       help="channel width multiplier of unet/deeplabv3/fpn (default 1.0)")
    model.add_argument("--model-kwargs", metavar="JSON", default="{}",
                       help="JSON object of further model arguments")
    model.add_argument("--loss", help="a registered loss name (calf, calf_region, bce, dice, "
                                      "...) or an import path")
    model.add_argument("--loss-kwargs", metavar="JSON", default="{}",
                       help='JSON object of loss arguments, e.g. \'{"scope": "dataset"}\'')
    model.add_argument("--describe-model", metavar="NAME", default=None,
                       help="print a model's parameters, output check and FLOPs, then exit")
    model.add_argument("--size", type=int, default=256,
                       help="slice size for --describe-model (default 256)")
    opt = parser.add_argument_group("optimisation (defaults: the authors')")
    opt.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    opt.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    opt.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="Adam learning rate")
    opt.add_argument("--seed", type=int, default=SEED,
                     help=f"seed of the batch order, the initialisation and dropout "
                          f"(default {SEED})")
    opt.add_argument("--max-steps-per-epoch", type=int, default=None,
                     help="cap the mini-batches per epoch (demos, benchmarks)")
    num = parser.add_argument_group("numerics (defaults: the suite's; the authors': fp32, "
                                    "--deterministic)")
    num.add_argument("--precision", choices=("bf16", "fp32"), default=DEFAULTS["precision"],
                     help="bf16: bf16 autocast on CUDA (fp16 where bf16 is missing), fp32 on "
                          "the CPU (default); fp32: float32 everywhere")
    num.add_argument("--deterministic", action=argparse.BooleanOptionalAction,
                     default=DEFAULTS["deterministic"],
                     help="on CUDA: cudnn.deterministic without cudnn.benchmark, torch's "
                          "default Adam, no --compile (default: off: cudnn.benchmark and "
                          "fused Adam)")
    run = parser.add_argument_group("execution")
    run.add_argument("--device", default=DEFAULTS["device"],
                     help=f"{DEVICE_CHOICES}; auto: CUDA when available (default)")
    run.add_argument("--workers", type=int, default=None,
                     help="DataLoader worker processes (default: 0 on CPU, up to 8 on CUDA)")
    run.add_argument("--compile", action=argparse.BooleanOptionalAction,
                     default=DEFAULTS["compile"],
                     help="torch.compile the model's training forward pass on CUDA (default: "
                          "off; eager on the CPU and under --deterministic)")
    run.add_argument("--eval-batch-size", type=int, default=None, metavar="N",
                     help="slices per forward pass of the validation Dice (default: twice "
                          "--batch-size)")
    run.add_argument("--threads", type=int, default=None,
                     help="threads of torch's CPU pool (default: torch's, one per core; "
                          "the workflow passes the job's threads, so parallel jobs do not "
                          "oversubscribe the cores)")
    run.add_argument("--out", metavar="RUN", help="run directory to write (or resume)")
    run.add_argument("--run", nargs=3, action="append", metavar=("LOSS", "KWARGS", "RUN"),
                     default=None,
                     help="a loss, its JSON arguments and its run directory; repeat to train "
                          "several runs of this model in one process (instead of --loss, "
                          "--loss-kwargs and --out)")


def _json_object(text: str, option: str) -> dict[str, Any]:
    """A JSON object (the workflow passes its dict params as JSON)."""
    try:
        value = json.loads(text)
    except ValueError as err:
        raise CalfError(f"{option} {text!r}: not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise CalfError(f"{option} {text!r}: expected a JSON object")
    return value


def run(args: argparse.Namespace) -> int:
    model_kwargs = _json_object(args.model_kwargs, "--model-kwargs")
    if args.describe_model is not None:
        from calf.models import describe

        try:
            print(describe(args.describe_model, width=args.width, size=args.size, **model_kwargs))
        except ValueError as err:
            raise CalfError(f"--describe-model {args.describe_model}: {err}") from None
        return 0
    runs = _runs(args)
    configs = [
        TrainConfig(
            stores=tuple(args.store),
            train_slices=args.train_slices,
            out=out,
            model=args.model,
            loss=loss,
            width=args.width,
            model_kwargs=model_kwargs,
            loss_kwargs=loss_kwargs,
            profile=args.profile,
            val_slices=args.val_slices,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            max_steps_per_epoch=args.max_steps_per_epoch,
            device=args.device,
            workers=args.workers,
            precision=args.precision,
            deterministic=args.deterministic,
            compile=args.compile,
            eval_batch_size=args.eval_batch_size,
        )
        for loss, loss_kwargs, out in runs
    ]
    if args.threads is not None:
        if args.threads < 1:
            raise CalfError(f"--threads {args.threads}: expected an integer >= 1")
        import torch

        torch.set_num_threads(args.threads)
    from calf.train import NonFiniteLoss, train

    if len(configs) == 1:
        return train(configs[0]).exit_code
    failed = []
    for config in configs:
        try:
            result = train(config)
        except NonFiniteLoss as err:  # this run failed for good; the others still train
            print(f"calf train: error: {err}", file=sys.stderr)
            failed.append(config.out)
            continue
        if result.status == "interrupted":
            return result.exit_code  # the rerun confirms the complete runs, resumes this one
    if failed:
        print(f"calf train: error: {len(failed)} of {len(configs)} runs stopped on a "
              f"non-finite loss: {', '.join(failed)}", file=sys.stderr)
        return NonFiniteLoss.exit_code
    return 0


def _runs(args: argparse.Namespace) -> list[tuple[str, dict[str, Any], str]]:
    """(loss, loss kwargs, run directory) of each run asked for, checked before any trains."""
    for option in ("store", "train_slices", "model"):
        if not getattr(args, option):
            raise CalfError(f"missing --{option.replace('_', '-')}")
    if args.run:
        if args.loss or args.out or args.loss_kwargs != "{}":
            raise CalfError(
                "give either --run (repeatable) or --loss/--loss-kwargs/--out, not both")
        runs = [(loss, _json_object(kwargs, f"--run {loss} KWARGS"), out)
                for loss, kwargs, out in args.run]
        outs = [out for _, _, out in runs]
        twice = sorted({out for out in outs if outs.count(out) > 1})
        if twice:
            raise CalfError(f"--run: run directory {twice[0]} given twice")
        return runs
    for option in ("loss", "out"):
        if not getattr(args, option):
            raise CalfError(f"missing --{option}")
    return [(args.loss, _json_object(args.loss_kwargs, "--loss-kwargs"), args.out)]
