"""The download manifest: size and SHA-256 of every file of a dataset folder.

``calf_manifest.json`` sits at the root of a downloaded (or checked) dataset folder and
lists each file by its POSIX path relative to that root. ``verify_folder`` re-reads the
folder and reports files that are missing or whose size or checksum changed, so that a
corrupted or half-copied dataset is caught before hours of preprocessing and training.

Format (``format`` = ``calf-download-manifest``, ``version`` = 1)::

    {"format": ..., "version": 1, "dataset": "brats", "route": "http",
     "source": "<redacted URL, Synapse ID or folder>", "created": "<UTC ISO 8601>",
     "calf_version": "0.1.0", "n_files": 2, "total_bytes": 123,
     "files": [{"path": "a/b.nii.gz", "size": 100, "sha256": "<64 hex>"}, ...],
     ...route-specific keys (e.g. "archives", "n_cases")}
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from calf._fs import sha256_file, write_json
from calf.errors import CalfError

MANIFEST_NAME = "calf_manifest.json"
MANIFEST_FORMAT = "calf-download-manifest"
MANIFEST_VERSION = 1


def _hash_workers() -> int:
    # hashlib releases the GIL on large buffers: a few threads overlap disk reads
    return max(1, min(4, os.cpu_count() or 1))


def list_files(root: str | Path, exclude: Iterable[str] = (MANIFEST_NAME,)) -> list[Path]:
    """Every regular file under ``root`` (symlinks to files included), sorted."""
    root = Path(root)
    skip = set(exclude)
    found = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_file() and path.relative_to(root).as_posix() not in skip:
                found.append(path)
    return sorted(found)


def relative_posix(path: str | Path, root: str | Path) -> str:
    """``path`` relative to ``root`` as a POSIX string; an error if it lies outside."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        raise CalfError(f"{path}: lies outside the dataset folder {root}")
    return PurePosixPath(Path(rel).as_posix()).as_posix()


def build_manifest(
    root: str | Path,
    files: Iterable[str | Path],
    *,
    dataset: str,
    route: str,
    source: str,
    **extra: object,
) -> dict:
    """The manifest of ``files`` (paths under ``root``), hashed in parallel.

    ``source`` must already be redacted: it is written as given.
    """
    root = Path(root)
    paths = sorted({Path(f) for f in files})
    rels = [relative_posix(p, root) for p in paths]
    with ThreadPoolExecutor(max_workers=_hash_workers()) as pool:
        digests = list(pool.map(sha256_file, paths))
    entries = [
        {"path": rel, "size": path.stat().st_size, "sha256": digest}
        for rel, path, digest in zip(rels, paths, digests)
    ]
    from calf import __version__

    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "dataset": dataset,
        "route": route,
        "source": source,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "calf_version": __version__,
        "n_files": len(entries),
        "total_bytes": sum(e["size"] for e in entries),
        **extra,
        "files": entries,
    }


def write_manifest(path: str | Path, manifest: dict) -> Path:
    """Write ``manifest`` as JSON atomically.

    An existing file at ``path`` is replaced only when it is itself a calf manifest (the
    download step's own record of the folder): a file the user made is never overwritten.
    """
    path = Path(path)
    if path.exists():
        try:
            read_manifest(path)
        except CalfError:
            raise CalfError(
                f"{path}: exists and is not a calf manifest; not overwriting it"
            ) from None
    return write_json(path, manifest, force=True)


def read_manifest(path: str | Path) -> dict:
    """Load and check a manifest; a ``CalfError`` naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CalfError(f"{path}: manifest not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CalfError(f"{path}: not a readable JSON manifest ({err})") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise CalfError(
            f"{path}: not a calf download manifest (key 'format' != '{MANIFEST_FORMAT}')"
        )
    if data.get("version") != MANIFEST_VERSION:
        raise CalfError(f"{path}: unsupported manifest version {data.get('version')!r}")
    files = data.get("files")
    if not isinstance(files, list):
        raise CalfError(f"{path}: key 'files' must be a list")
    for entry in files:
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("path"), str)
            and isinstance(entry.get("size"), int)
            and isinstance(entry.get("sha256"), str)
        )
        if not ok:
            raise CalfError(f"{path}: bad file entry {entry!r} (needs path, size, sha256)")
        rel = PurePosixPath(entry["path"])
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise CalfError(f"{path}: file entry {entry['path']!r} escapes the dataset folder")
    return data


@dataclass
class VerifyReport:
    """Outcome of checking a folder against its manifest."""

    manifest: Path
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    changed: list[tuple[str, str]] = field(default_factory=list)  # (path, what differs)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.changed


def verify_folder(root: str | Path, manifest_path: str | Path | None = None) -> VerifyReport:
    """Re-check every file listed in the manifest: present, same size, same SHA-256."""
    root = Path(root)
    if not root.is_dir():
        raise CalfError(f"{root}: folder not found")
    manifest_path = Path(manifest_path) if manifest_path else root / MANIFEST_NAME
    manifest = read_manifest(manifest_path)
    report = VerifyReport(manifest=manifest_path, checked=len(manifest["files"]))
    to_hash = []
    for entry in manifest["files"]:
        path = root / entry["path"]
        if not path.is_file():
            report.missing.append(entry["path"])
        elif path.stat().st_size != entry["size"]:
            report.changed.append((entry["path"], f"size {path.stat().st_size} != {entry['size']}"))
        else:
            to_hash.append((entry, path))
    with ThreadPoolExecutor(max_workers=_hash_workers()) as pool:
        digests = list(pool.map(sha256_file, [p for _, p in to_hash]))
    for (entry, _), digest in zip(to_hash, digests):
        if digest != entry["sha256"]:
            report.changed.append((entry["path"], "sha256 differs"))
    report.changed.sort()
    return report
