"""``calf demo``: CALF's statistic and branch on three synthetic area distributions.

A quick look at the method without data: per-slice tumour areas drawn from three shapes
of cohort, and the branch CALF picks for each.
"""

from __future__ import annotations

import argparse

from calf.defaults import SEED

DISTRIBUTIONS = {
    # many tumour-free slices and small tumours: long right tail
    "sparse small tumours": lambda rng, n: rng.exponential(300.0, n) * (rng.random(n) < 0.4),
    # tumour on every slice, gamma-distributed sizes: a moderate right tail
    "moderate tumours": lambda rng, n: rng.gamma(6.0, 300.0, n),
    # tumour on nearly every slice, most of them large: long left tail
    "bulky tumours": lambda rng, n: 4000.0 * rng.beta(6.0, 1.5, n),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slices", type=int, default=5000, help="areas per distribution")
    parser.add_argument("--seed", type=int, default=SEED, help=f"default {SEED}")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from calf.imbalance import imbalance_stats
    from calf.losses.branches import select_branch

    rng = np.random.default_rng(args.seed)
    print(f"{'distribution':<22} {'n':>6} {'S':>8} {'K':>8}  branch")
    for name, draw in DISTRIBUTIONS.items():
        stats = imbalance_stats(draw(rng, args.slices))
        branch = select_branch(stats.skewness, stats.kurtosis)
        print(f"{name:<22} {stats.n:>6} {stats.skewness:>8.3f} {stats.kurtosis:>8.3f}  {branch}")
    return 0
