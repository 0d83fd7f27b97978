"""The patient is the unit of every test (issue 10, item 1).

Per-case CSVs are written with the evaluate step's columns and read back through
``load_case_metrics`` and ``compute_stats``; the expected numbers are computed here from the
values written, with plain Python means and scipy / scikit-posthocs called directly.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs
import scipy.stats

from calf.errors import CalfError
from calf.evaluate.pipeline import CASE_COLUMNS
from calf.stats.collect import ROW_KEYS, load_case_metrics, patient_means, patient_table
from calf.stats.friedman import critical_difference, mean_ranks
from calf.stats.paired import paired_test
from calf.stats.run import compute_stats, write_stats

MODALITIES = ("flair", "t1", "t2")
# the example: 12 patients, each patient's true CALF - BCE Dice difference shared by
# its three modality rows; patient p12 also has a follow-up exam
DIFFERENCES = np.array([0.05, 0.04, -0.03, 0.06, 0.02, -0.05, 0.07, 0.03, -0.02, 0.04,
                        -0.06, 0.08])
FOLLOW_UP = "p12"


def _write_run(root: Path, loss: str, rows: list[dict], *, study: str = "s",
               dataset: str = "d", seed: int | None = None) -> Path:
    """One run's per-case CSV at the evaluate step's path, with its columns (``subject_id``
    only where the rows give one: else the older form of the file, without the column)."""
    rel = f"{study}/{dataset}/unet/{loss}/" + (f"seed-{seed}/" if seed is not None else "")
    path = root / rel / "fold0.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([{"dataset": dataset, "model": "unet", "loss": loss, "fold": 0,
                           "iou": 0.5, "hd95": 3.0, "sensitivity": 0.8, "specificity": 0.99,
                           "precision": 0.7, "tumour_voxels": 100, "predicted_voxels": 90,
                           **row} for row in rows])
    frame[[c for c in CASE_COLUMNS if c in frame.columns]].to_csv(path, index=False)
    return path


def _twelve_patients(root: Path, losses=("calf", "bce"), nan_row=None) -> list[Path]:
    """The 12-patient example; ``nan_row`` (loss, case_id, modality): a NaN Dice there.
    Dice of a row: the patient's level + its modality's offset + a small row noise, plus
    the patient's difference for CALF (and half of it for the third loss, Dice)."""
    rng = np.random.default_rng(2026)
    exams = [(f"p{i + 1:02d}", f"p{i + 1:02d}-e1") for i in range(12)]
    exams.append((FOLLOW_UP, f"{FOLLOW_UP}-e2"))
    level = dict(zip([p for p, _ in exams[:12]], rng.uniform(0.6, 0.8, 12)))
    shift = dict(zip([p for p, _ in exams[:12]], DIFFERENCES))
    offset = {"flair": 0.05, "t1": -0.04, "t2": 0.0}
    rows = defaultdict(list)
    for patient, case in exams:
        for modality in MODALITIES:
            base = level[patient] + offset[modality] + rng.normal(0, 0.003)
            for loss, factor in (("bce", 0.0), ("calf", 1.0), ("dice", 0.5)):
                dice = base + factor * shift[patient] + rng.normal(0, 0.002)
                if nan_row == (loss, case, modality):
                    dice = float("nan")
                rows[loss].append({"case_id": case, "patient_id": patient,
                                   "modality": modality, "dice": round(dice, 6)})
    return [_write_run(root, loss, rows[loss]) for loss in losses]


def _patient_means(paths: list[Path], modality: str | None = None,
                   skip: set[tuple[str, str]] = frozenset()) -> dict[str, dict[str, float]]:
    """loss -> patient -> mean over modalities of each exam, then over exams (plain Python;
    rows in ``skip`` (case_id, modality) and other modalities than ``modality`` left out)."""
    out = {}
    for path in paths:
        frame = pd.read_csv(path, dtype=str)
        exams = defaultdict(lambda: defaultdict(list))
        for row in frame.itertuples():
            if (modality and row.modality != modality) or (row.case_id, row.modality) in skip:
                continue
            exams[row.patient_id][row.case_id].append(float(row.dice))
        out[frame["loss"].iloc[0]] = {
            p: sum(sum(v) / len(v) for v in cases.values()) / len(cases)
            for p, cases in exams.items()}
    return out


