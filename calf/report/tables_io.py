"""Write a table's files all together or not at all.

Every text is written into a temporary folder beside the destination first; only then are
the files renamed into place. Files they replace are moved aside until the end, so a
failure while renaming puts them back: the destination holds either every new file or what
it held before.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from calf.errors import CalfError


def output_paths(out_prefix: str | Path, suffixes: tuple[str, ...]) -> list[Path]:
    """``{out_prefix}{suffix}`` for each suffix; refuses a prefix naming a folder."""
    prefix = Path(out_prefix)
    if not prefix.name or prefix.name in (".", ".."):
        raise CalfError(f"{out_prefix}: an output prefix needs a file name part")
    paths = [prefix.with_name(prefix.name + suffix) for suffix in suffixes]
    for path in paths:
        if path.is_dir():
            raise CalfError(f"{path}: is a folder, expected a file path to write")
    return paths


def publish(texts: dict[Path, str]) -> list[Path]:
    """Write each ``path: text`` atomically as one set; returns the paths in order."""
    paths = list(texts)
    parent = paths[0].parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{paths[0].name}.", suffix=".tmp", dir=parent))
    except OSError as err:
        raise CalfError(f"{parent}: cannot write there ({err.strerror})") from None
    moved: list[Path] = []
    kept: dict[Path, Path] = {}
    try:
        for index, (path, text) in enumerate(texts.items()):
            (staging / f"new{index}").write_text(text, encoding="utf-8")
        for index, path in enumerate(paths):
            if path.exists() or path.is_symlink():
                kept[path] = staging / f"old{index}"
                os.replace(path, kept[path])
            os.replace(staging / f"new{index}", path)
            moved.append(path)
    except BaseException as err:
        for path in moved:
            path.unlink(missing_ok=True)
        for path, old in kept.items():
            os.replace(old, path)
        if isinstance(err, OSError):
            raise CalfError(f"{err.filename or parent}: cannot write ({err.strerror})") from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return paths
