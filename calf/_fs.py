"""Writing files and folders so that nothing half-written is ever seen, and hashing them.

Every output of the suite is written through this module:

- a file goes to a temporary file beside it (same folder, so the rename cannot cross file
  systems), is flushed, then renamed over its name (``atomic_file``, ``write_text``,
  ``write_bytes``, ``write_json``; several files at once with ``atomic_files``: all are
  renamed only when every one was written);
- a folder is built in a temporary folder beside it and renamed into place
  (``atomic_dir``); an earlier folder of the same name is moved aside first and removed
  only once the new one stands, so a failure puts it back.

``durable=True`` also fsyncs the file and its folder (checkpoints: a node that loses power
must find the old or the new file, whole).

**Existing outputs.** One rule for every command: an existing file is replaced only with
``force`` (``--force`` on the command line), because the suite cannot tell a file it wrote
from one a user put there. An existing folder is replaced when it holds the marker file
that the step writes into every folder it makes (``owned_by``: e.g. ``stats.json``), or
with ``force``; any other folder is refused. The Snakemake workflow removes a job's
outputs before it runs the job, so the rule never gets in its way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from calf.errors import CalfError

CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_writable(path: str | Path, force: bool = False) -> Path:
    """``path`` as a Path; CalfError when it is a folder, or an existing file without
    ``force``."""
    path = Path(path)
    if path.is_dir():
        raise CalfError(f"{path}: is a directory, expected a file path")
    if path.exists() and not force:
        raise CalfError(f"{path}: already exists (pass --force to replace it)")
    return path


def temp_path(path: str | Path) -> Path:
    """A fresh, unused name beside ``path`` (hidden, ending ``.tmp``)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _rename_all(temps: Sequence[Path], targets: Sequence[Path]) -> None:
    """Rename each temp over its target; when one rename fails, the targets renamed before
    it get their old content back (kept as hard links until then) or are removed again."""
    if len(targets) == 1:
        os.replace(temps[0], targets[0])
        return
    backups: dict[Path, Path | None] = {}
    done: list[Path] = []
    try:
        for target in targets:
            backups[target] = None
            if target.exists():
                backup = temp_path(target)
                backup.unlink()
                try:
                    os.link(target, backup)
                except OSError:  # a file system without hard links
                    shutil.copy2(target, backup)
                backups[target] = backup
        for tmp, target in zip(temps, targets):
            os.replace(tmp, target)
            done.append(target)
    except BaseException:
        for target in done:
            backup = backups[target]
            if backup is None:
                target.unlink(missing_ok=True)
            else:
                os.replace(backup, target)
        raise
    finally:
        for backup in backups.values():
            if backup is not None:
                backup.unlink(missing_ok=True)


@contextmanager
def atomic_files(paths: Sequence[str | Path], force: bool = True,
                 durable: bool = False) -> Iterator[list[Path]]:
    """Temporary paths, one per target in ``paths``; when the block ends without an error
    each is renamed over its target (with the umask's permissions, as ``open`` would give),
    else all are removed and the targets are left as they were."""
    targets = [check_writable(p, force) for p in paths]
    temps: list[Path] = []
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            temps.append(temp_path(target))
        yield temps
        mode = 0o666 & ~_umask()
        for tmp in temps:
            if not tmp.exists():
                raise CalfError(f"{tmp}: was not written")
            os.chmod(tmp, mode)
            if durable:
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
        _rename_all(temps, targets)
        if durable:
            for parent in {t.parent for t in targets}:
                fsync_dir(parent)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


@contextmanager
def atomic_file(path: str | Path, force: bool = True, durable: bool = False) -> Iterator[Path]:
    """A temporary path to write ``path``'s content to; renamed into place at the end."""
    with atomic_files([path], force=force, durable=durable) as (tmp,):
        yield tmp


def write_with(path: str | Path, write: Callable[[IO[bytes]], None], force: bool = True,
               durable: bool = False) -> Path:
    """``write(binary file object)``, atomically into ``path``."""
    with atomic_file(path, force=force, durable=durable) as tmp:
        with open(tmp, "wb") as f:
            write(f)
    return Path(path)


def write_bytes(path: str | Path, data: bytes, force: bool = True, durable: bool = False) -> Path:
    with atomic_file(path, force=force, durable=durable) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str, force: bool = True, durable: bool = False) -> Path:
    with atomic_file(path, force=force, durable=durable) as tmp:
        tmp.write_text(text)
    return Path(path)


def json_text(record: Any) -> str:
    """The suite's JSON spelling: indented, no NaN (a ValueError names the first), one
    trailing newline."""
    return json.dumps(record, indent=2, allow_nan=False) + "\n"


def write_json(path: str | Path, record: Any, force: bool = True, durable: bool = False) -> Path:
    return write_text(path, json_text(record), force=force, durable=durable)


def check_replaceable(path: str | Path, owned_by: str | None = None, force: bool = False) -> Path:
    """``path`` as a Path; CalfError when it is an existing file, or an existing folder that
    is neither empty nor holds ``owned_by`` (the step's own marker), unless ``force``."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise CalfError(f"{path}: exists and is not a folder")
    if path.is_dir() and not force and any(path.iterdir()):
        if owned_by is None or not (path / owned_by).is_file():
            what = f"no {owned_by}, so not written by this step" if owned_by else "not empty"
            raise CalfError(f"{path}: already exists ({what}; pass --force to replace it)")
    return path


@contextmanager
def atomic_dir(path: str | Path, owned_by: str | None = None, force: bool = False,
               durable: bool = False) -> Iterator[Path]:
    """A fresh staging folder beside ``path``; when the block ends without an error it takes
    ``path``'s place (an earlier folder is removed only after), else it is removed.

    The staging folder gets the umask's permissions (``mkdtemp`` would give 0700)."""
    target = check_replaceable(path, owned_by, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    old: Path | None = None
    try:
        os.chmod(staging, 0o777 & ~_umask())
        yield staging
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old",
                                        dir=target.parent))
            os.rename(target, old / target.name)
        try:
            os.rename(staging, target)
        except BaseException:
            if old is not None:
                os.rename(old / target.name, target)
            raise
        if durable:
            fsync_dir(target.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
