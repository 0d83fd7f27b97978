"""A real single-node SLURM cluster for tests: install, configure, start, wait, stop.

What a test gets
----------------
The session-scoped pytest fixture :func:`slurm_cluster` yields a running
:class:`SlurmCluster`: this host as the only compute node (its real CPU count, its memory
less 10 % headroom), one default partition ``calf``, an account ``calf`` for the current
user, and SLURM accounting (slurmdbd + a private MariaDB), so ``sacct`` works and the
Snakemake SLURM executor plugin runs with its defaults (``sacct`` status polling, account
validation). A test module uses the fixture by importing it (pytest's default import mode
puts ``tests/`` on ``sys.path``; ``tests/conftest.py`` is not involved)::

    import pytest
    from slurm_cluster import slurm_cluster  # noqa: F401  (pytest finds it by name)

    @pytest.mark.slow
    def test_workflow_on_slurm(slurm_cluster, tmp_path):
        # copy or write the workflow into tmp_path first; snakemake runs there
        done = slurm_cluster.run_snakemake(
            tmp_path, "--configfile", "config/reduced.yaml",
            default_resources={"mem_mb": 1000, "runtime": 10}, timeout=900,
        )
        assert done.returncode == 0, done.stdout[-4000:]
        jobs = slurm_cluster.jobs()  # sacct records of every job since the cluster started
        assert {job.rule for job in jobs} >= {"train", "evaluate"}
        assert all(job.state == "COMPLETED" for job in jobs)

Without root, without apt-get/dpkg, when ``apt-get install`` fails, or while SLURM daemons
it did not start run on this machine, the fixture skips with the reason (pytest's ``-ra``
summary, on in this project, prints it). Once SLURM is installed, a daemon that does not
start or stop cleanly is an error, not a skip.

The yielded object
------------------
``run_snakemake(workdir, *args, jobs=4, default_resources=None, timeout=600.0)``
    runs ``<venv>/bin/snakemake`` + ``snakemake_args(jobs, default_resources)`` + ``args``
    in ``workdir`` with ``env()``; returns the ``CompletedProcess`` (stderr merged into
    ``stdout``). On timeout it SIGKILLs snakemake's process group (snakemake waiting on SLURM
    may ignore SIGTERM), cancels the queue and raises :class:`SlurmError` with the output's
    tail.
``snakemake_args(jobs=4, default_resources=None)``
    ``--executor slurm --jobs N --default-resources slurm_partition=calf slurm_account=calf
    [k=v ...] --slurm-init-seconds-before-status-checks 2 --slurm-keep-successful-logs``.
    ``--default-resources`` on the command line replaces a profile's ``default-resources``
    (the workflow profile's too): pass what the workflow needs through
    ``default_resources``. Per-rule ``resources:`` (``cpus_per_task``, ``mem_mb``,
    ``runtime``) reach ``sbatch`` as usual; the node has no GPU, so a job asking for
    ``gpu``/``gres`` is refused by sbatch. Job logs stay in ``.snakemake/slurm_logs/``.
``env()``
    ``os.environ`` with the running interpreter's ``bin`` folder (the venv) first on
    ``PATH``: each job re-enters snakemake on the node with the submitter's environment
    (``sbatch --export=ALL``), so it must find the venv's ``snakemake`` there.
``jobs()`` and ``wait_for_jobs(job_ids, timeout=60.0)``
    :class:`SlurmJob` records from ``sacct -X``: ``job_id, name, state, comment, account,
    partition, cpus, req_mem`` (e.g. ``"300M"``), ``exit_code`` (e.g. ``"0:0"``); ``.rule``
    is the Snakemake rule the plugin put in the job comment (``rule_<name>[_wildcards_..]``);
    every job of one snakemake run has the run's UUID as ``name``.
``submit(command, output, *sbatch_args)``
    ``sbatch --wrap command`` into the partition and account; returns the job id.
``cancel_all_jobs()``, ``stop()``, ``start()``
    scancel the queue; stop everything (also done by the fixture); start again.
``partition``, ``account``, ``cpus``, ``mem_mb``, ``log_dir``, ``pids``, ``timings``
    where jobs go, the node's CPUs and memory (MB) as SLURM knows them, the daemons' log
    folder (slurmctld.log, slurmd.log, slurmdbd.log, mariadbd.log, ``<daemon>.out``),
    ``{daemon: pid}``, and seconds per step (``install``, ``start``, ``stop``, each daemon).

Timing: start about 7-10 s (``mariadb-install-db`` is half of it), stop about 2-3 s, the
install about 60 s on a fresh Debian 12. A snakemake job takes 10-20 s on this node (snakemake
starts twice inside it) and the plugin polls 2 s after a submission, then 10 s later each
time nothing finished: a chain of n jobs needs about n x 15-35 s. Size timeouts for that.

What it does to the machine
---------------------------
Installs the missing :data:`PACKAGES` with ``apt-get install -y --no-install-recommends``
(``apt-get update`` only if that fails), while Debian's ``policy-rc.d`` denies service
starts so that no daemon appears that this module could not track. Writes
``/etc/slurm/slurm.conf`` and ``/etc/slurm/slurmdbd.conf`` and restores (or removes) them
on stop. All else is private to a fresh ``/tmp/calf-slurm-*`` folder (munged's socket,
MariaDB's data, SLURM's state, spool and logs, removed on a clean stop, kept after a failed
start) and free TCP ports on 127.0.0.1. It starts munged (as user munge), mariadbd,
slurmdbd, slurmctld and slurmd in the foreground, each in its own session, tracked by PID.
Stopping cancels the queued jobs, sends SIGTERM to each daemon's process group (SIGKILL
after a bounded wait), SIGKILLs whatever is left in those sessions and in the sessions of
this node's job steps (slurmstepd detaches from slurmd), and raises :class:`SlurmError` if
any of it survives. A lock file keeps two test sessions from running a cluster at once.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

import pytest

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge", "slurmdbd", "mariadb-server")
SLURM_CONF = Path("/etc/slurm/slurm.conf")
SLURMDBD_CONF = Path("/etc/slurm/slurmdbd.conf")
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
LOCK_FILE = Path(tempfile.gettempdir()) / "calf-slurm-cluster.lock"
TERMINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)
# the throwaway accounting database: reachable only on 127.0.0.1 during one test session
_DB_USER, _DB_PASSWORD, _DB_NAME = "slurm", "calf-test-only", "slurm_acct_db"


class SlurmUnavailable(Exception):
    """This machine cannot host the cluster (not root, no apt-get, install failed): skip."""


class SlurmError(RuntimeError):
    """SLURM is installed but a daemon failed to start, answer or stop: a real failure."""


# --------------------------------------------------------------------------- installation
def unavailable_reason() -> str | None:
    """Why this machine cannot host the test cluster, or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"a single-node SLURM needs Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return "installing and starting SLURM daemons needs root (this euid is not 0)"
    if shutil.which("apt-get") is None or shutil.which("dpkg-query") is None:
        return "no apt-get/dpkg-query on PATH: the test installs SLURM from Debian packages"
    return None


