"""calf.tracking (run tags, LiveLogger) and calf mlflow-sync, against real MLflow stores.

Run records carry the ``cost`` object of the training loop and name their training-set CSV
(``params.train_slices``), which the fixtures write under ``splits/`` beside the runs: the
cost becomes ``system/`` metrics, the CSV an MLflow dataset input.

Run directories and evaluation outputs (``calf.layout``) are written by hand here,
so these tests do not depend on the training and evaluation code; only the last test runs a
real ``calf train`` (on a tiny store made with ``calf.preprocess`` and ``calf.split``).
MLflow servers are real ``mlflow server`` processes (tests/conftest.py); runs are read back
with ``MlflowClient``.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from calf._fs import sha256_file
from calf.cli import main as calf_main
from calf.errors import CalfError
from calf.layout import RunKey
from calf.tracking.client import flatten_params, key_tags, run_key_of
from calf.tracking.cost import cost_metrics, cost_tags
from calf.tracking.inputs import find_run_dirs
from calf.tracking.live import LiveLogger
from calf.tracking.sync import sync_study

BRANCHES = ("fisher", "logit", "arcsine", "log10", "ln", "bce_dice")
EPOCH_COLUMNS = ("epoch", "train_loss", "steps", "seconds", "slices_per_second",
                 *(f"branch_{b}" for b in BRANCHES), "val_dice")
CASE_COLUMNS = ("case_id", "patient_id", "modality", "dataset", "model", "loss", "fold", "dice",
                "iou", "hd95", "sensitivity", "specificity", "precision", "tumour_voxels",
                "predicted_voxels")
# per-case metrics of every fixture evaluation: two cases x two modalities
DICE = (0.9, 0.5, 0.7, 0.2)  # mean 0.575, median 0.6
HD95 = (1.0, 2.0, 373.13, 3.0)  # mean 94.7825, median 2.5
COMMIT = "0123456789abcdef0123456789abcdef01234567"
# run.json cost of a fixture run trained on CUDA (3 epochs of 2.5 s, two attempts), and the
# system metrics it becomes (peak memory in 10^6 bytes; energy_j null on the CPU)
CUDA_COST = {"device": "cuda", "device_name": "NVIDIA H200", "wall_s": 7.5, "device_s": 7.5,
             "train_s": 7.5, "epochs": 3, "device_s_per_epoch": 2.5,
             "peak_memory_bytes": 1_234_567_890, "peak_memory_kind": "cuda_allocated",
             "energy_j": 1500.25, "attempts": 2}
CUDA_SYSTEM = {"system/wall_s": 7.5, "system/device_s": 7.5, "system/train_s": 7.5,
               "system/epochs": 3, "system/device_s_per_epoch": 2.5,
               "system/peak_memory_mb": 1234.56789, "system/energy_j": 1500.25,
               "system/attempts": 2}
CPU_COST = {**CUDA_COST, "device": "cpu", "device_name": "cpu (2 threads)", "device_s": 15.0,
            "peak_memory_bytes": 500_000_000, "peak_memory_kind": "cpu_rss", "energy_j": None,
            "attempts": 1}


# ------------------------------------------------------------------ fixture writers


def epoch_rows(n: int, branch: str | None) -> list[dict]:
    """n epochs; the loss halves each epoch; 4 steps per epoch, all on ``branch``."""
    rows = []
    for e in range(1, n + 1):
        row = {"epoch": e, "train_loss": 0.8 / 2 ** (e - 1), "steps": 4, "seconds": 2.5,
               "slices_per_second": 25.6, "val_dice": ""}
        row.update({f"branch_{b}": (4 if b == branch else 0) for b in BRANCHES})
        rows.append(row)
    return rows


def training_csv(runs_root: Path, key: RunKey) -> Path:
    """The run's training-set CSV: ``splits/<study>/<dataset>/[ratio-R/]foldK.csv`` beside the
    runs root, written once per selection (every loss and seed shares it)."""
    path = key.training_csv(runs_root.parent / "splits")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(("dataset", "row", "case_id", "patient_id", "modality", "slice",
                             "area"))
            writer.writerows((key.dataset, row, f"c{row // 5}", f"p{row // 5}", "t1", row % 5,
                              row * 3 % 7) for row in range(20 + key.fold))
    return path


def make_run(runs_root: Path, key: RunKey, status: str = "complete", epochs: int = 3,
             scope: str | None = None, profile: Path | None = None,
             cost: dict | None = CUDA_COST, val: Path | None = None) -> Path:
    """A run directory as ``calf train`` writes it, with its training CSV."""
    run_dir = runs_root.joinpath(*key.key.split("/"))
    run_dir.mkdir(parents=True, exist_ok=True)
    done = epochs if status == "complete" else epochs - 1
    branch = "ln" if scope == "dataset" else ("log10" if scope == "batch" else None)
    rows = epoch_rows(done, branch)
    with open(run_dir / "epochs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=EPOCH_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    loss_kwargs = {"scope": scope} if scope else {}
    imbalance = None
    if scope:
        imbalance = {"scope": scope, "skewness": 0.75 if scope == "dataset" else None,
                     "kurtosis": -0.25 if scope == "dataset" else None,
                     "branch": "ln" if scope == "dataset" else None,
                     "profile": str(profile) if profile else None}
    train = training_csv(runs_root, key)
    record = {
        "status": status,
        "params": {"stores": ["/data/store"], "train_slices": str(train.resolve()),
                   "train_slices_sha256": sha256_file(train),
                   "val_slices": str(val.resolve()) if val else None,
                   "val_slices_sha256": sha256_file(val) if val else None,
                   "model": key.model, "width": 0.25,
                   "model_kwargs": {"depth": 4}, "loss": key.loss, "loss_kwargs": loss_kwargs,
                   "lr": 1e-05, "epochs": epochs, "batch_size": 8, "seed": 12345,
                   "scheduler": None},
        "model_parameters": 123456, "device": "cpu (2 threads)", "calf_version": "0.1.0",
        "git_commit": COMMIT, "imbalance": imbalance,
        "started": "2025-01-02T03:04:05+00:00",
        "finished": "2025-01-02T03:04:12+00:00" if status == "complete" else None,
        "seconds": 7.5, "epochs_completed": done,
    }
    if cost is not None:
        record["cost"] = cost
    (run_dir / "run.json").write_text(json.dumps(record, indent=2))
    (run_dir / "checkpoint.pt").write_bytes(b"checkpoint bytes: not uploaded unless asked")
    return run_dir


def make_metrics(metrics_root: Path, key: RunKey) -> Path:
    """The evaluation outputs of a run: X.csv, X.json, X_slices.csv, X_overlays/."""
    import matplotlib.image

    path = key.metrics_csv(metrics_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CASE_COLUMNS)
        for i, (dice, hd95) in enumerate(zip(DICE, HD95)):
            case, modality = f"c{i // 2}", ("t1", "flair")[i % 2]
            writer.writerow([case, f"p{i // 2}", modality, key.dataset, key.model, key.loss,
                             key.fold, dice, dice / (2 - dice), hd95, 0.8, 0.99, 0.7, 100, 90])
    path.with_suffix(".json").write_text(json.dumps({"hd95_units": "voxels"}))
    path.with_name(f"{path.stem}_slices.csv").write_text(
        "case_id,modality,slice,tp,fp,fn,tn\nc0,t1,0,3,1,0,60\n")
    overlays = path.with_name(f"{path.stem}_overlays")
    overlays.mkdir(exist_ok=True)
    for rank in ("best", "median", "worst"):
        matplotlib.image.imsave(overlays / f"{rank}.png", np.eye(8))
    return path


def make_profile(profiles_root: Path, key: RunKey) -> Path:
    path = key.profile_json(profiles_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"n_slices": 40, "n_tumour_slices": 12, "skewness": 0.75,
                                "kurtosis": -0.25, "branch": "ln", "area_definition": "pixels"}))
    return path


@pytest.fixture
def study(tmp_path):
    """A study of three runs: CALF in dataset scope (with its profile; trained on CUDA), BCE
    with a ratio and a seed (profile found under the profiles root; trained on the CPU, with
    a validation set), and an interrupted run."""
    name = f"st-{uuid.uuid4().hex[:8]}"  # its own experiment on the shared server
    roots = {r: tmp_path / r for r in ("runs", "metrics", "profiles", "splits")}
    calf_key = RunKey(name, "synth", "unet", "calf", 0)
    bce_key = RunKey(name, "synth", "fpn", "bce", 1, ratio="0.25", seed=7)
    stopped_key = RunKey(name, "synth", "unet", "dice", 0)
    profile = make_profile(roots["profiles"], calf_key)
    make_profile(roots["profiles"], bce_key)
    val = roots["splits"] / name / "synth" / "val-fold1.csv"
    val.parent.mkdir(parents=True)
    val.write_text("dataset,row\nsynth,3\nsynth,4\n")
    make_run(roots["runs"], calf_key, scope="dataset", profile=profile)
    make_run(roots["runs"], bce_key, cost=CPU_COST, val=val)
    make_run(roots["runs"], stopped_key, status="interrupted")
    for key in (calf_key, bce_key):
        make_metrics(roots["metrics"], key)
    return {"name": name, "keys": (calf_key, bce_key, stopped_key), **roots}


def sync(study: dict, uri: str, **kwargs):
    return sync_study(study["name"], study["runs"], study["metrics"], study["profiles"], uri,
                      **kwargs)


def client_for(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def runs_by_key(client, experiment_id: str) -> dict[str, object]:
    runs = client.search_runs([experiment_id], max_results=1000)
    return {r.data.tags.get("calf.run_key", "PARENT"): r for r in runs}


def history(client, run_id: str, name: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))


def dataset_inputs(client, run_id: str) -> list[tuple[str, str, str, dict, str]]:
    """(name, digest, source type, source, context) of each dataset input of the run."""
    found = []
    for item in client.get_run(run_id).inputs.dataset_inputs:
        context = {t.key: t.value for t in item.tags}.get("mlflow.data.context")
        dataset = item.dataset
        found.append((dataset.name, dataset.digest, dataset.source_type,
                      json.loads(dataset.source), context))
    return sorted(found)


def expected_input(path: Path, name: str, context: str) -> tuple[str, str, str, dict, str]:
    return (name, sha256_file(path)[:36], "local", {"uri": str(path.resolve())}, context)


def artifacts(client, run_id: str, folder: str = "") -> set[str]:
    found = set()
    for info in client.list_artifacts(run_id, folder or None):
        found |= artifacts(client, run_id, info.path) if info.is_dir else {info.path}
    return found


# ------------------------------------------------------------------------- run keys


@pytest.mark.parametrize("variant, extra", [
    ("fold0", {}),
    ("ratio-0.25/fold3", {"calf.ratio": "0.25"}),
    ("seed-7/fold1", {"calf.seed": "7"}),
    ("ratio-0.1/seed-7/fold2", {"calf.ratio": "0.1", "calf.seed": "7"}),
])
def test_run_key_of_a_run_folder_and_its_tags(tmp_path, variant, extra):
    """The live logger's key: the trailing parts of the run folder; its MLflow tags name the
    ratio and the seed only in a run that has them."""
    key = run_key_of(tmp_path / "anything" / "above" / "s/d/m/l" / variant)
    assert key.key == f"s/d/m/l/{variant}" and key.name == f"d/m/l/{variant}"
    assert key_tags(key) == {"calf.run_key": key.key, "calf.kind": "run", "calf.study": "s",
                             "calf.dataset": "d", "calf.model": "m", "calf.loss": "l",
                             "calf.fold": variant[-1], **extra}


@pytest.mark.parametrize("path", ["/s/d/m/fold0", "/s/d/m/l/foldx", "/s/d/m/l/fold0/extra"])
def test_run_key_of_other_folders_is_none(path):
    assert run_key_of(path) is None


@pytest.mark.parametrize("parts", [
    "s/d/m/fold0",  # no loss
    "s/d/m/l/foldx",  # not a fold number
    "s/d/m/l/fold0/extra",  # something after the fold
    "s/d/m/l/fold0/ratio-0.5",  # ratio after the fold
    "x/s/d/m/l/fold0",  # one level too deep
    "s/d/m/l/seed-1/ratio-0.5/fold0",  # ratio after seed
    "s/d/m/l/ratio-natural/fold2",  # the natural training set has no ratio folder
    "s/d/m/l/ratio-0.250/fold2",  # ratios are spelled as {:g} spells them: ratio-0.25
])
def test_sync_rejects_run_folders_off_the_layout(tmp_path, parts):
    (tmp_path / parts).mkdir(parents=True)
    (tmp_path / parts / "run.json").write_text("{}")
    with pytest.raises(CalfError, match=str(tmp_path / parts)):
        find_run_dirs(parts.split("/")[0], tmp_path)


def test_cost_metrics_and_tags():
    assert cost_metrics(CUDA_COST) == pytest.approx(CUDA_SYSTEM)
    cpu = cost_metrics(CPU_COST)
    assert "system/energy_j" not in cpu  # null: left out
    assert (cpu["system/device_s"], cpu["system/peak_memory_mb"]) == (15.0, 500.0)
    assert cost_metrics({**CUDA_COST, "peak_memory_bytes": None, "device_s_per_epoch": None}
                        ).keys() == CUDA_SYSTEM.keys() - {"system/peak_memory_mb",
                                                          "system/device_s_per_epoch"}
    assert cost_metrics(None) == {} and cost_tags(None) == {}
    assert cost_tags(CPU_COST) == {"calf.cost_device": "cpu",
                                   "calf.device_name": "cpu (2 threads)",
                                   "calf.peak_memory_kind": "cpu_rss"}


def test_flatten_params():
    flat = flatten_params({"lr": 1e-05, "model": {"name": "unet", "kwargs": {"depth": 4}},
                           "stores": ["a", "b"], "scheduler": None, "amp": True, "x": "y"})
    assert flat == {"lr": "1e-05", "model.name": "unet", "model.kwargs.depth": "4",
                    "stores": '["a", "b"]', "scheduler": "null", "amp": "true", "x": "y"}
    assert len(flatten_params({"long": "v" * 7000})["long"]) == 6000


# ----------------------------------------------------------------------- mlflow-sync


def test_sync_to_server_and_again(study, mlflow_server):
    calf_key, bce_key, stopped_key = study["keys"]
    result = sync(study, mlflow_server)
    assert sorted(result.created) == sorted([calf_key.key, bce_key.key])
    assert result.skipped == {stopped_key.key: "interrupted"}

    client = client_for(mlflow_server)
    experiment = client.get_experiment_by_name(study["name"])
    assert experiment.experiment_id == result.experiment_id
    runs = runs_by_key(client, experiment.experiment_id)
    assert set(runs) == {"PARENT", calf_key.key, bce_key.key}
    parent = runs["PARENT"]
    assert parent.data.tags["calf.kind"] == "study"
    assert parent.info.run_id == result.parent_run_id
    assert parent.info.status == "FINISHED"

    run = runs[calf_key.key]
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "synth/unet/calf/fold0"
    assert run.info.start_time == 1735787045000  # 2025-01-02T03:04:05Z
    assert run.info.end_time == 1735787052000
    tags = run.data.tags
    assert tags["mlflow.parentRunId"] == parent.info.run_id
    assert (tags["calf.git_commit"], tags["mlflow.source.git.commit"]) == (COMMIT, COMMIT)
    assert tags["calf.version"] == "0.1.0"
    assert (tags["calf.scope"], tags["calf.branch"], tags["calf.S"], tags["calf.K"]) == (
        "dataset", "ln", "0.75", "-0.25")
    assert tags["calf.loss_definition"] == "calf"
    assert tags["calf.area_definition"] == "pixels"
    assert tags["calf.branch_steps"] == "ln:12"
    assert (tags["calf.dataset"], tags["calf.model"], tags["calf.loss"], tags["calf.fold"]) == (
        "synth", "unet", "calf", "0")
    params = run.data.params
    assert params["lr"] == "1e-05"
    assert params["loss_kwargs.scope"] == "dataset"
    assert params["model_kwargs.depth"] == "4"
    assert params["stores"] == '["/data/store"]'
    assert params["model_parameters"] == "123456"
    assert history(client, run.info.run_id, "train_loss") == [(1, 0.8), (2, 0.4), (3, 0.2)]
    assert history(client, run.info.run_id, "branch_ln") == [(1, 4), (2, 4), (3, 4)]
    assert history(client, run.info.run_id, "branch_fisher") == [(1, 0), (2, 0), (3, 0)]
    assert "val_dice" not in run.data.metrics  # empty column: nothing logged
    metrics = run.data.metrics
    assert metrics["dice_mean"] == pytest.approx(0.575)
    assert metrics["dice_median"] == pytest.approx(0.6)
    assert metrics["hd95_mean"] == pytest.approx(94.7825)
    assert metrics["hd95_median"] == pytest.approx(2.5)
    assert metrics["n_cases"] == 4
    assert metrics["train_seconds"] == 7.5
    assert artifacts(client, run.info.run_id) == {
        "run/run.json", "run/epochs.csv", "profile/fold0.json", "metrics/fold0.csv",
        "metrics/fold0.json", "metrics/fold0_slices.csv", "metrics/overlays/best.png",
        "metrics/overlays/median.png", "metrics/overlays/worst.png"}

    other = runs[bce_key.key]
    assert (other.data.tags["calf.ratio"], other.data.tags["calf.seed"]) == ("0.25", "7")
    assert other.data.tags["calf.loss_definition"] == "authors"
    assert "calf.branch" not in other.data.tags
    assert "profile/fold1.json" in artifacts(client, other.info.run_id)  # from --profiles-root

    again = sync(study, mlflow_server)
    assert (again.created, again.updated) == ([], [])
    assert sorted(again.unchanged) == sorted(result.created)
    assert again.parent_run_id == result.parent_run_id
    assert set(runs_by_key(client, experiment.experiment_id)) == set(runs)
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 3

    # the interrupted run completes, and one evaluation is redone with other numbers
    make_run(study["runs"], stopped_key, status="complete")
    cases = bce_key.metrics_csv(study["metrics"])
    cases.write_text(cases.read_text().replace("0.9,", "0.1,", 1))  # dice 0.9 -> 0.1
    third = sync(study, mlflow_server)
    assert third.created == [stopped_key.key]
    assert third.updated == [bce_key.key]
    assert third.unchanged == [calf_key.key]
    runs = runs_by_key(client, experiment.experiment_id)
    assert len(runs) == 4
    updated = runs[bce_key.key]
    assert updated.data.metrics["dice_mean"] == pytest.approx(0.375)
    assert len(client.get_metric_history(updated.info.run_id, "train_loss")) == 3
    assert len(client.get_metric_history(updated.info.run_id, "dice_mean")) == 2


def test_sync_uploads_checkpoints_when_asked(study, mlflow_server):
    sync(study, mlflow_server, checkpoints=True)
    client = client_for(mlflow_server)
    experiment = client.get_experiment_by_name(study["name"])
    run = runs_by_key(client, experiment.experiment_id)[study["keys"][0].key]
    assert "run/checkpoint.pt" in artifacts(client, run.info.run_id)


def test_sync_logs_cost_as_system_metrics_and_training_sets_as_datasets(study, mlflow_server):
    calf_key, bce_key, _ = study["keys"]
    result = sync(study, mlflow_server)
    assert (result.missing_datasets, result.without_cost) == ([], [])
    client = client_for(mlflow_server)
    runs = runs_by_key(client, result.experiment_id)

    run = runs[calf_key.key]
    system = {k: v for k, v in run.data.metrics.items() if k.startswith("system/")}
    assert system == pytest.approx(CUDA_SYSTEM)
    tags = run.data.tags
    assert (tags["calf.cost_device"], tags["calf.device_name"], tags["calf.peak_memory_kind"],
            tags["calf.cost_source"]) == ("cuda", "NVIDIA H200", "cuda_allocated",
                                          "run.json cost")
    train = training_csv(study["runs"], calf_key)
    assert dataset_inputs(client, run.info.run_id) == [
        expected_input(train, "synth/fold0/training", "training")]
    record = json.loads(study["runs"].joinpath(*calf_key.key.split("/"), "run.json").read_text())
    assert dataset_inputs(client, run.info.run_id)[0][1] == (
        record["params"]["train_slices_sha256"][:36])

    other = runs[bce_key.key]
    assert other.data.metrics["system/device_s"] == 15.0
    assert other.data.metrics["system/peak_memory_mb"] == 500.0
    assert "system/energy_j" not in other.data.metrics  # null on the CPU
    assert other.data.tags["calf.peak_memory_kind"] == "cpu_rss"
    assert dataset_inputs(client, other.info.run_id) == sorted([
        expected_input(training_csv(study["runs"], bce_key), "synth/ratio-0.25/fold1/training",
                       "training"),
        expected_input(study["splits"] / study["name"] / "synth" / "val-fold1.csv",
                       "synth/ratio-0.25/fold1/validation", "validation")])

    again = sync(study, mlflow_server)  # nothing twice: one input per set, one value each
    assert sorted(again.unchanged) == sorted(result.created)
    assert len(client.get_run(run.info.run_id).inputs.dataset_inputs) == 1
    assert len(client.get_metric_history(run.info.run_id, "system/wall_s")) == 1


def test_sync_counts_training_sets_gone_or_changed_and_runs_without_cost(study, mlflow_server):
    calf_key, bce_key, stopped_key = study["keys"]
    make_run(study["runs"], stopped_key, cost=None)  # a complete run from before the record
    calf_csv, bce_csv = training_csv(study["runs"], calf_key), training_csv(study["runs"], bce_key)
    kept = bce_csv.read_bytes()
    bce_csv.unlink()
    result = sync(study, mlflow_server)
    assert sorted(result.created) == sorted(k.key for k in study["keys"])
    assert result.missing_datasets == [f"{bce_key.key}: training set {bce_csv} not found"]
    assert result.without_cost == [stopped_key.key]
    client = client_for(mlflow_server)
    runs = runs_by_key(client, result.experiment_id)
    assert [i[4] for i in dataset_inputs(client, runs[bce_key.key].info.run_id)] == [
        "validation"]
    old = runs[stopped_key.key]
    assert {k: v for k, v in old.data.metrics.items() if k.startswith("system/")} == {
        "system/wall_s": 7.5, "system/train_s": 7.5, "system/epochs": 3}  # 3 epochs of 2.5 s
    assert old.data.tags["calf.cost_source"].startswith("run.json seconds and epochs.csv")
    # the stopped run and the CALF run share fold 0's CSV: one MLflow dataset
    assert dataset_inputs(client, old.info.run_id) == dataset_inputs(
        client, runs[calf_key.key].info.run_id)

    # the CSV comes back (the run is updated with it); fold 0's CSV is rewritten
    bce_csv.write_bytes(kept)
    calf_csv.write_text(calf_csv.read_text() + "synth,99,c9,p9,t1,0,0\n")
    second = sync(study, mlflow_server)
    assert bce_key.key in second.updated
    assert [i[4] for i in dataset_inputs(client, runs[bce_key.key].info.run_id)] == [
        "training", "validation"]
    assert len(second.missing_datasets) == 2  # both runs of fold 0
    assert second.missing_datasets[0].startswith(
        f"{calf_key.key}: training set {calf_csv} changed since training (sha256 ")


def test_sync_to_sqlite_with_the_cli(study, tmp_path, capsys, monkeypatch):
    """The CLI into a SQLite file: stamp, second sync unchanged, nothing else left behind."""
    monkeypatch.chdir(tmp_path)  # MLflow's defaults would write mlflow.db or mlruns/ here
    out = tmp_path / "results"
    db, stamp = out / "mlflow.db", out / "mlflow.synced"
    command = ["mlflow-sync", "--study", study["name"], "--runs-root", str(study["runs"]),
               "--metrics-root", str(study["metrics"]), "--tracking-uri", f"sqlite:///{db}",
               "--stamp", str(stamp)]
    assert calf_main(command) == 0
    first = capsys.readouterr().out
    assert "2 created, 0 updated, 0 unchanged, 1 skipped" in first
    assert f"skipped {study['keys'][2].key} (status interrupted)" in first
    summary = json.loads(stamp.read_text())
    assert len(summary["created"]) == 2
    # an existing stamp is replaced only with --force: refused before MLflow is touched
    before = db.read_bytes()
    assert calf_main(command) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"calf mlflow-sync: error: {stamp}: already exists (pass --force to replace "
                   "it)")
    assert db.read_bytes() == before and json.loads(stamp.read_text()) == summary
    command.append("--force")
    assert calf_main(command) == 0
    assert "0 created, 0 updated, 2 unchanged, 1 skipped" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["mlflow-artifacts", "mlflow.db",
                                                     "mlflow.synced"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics", "profiles", "results",
                                                          "runs", "splits"]
    assert (summary["missing_datasets"], summary["without_cost"]) == ([], [])

    client = client_for(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name(study["name"])
    runs = runs_by_key(client, experiment.experiment_id)
    assert len(runs) == 3
    run = runs[study["keys"][1].key]
    assert history(client, run.info.run_id, "train_loss") == [(1, 0.8), (2, 0.4), (3, 0.2)]
    assert "metrics/overlays/worst.png" in artifacts(client, run.info.run_id)
    # the profile named nowhere (no --profiles-root given, run.json names none): not uploaded
    assert not any(a.startswith("profile/") for a in artifacts(client, run.info.run_id))
    local = out / "mlflow-artifacts" / study["name"] / run.info.run_id / "artifacts"
    assert (local / "metrics" / "fold1.csv").read_bytes() == (
        study["keys"][1].metrics_csv(study["metrics"]).read_bytes())

    gone = training_csv(study["runs"], study["keys"][1])
    gone.unlink()  # counted in one line and in the stamp; the run is synced again without it
    assert calf_main(command) == 0
    out_text = capsys.readouterr().out
    assert "0 created, 1 updated, 1 unchanged, 1 skipped" in out_text
    assert (f"calf mlflow-sync: 1 training/validation CSVs not logged as datasets (gone or "
            f"changed since training), e.g. {study['keys'][1].key}: training set {gone} not "
            f"found; all in {stamp}") in out_text
    assert len(json.loads(stamp.read_text())["missing_datasets"]) == 1


def _break_layout(study):
    bad = study["runs"] / study["name"] / "synth" / "unet" / "stray"
    bad.mkdir(parents=True)
    (bad / "run.json").write_text("{}")
    return bad


def _break_run_json(study):
    path = study["runs"].joinpath(*study["keys"][0].key.split("/"), "run.json")
    path.write_text("{not json")
    return path


def _break_epochs(study):
    path = study["runs"].joinpath(*study["keys"][0].key.split("/"), "epochs.csv")
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")  # one epoch lost
    return path


def _break_metrics(study):
    path = study["keys"][1].metrics_csv(study["metrics"])
    path.write_text("case_id,modality\nc0,t1\n")
    return path


def _break_profile(study):
    path = study["keys"][0].profile_json(study["profiles"])  # named in the run's run.json
    record = json.loads(path.read_text())
    del record["branch"]
    path.write_text(json.dumps(record))
    return path


@pytest.mark.parametrize("breaker, message", [
    (_break_layout, "not a results path"),
    (_break_run_json, "not a readable run record JSON"),
    (_break_epochs, "2 epochs but"),
    (_break_metrics, "missing column(s) patient_id, dataset, model, loss, fold, dice,"),
    (_break_profile, "missing key 'branch'"),
])
def test_cli_rejects_bad_input_and_writes_nothing(study, tmp_path, capsys, breaker, message):
    bad = breaker(study)
    db = tmp_path / "out" / "mlflow.db"
    code = calf_main(["mlflow-sync", "--study", study["name"], "--runs-root", str(study["runs"]),
                      "--metrics-root", str(study["metrics"]), "--tracking-uri", f"sqlite:///{db}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert str(bad) in err and message in err
    assert not db.parent.exists()


@pytest.mark.parametrize("uri", ["file:///tmp/mlruns", "sqlite:///", "sqlite://x.db", "postgres"])
def test_cli_rejects_other_tracking_uris(study, capsys, uri):
    code = calf_main(["mlflow-sync", "--study", study["name"], "--runs-root", str(study["runs"]),
                      "--tracking-uri", uri])
    assert code == 2
    assert f"--tracking-uri {uri}" in capsys.readouterr().err


def test_cli_refuses_to_change_a_foreign_sqlite_file(study, tmp_path, capsys):
    import sqlite3
    from contextlib import closing

    db = tmp_path / "other.db"
    with closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE notes (text TEXT)")
    before = db.read_bytes()
    code = calf_main(["mlflow-sync", "--study", study["name"], "--runs-root", str(study["runs"]),
                      "--tracking-uri", f"sqlite:///{db}"])
    assert code == 2
    assert f"{db}: not an MLflow tracking database" in capsys.readouterr().err
    assert db.read_bytes() == before


def test_cli_names_an_unreachable_server(study, capsys, unused_tcp_port):
    uri = f"http://127.0.0.1:{unused_tcp_port}"
    code = calf_main(["mlflow-sync", "--study", study["name"], "--runs-root", str(study["runs"]),
                      "--tracking-uri", uri])
    assert code == 2
    assert f"--tracking-uri {uri}: server unreachable" in capsys.readouterr().err


# ------------------------------------------------------------------------ LiveLogger


@pytest.mark.parametrize("uri", [None, "sqlite:///{tmp}/live.db", "file:///{tmp}/mlruns"])
def test_live_logger_is_a_no_op_without_a_server(tmp_path, uri):
    """No server named: nothing is written, and mlflow is not even imported."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    if uri is not None:
        env["MLFLOW_TRACKING_URI"] = uri.format(tmp=tmp_path)
    code = ("import sys; from calf.tracking.live import LiveLogger; "
            "log = LiveLogger.from_env('r', {'lr': 1}, {}); log.log_epoch(1, {'loss': 0.5}); "
            "log.finish('complete'); print(log.active, 'mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=60, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert out.stderr == ""
    assert list(tmp_path.iterdir()) == []


def monitor_threads() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name == "SystemMetricsMonitor"]


