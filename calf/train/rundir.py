"""The run folder that ``calf train`` writes: its lock, ``run.json`` and ``epochs.csv``.

This module owns the run folder's formats: ``read_run_record`` is the one reader of
``run.json`` and ``read_epochs`` the one reader of ``epochs.csv`` (the report, the
tracking and the evaluation read runs through them). It imports no torch.

``run.json`` and ``epochs.csv`` are rewritten whole and renamed into place
(``calf._fs``), so a reader never sees half a file. ``epochs.csv`` is rebuilt from the
history kept in the checkpoint, so the two always agree, even after a kill between
writing one and the other.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import subprocess
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calf import _fs
from calf._json import read_json_object
from calf.errors import CalfError
from calf.layout import EPOCHS_FILE, RUN_FILE

if TYPE_CHECKING:
    import pandas as pd

LOCK_FILE = ".lock"
STATUSES = ("running", "complete", "interrupted", "failed")
# the columns of epochs.csv before and after the branch counts (one ``branch_<name>`` per
# CALF branch, in the order of ``calf.losses.BRANCHES``)
EPOCH_LEAD = ("epoch", "train_loss", "steps", "seconds", "slices_per_second")
EPOCH_TAIL = ("val_dice",)
BRANCH_PREFIX = "branch_"
# columns that may be empty: no slices timed, no validation set
EPOCH_OPTIONAL = ("slices_per_second", "val_dice")


def epoch_columns() -> tuple[str, ...]:
    """The columns of ``epochs.csv``, in order."""
    from calf.losses import BRANCHES  # imports torch: only where epochs are written

    return (*EPOCH_LEAD, *(f"{BRANCH_PREFIX}{b}" for b in BRANCHES), *EPOCH_TAIL)


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


def read_run_record(run_dir: str | Path, complete: bool = False) -> dict[str, Any]:
    """The ``run.json`` of a run folder, checked: a JSON object whose ``status`` is one of
    ``STATUSES`` and whose ``params``, when present, is an object.

    ``complete=True`` also requires status ``complete`` (a run to evaluate or report).
    Every failure is a one-line CalfError naming the file.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise CalfError(f"{path}: no such run directory")
    run_file = path / RUN_FILE
    if not run_file.is_file():
        raise CalfError(f"{run_file}: not found; {path} is not a calf training run")
    record = read_json_object(run_file, "run record")
    status = record.get("status")
    if status not in STATUSES:
        raise CalfError(
            f"{run_file}: not a calf training record (status {status!r}, expected one of "
            f"{', '.join(STATUSES)})"
        )
    if not isinstance(record.get("params", {}), dict):
        raise CalfError(f"{run_file}: params is not an object")
    if complete and status != "complete":
        raise CalfError(
            f"{run_file}: run status is {status!r}, not 'complete'; finish training first"
        )
    return record


def run_precision(record: dict[str, Any]) -> str:
    """The precision switch a run trained with (its run.json); runs older than the switch
    ran the suite's bf16 autocast."""
    protocol = (record.get("params") or {}).get("protocol") or {}
    return protocol.get("precision", "bf16")


def _bad_csv(path: Path, err: BaseException) -> CalfError:
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return CalfError(f"{path}: not a readable CSV ({first})")


def read_epochs(run_dir: str | Path, columns: Sequence[str] = ()) -> pd.DataFrame:
    """The ``epochs.csv`` of a run folder, one row per completed epoch, checked.

    ``epoch`` (and every name in ``columns``) must be there; ``epoch`` holds distinct whole
    numbers; the columns ``calf train`` writes hold numbers (counts and seconds >= 0), empty
    only where a value may be missing (``slices_per_second``, ``val_dice``). Those columns
    come back as numbers; a column the suite does not write comes back as read.
    """
    import pandas as pd

    path = Path(run_dir) / EPOCHS_FILE
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise CalfError(f"{path}: no such file") from None
    except pd.errors.EmptyDataError:
        raise CalfError(f"{path}: empty (expected a header line)") from None
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise _bad_csv(path, err) from None
    missing = [c for c in ("epoch", *columns) if c not in table.columns]
    if missing:
        raise CalfError(f"{path}: missing column(s) {', '.join(missing)}")
    known = [c for c in table.columns
             if c in EPOCH_LEAD or c in EPOCH_TAIL or c.startswith(BRANCH_PREFIX)]
    for column in known:
        values = pd.to_numeric(table[column], errors="coerce")
        given = table[column].notna()
        checks = [(given & values.isna(), "not a number")]
        if column not in EPOCH_OPTIONAL:
            checks.append((~given, "empty"))
        if column != "train_loss" and column not in EPOCH_TAIL:
            checks.append((values < 0, "negative"))
        if column in ("epoch", "steps") or column.startswith(BRANCH_PREFIX):
            checks.append((values.notna() & (values % 1 != 0), "not a whole number"))
        for bad, why in checks:
            if bad.any():
                row = int(bad.to_numpy().nonzero()[0][0])
                shown = "" if why == "empty" else f" ({table[column].iloc[row]})"
                raise CalfError(f"{path}: column {column}, row {row + 2}: {why}{shown}")
        table[column] = values
    if table["epoch"].duplicated().any():
        raise CalfError(f"{path}: column epoch must hold distinct whole numbers")
    return table


class RunDir:
    """One run directory: refuses foreign content and other runs' parameters."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.run_file = self.path / RUN_FILE
        self.epochs_file = self.path / EPOCHS_FILE
        self._lock_fd: int | None = None

    def read_run(self) -> dict[str, Any] | None:
        """run.json (``read_run_record``), or None for a fresh (absent or empty) directory."""
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
        return read_run_record(self.path)

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
        # temporary files of an earlier process killed mid-write (never the live files):
        # calf._fs names them .<name>.<random>.tmp; older versions .<name>.tmp-<pid>
        for pattern in (".*.tmp", ".*.tmp-*"):
            for stale in self.path.glob(pattern):
                if stale.is_file():
                    stale.unlink(missing_ok=True)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def write_run(self, record: dict[str, Any]) -> None:
        # the run folder is the training's own (guarded by its lock and run.json): replaced
        _fs.write_json(self.run_file, record)

    def write_epochs(self, rows: Sequence[dict[str, Any]]) -> None:
        columns = epoch_columns()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})
        _fs.write_text(self.epochs_file, buffer.getvalue())
