"""The Snakemake workflow: config checks, the paper's DAG, lint, and a loss added by one rule."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_download import server  # noqa: F401 (the local HTTP server fixture)
from workflow_helpers import (
    BIN,
    REPO,
    copy_workflow,
    job_counts,
    snakemake,
    tiny_config,
    write_config,
)

DEMO_LOSSES = {"bce", "dice", "iou", "tversky", "focal", "combo", "calf", "calf_dataset",
               "calf_region"}


def test_demo_config_dag_covers_every_loss_model_cohort_and_fold(tmp_path):
    out = snakemake(
        "-n", "--quiet", "rules", "--config",
        f"results_dir={tmp_path}/results", f"resources_dir={tmp_path}/resources",
    )
    assert out.returncode == 0, out.stderr
    counts = job_counts(out.stdout + out.stderr)
    # the demo groups the losses: one job per cohort x model x fold (3 x 2 x 2) trains every
    # loss, and one evaluate job per cohort x model x fold evaluates them
    assert counts["grouped_training_demo"] == 12, counts
    assert not [rule for rule in counts if rule.startswith("train_")], counts
    assert counts["evaluate_demo"] == 12
    listing = snakemake("-n", "-p", "--config", f"results_dir={tmp_path}/results",
                        f"resources_dir={tmp_path}/resources")
    commands = [line for line in listing.stdout.splitlines()
                if line.startswith("Shell command: calf train")]
    assert len(commands) == 12
    for command in commands:  # every loss, each into its own run directory
        runs = re.findall(r"--run (\S+) '[^']*' (\S+)", command)
        assert {Path(out).parent.name for _, out in runs} == DEMO_LOSSES, command
    assert counts["synth"] == 2 and counts["preprocess"] == 2


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.update(colour="blue"), "'colour' was unexpected"),
        (lambda c: c["studies"]["t"].update(losses=["bce", "dicee"]),
         "config key studies.t.losses: unknown loss 'dicee'"),
        (lambda c: c["studies"]["t"].update(models=["vit"]),
         "config key studies.t.models: unknown model 'vit'"),
        (lambda c: c["studies"]["t"].update(ratios=[1.5]), "1.5"),
        (lambda c: c["datasets"]["tiny"].update(source="local", root="/nonexistent/cohort",
                                                synth=None) or c["datasets"]["tiny"].pop("synth"),
         "config key datasets.tiny.root: folder '/nonexistent/cohort' does not exist"),
        (lambda c: c["models"]["unet"].update(network="resnet"),
         "config key models.unet.network: unknown network 'resnet'"),
        (lambda c: c["training"].update(epoch=3), "'epoch' was unexpected"),
    ],
)
def test_config_errors_stop_before_any_job(tmp_path, edit, message):
    config = tiny_config()
    edit(config)
    path = write_config(tmp_path / "bad.yaml", config)
    # a real run, not a dry one: nothing may be written before the config error stops it
    out = snakemake("--cores", "1", "--configfile", str(path), "--directory", str(tmp_path))
    assert out.returncode != 0
    assert message in out.stdout + out.stderr
    assert not (tmp_path / "results").exists()


def test_lint_and_format_are_clean():
    lint = snakemake("--lint")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    files = ["Snakefile", "workflow/Snakefile",
             *sorted(str(p) for p in (REPO / "workflow/rules").glob("*.smk"))]
    fmt = subprocess.run(
        [str(BIN / "snakefmt"), "--check", *files], cwd=REPO, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def _fake_release_roots(root: Path) -> None:
    """Each real release's layout, written by `calf synth` (two cases each)."""
    layouts = {"upenn_gbm": "upenn_gbm", "ucsf_pdgm": "ucsf_pdgm", "brats": "brats2021",
               "lgg_1p19q": "lgg_1p19q"}
    for dataset, layout in layouts.items():
        subprocess.run(
            [sys.executable, "-m", "calf", "synth", "--layout", layout, "--cases", "6",
             "--shape", "16", "16", "8", "--out", str(root / dataset)],
            check=True, capture_output=True,
        )


