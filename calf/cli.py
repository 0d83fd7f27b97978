"""The ``calf`` command line: one console script, one subcommand per workflow step.

Each subcommand lives in its own module under ``calf.commands`` exposing
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
subcommand runs, so ``calf --help`` and every job start stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from calf import __version__
from calf.errors import CalfError

# name -> (module under calf.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "print S, K and the CALF branch for three synthetic area distributions"),
    "synth": ("synth", "write synthetic cohorts in the real releases' folder layouts"),
    "download": ("download", "fetch a dataset by its official route, or check a local copy"),
    "preprocess": ("preprocess", "turn a cohort's NIfTI volumes into a slice store"),
    "profile": ("profile", "imbalance profile (S, K, branch) of a training set"),
    "split": ("split", "patient-grouped folds and ratio-filtered training sets"),
    "train": ("train", "train one model with one loss on one fold"),
    "evaluate": ("evaluate", "per-case metrics of a trained model"),
    "stats": ("stats", "paired significance tests across losses"),
    "analyse": ("analyse", "where CALF helps: by tumour size and imbalance; rank stability"),
    "report": ("report", "comparison tables and figures"),
    "mlflow-sync": ("mlflow_sync", "import finished runs into MLflow"),
}


def available() -> list[str]:
    """The registered commands whose module is present in this version."""
    return [
        name
        for name, (module, _) in COMMANDS.items()
        if importlib.util.find_spec(f"calf.commands.{module}") is not None
    ]


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calf",
        description="CALF benchmark suite: one subcommand per workflow step.",
        epilog="Run 'calf COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"calf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in available():
        sub.add_parser(name, help=COMMANDS[name][1], add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in available():
        # --help, --version, or an unknown command: argparse prints and exits
        _top_parser().parse_args(argv)
        return 2
    name = argv[0]
    module_name, help_text = COMMANDS[name]

    module = importlib.import_module(f"calf.commands.{module_name}")
    parser = argparse.ArgumentParser(prog=f"calf {name}", description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except CalfError as err:
        print(f"calf {name}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"calf {name}: interrupted", file=sys.stderr)
        return 130
