"""`calf report` end to end on a small results tree: tables, paper table, figures, README."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest

from calf.cli import main
from calf.synth.results import write_study


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A study (2 datasets, 1 model, 3 losses) with its statistics, and a pooled holdout study."""
    results = tmp_path_factory.mktemp("tree") / "results"
    paths = write_study(results, datasets=("sparse", "bulky"), models=("unet",),
                        losses=("bce", "dice", "calf"), folds=2, cases_per_fold=8,
                        effects={"calf": 0.3}, epochs=2)
    pooled = write_study(results, study="pooled", datasets=("pool",), models=("unet",),
                         losses=("bce", "calf"), folds=1, cases_per_fold=6, epochs=2, seed=1)
    metrics = results / "metrics"
    for study, files in (("demo", paths), ("pooled", pooled)):
        assert main(["stats", "--metrics-root", str(metrics), "--study", study, "--out-dir",
                     str(results / "stats" / study), "--resamples", "200",
                     *map(str, files)]) == 0
    return results, paths, pooled


def _report(results: Path, action: str, *args: str) -> int:
    return main(["report", action, *args])


@pytest.fixture(scope="module")
def built(tree):
    """The tree's tables, figures, paper table and README (written once for the module)."""
    results, paths, pooled = tree
    metrics, report = results / "metrics", results / "report"
    for study, files in (("demo", paths), ("pooled", pooled)):
        assert _report(results, "tables", "--metrics-root", str(metrics), "--study", study,
                       "--paired", str(results / f"stats/{study}/paired.csv"),
                       "--out-prefix", str(report / study / "summary"), "--calf-loss", "calf",
                       *map(str, files)) == 0
        profiles = [a for p in sorted((results / "profiles" / study).rglob("*.json"))
                    for a in ("--profile", str(p))]
        assert _report(results, "figures", "--metrics-root", str(metrics), "--study", study,
                       "--runs-root", str(results / "runs"), "--stats-dir",
                       str(results / "stats" / study), *profiles,
                       "--out-dir", str(report / study / "figures"), *map(str, files)) == 0
    assert _report(results, "paper", "--metrics-root", str(metrics), "--out-prefix",
                   str(report / "paper_vs_suite"), *map(str, pooled)) == 0
    assert _report(results, "readme", "--report-dir", str(report), "--stats-root",
                   str(results / "stats"), "--study", "demo:sparse,bulky", "--study",
                   "pooled:pool", "--out", str(report / "README.md")) == 0
    return results, report


def test_tables_paper_figures_and_readme(tree, built):
    results, _, pooled = tree
    report = built[1]

    # every block of the summary names the protocol switches its runs recorded
    summary = (report / "demo" / "summary.md").read_text()
    assert summary.count("Protocol switches: intensity scaling per volume (suite's); CALF "
                         "areas pixels (suite's); CALF scope batch (authors'); precision bf16 "
                         "(suite's), run as fp32 where the device lacked it;") == 2
    assert "Suite runs: Protocol switches: intensity scaling per volume (suite's);" in (
        report / "paper_vs_suite.md").read_text()
    paper = pd.read_csv(report / "paper_vs_suite.csv")
    ran = paper[paper["status"] == "run"]
    assert sorted(ran["loss"]) == ["bce", "calf"] and set(ran["model"]) == {"unet"}
    # the suite's value is the companion JSON's batch-pooled Dice of that run
    companion = json.loads(Path(str(pooled[-1]).replace(".csv", ".json")).read_text())
    calf = ran[ran["loss"] == "calf"].iloc[0]
    assert calf["suite"] == pytest.approx(companion["summary"]["batch_pooled_dice_32"])

    readme = (report / "README.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", readme)
    assert len(links) > 20 and all((report / link).is_file() for link in links)
    assert "overlays_sparse.png" in readme and "overlays_pool.png" in readme
    assert readme.count("\n# ") == 0  # one title; the embedded paper table's headings demoted
    # the digest counts what paired.csv says: calf (+0.3 Dice) beats both baselines on Dice
    paired = pd.read_csv(results / "stats/demo/paired.csv")
    dice = paired[paired["metric"] == "dice"]
    wins = int((dice["significant"] & (dice["favours"] == "calf")).sum())
    assert wins == len(dice) == 4
    assert re.search(rf"\| calf +\| dice +\| +4 \| +{wins} \| +0 \| +0 \|", readme)