def _stats(paths, root, **options):
    return compute_stats(load_case_metrics(paths, root), study="s", metrics=["dice"],
                         friedman_metrics=["dice"], resamples=200, **options)


def test_twelve_patients_are_twelve_pairs_with_scipys_p(tmp_path):
    paths = _twelve_patients(tmp_path)
    row = _stats(paths, tmp_path).paired.iloc[0]
    means = _patient_means(paths)
    patients = sorted(means["calf"])
    calf = np.array([means["calf"][p] for p in patients])
    bce = np.array([means["bce"][p] for p in patients])
    direct = scipy.stats.wilcoxon(calf, bce)
    assert (row["n_patients"], row["n_rows"]) == (12, 39)
    assert (row["statistic"], row["p_value"]) == (direct.statistic, direct.pvalue)
    assert row["method"] == "exact" and row["modality"] == "all"
    assert row["mean_calf"] == pytest.approx(calf.mean(), rel=1e-12)
    assert row["median_diff"] == pytest.approx(np.median(calf - bce), rel=1e-9)
    # rows as units (the old behaviour): 39 pairs and a p-value far too small
    rows = {loss: pd.read_csv(p)["dice"].to_numpy() for loss, p in zip(("calf", "bce"), paths)}
    by_rows = scipy.stats.wilcoxon(rows["calf"], rows["bce"]).pvalue
    assert by_rows < 0.01 and direct.pvalue > 0.1


def test_averaging_order_modalities_then_exams_then_seeds(tmp_path):
    # patient p: exam A with three modalities, exam B with FLAIR only; two seeds
    values = {1: {("A", "t1"): 0.2, ("A", "t2"): 0.4, ("A", "flair"): 0.6, ("B", "flair"): 0.9},
              2: {("A", "t1"): 0.1, ("A", "t2"): 0.2, ("A", "flair"): 0.3, ("B", "flair"): 0.5}}
    paths = []
    for seed, cells in values.items():
        for loss, add in (("calf", 0.0), ("bce", -0.1)):
            rows = [{"case_id": f"p-{exam}", "patient_id": "p", "modality": m, "dice": v + add}
                    for (exam, m), v in cells.items()]
            rows.append({"case_id": "q-A", "patient_id": "q", "modality": "t1", "dice": 0.5})
            paths.append(_write_run(tmp_path, loss, rows, seed=seed))
    cases = load_case_metrics(paths, tmp_path)
    from calf.stats.collect import row_table

    wide, _ = row_table(cases, "dice", ["calf", "bce"], "error")
    table = patient_table(wide, ["calf", "bce"])
    # seed 1: A (0.2 + 0.4 + 0.6) / 3 = 0.4, B 0.9 -> 0.65; seed 2: 0.2, 0.5 -> 0.35; p = 0.5
    # (the plain mean of p's 8 rows is 0.4; exams before modalities would give 0.45, 0.25)
    assert table.values.loc["d/p", "calf"] == pytest.approx(0.5)  # no subject_id: d/p
    assert table.values.loc["d/p", "bce"] == pytest.approx(0.4)
    assert (table.n_patients, table.n_rows) == (2, 10)
    row = compute_stats(cases, study="s", metrics=["dice"], friedman_metrics=[],
                        resamples=100).paired.iloc[0]
    assert row["mean_calf"] == pytest.approx((0.5 + 0.5) / 2)


