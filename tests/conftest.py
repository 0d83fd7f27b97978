"""Shared pytest fixtures, and the markers every test gets from where it is.

The suite is in three folders: ``tests/unit/`` (functions on hand-checked values, fast),
``tests/integration/`` (the real thing end to end on tiny data: the CLI, NIfTI files,
Snakemake, an MLflow server) and ``tests/cluster/`` (a real single-node SLURM). Each test
is marked ``unit``, ``integration`` or ``cluster`` by its folder, ``slurm`` in
``tests/cluster/`` and ``mlflow`` when it uses one of the MLflow server fixtures below;
``slow`` is set by hand on tests that take more than a few seconds. ``make test-fast`` runs
``-m "unit and not slow"``.

MLflow tracking servers (real ``mlflow server`` processes from this interpreter's
environment, SQLite backend, local artifact root, bound to 127.0.0.1 on a free port):

- ``mlflow_server`` (session scope): the URI (``http://127.0.0.1:PORT``) of one server shared
  by the whole test session. Tests sharing it should use their own experiment names.
- ``start_mlflow_server`` (function scope): a factory ``start_mlflow_server(wait=True) ->
  MlflowServer`` for tests that need a server of their own, e.g. to kill it (``.kill()``)
  mid-run; with ``wait=False`` it returns at once (call ``.wait_healthy()`` before use, and
  do other set-up meanwhile). Every server it started is stopped at the end of the test.
- ``unused_tcp_port`` (function scope): a TCP port on 127.0.0.1 that nobody listens on
  (an unreachable server).

Servers run with ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` (no background job runner:
seven fewer processes on a small CI machine) in a session of their own, and are stopped by
PID: SIGTERM, then SIGKILL to their process group after a bounded wait. The first server's
freshly created database is kept as a template for the later ones, which so skip MLflow's
schema migrations (several seconds each).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest

SERVER_START_TIMEOUT_S = 60  # ~7 s on an idle machine; allow for a loaded CI runner
SERVER_STOP_TIMEOUT_S = 15


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """One ``mlflow server`` process with its own SQLite store and artifact root in ``root``;
    the store starts as a copy of ``template`` when that exists, and becomes the template
    (once healthy, before any client wrote to it) when it does not."""

    def __init__(self, root: Path, template: Path | None = None):
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.db = root / "mlflow.db"
        self.template = template
        if template is not None and template.exists():
            shutil.copyfile(template, self.db)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        mlflow = Path(sys.executable).parent / "mlflow"
        command = [str(mlflow), "server",
                   "--backend-store-uri", f"sqlite:///{self.db}",
                   "--default-artifact-root", str(root / "artifacts"),
                   "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env=env, cwd=root, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_healthy(self, timeout: float = SERVER_START_TIMEOUT_S) -> None:
        """Block until ``/health`` answers OK; fail the test with the server's log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as answer:
                    healthy = answer.status == 200
            except OSError:
                healthy = False
            if healthy:
                if self.template is not None and not self.template.exists():
                    self._save_template()
                return
            time.sleep(0.25)
        self.stop()
        tail = self.log.read_text(errors="replace")[-2000:]
        pytest.fail(f"mlflow server on {self.uri} not healthy within {timeout} s:\n{tail}")

    def _save_template(self) -> None:
        tmp = self.template.with_name(f"{self.template.name}.tmp")
        with closing(sqlite3.connect(self.db)) as src, closing(sqlite3.connect(tmp)) as dst:
            src.backup(dst)
        os.replace(tmp, self.template)

    def kill(self) -> None:
        """Hard stop, as a crash would: SIGKILL to the server's whole process group."""
        if self.process.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(SERVER_STOP_TIMEOUT_S)

    def stop(self) -> None:
        """Clean stop: SIGTERM to the PID, SIGKILL to its process group after a bounded wait."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(SERVER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        try:  # whatever the server left in its group (uvicorn worker)
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.process.poll() is None:
            self.process.wait(SERVER_STOP_TIMEOUT_S)


TESTS = Path(__file__).resolve().parent
MLFLOW_FIXTURES = {"mlflow_server", "start_mlflow_server"}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        folder = Path(item.fspath).resolve().relative_to(TESTS).parts[0]
        if folder in ("unit", "integration", "cluster"):
            item.add_marker(folder)
        if folder == "cluster":
            item.add_marker("slurm")
        if MLFLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker("mlflow")


@pytest.fixture
def unused_tcp_port() -> int:
    """A port on 127.0.0.1 with no listener: connections to it are refused."""
    return free_port()


@pytest.fixture(scope="session")
def _mlflow_db_template(tmp_path_factory) -> Path:
    """Where the first server's fresh database is kept for the later ones."""
    return tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory, _mlflow_db_template):
    """URI of a real MLflow tracking server shared by the test session."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"), _mlflow_db_template)
    try:
        server.wait_healthy()
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def start_mlflow_server(tmp_path_factory, _mlflow_db_template):
    """Factory of MLflow servers owned by one test (started and healthy when returned)."""
    servers: list[MlflowServer] = []

    def start(wait: bool = True) -> MlflowServer:
        server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"), _mlflow_db_template)
        servers.append(server)
        if wait:
            server.wait_healthy()
        return server

    yield start
    for server in servers:
        server.stop()