def test_readme_leads_with_the_answer(built):
    """Per study: the answer, the summary table, the figures, the paired tests, the
    handling; the paper table after every study."""
    _, report = built
    readme = (report / "README.md").read_text()
    lines = readme.splitlines()
    assert lines[0] == "# CALF benchmark: results" and lines[1] == "" and lines[3] == ""
    assert lines[4] == "## Study `demo`"  # title and one line, then the studies
    demo, pooled = readme.split("## Study `pooled`")
    for part in (demo, pooled):
        heads = ["### Answer", "### Summary of study", "#### ", "### Figures",
                 "### Paired tests", "### How the statistics treat the data"]
        places = [part.index(h) for h in heads]
        assert places == sorted(places)
    assert readme.index("## Study `pooled`") < readme.index("## Paper vs suite")
    # the answer: CALF (+0.3 Dice, 16 patients per group) beats both baselines everywhere
    assert ("| bulky | U-Net | CALF (" in demo and "| BCE, Dice | none | none |" in demo)
    assert "CALF beats 4, ties 0 and loses to 0 of its 4 comparisons with a baseline" in demo
    # the pooled study: 6 test patients, 2 tests in its group (1 baseline x 2 metrics):
    # 2/64 x 2 = 0.0625 > 0.05
    assert ("pool, U-Net: with 6 patients no test in this group can reach significance "
            "(smallest attainable p after Holm 0.0625 > alpha 0.05).") in pooled
    assert "CALF beats 0, ties 1 and loses to 0 of its 1 comparison with a baseline" in pooled
    # the summary table inline, showing Dice and HD95 (NSD has no value in these CSVs)
    assert "| Loss | Dice mean ± sd | Dice median [q1, q3] | HD95 mean ± sd |" in demo
    assert "Sensitivity" not in demo.split("### Figures")[0]


def test_readme_front_page_and_the_not_run_paper_line(built, tmp_path, capsys):
    """With no pooled run the paper section is one line; --front-page writes the answers in
    reStructuredText, then the description unchanged; both files or neither."""
    import docutils.core

    results, report = built
    mine = tmp_path / "report"
    shutil.copytree(report, mine)
    assert _report(results, "paper", "--metrics-root", str(results / "metrics"),
                   "--out-prefix", str(mine / "paper_vs_suite"), "--force") == 0
    description = tmp_path / "workflow.rst"
    description.write_text("The workflow, *described*.\n")
    args = ["readme", "--report-dir", str(mine), "--stats-root", str(results / "stats"),
            "--study", "demo:sparse,bulky", "--study", "pooled:pool",
            "--out", str(mine / "README.md"), "--force"]
    assert _report(results, *args, "--front-page", str(tmp_path / "front.rst"),
                   "--description", str(description)) == 0
    readme = (mine / "README.md").read_text()
    paper = readme[readme.index("## Paper vs suite"):].strip().splitlines()
    assert len(paper) == 3 and paper[2].startswith("No study ran the authors' pooled protocol")
    assert "`snakemake --configfile config/paper.yaml`" in paper[2]
    assert "| not run |" not in readme
    front = (tmp_path / "front.rst").read_text()
    assert front.startswith("==========================\nCALF benchmark: the answer\n")
    assert front.endswith("The workflow, *described*.\n")
    assert front.index("Study demo") < front.index("Study pooled") < front.index("described")
    with warnings.catch_warnings():  # docutils 0.22 announces writer= for 2.0
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        html = docutils.core.publish_parts(front, writer_name="html", settings_overrides={
            "report_level": 1, "halt_level": 2})["html_body"]  # a warning raises
    assert "CALF beats 4, ties 0 and loses to 0" in html

    # a front page without its description (or the reverse) is refused
    for extra in (["--front-page", str(tmp_path / "x.rst")], ["--description", str(description)]):
        assert _report(results, *args, *extra) == 2
        assert "--front-page and --description go together" in capsys.readouterr().err
    assert not (tmp_path / "x.rst").exists()
    # the front page cannot be written: neither file changes
    (mine / "README.md").write_text("old")
    (tmp_path / "folder.rst").mkdir()
    assert _report(results, *args, "--front-page", str(tmp_path / "folder.rst"),
                   "--description", str(description)) == 2
    assert "folder.rst: is a folder" in capsys.readouterr().err
    assert _report(results, *args, "--front-page", str(tmp_path / "new.rst"),
                   "--description", str(tmp_path / "missing.rst")) == 2
    assert "missing.rst: no such file" in capsys.readouterr().err
    assert (mine / "README.md").read_text() == "old" and not (tmp_path / "new.rst").exists()