def test_nan_row_leaves_both_losses_and_is_counted(tmp_path):
    paths = _twelve_patients(tmp_path, nan_row=("bce", "p03-e1", "t2"))
    row = _stats(paths, tmp_path).paired.iloc[0]
    assert (row["n_patients"], row["n_rows"], row["n_dropped_nan"],
            row["n_patients_dropped_nan"]) == (12, 38, 1, 0)
    means = _patient_means(paths, skip={("p03-e1", "t2")})
    calf = np.array([means["calf"][p] for p in sorted(means["calf"])])
    assert row["mean_calf"] == pytest.approx(calf.mean(), rel=1e-12)
    assert row["mean_calf"] != pytest.approx(np.mean(list(_patient_means(paths)["calf"].values())),
                                             rel=1e-9)


def test_friedman_ranks_nemenyi_count_patients(tmp_path):
    paths = _twelve_patients(tmp_path, losses=("calf", "bce", "dice"))
    stats = _stats(paths, tmp_path)
    means = _patient_means(paths)
    losses = stats.settings["losses"]  # the suite's order of the losses
    table = np.array([[means[loss][p] for loss in losses] for p in sorted(means["calf"])])
    friedman = stats.friedman.iloc[0]
    direct = scipy.stats.friedmanchisquare(*table.T)
    assert (friedman["n_patients"], friedman["n_rows"]) == (12, 39)
    assert friedman["chi2"] == pytest.approx(direct.statistic, rel=1e-12)
    assert friedman["p_value"] == pytest.approx(direct.pvalue, rel=1e-12)
    assert friedman["cd"] == pytest.approx(critical_difference(3, 12, 0.05)[1])
    ranks = stats.ranks.set_index("loss").loc[losses, "mean_rank"].to_numpy()
    np.testing.assert_allclose(ranks, mean_ranks(table, higher_is_better=True))
    nemenyi = scikit_posthocs.posthoc_nemenyi_friedman(table).to_numpy()
    for row in stats.nemenyi.itertuples():
        i, j = losses.index(row.loss_a), losses.index(row.loss_b)
        assert row.p_value == pytest.approx(nemenyi[i, j], rel=1e-12)


@pytest.mark.slow
def test_by_modality_groups_have_patients_as_unit(tmp_path):
    paths = _twelve_patients(tmp_path, losses=("calf", "bce", "dice"))
    pooled = _stats(paths, tmp_path)
    stats = _stats(paths, tmp_path, by_modality=True)
    paired = stats.paired
    assert list(paired["modality"]) == ["all", "all", "flair", "flair", "t1", "t1", "t2", "t2"]
    for modality in MODALITIES:
        mine = paired[(paired["modality"] == modality) & (paired["baseline"] == "bce")].iloc[0]
        means = _patient_means(paths, modality=modality)
        patients = sorted(means["calf"])
        direct = scipy.stats.wilcoxon([means["calf"][p] for p in patients],
                                      [means["bce"][p] for p in patients])
        # p12's two exams: 13 rows, 12 patients
        assert (mine["n_patients"], mine["n_rows"]) == (12, 13)
        assert mine["p_value"] == direct.pvalue
        assert mine["family"] == f"s/d/unet/modality-{modality}" and mine["family_size"] == 2
        friedman = stats.friedman[stats.friedman["modality"] == modality].iloc[0]
        assert friedman["n_patients"] == 12
    assert set(stats.ranks["modality"]) == set(stats.nemenyi["modality"]) == {"all", *MODALITIES}
    # the per-modality groups leave the pooled groups' results as they were
    for name in ("paired", "friedman", "ranks", "nemenyi"):
        table = getattr(stats, name)
        pd.testing.assert_frame_equal(table[table["modality"] == "all"].reset_index(drop=True),
                                      getattr(pooled, name))
    assert stats.settings["by_modality"] and "one group per modality" in stats.handling["groups"]


