"""Where a workflow run's time went: Snakemake's benchmark files summed per rule, and the
training jobs' time split into start-up, data, model, steps and checkpoints.

    .venv/bin/python benchmarks/workflow.py [results]

Every train, evaluate and preprocess job writes a benchmark TSV (wall seconds, peak
memory); this prints jobs, total and mean seconds per rule and each rule's share. Every
training run records in run.json ``timing`` how long its attempt spent on loading data,
building the model, the training steps and checkpointing, and how old its process was
when it began (interpreter and imports: the start-up, counted for the first run of each
process only; ``calf train --run`` trains several runs in one process). The rest of a
training job's wall time (argument parsing after the imports, closing) is "other".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

PHASES = ("start-up", "data", "model", "set-up", "steps", "checkpoints")


def rule_table(root: Path) -> pd.DataFrame:
    rows = []
    for tsv in sorted((root / "benchmarks").rglob("*.tsv")):
        step = tsv.relative_to(root / "benchmarks").parts[0]
        frame = pd.read_csv(tsv, sep="\t")
        rows.append({"step": step, "s": frame["s"].mean(), "max_rss": frame["max_rss"].mean()})
    if not rows:
        raise SystemExit(f"no benchmark files under {root / 'benchmarks'}")
    table = pd.DataFrame(rows).groupby("step").agg(
        jobs=("s", "size"), total_s=("s", "sum"), mean_s=("s", "mean"),
        max_rss_mb=("max_rss", "max"),
    )
    table["share"] = table["total_s"] / table["total_s"].sum()
    return table.sort_values("total_s", ascending=False)


def training_split(root: Path) -> pd.Series | None:
    """Seconds per phase over every training run's last attempt, plus the job wall time."""
    totals = dict.fromkeys(PHASES, 0.0)
    runs = 0
    from calf.layout import RUN_FILE, RUNS
    from calf.train.rundir import read_run_record

    for path in sorted((root / RUNS).rglob(RUN_FILE)):
        timing = read_run_record(path.parent).get("timing") or {}
        if not timing:
            continue
        runs += 1
        if timing.get("first_in_process") and timing.get("process_age_s") is not None:
            totals["start-up"] += timing["process_age_s"]
        totals["data"] += timing.get("data_s", 0.0)
        totals["model"] += timing.get("model_s", 0.0)
        totals["set-up"] += timing.get("setup_s", 0.0)
        totals["steps"] += timing.get("steps_s", 0.0)
        totals["checkpoints"] += timing.get("checkpoint_s", 0.0)
    if not runs:
        return None
    wall = sum(pd.read_csv(t, sep="\t")["s"].mean() for t in (root / "benchmarks/train").rglob("*.tsv"))
    split = pd.Series(totals)
    split["other"] = max(0.0, wall - split.sum())
    split.attrs.update(runs=runs, wall=wall)
    return split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="results",
                        help="the results folder (benchmarks/ and runs/ inside)")
    args = parser.parse_args()
    root = Path(args.root)
    table = rule_table(root)
    print(table.round(2).to_string())
    print(f"\njob-seconds in total: {table['total_s'].sum():.0f}")
    split = training_split(root)
    if split is not None:
        print(f"\ntraining jobs: {split.attrs['wall']:.0f} job-seconds for "
              f"{split.attrs['runs']} runs")
        for phase, seconds in split.items():
            print(f"  {phase:<12} {seconds:8.1f} s  {seconds / split.sum():6.1%}")


if __name__ == "__main__":
    main()
