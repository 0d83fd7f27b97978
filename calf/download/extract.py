"""Safe extraction of zip and tar archives.

A release archive is untrusted input: a member named ``../x``, ``/etc/x``, or a symlink
or hard link pointing outside the target could write anywhere the user can write. Every
member is checked *before* anything is written, and extraction goes into a temporary
folder next to the target that becomes the target at the end (``calf._fs.atomic_dir``), so
a refused or failed extraction leaves nothing behind. Zip and tar members pass the same
checks here (names, symlink and hard-link targets); tar members then also pass the
standard library's ``tarfile.data_filter`` (PEP 706: no device files, no setuid bits).
"""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from calf._fs import atomic_dir
from calf.errors import CalfError

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def archive_kind(path: str | Path) -> str | None:
    """``"zip"``, ``"tar"`` or ``None``, from the file name."""
    name = Path(path).name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(_TAR_SUFFIXES):
        return "tar"
    return None


class BadArchive(CalfError):
    """The archive is unusable: corrupt, or a member would escape the target."""


def _refuse(archive: Path, member: str, why: str) -> BadArchive:
    return BadArchive(f"{archive}: refused member {member!r}: {why}; nothing was extracted")


def _parts(archive: Path, member: str, name: str) -> tuple[str, ...]:
    """The components of a member name; refuses absolute paths and any ``..``."""
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise _refuse(archive, member, "absolute path")
    parts = PurePosixPath(unified).parts
    if ".." in parts:
        raise _refuse(archive, member, "'..' in the path")
    return parts


def _check_members(archive: Path, members: list[tuple[str, str, str | None]]) -> None:
    """Refuse any member that could land outside the target, before anything is written.

    ``members`` are (name, kind, link target) with kind ``file``, ``dir``, ``symlink``,
    ``hardlink`` or ``other``. Rules: names are relative without ``..``; nothing is
    written through a symlink of the archive; a symlink's target, read from the link's
    folder, never climbs above the target folder nor passes through another symlink; a
    hard link names a non-symlink member path. Checking lexically is exact here because
    extraction starts in a fresh empty folder (and Python before 3.11.13 had symlink
    bypasses in ``tarfile``'s own filter, which this check does not rely on).
    """
    links = {"/".join(_parts(archive, n, n)) for n, kind, _ in members if kind == "symlink"}

    def check_path(name: str, path: str) -> tuple[str, ...]:
        parts = _parts(archive, name, path)
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in links:
                raise _refuse(archive, name, f"goes through the symlink {'/'.join(parts[:i])!r}")
        return parts

    for name, kind, target in members:
        parts = check_path(name, name)
        if kind == "hardlink":
            if "/".join(check_path(name, target or "")) in links:
                raise _refuse(archive, name, "hard link to a symlink")
            continue
        if kind != "symlink":
            continue
        unified = (target or "").replace("\\", "/")
        if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
            raise _refuse(archive, name, "symlink to an absolute path")
        stack = list(parts[:-1])
        for part in PurePosixPath(unified).parts:
            if stack and "/".join(stack) in links:
                raise _refuse(archive, name, "symlink through another symlink")
            if part != "..":
                stack.append(part)
            elif stack:
                stack.pop()
            else:
                raise _refuse(archive, name, "symlink points outside the target folder")


def _extract_zip(archive: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members, links = [], {}
            for info in zf.infolist():
                if stat.S_ISLNK(info.external_attr >> 16):
                    links[info.filename] = zf.read(info).decode("utf-8", errors="replace")
                    members.append((info.filename, "symlink", links[info.filename]))
                else:
                    members.append((info.filename, "dir" if info.is_dir() else "file", None))
            _check_members(archive, members)
            for info in zf.infolist():
                if info.filename in links:
                    path = dest / info.filename
                    path.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(links[info.filename], path)
                else:
                    zf.extract(info, dest)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        raise BadArchive(f"{archive}: not a valid zip archive ({err})") from None


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    return "dir" if member.isdir() else ("file" if member.isfile() else "other")


def _extract_tar(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            _check_members(archive, [(m.name, _tar_kind(m), m.linkname) for m in members])
            for member in members:  # the standard filter adds: no devices, sane modes
                try:
                    tarfile.data_filter(member, str(dest))
                except tarfile.FilterError as err:
                    raise _refuse(archive, member.name, type(err).__name__) from None
            tf.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise BadArchive(f"{archive}: not a valid tar archive ({err})") from None


def safe_extract(archive: str | Path, target: str | Path) -> list[Path]:
    """Extract ``archive`` into the folder ``target``; return the top-level entries made.

    ``target`` may exist (entries are added to it) but no top-level entry of the archive
    may clash with one already there. On any error nothing is left in ``target``.
    """
    archive, target = Path(archive), Path(target)
    kind = archive_kind(archive)
    if kind is None:
        raise CalfError(f"{archive}: not a .zip or .tar(.gz/.bz2/.xz) archive")
    if target.exists() and not target.is_dir():
        raise CalfError(f"{target}: exists and is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    extract = _extract_zip if kind == "zip" else _extract_tar
    if not target.exists():
        with atomic_dir(target) as staging:
            extract(archive, staging)
            names = sorted(e.name for e in staging.iterdir())
        return [target / name for name in names]
    # entries added to an existing folder: every member is extracted beside it first, and
    # the top-level entries move in only when all of them are out and none clashes
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.extract-", dir=target.parent) as t:
        staging = Path(t)
        extract(archive, staging)
        entries = sorted(staging.iterdir())
        clashes = [
            e.name for e in entries if (target / e.name).exists() or (target / e.name).is_symlink()
        ]
        if clashes:
            raise CalfError(
                f"{archive}: entry {clashes[0]!r} already exists in {target}; nothing was extracted"
            )
        for entry in entries:
            entry.rename(target / entry.name)
        return [target / e.name for e in entries]