def test_pooled_study_keeps_reused_patient_ids_apart(tmp_path):
    """Two member datasets of a pool reuse the IDs p1..p4: eight patients, not four."""
    paths = []
    rng = np.random.default_rng(5)
    for loss in ("calf", "bce"):
        rows = [{"case_id": f"{member}-{p}", "patient_id": p, "modality": "flair",
                 "dice": float(rng.uniform(0.5, 0.9)), "dataset": member}
                for member in ("ucsf", "upenn") for p in ("p1", "p2", "p3", "p4")]
        paths.append(_write_run(tmp_path, loss, rows, dataset="pool"))
    row = _stats(paths, tmp_path).paired.iloc[0]
    assert row["n_patients"] == 8 and row["dataset"] == "pool"


# -- one person in two releases of a pool: one subject, one unit ------------------------

# UPENN-GBM patients U1-U4 are BraTS subjects B1-B4 (the split's subjects table gives both
# copies the subject of the first, sorted); U5, U6 and B5-B8 are in one release only
LINKED = {f"B{i}": f"U{i}" for i in range(1, 5)}
POOL_PATIENTS = [("upenn_gbm", f"U{i}") for i in range(1, 7)] + [
    ("brats", f"B{i}") for i in range(1, 9)]


def _pool_rows(with_subjects: bool) -> dict[str, list[dict]]:
    """loss -> rows of a pooled study: each person's CALF - BCE difference shared by both
    copies of its scans and both modalities, with a small row noise."""
    rng = np.random.default_rng(77)
    person = {(d, p): f"upenn_gbm/{LINKED[p]}" if d == "brats" and p in LINKED else f"{d}/{p}"
              for d, p in POOL_PATIENTS}
    shift = {s: float(rng.normal(0.02, 0.04)) for s in sorted(set(person.values()))}
    rows = defaultdict(list)
    for (member, patient), subject in person.items():
        for modality in ("flair", "t1"):
            base = float(rng.uniform(0.6, 0.8))
            for loss, factor in (("bce", 0.0), ("calf", 1.0)):
                row = {"case_id": f"{member}/{patient}-e1", "patient_id": patient,
                       "modality": modality, "dataset": member,
                       "dice": round(base + factor * shift[subject] + rng.normal(0, 0.002), 6)}
                rows[loss].append(row | ({"subject_id": subject} if with_subjects else {}))
    return rows


def _unit_means(rows: list[dict], key) -> dict[str, float]:
    """unit -> mean over its cases of each case's mean over modalities (plain Python)."""
    cases = defaultdict(lambda: defaultdict(list))
    for row in rows:
        cases[key(row)][row["case_id"]].append(row["dice"])
    return {u: sum(sum(v) / len(v) for v in c.values()) / len(c) for u, c in cases.items()}


@pytest.mark.parametrize(
    "with_subjects, n_units, key",
    [
        (True, 10, lambda row: row["subject_id"]),  # 14 patients, 4 of them linked pairs
        (False, 14, lambda row: f"{row['dataset']}/{row['patient_id']}"),  # older CSVs
    ],
)
def test_a_subject_in_two_member_datasets_is_one_unit(tmp_path, with_subjects, n_units, key):
    rows = _pool_rows(with_subjects)
    paths = [_write_run(tmp_path, loss, rows[loss], dataset="pool") for loss in ("calf", "bce")]
    stats = _stats(paths, tmp_path)
    row = stats.paired.iloc[0]
    calf, bce = (_unit_means(rows[loss], key) for loss in ("calf", "bce"))
    units = sorted(calf)
    direct = scipy.stats.wilcoxon([calf[u] for u in units], [bce[u] for u in units])
    assert (row["n_patients"], row["n_rows"]) == (n_units, 28)
    assert (row["statistic"], row["p_value"]) == (direct.statistic, direct.pvalue)
    assert stats.friedman.iloc[0]["n_patients"] == n_units
    if with_subjects:  # counting the linked copies twice would be another test
        calf, bce = (_unit_means(rows[loss], lambda r: f"{r['dataset']}/{r['patient_id']}")
                     for loss in ("calf", "bce"))
        twice = scipy.stats.wilcoxon([calf[p] for p in sorted(calf)], [bce[p] for p in sorted(bce)])
        assert len(calf) == 14 and twice.pvalue != direct.pvalue
    assert "subject_id" in stats.handling["unit"]
    assert "(member_dataset, patient_id)" in stats.handling["unit"]


