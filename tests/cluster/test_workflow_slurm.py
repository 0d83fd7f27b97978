"""The benchmark workflow through a real single-node SLURM (installed and started by the
fixture in tests/slurm_cluster.py; skipped, with the reason, where that cannot be done)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from slurm_cluster import slurm_cluster  # noqa: F401  (the fixture, found by name)
from workflow_helpers import copy_workflow, tiny_config, write_config


@pytest.mark.slow
def test_reduced_demo_runs_through_slurm(slurm_cluster, tmp_path):  # noqa: F811
    work = copy_workflow(tmp_path / "wf")
    config = tiny_config(t={"datasets": ["tiny"], "folds": 2, "models": ["unet"],
                            "losses": ["calf"]})
    write_config(work / "config/config.yaml", config)

    done = slurm_cluster.run_snakemake(
        work, "--cores", "2",
        default_resources={"mem_mb": 1500, "runtime": 30, "cpus_per_task": 1},
        jobs=4, timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-4000:]

    results = work / "results"
    for fold in (0, 1):
        run = json.loads((results / f"runs/t/tiny/unet/calf/fold{fold}/run.json").read_text())
        assert run["status"] == "complete"
        metrics = pd.read_csv(results / f"metrics/t/tiny/unet/calf/fold{fold}.csv")
        assert len(metrics) == 2 and metrics["dice"].between(0, 1).all()
        assert (results / f"profiles/t/tiny/fold{fold}.json").is_file()
    assert (results / "mlflow/t.synced.json").is_file()

    # every job but the local ones went through SLURM, and finished there
    jobs = [job for job in slurm_cluster.jobs() if job.rule]
    rules = [job.rule for job in jobs]
    assert sorted(rules) == sorted(
        ["preprocess", "split_folds", "split_select", "split_select", "profile", "profile",
         "train_calf", "train_calf", "evaluate_t", "evaluate_t", "analysis"]
    ), rules
    assert all(job.state == "COMPLETED" for job in jobs), [(j.rule, j.state) for j in jobs]