def test_live_logger_logs_to_a_server_and_sync_completes_the_same_run(
        study, mlflow_server, monkeypatch, capsys):
    calf_key = study["keys"][0]
    run_dir = study["runs"].joinpath(*calf_key.key.split("/"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    # MLflow's monitor, sampling fast for the test (the logger's default is every 15 s)
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    params = json.loads((run_dir / "run.json").read_text())["params"]
    log = LiveLogger.from_env(str(run_dir), params, {"run_dir": str(run_dir),
                                                      "git_commit": COMMIT})
    assert log.active
    client = client_for(mlflow_server)
    deadline = time.monotonic() + 60
    while "system/cpu_utilization_percentage" not in client.get_run(log.run_id).data.metrics:
        assert time.monotonic() < deadline, "no system metrics from MLflow's monitor in 60 s"
        time.sleep(0.2)
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "3"  # the monitor's requests too
    train = training_csv(study["runs"], calf_key)
    assert dataset_inputs(client, log.run_id) == [
        expected_input(train, "synth/fold0/training", "training")]
    rows = epoch_rows(3, "ln")
    for row in rows[:2]:  # the job is stopped after two epochs ...
        log.log_epoch(row["epoch"], {k: v for k, v in row.items() if k != "epoch"})
    log.finish("interrupted")
    assert capsys.readouterr().err == ""
    assert monitor_threads() == []
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ  # the process's settings again

    live = client.get_run(log.run_id)
    assert live.info.status == "KILLED"
    assert live.data.tags["calf.run_key"] == calf_key.key
    assert live.data.params["loss_kwargs.scope"] == "dataset"
    assert history(client, log.run_id, "train_loss") == [(1, 0.8), (2, 0.4)]

    resumed = LiveLogger.from_env(str(run_dir), params, {"run_dir": str(run_dir)})
    assert resumed.run_id == log.run_id  # ... and resumed into the same MLflow run
    resumed.log_epoch(3, {k: v for k, v in rows[2].items() if k != "epoch"})
    resumed.log_cost(CUDA_COST)
    resumed.finish("complete")
    assert monitor_threads() == []
    finished = client.get_run(log.run_id)
    assert finished.info.status == "FINISHED"
    assert {k: finished.data.metrics[k] for k in CUDA_SYSTEM} == pytest.approx(CUDA_SYSTEM)
    assert finished.data.tags["calf.cost_device"] == "cuda"
    assert len(finished.inputs.dataset_inputs) == 1  # the resumed job logged it again: one

    result = sync(study, mlflow_server)
    assert calf_key.key in result.updated and calf_key.key not in result.created
    runs = runs_by_key(client, result.experiment_id)
    assert runs[calf_key.key].info.run_id == log.run_id
    assert len(runs) == 3  # parent + the two complete runs: nothing twice
    assert history(client, log.run_id, "train_loss") == [(1, 0.8), (2, 0.4), (3, 0.2)]
    completed = client.get_run(log.run_id)
    assert completed.data.tags["mlflow.parentRunId"] == result.parent_run_id
    assert completed.data.metrics["dice_mean"] == pytest.approx(0.575)
    assert "metrics/fold0.csv" in artifacts(client, log.run_id)
    # the sync's cost and dataset are the live ones: nothing added
    assert len(client.get_metric_history(log.run_id, "system/wall_s")) == 1
    assert dataset_inputs(client, log.run_id) == [
        expected_input(train, "synth/fold0/training", "training")]


def test_live_logger_monitor_off_by_mlflow_setting(mlflow_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", f"off-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    log = LiveLogger.from_env("off", {"lr": 1e-5, "train_slices": "/no/such/train.csv",
                                      "train_slices_sha256": "0" * 64}, {})
    assert log.active and monitor_threads() == []
    log.log_cost({"wall_s": 2.0, "energy_j": None})
    log.finish("complete")
    run = client_for(mlflow_server).get_run(log.run_id)
    assert {k: v for k, v in run.data.metrics.items() if k.startswith("system/")} == {
        "system/wall_s": 2.0}
    assert run.inputs.dataset_inputs == []  # the CSV is not there: nothing logged


def test_live_logger_with_an_unreachable_server_warns_once(monkeypatch, capfd, unused_tcp_port):
    import mlflow.tracking  # noqa: F401 - the import is paid once per job; time the calls

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{unused_tcp_port}")
    start = time.perf_counter()
    log = LiveLogger.from_env("run", {"lr": 1e-5}, {})
    for epoch in range(1, 6):
        log.log_epoch(epoch, {"train_loss": 1.0 / epoch})
    log.finish("complete")
    elapsed = time.perf_counter() - start
    assert not log.active
    assert elapsed < 5
    out, err = capfd.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("calf: MLflow live logging to http://127.0.0.1:")


# ------------------------------------------------------------- calf train, end to end


def tiny_training_set(root: Path) -> tuple[Path, Path]:
    """A slice store of four 32 x 32 x 6 cases (one modality, discs as tumours) written as
    NIfTI and preprocessed, and fold 0's training-set CSV of a 2-fold split."""
    import nibabel as nib

    from calf.datasets.base import Case
    from calf.preprocess import PreprocessSettings, preprocess
    from calf.split import make_splits, read_indexes, training_set, write_training_set

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    cases = []
    for c in range(4):
        folder = root / f"c{c}"
        folder.mkdir(parents=True)
        seg = np.zeros((32, 32, 6), np.uint8)
        image = rng.normal(100, 10, seg.shape).astype(np.float32)
        for z in range(6):
            disc = (yy - 16) ** 2 + (xx - 16 + c) ** 2 <= ((z + c) % 4 * 2) ** 2
            seg[..., z][disc] = 1
            image[..., z][disc] += 80
        nib.save(nib.Nifti1Image(seg, np.eye(4)), folder / "seg.nii.gz")
        nib.save(nib.Nifti1Image(image, np.eye(4)), folder / "t1.nii.gz")
        cases.append(Case("toy", f"c{c}", f"p{c}", {"t1": folder / "t1.nii.gz"},
                          folder / "seg.nii.gz"))
    store = root / "store"
    preprocess(cases, store, PreprocessSettings(size=32, mask_resize="nearest"), progress=False)
    index = read_indexes([store])
    write_training_set(training_set(index, make_splits(index, folds=2, seed=1), 0),
                       root / "train.csv")
    return store, root / "train.csv"


def live_steps(client, study_name: str, key: str) -> list[int]:
    """The epochs of train_loss that reached the server for the run ``key`` (so far)."""
    experiment = client.get_experiment_by_name(study_name)
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], f"tags.`calf.run_key` = '{key}'")
    return [m.step for m in client.get_metric_history(runs[0].info.run_id, "train_loss")
            ] if runs else []


def test_server_killed_mid_training(study, tmp_path, mlflow_server, start_mlflow_server,
                                    monkeypatch, capfd):
    """A server that dies mid-run: a real ``calf train`` and an in-process ``LiveLogger`` both
    log to it; it is killed after the first epoch. Both carry on (training exits 0), each
    warns once, the logger's calls after the kill return at once, and a later sync to
    another server has every epoch of both runs."""
    doomed = start_mlflow_server(wait=False)
    store, train_csv = tiny_training_set(tmp_path / "data")  # while the server starts
    doomed.wait_healthy()
    trained = RunKey(study["name"], "toy", "unet", "bce", 0)
    out = study["runs"].joinpath(*trained.key.split("/"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": doomed.uri, "OMP_NUM_THREADS": "1",
           "CALF_TRAIN_STEP_DELAY": "0.5"}  # slow steps: time to kill the server mid-run
    command = [sys.executable, "-m", "calf", "train", "--store", str(store),
               "--train-slices", str(train_csv), "--model", "unet", "--width", "0.0625",
               "--loss", "bce", "--epochs", "4", "--batch-size", "8", "--device", "cpu",
               "--out", str(out)]
    client = client_for(doomed.uri)
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as job:
        try:
            monkeypatch.setenv("MLFLOW_TRACKING_URI", doomed.uri)
            logged = study["keys"][1]
            log = LiveLogger.from_env("bce", {"lr": 1e-5},
                                      {"run_dir": str(study["runs"] / logged.key)})
            log.log_epoch(1, {"train_loss": 0.8})
            deadline = time.monotonic() + 90
            while not live_steps(client, study["name"], trained.key):
                assert job.poll() is None, job.stderr.read()
                assert time.monotonic() < deadline, "calf train logged no epoch in 90 s"
                time.sleep(0.3)
            assert live_steps(client, study["name"], trained.key) == [1]
            assert live_steps(client, study["name"], logged.key) == [1]
            capfd.readouterr()

            doomed.kill()
            assert json.loads((out / "run.json").read_text())["status"] == "running"
            start = time.perf_counter()
            log.log_epoch(2, {"train_loss": 0.4})
            log.log_epoch(3, {"train_loss": 0.2})
            log.finish("complete")
            assert time.perf_counter() - start < 5
            assert not log.active
            assert len(capfd.readouterr().err.strip().splitlines()) == 1
            _, stderr = job.communicate(timeout=120)
        finally:
            if job.poll() is None:
                job.kill()
    assert job.returncode == 0, stderr
    warnings = [line for line in stderr.splitlines() if "MLflow live logging" in line]
    assert len(warnings) == 1 and "disabled after an error" in warnings[0]
    assert json.loads((out / "run.json").read_text())["status"] == "complete"

    result = sync(study, mlflow_server)
    assert sorted(result.created) == sorted([trained.key, *(k.key for k in study["keys"][:2])])
    server = client_for(mlflow_server)
    runs = runs_by_key(server, result.experiment_id)
    assert history(server, runs[logged.key].info.run_id, "train_loss") == [
        (1, 0.8), (2, 0.4), (3, 0.2)]
    steps = [step for step, _ in history(server, runs[trained.key].info.run_id, "train_loss")]
    assert steps == [1, 2, 3, 4]
    assert runs[trained.key].info.status == "FINISHED"
    # what the run cost, and the CSV it trained on, from its run.json
    record = json.loads((out / "run.json").read_text())
    system = {k: v for k, v in runs[trained.key].data.metrics.items() if k.startswith("system/")}
    assert system == pytest.approx(cost_metrics(record["cost"]))
    assert {"system/wall_s", "system/device_s", "system/device_s_per_epoch"} <= system.keys()
    assert dataset_inputs(server, runs[trained.key].info.run_id) == [
        expected_input(train_csv, "toy/fold0/training", "training")]
