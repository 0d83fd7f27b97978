"""tests/slurm_cluster.py on a real single-node SLURM: sbatch, a Snakemake run, teardown.

The tests that take the ``slurm_cluster`` fixture need root and apt-get (the fixture
installs SLURM, munge, slurmdbd and MariaDB when missing); elsewhere they are skipped with
the reason. They take about a minute and a half here (2 cores), plus the install.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from slurm_cluster import SLURM_CONF, SlurmJob, slurm_cluster  # noqa: F401

SNAKEFILE = """\
rule all:
    input:
        "report.txt",


rule greet:
    output:
        "greeting.txt",
    shell:
        "echo hello from slurm job $SLURM_JOB_ID > {output}"


rule report:
    input:
        "greeting.txt",
    output:
        "report.txt",
    resources:
        cpus_per_task=2,
        mem_mb=300,
    shell:
        "cat {input} > {output} && "
        "echo $SLURM_JOB_ID $SLURM_CPUS_PER_TASK >> {output}"
"""


@pytest.mark.parametrize(
    ("comment", "rule"),
    [
        ("rule_train", "train"),
        ("rule_train_model_wildcards_fold=1_model=unet", "train_model"),
        ("rule_all", "all"),
        ("", None),
        ("nightly backup", None),
    ],
)
def test_rule_from_job_comment(comment, rule):
    job = SlurmJob(1, "uuid", "COMPLETED", comment, "calf", "calf", 1, "1000M", "0:0")
    assert job.rule == rule


@pytest.mark.slow
def test_sbatch_jobs_run_and_are_recorded(slurm_cluster, tmp_path):
    ok_out, fail_out = tmp_path / "ok.out", tmp_path / "fail.out"
    ok = slurm_cluster.submit(
        'echo "job $SLURM_JOB_ID on $SLURM_JOB_NODELIST cpus $SLURM_CPUS_PER_TASK"',
        ok_out,
        "--cpus-per-task=2",
        "--mem=200",
    )
    failed = slurm_cluster.submit("echo failing; exit 3", fail_out)
    records = slurm_cluster.wait_for_jobs([ok, failed], timeout=60)

    node = os.uname().nodename.split(".")[0]
    assert ok_out.read_text() == f"job {ok} on {node} cpus 2\n"
    assert records[ok].state == "COMPLETED"
    assert records[ok].exit_code == "0:0"
    assert (records[ok].cpus, records[ok].req_mem) == (2, "200M")
    assert (records[ok].account, records[ok].partition) == ("calf", "calf")
    assert fail_out.read_text() == "failing\n"
    assert records[failed].state == "FAILED"
    assert records[failed].exit_code == "3:0"


@pytest.mark.slow
def test_snakemake_runs_every_rule_as_a_slurm_job(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    before = {job.job_id for job in slurm_cluster.jobs()}

    done = slurm_cluster.run_snakemake(tmp_path, jobs=2, timeout=240)

    assert done.returncode == 0, done.stdout[-4000:]
    jobs = {job.rule: job for job in slurm_cluster.jobs() if job.job_id not in before}
    assert set(jobs) == {"greet", "report"}  # rule all is local, the others went to SLURM
    assert all(job.state == "COMPLETED" for job in jobs.values())
    assert len({job.name for job in jobs.values()}) == 1  # the plugin names jobs by run id
    assert (jobs["report"].cpus, jobs["report"].req_mem) == (2, "300M")
    assert (jobs["greet"].account, jobs["greet"].partition) == ("calf", "calf")
    # each job wrote its own SLURM job id: the outputs were made inside those jobs
    greet_id, report_id = jobs["greet"].job_id, jobs["report"].job_id
    assert (tmp_path / "greeting.txt").read_text() == f"hello from slurm job {greet_id}\n"
    assert (tmp_path / "report.txt").read_text() == (
        f"hello from slurm job {greet_id}\n{report_id} 2\n"
    )
    for rule, job in jobs.items():
        assert (
            tmp_path / ".snakemake" / "slurm_logs" / f"rule_{rule}" / f"{job.job_id}.log"
        ).is_file()


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie has finished and counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_stop_ends_every_daemon_and_job_then_restarts(slurm_cluster, tmp_path):
    pid_file = tmp_path / "sleep.pid"
    job = slurm_cluster.submit(f"sleep 300 & echo $! > {pid_file}; wait", tmp_path / "job.out")
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, f"job {job} did not start"
        time.sleep(0.2)
    job_pid = int(pid_file.read_text())
    daemons = slurm_cluster.pids
    state_dir = slurm_cluster.state_dir
    assert set(daemons) == {"munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd"}
    assert all(_alive(pid) for pid in [*daemons.values(), job_pid])
    assert str(state_dir) in SLURM_CONF.read_text()

    slurm_cluster.stop()

    assert [name for name, pid in daemons.items() if _alive(pid)] == []
    assert not _alive(job_pid)  # the running job's processes went too
    assert not SLURM_CONF.exists() or str(state_dir) not in SLURM_CONF.read_text()
    assert not state_dir.exists()
    assert slurm_cluster.timings["stop"] < 30

    slurm_cluster.start()  # the session's other tests keep a working cluster
    assert set(slurm_cluster.pids.values()).isdisjoint(daemons.values())
    assert (
        slurm_cluster.wait_for_jobs(
            [slurm_cluster.submit("true", tmp_path / "again.out")], timeout=60
        )
        .popitem()[1]
        .state
        == "COMPLETED"
    )
