"""``calf train``: train one model with one loss on one training set into a run directory.

Exit codes: 0 complete (or already complete), 75 interrupted by SIGTERM/SIGUSR1 after a
checkpoint (run the same command again to resume), 3 stopped on a NaN or infinite loss,
2 bad input.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
from typing import Any

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
    opt.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    opt.add_argument("--max-steps-per-epoch", type=int, default=None,
                     help="cap the mini-batches per epoch (demos, benchmarks)")
    num = parser.add_argument_group("numerics (defaults: the suite's; the authors': fp32, "
                                    "--deterministic)")
    num.add_argument("--precision", choices=("bf16", "fp32"), default=DEFAULTS["precision"],
                     help="bf16: bf16 autocast on CUDA (fp16 where bf16 is missing), fp32 on "
                          "the CPU (default); fp32: float32 everywhere")
    num.add_argument("--deterministic", action=argparse.BooleanOptionalAction,
                     default=DEFAULTS["deterministic"],
                     help="on CUDA: cudnn.deterministic without cudnn.benchmark (default: off, "
                          "cudnn.benchmark)")
    run = parser.add_argument_group("execution")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default=DEFAULTS["device"],
                     help="auto: CUDA when available (default)")
    run.add_argument("--workers", type=int, default=None,
                     help="DataLoader worker processes (default: 0 on CPU, up to 8 on CUDA)")
    run.add_argument("--out", metavar="RUN", help="run directory to write (or resume)")


def _json_object(text: str, option: str) -> dict[str, Any]:
    """A JSON object, or a Python dict literal (what a Snakemake rule's dict param reads as)."""
    try:
        value = json.loads(text)
    except ValueError as err:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
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
    for option in ("store", "train_slices", "model", "loss", "out"):
        if not getattr(args, option):
            raise CalfError(f"missing --{option.replace('_', '-')}")
    config = TrainConfig(
        stores=tuple(args.store),
        train_slices=args.train_slices,
        out=args.out,
        model=args.model,
        loss=args.loss,
        width=args.width,
        model_kwargs=model_kwargs,
        loss_kwargs=_json_object(args.loss_kwargs, "--loss-kwargs"),
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
    )
    from calf.train import train

    return train(config).exit_code