def test_paper_config_dry_run_lists_every_job(tmp_path):
    _fake_release_roots(tmp_path / "resources")
    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    paper["resources_dir"] = str(tmp_path / "resources")
    paper["results_dir"] = str(tmp_path / "results")
    (tmp_path / "resources/crosswalk").mkdir()
    for study in paper["studies"].values():  # the linking files in place: none is fetched
        for crosswalk in study.get("crosswalk") or []:
            (tmp_path / "resources/crosswalk" / crosswalk["file"]).touch()
    path = write_config(tmp_path / "paper.yaml", paper)
    start = time.perf_counter()
    out = snakemake("-n", "--quiet", "rules", "--configfile", str(path))
    seconds = time.perf_counter() - start
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    counts = job_counts(out.stdout + out.stderr)
    losses = 9  # the eight of the paper and CALF in dataset scope
    cv = 4 * 3 * losses * 5  # datasets x models x losses x folds
    pooled = 3 * losses
    filtering = 4 * losses  # FPN x 4 ratios
    assert sum(v for k, v in counts.items() if k.startswith("train_")) == cv + pooled + filtering
    assert counts["evaluate_cv"] == cv // losses
    assert counts["evaluate_pooled"] == pooled // losses
    assert counts["evaluate_filtering"] == filtering // losses
    assert "download" not in counts and "crosswalk" not in counts  # the files exist
    assert "evaluate_demo" not in counts  # the embedded demo config is not merged in
    print(f"paper DAG: {counts['total']} jobs, dry run {seconds:.1f} s")


@pytest.mark.parametrize(
    "crosswalk, message",
    [
        (None, "config key studies.p.crosswalk: the pool mixes brats and upenn_gbm but "
               "names no crosswalk"),
        ([{"file": "maps/tcia.xlsx",
           "columns": {"PatientID on TCIA Radiology Portal": "upenn_gbm"}}],
         "config key studies.p.crosswalk: file 'maps/tcia.xlsx' does not exist"),
    ],
)
def test_a_pool_of_brats_with_upenn_needs_its_crosswalk(tmp_path, crosswalk, message):
    config = tiny_config(p={"datasets": ["upenn", "brats"], "pool": "pool", "holdout": 0.1,
                            "models": ["unet"], "crosswalk": crosswalk})
    config["datasets"] = {
        name: {"adapter": adapter, "source": "local", "root": str(tmp_path / name)}
        for name, adapter in (("upenn", "upenn_gbm"), ("brats", "brats"))
    }
    for name in config["datasets"]:
        (tmp_path / name).mkdir()
    path = write_config(tmp_path / "pool.yaml", config)
    out = snakemake("-n", "--configfile", str(path), "--directory", str(tmp_path))
    assert out.returncode != 0 and message in out.stdout + out.stderr, out.stderr[-2000:]


def _without_credentials(**extra) -> dict[str, str]:
    from workflow_helpers import env

    return {k: v for k, v in env().items()
            if k not in ("SYNAPSE_AUTH_TOKEN", "CALF_DOWNLOAD_URL")} | extra


