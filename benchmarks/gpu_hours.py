"""The benchmark's GPU-hours per study: at the authors' per-run times and at the suite's
measured training rates (the JSON ``benchmarks/gpu.py`` writes), as the README's table.

    .venv/bin/python benchmarks/gpu_hours.py [--config config/paper.yaml]
        [--gpu-json benchmarks/results/gpu.json] [--modes fp32 bf16_cl]

The runs of each study are its losses (the workflow's loss rules) x models x training
sets (folds x datasets, one pooled set, or one per filtering ratio); the paper-scale
training-set sizes and the scaling are explained in ``calf/report/budget.py``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from calf.report.budget import budget_table, read_rates, study_budget
from calf.studies import defined_losses

ROOT = Path(__file__).resolve().parents[1]


def loss_rules(root: Path = ROOT) -> int:
    """The number of losses the workflow trains (its ``train_<loss>`` rules)."""
    return len(defined_losses(root / "workflow" / "rules"))


def table(config_path: Path, gpu_json: Path | None, modes: list[str]) -> str:
    config = yaml.safe_load(config_path.read_text())
    losses = loss_rules()
    budgets = [study_budget(name, study, config, losses)
               for name, study in config["studies"].items()]
    measured, device = {}, None
    if gpu_json is not None and gpu_json.exists():
        device = json.loads(gpu_json.read_text())["environment"]["name"]
        measured = dict(read_rates(gpu_json, mode) for mode in modes)
    return budget_table(budgets, measured, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config/paper.yaml")
    parser.add_argument("--gpu-json", type=Path, default=ROOT / "benchmarks/results/gpu.json")
    parser.add_argument("--modes", nargs="+", default=["fp32", "bf16_cl"],
                        help="benchmarks/gpu.py's training modes (fp32, bf16, bf16_cl, ...)")
    args = parser.parse_args()
    print(table(args.config, args.gpu_json, args.modes))


if __name__ == "__main__":
    main()