def test_a_case_with_two_subjects_across_files_or_an_empty_subject_is_an_error(tmp_path):
    rows = _pool_rows(True)
    calf = _write_run(tmp_path / "a", "calf", rows["calf"], dataset="pool")
    # BCE's file written without the column: brats/B1's case falls back to brats/B1
    old = [{k: v for k, v in row.items() if k != "subject_id"} for row in rows["bce"]]
    bce = _write_run(tmp_path / "a", "bce", old, dataset="pool")
    with pytest.raises(CalfError, match=r"case brats/B1-e1 belongs to patient upenn_gbm/U1 "
                                        r"in .*calf.* but to brats/B1 in .*bce"):
        _stats([calf, bce], tmp_path / "a")
    rows["bce"][3]["subject_id"] = ""
    bce = _write_run(tmp_path / "b", "bce", rows["bce"], dataset="pool")
    with pytest.raises(CalfError, match=r"bce/fold0.csv: column subject_id, row 5: empty"):
        load_case_metrics([bce], tmp_path / "b")


# -- the null: no true effect, modality rows sharing each patient's difference ----------

N_STUDIES, N_PATIENTS, ALPHA = 400, 30, 0.05
# 3 binomial SDs of the rejection rate of N_STUDIES tests at level ALPHA:
# 3 * sqrt(0.05 * 0.95 / 400) = 0.0327, so the rate must lie in [0.017, 0.083]
TOLERANCE = 3 * math.sqrt(ALPHA * (1 - ALPHA) / N_STUDIES)


def _null_studies(rng: np.random.Generator) -> pd.DataFrame:
    """Every study's rows (index study + ROW_KEYS; columns calf, bce): 30 patients, the
    first of every five with a follow-up exam, three modalities per exam. Each patient's
    CALF - BCE difference is drawn once (mean 0: no effect) and shared by all of its rows,
    with a small row noise: rows of one patient are strongly correlated."""
    exams = [(i, e) for i in range(N_PATIENTS) for e in range(1 + (i % 5 == 0))]
    rows = [(i, e, m) for i, e in exams for m in range(len(MODALITIES))]
    patient, exam, modality = (np.array(x) for x in zip(*rows))
    shape = (N_STUDIES, N_PATIENTS)
    level, difference = rng.uniform(0.5, 0.9, shape), rng.normal(0, 0.05, shape)
    noise = rng.normal(0, 0.01, (N_STUDIES, len(rows)))
    bce = level[:, patient] + 0.03 * modality + noise
    calf = bce + difference[:, patient] + rng.normal(0, 0.005, bce.shape)
    study = np.repeat(np.arange(N_STUDIES), len(rows))
    index = pd.MultiIndex.from_arrays(
        [study, np.tile([f"d/p{i}" for i in patient], N_STUDIES),
         np.tile([f"p{i}-{e}" for i, e in zip(patient, exam)], N_STUDIES),
         np.tile(np.array(MODALITIES)[modality], N_STUDIES), np.full(study.size, -1)],
        names=["study", *ROW_KEYS])
    return pd.DataFrame({"calf": calf.ravel(), "bce": bce.ravel()}, index=index)


def test_null_simulation_rejects_at_the_nominal_rate():
    rows = _null_studies(np.random.default_rng(20260410))
    # the suite's patient means (as patient_table takes them), then its paired test
    means = patient_means(rows, by=["study"])
    assert len(means) == N_STUDIES * N_PATIENTS and len(rows) == N_STUDIES * 108
    by_patient, by_row = [], []
    for study in range(N_STUDIES):
        mine = means.loc[study]
        result = paired_test(mine["calf"].to_numpy(), mine["bce"].to_numpy(),
                             zero_method="wilcox", resamples=20, rng=np.random.default_rng(0))
        by_patient.append(result.p_value < ALPHA)
        rows_of = rows.loc[study]
        by_row.append(scipy.stats.wilcoxon(rows_of["calf"], rows_of["bce"]).pvalue < ALPHA)
    rate = float(np.mean(by_patient))
    assert abs(rate - ALPHA) <= TOLERANCE, rate  # 0.0675 with this seed
    # rows as units (108 correlated rows per study taken as independent) reject far more
    # often: 0.39 with this seed
    assert float(np.mean(by_row)) > 0.3


