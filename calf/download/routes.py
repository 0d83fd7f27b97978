"""The download routes: Synapse, Aspera, gated, local folder, generic HTTP(S).

Every fetching route works the same way: the transfer writes into a staging folder
``<out>.partial`` that survives an interruption (so the next run resumes), then
``finalize`` builds the dataset folder in a temporary sibling, extracting archives safely
and writing the manifest, and renames it to ``<out>`` only when everything succeeded.
``<out>`` never exists half-made, and an existing ``<out>`` is never touched.

Routes that need something the user must obtain (a client, a token, an access approval)
raise ``AccessNeeded``, whose ``guidance`` says how to get it and where to put the data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import NoReturn
from urllib.parse import unquote, urlsplit

from calf._fs import atomic_dir, sha256_file
from calf.download.extract import BadArchive, archive_kind, safe_extract
from calf.download.http import fetch, part_path
from calf.download.manifest import (
    MANIFEST_NAME,
    build_manifest,
    list_files,
    write_manifest,
)
from calf.download.redact import Redactor, redact_url
from calf.download.sources import (
    BRATS_2023_GLI_TRAINING,
    CROSSWALKS,
    DATASETS,
    SYNAPSE_TOKEN_ENV,
    URL_ENV,
    aspera_help,
    crosswalk_help,
    gated_help,
    synapse_help,
)
from calf.errors import CalfError

# the variable through which the package link reaches ascli (`--url=@env:NAME`), so that
# its passcode never appears in the process list
_ASCLI_URL_ENV = "CALF_ASPERA_PACKAGE_URL"


class AccessNeeded(CalfError):
    """The data cannot be fetched until the user gets a client, a token or an approval."""

    def __init__(self, message: str, guidance: str):
        super().__init__(message)
        self.guidance = guidance


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def staging_path(out: str | Path) -> Path:
    """Where a transfer into ``out`` keeps its files until it is complete."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def _check_out(out: Path) -> None:
    if out.exists() or out.is_symlink():
        raise CalfError(
            f"{out}: already exists; not overwriting it (check it with `calf download --verify {out}`)"
        )


def _drop_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _link_or_copy(src: Path, dest: Path) -> None:
    # a hard link costs no space and leaves the staging copy intact until the end
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def finalize(
    staging: Path, out: Path, *, dataset: str, route: str, source: str, extract: bool = True
) -> dict:
    """Turn the staged files into the dataset folder ``out`` with its manifest.

    Archives (zip, tar) are extracted in place of themselves when ``extract``; their own
    size and checksum are kept in the manifest's ``archives``. A corrupt or refused archive
    removes the staging folder too; ``out`` is made only on success.
    """
    received = [p for p in list_files(staging, exclude=()) if not p.name.endswith(".part")]
    if not received:
        raise CalfError(f"{staging}: the transfer delivered no files")
    archives = []
    with atomic_dir(out) as tmp:  # out is made whole, only on success
        for path in received:
            rel = path.relative_to(staging)
            if extract and archive_kind(path):
                archives.append(
                    {
                        "path": rel.as_posix(),
                        "size": path.stat().st_size,
                        "sha256": sha256_file(path),
                    }
                )
                try:
                    safe_extract(path, tmp / rel.parent)
                except BadArchive:  # its bytes are unusable: do not keep them for a rerun
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
            else:
                dest = tmp / rel
                if dest.exists():
                    raise CalfError(f"{path}: clashes with an extracted file {rel.as_posix()}")
                dest.parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(path, dest)
        extra = {"archives": archives} if archives else {}
        manifest = build_manifest(
            tmp, list_files(tmp), dataset=dataset, route=route, source=source, **extra
        )
        write_manifest(tmp / MANIFEST_NAME, manifest)
        _check_out(out)  # still absent: an existing out is never touched
    shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _url_filename(url: str) -> str:
    name = PurePosixPath(unquote(urlsplit(url).path).replace("\\", "/")).name
    return name if name not in ("", ".", "..") else "download"