def test_existing_outputs_are_replaced_only_with_force(built, tmp_path, capsys):
    """A table's files are replaced only with --force (nothing changes without it); a
    figures folder is replaced whole when it holds calf's figures, a foreign one only with
    --force."""
    results, report = built
    paths = sorted((results / "metrics" / "demo").rglob("fold*.csv"))
    prefix = tmp_path / "t" / "summary"
    tables = ["tables", "--metrics-root", str(results / "metrics"), "--study", "demo",
              "--out-prefix", str(prefix), *map(str, paths)]
    assert _report(results, *tables) == 0
    (tmp_path / "t" / "summary.md").write_text("mine")
    assert _report(results, *tables) == 2
    err = capsys.readouterr().err
    assert f"{prefix}.csv: already exists (pass --force to replace it)" in err
    assert (tmp_path / "t" / "summary.md").read_text() == "mine"
    assert _report(results, *tables, "--force") == 0
    assert (tmp_path / "t" / "summary.md").read_text().startswith("# Summary of study demo")

    out = tmp_path / "figures"
    shutil.copytree(report / "demo" / "figures", out)
    (out / "stale.png").write_text("from an earlier run")
    figures = ["figures", "--metrics-root", str(results / "metrics"), "--study", "demo",
               "--runs-root", str(results / "runs"), "--stats-dir",
               str(results / "stats" / "demo"), "--out-dir", str(out), *map(str, paths)]
    figures += [a for p in sorted((results / "profiles" / "demo").rglob("*.json"))
                for a in ("--profile", str(p))]
    assert _report(results, *figures) == 0  # its own folder: replaced whole
    assert (out / "dice.png").is_file() and not (out / "stale.png").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    figures[figures.index(str(out))] = str(foreign)
    assert _report(results, *figures) == 2
    assert (f"--out-dir {foreign}: already exists (no dice.png, so not written by this step; "
            "pass --force to replace it)") in capsys.readouterr().err
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    assert _report(results, *figures, "--force") == 0
    assert (foreign / "dice.png").is_file() and not (foreign / "notes.txt").exists()


def test_figures_need_the_stats_and_leave_nothing_when_they_fail(tree, tmp_path, capsys):
    results, paths, _ = tree
    out = tmp_path / "figures"
    code = _report(results, "figures", "--metrics-root", str(results / "metrics"), "--study",
                   "demo", "--runs-root", str(results / "runs"), "--stats-dir",
                   str(tmp_path / "nostats"), "--out-dir", str(out), *map(str, paths))
    assert code == 2
    assert "nostats/ranks.csv: no such file" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".figures*"))


@pytest.mark.parametrize("case, message", [
    ("other-study", "metrics files of study 'pooled' given"),
    ("no-paired-file", "--paired"),
    ("bad-path", "stray.csv: not a results path"),
])
def test_tables_errors_name_the_problem(tree, tmp_path, capsys, case, message):
    results, paths, pooled = tree
    files = [str(p) for p in paths]
    paired = str(results / "stats/demo/paired.csv")
    if case == "other-study":
        files += [str(pooled[0])]
    elif case == "no-paired-file":
        paired = str(tmp_path / "missing.csv")
    else:
        stray = results / "metrics" / "stray.csv"
        stray.write_text(Path(paths[0]).read_text())
        files.append(str(stray))
    code = _report(results, "tables", "--metrics-root", str(results / "metrics"), "--study",
                   "demo", "--paired", paired, "--out-prefix", str(tmp_path / "t"), *files)
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("t.*"))


def test_readme_names_a_missing_figure(tree, tmp_path, capsys):
    results, _, _ = tree
    report = tmp_path / "report"
    (report / "demo").mkdir(parents=True)
    for name in ("paper_vs_suite.md", "paper_vs_suite.csv", "paper_vs_suite.tex"):
        (report / name).write_text("# Paper vs suite\n")
    for fmt in ("md", "csv", "tex", "html"):
        (report / "demo" / f"summary.{fmt}").write_text("x")
    code = _report(results, "readme", "--report-dir", str(report), "--stats-root",
                   str(results / "stats"), "--study", "demo:sparse", "--out",
                   str(report / "README.md"))
    assert code == 2
    assert "figures/dice.png: no such file" in capsys.readouterr().err
    assert not (report / "README.md").exists()


def test_paper_table_refuses_a_batch_pooled_dice_of_the_old_consecutive_order(tree, tmp_path,
                                                                              capsys):
    """A metrics JSON written before the authors' sampler order (format 1) is not compared."""
    results, _, pooled = tree
    metrics = tmp_path / "metrics"
    stale = metrics / Path(pooled[0]).relative_to(results / "metrics")
    stale.parent.mkdir(parents=True)
    stale.write_text(Path(pooled[0]).read_text())
    record = json.loads(Path(pooled[0]).with_suffix(".json").read_text())
    record["format"] = 1
    del record["batch_pooled_dice"]
    stale.with_suffix(".json").write_text(json.dumps(record))
    code = _report(results, "paper", "--metrics-root", str(metrics), "--out-prefix",
                   str(tmp_path / "paper"), str(stale))
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{stale.with_suffix('.json')}: batch-pooled Dice drawn in order None" in err
    assert not list(tmp_path.glob("paper*"))
