"""Where a workflow run's time went: Snakemake's benchmark files summed per rule.

    .venv/bin/python benchmarks/workflow.py [results/benchmarks]

Every train, evaluate and preprocess job writes a benchmark TSV (wall seconds, peak
memory); this prints jobs, total and mean seconds per rule and each rule's share.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="results/benchmarks")
    args = parser.parse_args()
    rows = []
    for tsv in sorted(Path(args.root).rglob("*.tsv")):
        step = tsv.relative_to(args.root).parts[0]
        frame = pd.read_csv(tsv, sep="\t")
        rows.append({"step": step, "s": frame["s"].mean(), "max_rss": frame["max_rss"].mean()})
    if not rows:
        raise SystemExit(f"no benchmark files under {args.root}")
    table = pd.DataFrame(rows).groupby("step").agg(
        jobs=("s", "size"), total_s=("s", "sum"), mean_s=("s", "mean"),
        max_rss_mb=("max_rss", "max"),
    )
    table["share"] = table["total_s"] / table["total_s"].sum()
    print(table.sort_values("total_s", ascending=False).round(2).to_string())
    print(f"\njob-seconds in total: {table['total_s'].sum():.0f}")


if __name__ == "__main__":
    main()