def http_route(
    dataset: str,
    url: str,
    out: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 60.0,
    extract: bool = True,
    redactor: Redactor | None = None,
) -> dict:
    """Download one file (usually an archive) from an http(s) URL into ``out``."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise CalfError(f"--url {redact_url(url)}: only http:// and https:// URLs are supported")
    _check_out(out)
    staging = staging_path(out)
    staging.mkdir(parents=True, exist_ok=True)
    dest = staging / _url_filename(url)
    if dest.exists() and not part_path(dest).exists():
        # fetched completely by an earlier run that stopped before finalizing: hand it back
        # to fetch as a part file, which re-checks it (the server answers 416 or 206-empty)
        dest.rename(part_path(dest))
    try:
        fetch(
            url,
            dest,
            sha256=sha256,
            size=size,
            retries=retries,
            backoff=backoff,
            timeout=timeout,
            redactor=redactor,
        )
    except CalfError:
        _drop_if_empty(staging)
        raise
    return finalize(
        staging, out, dataset=dataset, route="http", source=redact_url(url), extract=extract
    )


def crosswalk_route(
    name: str,
    out: Path,
    *,
    url: str | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 60.0,
    redactor: Redactor | None = None,
) -> Path:
    """Fetch one published linking file (``CROSSWALKS``) to the file ``out``.

    ``url`` replaces the file's public address (a mirror); a file with no public download
    raises ``AccessNeeded`` saying where to get it and where to put it. The bytes go to
    ``out.part`` (resumed by the next call) and become ``out`` only when complete.
    """
    source = CROSSWALKS.get(name)
    if source is None:
        known = ", ".join(CROSSWALKS)
        raise CalfError(f"--crosswalk {name}: not a published linking file; known: {known}")
    if out.exists():
        raise CalfError(f"{out}: already exists; not overwriting it")
    url = url or source.url
    if not url:
        raise AccessNeeded(
            f"{name}: no public download; see the steps above", crosswalk_help(source, str(out))
        )
    if urlsplit(url).scheme not in ("http", "https"):
        raise CalfError(f"--url {redact_url(url)}: only http:// and https:// URLs are supported")
    return fetch(url, out, retries=retries, backoff=backoff, timeout=timeout, redactor=redactor)


def synapse_route(
    out: Path,
    *,
    entity: str = BRATS_2023_GLI_TRAINING,
    extract: bool = True,
    redactor: Redactor | None = None,
) -> dict:
    """Download BraTS from Synapse with ``synapseclient`` and the token in the environment."""
    redact = redactor or Redactor()
    token = os.environ.get(SYNAPSE_TOKEN_ENV, "").strip()
    redact.add(token)
    try:
        import synapseclient
    except ImportError:
        problem = "the Python package synapseclient is not installed"
        raise AccessNeeded(
            f"brats: {problem} (see the steps above)", synapse_help(str(out), problem)
        ) from None
    if not token:
        problem = f"the environment variable {SYNAPSE_TOKEN_ENV} is not set"
        raise AccessNeeded(
            f"brats: {problem} (see the steps above)", synapse_help(str(out), problem)
        )
    _check_out(out)
    staging = staging_path(out)
    staging.mkdir(parents=True, exist_ok=True)
    try:
        syn = synapseclient.Synapse(skip_checks=True, silent=True)
        syn.login(authToken=token, silent=True)
        fetched = syn.get(entity, downloadLocation=str(staging), ifcollision="overwrite.local")
        if getattr(fetched, "path", None) is None:  # a folder: fetch everything in it
            import synapseutils

            synapseutils.syncFromSynapse(syn, entity, path=str(staging), manifest="suppress")
    except Exception as err:  # the client's own error types vary across versions
        _drop_if_empty(staging)
        raise CalfError(
            f"Synapse download of {entity} failed: {type(err).__name__}: {redact(err)} "
            f"(is the challenge registration approved and does the token have download scope?)"
        ) from None
    return finalize(
        staging, out, dataset="brats", route="synapse", source=f"synapse:{entity}", extract=extract
    )


def aspera_route(
    dataset: str,
    url: str | None,
    out: Path,
    *,
    extract: bool = True,
    redactor: Redactor | None = None,
    echo: Callable[[str], None] = _stderr,
) -> dict:
    """Receive a TCIA Faspex package with ``ascli``; the link goes via the environment."""
    redact = redactor or Redactor()
    exe = shutil.which("ascli")
    if exe is None:
        problem = "the Aspera CLI `ascli` is not on PATH"
        raise AccessNeeded(
            f"{dataset}: {problem} (see the steps above)", aspera_help(dataset, str(out), problem)
        )
    if not url:
        problem = f"no Faspex package link was given (--url or {URL_ENV})"
        raise AccessNeeded(
            f"{dataset}: {problem} (see the steps above)", aspera_help(dataset, str(out), problem)
        )
    redact.add_url(url)
    _check_out(out)
    staging = staging_path(out)
    staging.mkdir(parents=True, exist_ok=True)
    command = [
        exe,
        "faspex5",
        "packages",
        "receive",
        f"--url=@env:{_ASCLI_URL_ENV}",
        f"--to-folder={staging}",
    ]
    env = {**os.environ, _ASCLI_URL_ENV: url}
    with subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:  # text mode turns ascli's \r progress updates into lines
            if line.strip():
                echo(redact(line.rstrip()))
    if proc.returncode != 0:
        _drop_if_empty(staging)
        raise CalfError(
            f"ascli exited with status {proc.returncode} receiving {redact_url(url)}; files received so "
            f"far stay in {staging}: run the same command again to resume"
        )
    return finalize(
        staging, out, dataset=dataset, route="aspera", source=redact_url(url), extract=extract
    )


def gated_route(dataset: str, out: Path) -> NoReturn:
    """A controlled-access dataset: nothing to fetch, only instructions."""
    raise AccessNeeded(
        f"{dataset}: {DATASETS[dataset].title} is gated (controlled access); see the steps above",
        gated_help(dataset, str(out)),
    )


def local_route(dataset: str, source: Path, manifest_path: Path | None = None) -> tuple[Path, dict]:
    """Check a user-supplied folder against the dataset's layout; write its manifest.

    The manifest lists the files the adapter found (every case's images and mask): the
    data the benchmark reads. It goes to ``<source>/calf_manifest.json`` unless
    ``manifest_path`` says otherwise (e.g. for a read-only folder).
    """
    from calf.datasets import discover

    if not source.is_dir():
        raise CalfError(f"{source}: folder not found")
    cases = discover(dataset, source)
    files = {Path(p) for case in cases for p in (*case.images.values(), case.mask)}
    manifest = build_manifest(
        source,
        files,
        dataset=dataset,
        route="local",
        source=os.path.abspath(source),
        n_cases=len(cases),
    )
    path = write_manifest(manifest_path or source / MANIFEST_NAME, manifest)
    return path, manifest
