"""Statistics and report benchmark at the paper's scale.

Writes a synthetic results tree the size of the paper's cross-validation study (4 datasets x
3 models x 8 losses x 5 folds, ``--cases`` test cases per fold, each a patient with
``--modalities`` rows (T1, T2, FLAIR by default) as the paper's data have; the fixture of
``calf.synth.results.write_study``, its FLAIR row copied to the other modalities with seeded noise),
then times, in one run, against a baseline measured in the same run (no asserts):

- baseline: reading every per-case CSV with pandas, nothing else (the floor of any step
  that needs the per-case rows);
- ``load_case_metrics`` (the same reading plus validation and path identities);
- ``compute_stats`` (every paired test with its bootstrap CI, Friedman, ranks, Nemenyi, on
  the patients' means), and again with ``by_modality`` (a group per modality as well);
- ``write_summary_tables``; each figure of ``calf report figures``;
- ``calf analyse``'s parts (``calf.analysis``): tumour sizes and classes, the per-patient
  advantages, the size-class tests, the interaction models, the ranking's bootstrap and
  significance map, the robustness grid (3 presets x 4 metrics), and the analysis figures;
  the interaction models again in ``--jobs`` worker processes.

and the process's peak memory. Run: ``.venv/bin/python benchmarks/report.py [--cases 100]``.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from calf.defaults import ALPHA
from calf.layout import RunKey
from calf.report.figures import (
    plot_advantage_volume,
    plot_branch_shares,
    plot_critical_difference,
    plot_dice,
    plot_imbalance,
    plot_imbalance_advantage,
    plot_overlays,
    plot_rank_blobs,
    plot_significance_map,
)
from calf.report.tables import write_summary_tables
from calf.stats.collect import load_case_metrics
from calf.stats.run import compute_stats
from calf.synth.results import CALF_VARIANTS, write_study

METRICS = ("dice", "iou", "hd95", "sensitivity", "specificity", "precision")


def add_modalities(paths: list[Path], modalities: list[str], seed: int = 0) -> None:
    """Rewrite each per-case CSV with one row per modality: the fixture's row, its metrics
    shifted by seeded noise (bounded metrics kept in [0, 1]) for every modality but the
    first, so that a patient's modality rows are correlated, as real ones are."""
    rng = np.random.default_rng(seed)
    for path in paths:
        frame = pd.read_csv(path, dtype={"case_id": str, "patient_id": str})
        copies = []
        for i, modality in enumerate(modalities):
            copy = frame.assign(modality=modality)
            if i:
                for metric in METRICS:
                    noisy = copy[metric] + rng.normal(0, 0.02, len(copy)) * (
                        20 if metric == "hd95" else 1)
                    copy[metric] = noisy.clip(0, None if metric == "hd95" else 1).round(4)
            copies.append(copy)
        pd.concat(copies, ignore_index=True).to_csv(path, index=False)


