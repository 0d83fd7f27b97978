"""Write a table's files all together or not at all (``calf._fs.atomic_files``).

Every text is written to a temporary file beside its destination first; only when all are
written are they renamed into place, so a failure while rendering or writing leaves what
the destination held before. An existing file is replaced only with ``force``
(``--force``), the suite's one rule for existing outputs.
"""

from __future__ import annotations

from pathlib import Path

from calf._fs import atomic_files
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


def publish(texts: dict[Path, str], force: bool = False) -> list[Path]:
    """Write each ``path: text`` atomically as one set (UTF-8); returns the paths in order.
    An existing file is a CalfError unless ``force``."""
    paths = list(texts)
    try:
        with atomic_files(paths, force=force) as temps:
            for temp, text in zip(temps, texts.values(), strict=True):
                temp.write_text(text, encoding="utf-8")
    except OSError as err:
        where = err.filename or paths[0].parent
        raise CalfError(f"{where}: cannot write there ({err.strerror})") from None
    return paths
