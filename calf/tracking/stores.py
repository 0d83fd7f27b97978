"""The tracking stores ``calf mlflow-sync`` writes to: an SQLite file, updated on a copy that
replaces it only when the whole sync succeeded, or an http(s) tracking server."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from calf._fs import atomic_file
from calf.errors import CalfError
from calf.tracking.client import is_server_uri

SQLITE_PREFIX = "sqlite:///"
DEFAULT_TRACKING_URI = f"{SQLITE_PREFIX}results/mlflow.db"
MLFLOW_TABLES = {"experiments", "runs", "alembic_version"}


def check_tracking_uri(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, None for an http(s) server; CalfError for
    any other URI."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme == "sqlite":
        return sqlite_path(uri)
    if not is_server_uri(uri):
        raise CalfError(f"--tracking-uri {uri}: expected sqlite:///FILE.db or "
                        "http(s)://HOST:PORT")
    return None


def sqlite_path(uri: str) -> Path:
    """The database file of a ``sqlite:///`` URI; an existing file must be an MLflow store."""
    path = uri[len(SQLITE_PREFIX):] if uri.startswith(SQLITE_PREFIX) else ""
    if not path or path == ":memory:" or path.endswith("/"):
        raise CalfError(f"--tracking-uri {uri}: expected sqlite:///PATH/TO/FILE.db")
    db = Path(path)
    if db.exists():
        try:
            with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro",
                                                    uri=True)) as con:
                tables = {row[0] for row in con.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as err:
            raise CalfError(f"{db}: not an SQLite database ({err})") from None
        if not MLFLOW_TABLES <= tables:
            raise CalfError(f"{db}: not an MLflow tracking database; refusing to change it")
    return db


@contextlib.contextmanager
def sqlite_copy(db: Path) -> Iterator[Path]:
    """A private copy of the SQLite store that replaces it when the block succeeds
    (``calf._fs.atomic_file``: the store is the sync's own, checked by ``sqlite_path``, so
    it is updated without ``--force``); one sync at a time per folder (a lock on it)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(db.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        with atomic_file(db, force=True) as copy:
            if db.exists():
                shutil.copy2(db, copy)
            yield copy
    finally:
        os.close(folder)  # releases the lock


def check_server(uri: str) -> None:
    """CalfError naming ``uri`` when the server does not answer its health check."""
    import requests

    try:
        requests.get(f"{uri.rstrip('/')}/health", timeout=10)
    except requests.RequestException as err:
        raise CalfError(f"--tracking-uri {uri}: server unreachable "
                        f"({type(err).__name__})") from None