def analysis_rows(cases, profiles, profiles_root, out: Path, args) -> list[tuple[str, float]]:
    """The time of each part of ``calf analyse`` and of its figures on the study."""
    from calf.analysis.interaction import imbalance_advantage, volume_interaction
    from calf.analysis.ranks import rank_tables
    from calf.analysis.robustness import robustness
    from calf.analysis.size_effect import size_class_tests
    from calf.analysis.strata import patient_advantages, patient_sizes, training_regimes

    calf = list(CALF_VARIANTS)
    tests = {"alpha": ALPHA, "zero_method": "wilcox", "resamples": args.resamples,
             "seed": 12345}
    rows = []
    t, (sizes, _) = timed(lambda: patient_sizes(cases, 4))
    rows.append((f"analysis: sizes and classes ({len(sizes)} patients)", t))
    t, adv = timed(lambda: patient_advantages(cases, sizes, calf, ["dice", "hd95"]))
    rows.append((f"analysis: per-patient advantages ({len(adv)} rows)", t))
    t, classes = timed(lambda: size_class_tests(adv, **tests))
    rows.append((f"analysis: size-class tests ({len(classes)})", t))
    t, inter = timed(lambda: volume_interaction(adv, alpha=ALPHA))
    rows.append((f"analysis: interaction models ({len(inter)} fits)", t))
    t, _ = timed(lambda: volume_interaction(adv, alpha=ALPHA, jobs=args.jobs))
    rows.append((f"  in {args.jobs} worker processes (calf analyse --jobs)", t))
    regimes = training_regimes(profiles, profiles_root)
    t, (imbalance, _) = timed(lambda: imbalance_advantage(adv, regimes))
    rows.append(("analysis: imbalance against advantage", t))
    t, (ranked, _) = timed(lambda: rank_tables(cases, ["dice", "hd95"],
                                               resamples=args.rank_resamples))
    rows.append((f"analysis: ranking bootstrap x {args.rank_resamples} "
                 f"({len(ranked['rank_stability'])} rankings) + significance maps", t))
    t, (robust, _, _) = timed(lambda: robustness(cases, calf_losses=calf, **tests,
                                                 missing="error"))
    rows.append((f"analysis: robustness grid ({len(robust)} tests)", t))
    figures = {
        "figure: advantage vs volume": lambda: plot_advantage_volume(adv, out / "advantage"),
        "figure: imbalance vs advantage": lambda: plot_imbalance_advantage(
            imbalance, out / "imbalance_advantage"),
        "figure: rank blobs": lambda: plot_rank_blobs(
            ranked["rank_counts"], ranked["rank_stability"], out / "blobs"),
        "figure: significance map": lambda: plot_significance_map(
            ranked["significance_map"], ranked["rank_stability"], out / "map"),
    }
    return rows + [(name, timed(fn)[0]) for name, fn in figures.items()]


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100, help="test cases per fold")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--jobs", type=int, default=2,
                        help="worker processes of the interaction models' second timing")
    parser.add_argument("--rank-resamples", type=int, default=2000,
                        help="bootstrap resamples of the ranking's stability")
    parser.add_argument("--modalities", nargs="+", default=["t1", "t2", "flair"],
                        help="modality rows per case (default t1 t2 flair)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        start = time.perf_counter()
        paths = write_study(results, study="cv", datasets=("upenn", "ucsf", "brats", "lgg"),
                            models=("unet", "deeplabv3", "fpn"), folds=5,
                            cases_per_fold=args.cases, effects={"calf": 0.02}, epochs=20)
        add_modalities(paths, args.modalities)
        print(f"fixture: {len(paths)} runs x {args.cases} cases x {len(args.modalities)} "
              f"modalities written in {time.perf_counter() - start:.1f} s")
        root = results / "metrics"

        base, _ = timed(lambda: [pd.read_csv(p) for p in paths])
        rows = [("read every CSV (baseline)", base)]
        t, cases = timed(lambda: load_case_metrics(paths, root))
        rows.append(("load_case_metrics", t))
        t, stats = timed(lambda: compute_stats(cases, study="cv", resamples=args.resamples))
        rows.append((f"compute_stats ({len(stats.paired)} paired tests, "
                     f"{len(stats.friedman)} Friedman)", t))
        t, by_modality = timed(lambda: compute_stats(cases, study="cv", resamples=args.resamples,
                                                     by_modality=True))
        rows.append((f"  by_modality ({len(by_modality.paired)} paired tests, "
                     f"{len(by_modality.friedman)} Friedman)", t))
        out = Path(tmp) / "out"
        out.mkdir()
        t, _ = timed(lambda: write_summary_tables(cases, stats.paired, out / "summary",
                                                  calf_losses=list(CALF_VARIANTS), alpha=ALPHA))
        rows.append(("summary tables (CSV, MD, TeX, HTML)", t))
        profiles = sorted((results / "profiles").rglob("*.json"))
        runs = [RunKey.from_path(p, ".csv", root).run_dir(results / "runs") for p in paths]
        figures = {
            "figure: Dice": lambda: plot_dice(cases, out / "dice"),
            "figure: critical difference": lambda: plot_critical_difference(
                stats.ranks, stats.nemenyi, stats.friedman, out / "cd"),
            "figure: imbalance": lambda: plot_imbalance(profiles, out / "imbalance"),
            "figure: branch shares": lambda: plot_branch_shares(runs, out / "branches"),
            "figure: overlays (4 grids)": lambda: plot_overlays(paths, out, metrics_root=root),
        }
        for name, fn in figures.items():
            rows.append((name, timed(fn)[0]))
        rows += analysis_rows(cases, profiles, results / "profiles", out, args)

    print(f"\n{'step':<52} {'seconds':>8} {'x baseline':>11}")
    for name, seconds in rows:
        print(f"{name:<52} {seconds:8.2f} {seconds / base:11.1f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
