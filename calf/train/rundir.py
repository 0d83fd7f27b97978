"""The run directory (contract C): its lock, ``run.json`` and ``epochs.csv``.

``run.json`` and ``epochs.csv`` are rewritten whole and renamed into place, so a reader
never sees half a file. ``epochs.csv`` is rebuilt from the history kept in the
checkpoint, so the two always agree, even after a kill between writing one and the other.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import subprocess
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from calf.errors import CalfError
from calf.losses import BRANCHES

RUN_FILE = "run.json"
EPOCHS_FILE = "epochs.csv"
LOCK_FILE = ".lock"
STATUSES = ("running", "complete", "interrupted", "failed")
EPOCH_COLUMNS = (
    "epoch",
    "train_loss",
    "steps",
    "seconds",
    "slices_per_second",
    *(f"branch_{b}" for b in BRANCHES),
    "val_dice",
)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str | None:
    """The commit of the calf source tree, when calf runs from a git checkout of it."""
    source_root = Path(__file__).resolve().parents[2]  # the folder holding calf/
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"],
            cwd=source_root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    # an installed calf inside some other repository is not that repository's commit
    if out.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != source_root:
        return None
    return lines[1]


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class RunDir:
    """One run directory: refuses foreign content and other runs' parameters."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.run_file = self.path / RUN_FILE
        self.epochs_file = self.path / EPOCHS_FILE
        self._lock_fd: int | None = None

    def read_run(self) -> dict[str, Any] | None:
        """run.json, or None for a fresh (absent or empty) directory."""
        if self.path.exists() and not self.path.is_dir():
            raise CalfError(f"--out {self.path}: exists and is not a directory")
        if not self.run_file.exists():
            foreign = [p.name for p in self.path.iterdir() if p.name != LOCK_FILE] if (
                self.path.is_dir()) else []
            if foreign:
                raise CalfError(
                    f"--out {self.path}: not empty and holds no {RUN_FILE} (e.g. {foreign[0]}); "
                    "refusing to write a training run into it"
                )
            return None
        try:
            record = json.loads(self.run_file.read_text())
        except (OSError, ValueError) as err:
            raise CalfError(f"{self.run_file}: unreadable ({' '.join(str(err).split())})") from None
        if not isinstance(record, dict) or record.get("status") not in STATUSES:
            raise CalfError(f"{self.run_file}: not a calf training record (no valid status)")
        return record

    def check_params(self, record: dict[str, Any], params: dict[str, Any]) -> None:
        """Refuse to continue a run that was started with other parameters."""
        from calf.train.config import differences

        diff = differences(record.get("params") or {}, params)
        if diff:
            raise CalfError(
                f"{self.run_file}: this run was started with other parameters "
                f"({'; '.join(diff[:3])}{'; ...' if len(diff) > 3 else ''}); "
                "use another --out or delete the run directory"
            )

    def lock(self) -> None:
        """Create the directory and hold its lock (one process per run directory)."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CalfError(f"--out {self.path}: another calf train process is using it") from None
        self._lock_fd = fd
        # temporary files of an earlier process killed mid-write (never the live files)
        for stale in self.path.glob(".*.tmp-*"):
            stale.unlink(missing_ok=True)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def write_run(self, record: dict[str, Any]) -> None:
        _write_text_atomic(self.run_file, json.dumps(record, indent=2, allow_nan=False) + "\n")

    def write_epochs(self, rows: Sequence[dict[str, Any]]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EPOCH_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in EPOCH_COLUMNS})
        _write_text_atomic(self.epochs_file, buffer.getvalue())
