"""Resumable, verified HTTP(S) download of one file.

The bytes stream into ``<dest>.part``. When a transfer breaks off, the ``.part`` file stays
and the next attempt (a retry in the same call, or the same command run again) asks the
server for the rest with an HTTP ``Range`` request; a server that answers 206 continues
where the file stopped, one that answers 200 sends everything again. Retries wait with a
doubling backoff and are bounded in number. The finished file is checked against the
expected size and SHA-256 when given; a mismatch deletes it (resuming corrupted bytes
would never succeed). Only then is ``.part`` renamed to ``dest``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from calf._fs import sha256_file
from calf.download.redact import Redactor, redact_url
from calf.errors import CalfError

_CHUNK = 1 << 20
_MAX_WAIT_S = 60.0
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class _Retryable(Exception):
    """A transfer failure worth another attempt (connection lost, short body, 5xx)."""


def check_sha256(value: str) -> str:
    """``value`` lower-cased if it is 64 hex digits, else a ``CalfError``."""
    hexdigest = value.strip().lower()
    if not _SHA256.fullmatch(hexdigest):
        raise CalfError(f"--sha256 {value!r}: expected 64 hexadecimal digits")
    return hexdigest


def part_path(dest: str | Path) -> Path:
    """Where the bytes of an unfinished download of ``dest`` are kept."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def _attempt(session, url: str, part: Path, timeout: float) -> None:
    """One request: append to ``part`` from its current size (or restart on a 200)."""
    import requests

    offset = part.stat().st_size if part.exists() else 0
    # identity encoding: byte offsets and Content-Length then count the bytes on disk
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with session.get(url, headers=headers, stream=True, timeout=timeout) as response:
            if response.status_code == 416 and offset:
                # range beyond the end: the .part is already whole (or longer than the file)
                total = response.headers.get("Content-Range", "").rpartition("/")[2]
                if total.isdigit() and int(total) == offset:
                    return
                part.unlink()
                raise _Retryable(f"server refused to resume at byte {offset}; restarting")
            if response.status_code in _RETRY_STATUS:
                raise _Retryable(f"HTTP {response.status_code}")
            if response.status_code >= 400:
                raise CalfError(f"HTTP {response.status_code} {response.reason}")
            if response.status_code == 206:
                match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
                if not match or int(match.group(1)) != offset:
                    part.unlink()
                    raise _Retryable("server resumed at the wrong byte; restarting")
                mode, start = "ab", offset
            else:
                mode, start = "wb", 0  # the server ignored the Range header: start over
            length = response.headers.get("Content-Length")
            expected = start + int(length) if length and length.isdigit() else None
            # a short body is detected below, by the size of .part: letting urllib3 raise
            # instead would drop the bytes it had buffered for the current chunk
            response.raw.enforce_content_length = False
            with open(part, mode) as handle:
                for chunk in response.iter_content(chunk_size=_CHUNK):
                    handle.write(chunk)
            got = part.stat().st_size
            if expected is not None and got != expected:
                raise _Retryable(f"connection closed after {got} of {expected} bytes")
    except (
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
    ) as err:
        raise _Retryable(f"{type(err).__name__}: {err}") from None
    except requests.RequestException as err:  # a bad URL, too many redirects, ...
        raise CalfError(f"{type(err).__name__}: {err}") from None


def fetch(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 60.0,
    redactor: Redactor | None = None,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verified; return ``dest``.

    ``retries`` further attempts follow a failed one, waiting ``backoff * 2**k`` seconds
    (at most a minute). Errors are ``CalfError`` with the URL redacted.
    """
    import requests

    if retries < 0:
        raise CalfError(f"--retries {retries}: must be >= 0")
    redact = redactor or Redactor()
    redact.add_url(url)
    dest = Path(dest)
    if dest.exists():
        raise CalfError(f"{dest}: already exists; not overwriting it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    shown = redact_url(url)
    with requests.Session() as session:
        for attempt in range(retries + 1):
            try:
                _attempt(session, url, part, timeout)
                break
            except _Retryable as err:
                reason = redact(err)
                if attempt == retries:
                    kept = (
                        f"the partial file {part} is kept: run the same command again to resume"
                        if part.exists()
                        else "nothing was kept"
                    )
                    raise CalfError(
                        f"download of {shown} failed after {attempt + 1} attempt(s): {reason}; {kept}"
                    ) from None
                time.sleep(min(backoff * 2**attempt, _MAX_WAIT_S))
            except CalfError as err:
                raise CalfError(f"download of {shown} failed: {redact(err)}") from None
    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink()
        raise CalfError(
            f"{dest.name}: size {got} bytes != expected {size}; the download was removed"
        )
    if sha256 is not None:
        digest = sha256_file(part)
        if digest != check_sha256(sha256):
            part.unlink()
            raise CalfError(
                f"{dest.name}: sha256 {digest} != expected {sha256}; the download was removed"
            )
    part.rename(dest)
    return dest