def missing_packages(packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """The subset of ``packages`` that dpkg does not report as installed."""
    missing = []
    for package in packages:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f=${db:Status-Status}", package],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0 or done.stdout.strip() != "installed":
            missing.append(package)
    return missing


def ensure_installed(packages: tuple[str, ...] = PACKAGES, timeout: float = 600.0) -> float:
    """Install the missing Debian ``packages``; return the seconds it took (0 if none missing).

    ``apt-get update`` runs only when the first install fails (a fresh machine's lists may
    be missing or stale). Raises :class:`SlurmUnavailable` naming apt's last line on failure.
    """
    reason = unavailable_reason()
    if reason:
        raise SlurmUnavailable(reason)
    missing = missing_packages(packages)
    if not missing:
        return 0.0
    started = time.monotonic()
    install = ["install", "-y", "--no-install-recommends", *missing]
    with _no_service_starts():
        done = _apt_get(install, timeout)
        if done.returncode != 0:
            update = _apt_get(["update"], timeout)
            if update.returncode != 0:
                raise SlurmUnavailable(f"apt-get update failed: {_last_line(update.stdout)}")
            done = _apt_get(install, timeout)
    if done.returncode != 0:
        raise SlurmUnavailable(
            f"apt-get install {' '.join(missing)} failed: {_last_line(done.stdout)}"
        )
    return time.monotonic() - started


def _apt_get(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        return subprocess.run(
            ["apt-get", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired as error:
        raise SlurmUnavailable(f"apt-get {args[0]} took over {timeout:.0f} s") from error


@contextlib.contextmanager
def _no_service_starts() -> Iterator[None]:
    """Keep package scripts from starting munge/MariaDB/SLURM daemons this module cannot track.

    Debian's ``invoke-rc.d`` asks ``/usr/sbin/policy-rc.d``; exit code 101 denies every
    start. An existing policy file is left alone; one written here is removed afterwards.
    """
    if POLICY_RC_D.exists():
        yield
        return
    POLICY_RC_D.write_text("#!/bin/sh\n# temporary, from calf tests/slurm_cluster.py\nexit 101\n")
    POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC_D.unlink(missing_ok=True)


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


# --------------------------------------------------------------------------- processes
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, session id) of a process, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # after the parenthesised command name: state ppid pgrp session ...
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[3])


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _live_members(sessions: set[int]) -> list[int]:
    """PIDs of running (not zombie) processes in any of ``sessions``."""
    members = []
    for pid in _pids():
        stat = _proc_stat(pid)
        if stat and stat[1] in sessions and stat[0] != "Z":
            members.append(pid)
    return members


def _terminate(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM the process group led by ``process``, SIGKILL it after ``timeout`` seconds."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)


def _run(argv: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a SLURM/MariaDB client; a hang counts as a failure (returncode -9)."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, -9, "", f"timed out after {timeout} s")


@dataclass(frozen=True)
class _Daemon:
    name: str
    process: subprocess.Popen
    log: Path


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class SlurmJob:
    """One job allocation as ``sacct -X`` records it."""

    job_id: int
    name: str
    state: str
    comment: str
    account: str
    partition: str
    cpus: int
    req_mem: str
    exit_code: str

    @property
    def rule(self) -> str | None:
        """The Snakemake rule of a job the SLURM executor submitted, else None."""
        if not self.comment.startswith("rule_"):
            return None
        return self.comment[len("rule_") :].split("_wildcards_", 1)[0]


_SACCT_FIELDS = "JobIDRaw,JobName,State,Comment,Account,Partition,AllocCPUS,ReqMem,ExitCode"


# --------------------------------------------------------------------------- the cluster
@dataclass
class SlurmCluster:
    """One SLURM controller, one compute node (this host) and accounting, all private.

    ``start()`` needs root and the installed :data:`PACKAGES` (see :func:`ensure_installed`);
    ``stop()`` undoes everything ``start()`` did and raises :class:`SlurmError` if a process
    it started survives. Also a context manager.
    """

    partition: str = "calf"
    account: str = "calf"
    cluster_name: str = "calftest"
    status_check_seconds: int = 2
    state_dir: Path | None = None
    cpus: int = 0
    mem_mb: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    _daemons: list[_Daemon] = field(default_factory=list, repr=False)
    _backups: dict[Path, tuple[bytes, int] | None] = field(default_factory=dict, repr=False)
    _ports: dict[str, int] = field(default_factory=dict, repr=False)
    _node: dict[str, int] = field(default_factory=dict, repr=False)
    _lock: IO[str] | None = field(default=None, repr=False)
    _started_at: datetime | None = field(default=None, repr=False)
    _keep_state: bool = field(default=False, repr=False)

    def __enter__(self) -> SlurmCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ paths and settings
    @property
    def log_dir(self) -> Path:
        return self._state / "log"

    @property
    def munge_socket(self) -> Path:
        return self._state / "munge" / "munge.socket"

    @property
    def pids(self) -> dict[str, int]:
        return {daemon.name: daemon.process.pid for daemon in self._daemons}

    @property
    def snakemake(self) -> str:
        """The snakemake beside the running interpreter (the venv's), else the one on PATH."""
        beside = Path(sys.executable).parent / "snakemake"
        return str(beside) if beside.exists() else (shutil.which("snakemake") or "snakemake")

    @property
    def _state(self) -> Path:
        if self.state_dir is None:
            raise SlurmError("the cluster has no state directory: call start() first")
        return self.state_dir

    def env(self) -> dict[str, str]:
        """This environment with the running interpreter's bin folder (the venv) first on PATH."""
        venv_bin = str(Path(sys.executable).parent)
        path = os.environ.get("PATH", "")
        if path.split(os.pathsep)[0] != venv_bin:
            path = os.pathsep.join([venv_bin, path]) if path else venv_bin
        return dict(os.environ, PATH=path)

    def snakemake_args(
        self, jobs: int = 4, default_resources: Mapping[str, object] | None = None
    ) -> list[str]:
        """Snakemake CLI flags that run every non-local rule as a job of this cluster."""
        resources = {"slurm_partition": self.partition, "slurm_account": self.account}
        resources.update(default_resources or {})
        return [
            "--executor",
            "slurm",
            "--jobs",
            str(jobs),
            "--default-resources",
            *(f"{key}={value}" for key, value in resources.items()),
            "--slurm-init-seconds-before-status-checks",
            str(self.status_check_seconds),
            "--slurm-keep-successful-logs",
        ]

    # ------------------------------------------------------------------ start
    def start(self, timeout: float = 120.0) -> None:
        """Configure and start munged, mariadbd, slurmdbd, slurmctld, slurmd; wait until idle."""
        if self._daemons:
            raise SlurmError("this cluster is already running")
        reason = unavailable_reason()
        if reason:
            raise SlurmUnavailable(reason)
        missing = missing_packages()
        if missing:
            raise SlurmUnavailable(f"not installed (see ensure_installed): {' '.join(missing)}")
        began = time.monotonic()
        deadline = began + timeout
        self._keep_state = False
        self._take_lock()
        try:
            busy = {pid: _comm(pid) for pid in _pids()}
            busy = {p: c for p, c in busy.items() if c in {"slurmctld", "slurmd", "slurmdbd"}}
            if busy:
                raise SlurmUnavailable(
                    "SLURM daemons that this test did not start are running: "
                    + ", ".join(f"{name} (pid {pid})" for pid, name in sorted(busy.items()))
                )
            self._prepare_state()
            atexit.register(self.stop)
            self._started_at = datetime.now()
            self._start_munge(deadline)
            self._start_mariadb(deadline)
            self._write(SLURMDBD_CONF, self._slurmdbd_conf(), mode=0o600)
            self._write(SLURM_CONF, self._slurm_conf())
            self._start_slurmdbd(deadline)
            self._spawn("slurmctld", ["slurmctld", "-D"])
            self._wait(lambda: "is UP" in _run(["scontrol", "ping"]).stdout, deadline, "slurmctld")
            self._spawn("slurmd", ["slurmd", "-D"])
            self._wait(
                lambda: _run(["sinfo", "-h", "-o", "%T"]).stdout.strip() == "idle",
                deadline,
                "slurmd",
            )
        except SlurmUnavailable:
            self.stop()
            raise
        except BaseException:
            self._keep_state = True  # keep the logs the error message points to
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - began

    def _take_lock(self) -> None:
        handle = open(LOCK_FILE, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise SlurmUnavailable(f"another test session holds the cluster ({LOCK_FILE})")
        self._lock = handle

    def _prepare_state(self) -> None:
        self.state_dir = Path(tempfile.mkdtemp(prefix="calf-slurm-", dir="/tmp"))
        self.state_dir.chmod(0o755)  # munge and mysql must reach their folders inside
        for name, owner in (
            ("munge", "munge"),
            ("mariadb", "mysql"),
            ("ctld", "root"),
            ("spool", "root"),
            ("log", "root"),
        ):
            folder = self.state_dir / name
            folder.mkdir()
            user = pwd.getpwnam(owner)
            os.chown(folder, user.pw_uid, user.pw_gid)
        for name in ("slurmctld", "slurmd", "slurmdbd", "mariadb"):
            self._ports[name] = _free_port()
        node = dict(
            item.split("=", 1) for item in _run(["slurmd", "-C"]).stdout.split() if "=" in item
        )
        self._node = {
            key: int(node[key])
            for key in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
        }
        self.cpus = self._node["CPUs"]
        total = int(node["RealMemory"])
        self.mem_mb = total - max(1024, total // 10)  # headroom for the OS and the test runner

    def _start_munge(self, deadline: float) -> None:
        folder = self._state / "munge"
        self._spawn(
            "munged",
            [
                "munged",
                "--foreground",
                f"--socket={self.munge_socket}",
                f"--pid-file={folder / 'munged.pid'}",
                f"--log-file={folder / 'munged.log'}",
                f"--seed-file={folder / 'munged.seed'}",
                "--num-threads=2",
            ],
            user="munge",
        )
        self._wait(
            lambda: _run(["munge", "-n", "-S", str(self.munge_socket)]).returncode == 0,
            deadline,
            "munged",
        )

    def _start_mariadb(self, deadline: float) -> None:
        data = self._state / "mariadb"
        small = ["--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M"]
        began = time.monotonic()
        done = _run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={data}",
                "--user=mysql",
                "--skip-test-db",
                "--auth-root-authentication-method=socket",
                *small,
            ],
            timeout=max(1.0, deadline - time.monotonic()),
        )
        self.timings["mariadb-install-db"] = time.monotonic() - began
        if done.returncode != 0:
            raise SlurmError(f"mariadb-install-db failed: {_last_line(done.stderr or done.stdout)}")
        sock = data / "mysqld.sock"
        self._spawn(
            "mariadbd",
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={data}",
                "--user=mysql",
                *small,
                f"--socket={sock}",
                f"--port={self._ports['mariadb']}",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--innodb-fast-shutdown=2",
                f"--pid-file={data / 'mariadbd.pid'}",
                f"--log-error={self.log_dir / 'mariadbd.log'}",
            ],
        )
        client = ["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root", "-e"]
        self._wait(lambda: _run([*client, "SELECT 1"]).returncode == 0, deadline, "mariadbd")
        done = _run(
            [
                *client,
                (
                    f"CREATE DATABASE {_DB_NAME};"
                    f"CREATE USER '{_DB_USER}'@'127.0.0.1' IDENTIFIED BY '{_DB_PASSWORD}';"
                    f"GRANT ALL ON {_DB_NAME}.* TO '{_DB_USER}'@'127.0.0.1';"
                ),
            ]
        )
        if done.returncode != 0:
            raise SlurmError(f"creating the accounting database failed: {_last_line(done.stderr)}")

    def _start_slurmdbd(self, deadline: float) -> None:
        self._spawn("slurmdbd", ["slurmdbd", "-D"])
        self._wait(
            lambda: _run(["sacctmgr", "-n", "list", "cluster"]).returncode == 0,
            deadline,
            "slurmdbd",
        )
        user = pwd.getpwuid(os.geteuid()).pw_name
        for command in (
            ["add", "cluster", self.cluster_name],
            [
                "add",
                "account",
                self.account,
                f"cluster={self.cluster_name}",
                "description=calf tests",
                "organization=calf",
            ],
            ["add", "user", user, f"account={self.account}", f"cluster={self.cluster_name}"],
        ):
            done = _run(["sacctmgr", "-i", *command])
            if done.returncode != 0:
                raise SlurmError(
                    f"sacctmgr {' '.join(command)} failed: {_last_line(done.stderr or done.stdout)}"
                )

    # ------------------------------------------------------------------ configuration
    def _slurm_conf(self) -> str:
        host = socket.gethostname().split(".")[0]  # what `hostname -s` prints
        node = " ".join(f"{key}={value}" for key, value in self._node.items())
        log = self.log_dir
        settings = {
            "ClusterName": self.cluster_name,
            "SlurmctldHost": f"{host}(127.0.0.1)",
            "SlurmctldPort": self._ports["slurmctld"],
            "SlurmdPort": self._ports["slurmd"],
            "SlurmUser": "root",
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.munge_socket}",
            "StateSaveLocation": self._state / "ctld",
            "SlurmdSpoolDir": self._state / "spool",
            "SlurmctldPidFile": log / "slurmctld.pid",
            "SlurmdPidFile": log / "slurmd.pid",
            "SlurmctldLogFile": log / "slurmctld.log",
            "SlurmdLogFile": log / "slurmd.log",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core_Memory",
            "DefMemPerCPU": 512,  # a job without --mem must not claim the whole node
            "MpiDefault": "none",
            "ReturnToService": 2,
            "MinJobAge": 300,
            "JobAcctGatherType": "jobacct_gather/none",
            "AccountingStorageType": "accounting_storage/slurmdbd",
            "AccountingStorageHost": "127.0.0.1",
            "AccountingStoragePort": self._ports["slurmdbd"],
            # the munge socket for slurmdbd connections (AuthInfo covers only the others)
            "AccountingStoragePass": self.munge_socket,
            "AccountingStoreFlags": "job_comment",  # sacct shows the plugin's rule_<name>
            "NodeName": f"{host} NodeAddr=127.0.0.1 {node} RealMemory={self.mem_mb}",
            "PartitionName": f"{self.partition} Nodes={host} Default=YES MaxTime=INFINITE",
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _slurmdbd_conf(self) -> str:
        settings = {
            "AuthType": "auth/munge",
            "AuthInfo": f"socket={self.munge_socket}",
            "DbdHost": "localhost",
            "DbdAddr": "127.0.0.1",
            "DbdPort": self._ports["slurmdbd"],
            "SlurmUser": "root",
            "LogFile": self.log_dir / "slurmdbd.log",
            "PidFile": self.log_dir / "slurmdbd.pid",
            "StorageType": "accounting_storage/mysql",
            "StorageHost": "127.0.0.1",
            "StoragePort": self._ports["mariadb"],
            "StorageUser": _DB_USER,
            "StoragePass": _DB_PASSWORD,
            "StorageLoc": _DB_NAME,
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _write(self, path: Path, text: str, mode: int = 0o644) -> None:
        """Write a system config file, remembering what was there to restore it on stop."""
        if path not in self._backups:
            self._backups[path] = (
                (path.read_bytes(), path.stat().st_mode) if path.exists() else None
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)

    # ------------------------------------------------------------------ daemons
    def _spawn(self, name: str, argv: list[str], user: str | None = None) -> None:
        """Start a foreground daemon in its own session, output into log_dir/<name>.out."""
        log = self.log_dir / f"{name}.out"
        as_user = {"user": user, "group": user, "extra_groups": []} if user else {}
        with open(log, "ab") as handle:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self._state,
                **as_user,
            )
        self._daemons.append(_Daemon(name, process, log))

    def _wait(self, ready: Callable[[], bool], deadline: float, name: str) -> None:
        """Poll ``ready`` until true; fail early when a daemon died, late at the deadline."""
        began = time.monotonic()
        while not ready():
            for daemon in self._daemons:
                if daemon.process.poll() is not None:
                    raise SlurmError(
                        f"{daemon.name} exited with {daemon.process.returncode} before {name} "
                        f"was ready; see {daemon.log} and {self.log_dir}"
                    )
            if time.monotonic() > deadline:
                raise SlurmError(f"{name} was not ready in time; logs in {self.log_dir}")
            time.sleep(0.2)
        self.timings[name] = time.monotonic() - began

    # ------------------------------------------------------------------ jobs
    def submit(self, command: str, output: Path, *sbatch_args: str) -> int:
        """``sbatch --wrap command`` into this partition and account; return the job id."""
        done = _run(
            [
                "sbatch",
                "--parsable",
                f"--partition={self.partition}",
                f"--account={self.account}",
                f"--output={output}",
                *sbatch_args,
                "--wrap",
                command,
            ],
        )
        if done.returncode != 0:
            raise SlurmError(f"sbatch failed: {_last_line(done.stderr)}")
        return int(done.stdout.strip().split(";")[0])

    def jobs(self) -> list[SlurmJob]:
        """Every job allocation since this cluster started, from ``sacct -X``, oldest first."""
        since = (self._started_at or datetime.now()) - timedelta(minutes=1)
        done = _run(
            [
                "sacct",
                "-X",
                "--parsable2",
                "--noheader",
                f"--format={_SACCT_FIELDS}",
                f"--starttime={since:%Y-%m-%dT%H:%M:%S}",
                "--endtime=now",
            ],
        )
        if done.returncode != 0:
            raise SlurmError(f"sacct failed: {_last_line(done.stderr)}")
        records = []
        for line in done.stdout.splitlines():
            job_id, name, state, comment, account, partition, cpus, mem, code = line.split("|")
            state = state.split()[0]  # "CANCELLED by 0" -> "CANCELLED"
            fields = (name, state, comment, account, partition, int(cpus), mem, code)
            records.append(SlurmJob(int(job_id), *fields))
        return sorted(records, key=lambda job: job.job_id)

    def wait_for_jobs(self, job_ids: list[int], timeout: float = 60.0) -> dict[int, SlurmJob]:
        """Wait until ``sacct`` records every job in ``job_ids`` as finished; return them."""
        deadline = time.monotonic() + timeout
        while True:
            finished = {
                job.job_id: job
                for job in self.jobs()
                if job.job_id in job_ids and job.state in TERMINAL_STATES
            }
            if len(finished) == len(set(job_ids)):
                return finished
            if time.monotonic() > deadline:
                raise SlurmError(
                    f"jobs {sorted(set(job_ids) - set(finished))} unfinished "
                    f"after {timeout} s; see {self.log_dir}"
                )
            time.sleep(0.5)

    def cancel_all_jobs(self, timeout: float = 15.0) -> None:
        """scancel every queued or running job and wait until the queue is empty."""
        queued = _run(["squeue", "-h", "-o", "%A"]).stdout.split()
        if queued:
            _run(["scancel", *queued])
        deadline = time.monotonic() + timeout
        while _run(["squeue", "-h", "-o", "%A"]).stdout.split() and time.monotonic() < deadline:
            time.sleep(0.2)

    def run_snakemake(
        self,
        workdir: Path,
        *args: str,
        jobs: int = 4,
        default_resources: Mapping[str, object] | None = None,
        timeout: float = 600.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run snakemake through this cluster in ``workdir``; kill it after ``timeout`` s."""
        argv = [self.snakemake, *self.snakemake_args(jobs, default_resources), *args]
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # snakemake polling SLURM ignores SIGTERM
            output, _ = process.communicate()
            self.cancel_all_jobs()
            raise SlurmError(
                f"snakemake did not finish within {timeout} s; its output ends:\n{output[-3000:]}"
            ) from None
        return subprocess.CompletedProcess(argv, process.returncode, output, "")

    # ------------------------------------------------------------------ stop
    def _stepd_sessions(self) -> set[int]:
        """Sessions of this cluster's slurmstepd processes (they setsid away from slurmd).

        A slurmstepd keeps the working directory of the slurmd that forked it: our state dir.
        """
        sessions = set()
        for pid in _pids():
            if _comm(pid) != "slurmstepd":
                continue
            with contextlib.suppress(OSError):
                if Path(os.readlink(f"/proc/{pid}/cwd")).is_relative_to(self._state):
                    stat = _proc_stat(pid)
                    if stat:
                        sessions.add(stat[1])
        return sessions

    def stop(self, timeout: float = 15.0) -> None:
        """Cancel jobs, stop every daemon started here, restore /etc/slurm; idempotent.

        Raises :class:`SlurmError` when a process this cluster started is still alive.
        """
        began = time.monotonic()
        atexit.unregister(self.stop)
        survivors: list[int] = []
        if self._daemons:
            if any(d.name == "slurmctld" and d.process.poll() is None for d in self._daemons):
                self.cancel_all_jobs(timeout)
            sessions = {daemon.process.pid for daemon in self._daemons} | self._stepd_sessions()
            for daemon in reversed(self._daemons):
                _terminate(daemon.process, timeout)
            sessions |= self._stepd_sessions()
            for pid in _live_members(sessions):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
            while (survivors := _live_members(sessions)) and time.monotonic() < deadline:
                time.sleep(0.1)
            self._daemons.clear()
        for path, backup in self._backups.items():
            if backup is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(backup[0])
                path.chmod(backup[1])
        self._backups.clear()
        if self.state_dir is not None and not self._keep_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None
        self.timings["stop"] = time.monotonic() - began
        if survivors:
            raise SlurmError(f"processes started by the test cluster survived stop: {survivors}")


# --------------------------------------------------------------------------- the fixture
@dataclass
class _Shared:
    """The session's one cluster, how many fixture instances use it, and why it is missing."""

    cluster: SlurmCluster | None = None
    users: int = 0
    skip: str | None = None
    error: str | None = None


_SHARED = _Shared()


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A running single-node SLURM with accounting, shared by the whole test session.

    Skips (reason in the ``-ra`` summary) when SLURM cannot be installed or run here.
    Every module that imports this fixture gets the same cluster (pytest makes one fixture
    instance per importing module); the last instance's teardown stops it and errors if a
    process it started survived. A failed start fails every user at once, without retrying.
    """
    if _SHARED.skip:
        pytest.skip(_SHARED.skip)
    if _SHARED.error:
        raise SlurmError(f"the test cluster failed to start earlier: {_SHARED.error}")
    if _SHARED.cluster is None:
        try:
            install_seconds = ensure_installed()
            cluster = SlurmCluster()
            cluster.start()
        except SlurmUnavailable as why:
            _SHARED.skip = f"no single-node SLURM here: {why}"
            pytest.skip(_SHARED.skip)
        except SlurmError as error:
            _SHARED.error = str(error)
            raise
        cluster.timings["install"] = install_seconds
        _SHARED.cluster = cluster
    cluster = _SHARED.cluster
    _SHARED.users += 1
    try:
        yield cluster
    finally:
        _SHARED.users -= 1
        if _SHARED.users == 0:
            _SHARED.cluster = None
            cluster.stop()