@pytest.mark.slow
def test_consumers_take_the_pooled_groups(tmp_path):
    from calf.report.figures import build_critical_difference
    from calf.report.tables import write_summary_tables

    paths = _twelve_patients(tmp_path / "metrics", losses=("calf", "bce", "dice"))
    cases = load_case_metrics(paths, tmp_path / "metrics")
    stats = compute_stats(cases, study="s", resamples=200, by_modality=True)
    write_stats(stats, tmp_path / "stats")
    read = {name: pd.read_csv(tmp_path / "stats" / f"{name}.csv", dtype={"ratio": str})
            for name in ("paired", "friedman", "ranks", "nemenyi")}
    out = write_summary_tables(cases, read["paired"], tmp_path / "report" / "summary",
                               calf_losses=["calf"], alpha=0.05)
    table = pd.read_csv(out[0])
    dice = table[table["metric"] == "dice"].set_index("loss")
    assert (dice["n"] == 12).all()  # patients
    means = _patient_means(paths)
    assert dice.loc["calf", "mean"] == pytest.approx(np.mean(list(means["calf"].values())))
    assert "(12 patients)" in out[1].read_text()
    fig = build_critical_difference(read["ranks"], read["nemenyi"], read["friedman"])
    assert len(fig.axes) == 1 and "(n = 12 patients)" in fig.axes[0].get_title()

    # the README's digest: the pooled groups, then each modality's under its own heading
    from calf.report.readme import FIGURE_TITLES, TABLE_FORMATS, _study_section

    report = tmp_path / "report"
    for fmt in TABLE_FORMATS:
        (report / "s").mkdir(parents=True, exist_ok=True)
        (report / "s" / f"summary.{fmt}").touch()
    (report / "s" / "figures").mkdir()
    for name in [*FIGURE_TITLES, "overlays_d"]:
        for suffix in (".png", ".svg"):
            (report / "s" / "figures" / f"{name}{suffix}").touch()
    text = "\n".join(_study_section("s", report, tmp_path / "stats", ["d"]))
    assert "paired Wilcoxon signed-rank tests over patients" in text
    assert [m for m in MODALITIES if f"Modality `{m}` alone" in text] == list(MODALITIES)
    pooled = read["paired"][read["paired"]["modality"] == "all"]
    details = [line for line in text.splitlines() if line.startswith("| d | unet |")]
    assert len(details) == len(pooled) and all("| 12 |" in line for line in details)


@pytest.mark.slow
def test_cli_by_modality_writes_the_modality_groups(tmp_path):
    from calf.cli import main

    paths = _twelve_patients(tmp_path / "metrics", losses=("calf", "bce", "dice"))
    out = tmp_path / "stats"
    assert main(["stats", "--metrics-root", str(tmp_path / "metrics"), "--study", "s",
                 "--out-dir", str(out), "--resamples", "100", "--by-modality",
                 *map(str, paths)]) == 0
    for name in ("paired", "friedman", "ranks", "nemenyi"):
        table = pd.read_csv(out / f"{name}.csv")
        assert set(table["modality"]) == {"all", *MODALITIES}, name
    friedman = pd.read_csv(out / "friedman.csv").set_index(["modality", "metric"])
    assert (friedman["n_patients"] == 12).all()
    assert friedman.loc[("all", "dice"), "n_rows"] == 39
    assert friedman.loc[("t1", "dice"), "n_rows"] == 13