def test_paper_dag_is_listed_on_a_fresh_clone_without_credentials_or_data(tmp_path):
    """`snakemake -n --configfile config/paper.yaml` in a fresh copy: no resources/, no
    SYNAPSE_AUTH_TOKEN. The plan holds the downloads of the four datasets and of the three
    linking files; the credentials are needed when a download job runs, not to plan."""
    work = copy_workflow(tmp_path / "clone")
    assert not (work / "resources").exists() and not (work / "results").exists()
    out = subprocess.run(
        [str(BIN / "snakemake"), "-n", "--quiet", "rules", "--configfile", "config/paper.yaml"],
        cwd=work, env=_without_credentials(), capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    counts = job_counts(out.stdout + out.stderr)
    assert counts["download"] == 4 and counts["crosswalk"] == 3
    assert counts["preprocess"] == 4 and counts["split_folds"] == 4 + 2  # cv 4, pooled, filtering
    losses = sum(rule.startswith("train_") for rule in counts)  # one rule per loss
    trains = sum(v for k, v in counts.items() if k.startswith("train_"))
    assert trains == losses * (4 * 3 * 5 + 3 + 4)  # cv, pooled, filtering
    assert not (work / "resources").exists()
    print(f"fresh-clone paper DAG: {counts['total']} jobs")


def test_crosswalk_rule_fetches_a_linking_file_or_says_where_to_get_it(tmp_path, server):  # noqa: F811
    """The crosswalk rule for real: a TCIA file comes from its URL (a local mirror here,
    through CALF_DOWNLOAD_URL); the BraTS 2023 mapping has none, and its job says so."""
    work = copy_workflow(tmp_path / "clone")
    name = "UCSF-PDGM-metadata_v5.csv"
    server.files[name] = b"ID,BraTS21 ID\nUCSF-PDGM-004,BraTS2021_00097\n"

    def make(target, **env):
        return subprocess.run(
            [str(BIN / "snakemake"), f"resources/crosswalk/{target}", "--cores", "1",
             "--configfile", "config/paper.yaml"],
            cwd=work, env=_without_credentials(**env), capture_output=True, text=True,
            timeout=300,
        )

    run = make(name, CALF_DOWNLOAD_URL=f"{server.url}/{name}")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (work / "resources/crosswalk" / name).read_bytes() == server.files[name]

    gli = "BraTS2023_2017_GLI_Mapping.xlsx"
    run = make(gli)
    assert run.returncode != 0 and not (work / "resources/crosswalk" / gli).exists()
    log = (work / "results/logs/download/crosswalk" / f"{gli}.log").read_text()
    assert "Synapse:syn51514105" in log and f"put it at resources/crosswalk/{gli}" in log


def test_a_download_url_reaches_calf_download_whole_and_is_never_printed(tmp_path, server):  # noqa: F811
    """A URL with '&', a space and a passcode in its query, into folders whose names hold
    spaces, for real (a local server): the server gets the whole query, the dataset folder
    is written, and neither the printed command, the job's log nor Snakemake's records show
    the URL (it reaches calf download in the environment)."""
    work = tmp_path / "a work dir"
    work.mkdir()
    server.files["cohort.bin"] = b"0123456789"
    url = f"{server.url}/cohort.bin?passcode=s3cr3t&name=a b"
    config = tiny_config(t={"datasets": ["remote"], "folds": 2, "models": ["unet"],
                            "losses": ["bce"]})
    config["datasets"] = {"remote": {"adapter": "folder", "source": "download",
                                     "download": {"route": "http", "url": url}}}
    config["resources_dir"], config["results_dir"] = "my resources", "my results"
    path = write_config(work / "config.yaml", config)
    run = subprocess.run(
        [str(BIN / "snakemake"), "my resources/remote", "--snakefile", str(REPO / "Snakefile"),
         "--cores", "1", "--printshellcmds", "--configfile", str(path)],
        cwd=work, env=_without_credentials(), capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (work / "my resources/remote/cohort.bin").read_bytes() == b"0123456789"
    assert [seen["path"] for seen in server.seen] == ["/cohort.bin?passcode=s3cr3t&name=a%20b"]
    logged = run.stdout + run.stderr + "".join(
        p.read_text(errors="replace") for p in work.rglob("*")
        if p.is_file() and p.suffix != ".bin" and p.name != "config.yaml")
    assert "s3cr3t" not in logged


def test_a_study_of_the_natural_training_set_and_filter_ratios(tmp_path):
    """The natural training set has no ratio part in its paths, beside ratio-R/ ones."""
    config = tiny_config(t={"datasets": ["tiny"], "holdout": 0.25, "models": ["unet"],
                            "losses": ["bce"], "ratios": ["natural", 0.5]})
    path = write_config(tmp_path / "ratios.yaml", config)
    out = snakemake("-n", "--printshellcmds", "--configfile", str(path),
                    "--directory", str(tmp_path))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    selects = sorted(re.findall(r"calf split select .* --out (\S+)", out.stdout))
    assert selects == ["results/splits/t/tiny/fold0.csv",
                       "results/splits/t/tiny/ratio-0.5/fold0.csv"]
    assert "--ratio natural" in out.stdout and "--ratio 0.5" in out.stdout
    evaluate = [line for line in out.stdout.splitlines() if "calf evaluate" in line]
    assert sorted(re.findall(r"--out (\S+)", " ".join(evaluate))) == [
        "results/metrics/t/tiny/unet/bce/fold0.csv",
        "results/metrics/t/tiny/unet/bce/ratio-0.5/fold0.csv"]


def test_a_loss_is_one_new_rule(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    losses = work / "workflow/rules/losses.smk"
    losses.write_text(
        losses.read_text()
        + "\n\nuse rule train_template as train_gdice with:\n"
        "    wildcard_constraints:\n        loss=\"gdice\",\n"
        "    params:\n        loss=\"monai.losses.GeneralizedDiceLoss\",\n"
        "        loss_kwargs={\"sigmoid\": True},\n"
    )
    config = tiny_config(t={"datasets": ["tiny"], "folds": 2, "models": ["unet"]})
    path = write_config(work / "config/config.yaml", config)
    dry = snakemake("-n", "--quiet", "rules", cwd=work)
    assert dry.returncode == 0, dry.stderr
    per_run = job_counts(dry.stdout + dry.stderr)
    assert per_run["train_gdice"] == 2
    loss_rules = [rule for rule in per_run if rule.startswith("train_")]
    # training.group_losses: one job per fold trains every loss, the new one with its rule's
    # loss and arguments
    config["training"]["group_losses"] = True
    write_config(path, config)
    dry = snakemake("-n", "-p", cwd=work)
    assert dry.returncode == 0, dry.stderr
    counts = job_counts(dry.stdout + dry.stderr)
    assert counts["grouped_training_t"] == 2 and not any(
        rule.startswith("train_") and rule != "grouped_training_t" for rule in counts), counts
    commands = [line.partition("Shell command: ")[2] for line in dry.stdout.splitlines()
                if line.startswith("Shell command: calf train")]
    assert len(commands) == 2
    for fold, command in enumerate(sorted(commands)):
        assert command.count("--run ") == len(loss_rules), command
        assert (f"--run monai.losses.GeneralizedDiceLoss '{{\"sigmoid\": true}}' "
                f"results/runs/t/tiny/unet/gdice/fold{fold}") in command, command
        assert "--run calf '{\"scope\": \"batch\", \"area\": \"pixels\"}' " in command
    config["training"]["group_losses"] = False

    # the new loss alone, for real: trained, evaluated, synced to MLflow
    config["studies"]["t"]["losses"] = ["gdice"]
    write_config(path, config)
    run = snakemake("--cores", "2", cwd=work, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = work / "results"
    for fold in (0, 1):
        run_json = json.loads((results / f"runs/t/tiny/unet/gdice/fold{fold}/run.json").read_text())
        assert run_json["status"] == "complete"
        metrics = pd.read_csv(results / f"metrics/t/tiny/unet/gdice/fold{fold}.csv")
        assert set(metrics["loss"]) == {"gdice"} and len(metrics) == 2  # 2 val cases x flair
    synced = json.loads((results / "mlflow/t.synced.json").read_text())
    assert len(synced["created"]) == 2 and not synced["skipped"]  # both folds' runs


def test_a_preempted_training_job_resumes_when_the_workflow_reruns(tmp_path):
    """What SLURM does before preemption or time-out (SIGTERM), through Snakemake: the job
    fails with exit 75, its checkpoint survives, and the re-run resumes and completes."""
    import os
    import signal

    from workflow_helpers import env

    work = copy_workflow(tmp_path / "wf")
    config = tiny_config(t={"datasets": ["tiny"], "folds": 2, "models": ["unet"],
                            "losses": ["bce"]})
    config["training"]["epochs"] = 3
    write_config(work / "config/config.yaml", config)
    run_dir = work / "results/runs/t/tiny/unet/bce/fold0"
    target = "results/runs/t/tiny/unet/bce/fold0/train.done"

    slow = env() | {"CALF_TRAIN_STEP_DELAY": "0.4"}
    job = subprocess.Popen([str(BIN / "snakemake"), "--cores", "1", target], cwd=work,
                           env=slow, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # wait for the first finished epoch
            epochs = run_dir / "epochs.csv"
            if epochs.is_file() and len(epochs.read_text().splitlines()) >= 2:
                break
            time.sleep(0.5)
        else:
            pytest.fail("training never finished an epoch")
        matching = subprocess.run(
            ["pgrep", "-f", "calf train .*--out .*results/runs/t/tiny/unet/bce/fold0"],
            capture_output=True, text=True,
        ).stdout.split()
        # the trainer itself, not the job's shell (whose command line matches too): a shell
        # killed first makes Snakemake clean up the job before the trainer has saved
        trainers = [pid for pid in matching
                    if Path(f"/proc/{pid}/comm").read_text().strip() not in ("bash", "sh")]
        assert trainers, f"no calf train process found among {matching}"
        for pid in trainers:
            os.kill(int(pid), signal.SIGTERM)
        assert job.wait(timeout=120) != 0
    finally:
        if job.poll() is None:
            job.kill()

    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted"
    assert (run_dir / "checkpoint.pt").is_file()
    assert not (run_dir / "train.done").exists()

    rerun = snakemake("--cores", "1", target, cwd=work)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "complete" and record["epochs_completed"] == 3
    assert len((run_dir / "epochs.csv").read_text().splitlines()) == 4
    assert (run_dir / "train.done").is_file()


@pytest.mark.slow
def test_the_benchmark_ends_with_statistics_tables_figures_and_the_report(tmp_path):
    """A tiny study of three losses and a pooled holdout study, through `snakemake` and
    `snakemake --report`: every table and figure exists, is in the HTML report, and the
    README's links resolve."""
    work = copy_workflow(tmp_path / "wf")
    config = tiny_config(
        t={"datasets": ["tiny"], "folds": 2, "models": ["unet"],
           "losses": ["bce", "dice", "calf"]},
        p={"datasets": ["tiny"], "pool": "pool", "holdout": 0.25, "models": ["unet"],
           "losses": ["bce", "calf"]},
    )
    config["stats"] = {"resamples": 200}
    write_config(work / "config/config.yaml", config)
    run = snakemake("--cores", "2", cwd=work, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = work / "results"

    paired = pd.read_csv(results / "stats/t/paired.csv")
    assert set(paired["baseline"]) == {"bce", "dice"} and set(paired["calf_loss"]) == {"calf"}
    assert set(paired["metric"]) == {"dice", "hd95"}
    # 4 patients (the folder layout has no follow-ups) x flair, matched across the losses
    assert (paired["n_patients"] == 4).all() and (paired["modality"] == "all").all()
    assert len(pd.read_csv(results / "stats/t/friedman.csv")) == 2
    summary = pd.read_csv(results / "report/t/summary.csv")
    assert set(summary["loss"]) == {"bce", "dice", "calf"}
    cost = pd.read_csv(results / "report/t/cost.csv")  # from the runs' own run.json cost
    assert set(cost["loss"]) == {"bce", "dice", "calf"} and (cost["fallback_runs"] == 0).all()
    paper = pd.read_csv(results / "report/paper_vs_suite.csv")
    ran = paper[paper["status"] == "run"]
    # the pooled holdout study is the authors' protocol: U-Net BCE and CALF are filled in
    assert set(zip(ran["model"], ran["loss"])) == {("unet", "bce"), ("unet", "calf")}
    assert (paper["status"] == "not run").sum() == len(paper) - 2

    # where CALF helps: 4 patients in study t, so the size classes hold one or two each
    sizes = pd.read_csv(results / "analysis/t/sizes.csv")
    assert len(sizes) == 4 and set(sizes["size_unit"]) == {"ml"}
    classes = pd.read_csv(results / "analysis/t/size_classes.csv")
    assert set(classes["baseline"]) == {"bce", "dice"} and set(classes["metric"]) == {"dice",
                                                                                       "hd95"}
    assert len(pd.read_csv(results / "analysis/t/rank_stability.csv")) == 2
    readme = (results / "report/README.md").read_text()
    assert "Where CALF helps" in readme
    links = re.findall(r"\]\(([^)]+)\)", readme)
    assert links and all((results / "report" / link).is_file() for link in links)
    for study, datasets in (("t", ["tiny"]), ("p", ["pool"])):
        names = ["dice", "hd95", "critical_difference", "imbalance", "branches",
                 "advantage_volume", "imbalance_advantage", "rank_blobs", "significance_map"]
        for name in names + [f"overlays_{d}" for d in datasets]:
            for ext in ("png", "svg"):
                assert (results / f"report/{study}/figures/{name}.{ext}").stat().st_size > 0
            assert f"{study}/figures/{name}.png" in readme

    report = snakemake("--report", "report.html", cwd=work)
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    html = (work / "report.html").read_text()
    for name in ("paired.csv", "friedman.csv", "summary.html", "cost.html", "paper_vs_suite.html",
                 "critical_difference.png", "imbalance.png", "branches.png",
                 "overlays_tiny.png", "overlays_pool.png", "size_classes.csv",
                 "verdict_changes.csv", "advantage_volume.png", "significance_map.png"):
        assert name in html, name
    assert "Paired tests of study" in html  # a caption


def test_seeds_share_their_training_set_profile(tmp_path):
    config = tiny_config(t={"datasets": ["tiny"], "folds": 2, "models": ["unet"],
                            "losses": ["bce", "calf"], "seeds": [1, 2]})
    path = write_config(tmp_path / "seeds.yaml", config)
    out = snakemake("-n", "--printshellcmds", "--configfile", str(path),
                    "--directory", str(tmp_path))
    assert out.returncode == 0, out.stderr
    figures = next(line for line in out.stdout.splitlines() if "calf report figures" in line)
    profiles = re.findall(r"--profile (\S+)", figures)
    assert sorted(Path(p).name for p in profiles) == ["fold0.json", "fold1.json"]


def test_a_pooled_study_evaluates_with_the_splits_subjects_table(tmp_path):
    """The split job writes the subjects table; every evaluate job of the pool reads it."""
    config = tiny_config(p={"datasets": ["upenn", "ucsf"], "pool": "pool", "holdout": 0.25,
                            "models": ["unet"], "losses": ["bce", "calf"]})
    tiny = config["datasets"].pop("tiny")
    for name, adapter in (("upenn", "upenn_gbm"), ("ucsf", "ucsf_pdgm")):
        config["datasets"][name] = {**tiny, "adapter": adapter,
                                    "synth": {**tiny["synth"], "layout": adapter}}
    path = write_config(tmp_path / "pool.yaml", config)
    out = snakemake("-n", "--printshellcmds", "--configfile", str(path),
                    "--directory", str(tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]
    subjects = "results/splits/p/pool/subjects.csv"
    lines = out.stdout.splitlines()
    (split_cmd,) = [line for line in lines if "calf split folds" in line]
    assert f"--subjects {subjects}" in split_cmd and "--store results/stores/ucsf" in split_cmd
    evaluate = [line for line in lines if "calf evaluate" in line]
    assert len(evaluate) == 1 and f"--subjects {subjects}" in evaluate[0]
    # each case keeps its member dataset (its store's) in the CSV, not the pool's name
    assert "--dataset" not in evaluate[0]
