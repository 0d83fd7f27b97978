"""Keep credentials out of everything the download step prints or writes.

Tokens reach ``calf download`` three ways: environment variables (``SYNAPSE_AUTH_TOKEN``,
``CALF_DOWNLOAD_URL``), the userinfo of a URL (``https://user:password@host``) and a URL's
query string (signed links, Faspex passcodes). Every message, log line and manifest field
goes through a :class:`Redactor` that knows those values, so a token is never echoed even
when a third-party client puts it into an exception text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit, urlunsplit

MASK = "***"
# secrets shorter than this are not substituted in free text: masking every "1" or "ab"
# would garble messages (URL query values are masked by position regardless of length)
_MIN_SECRET_LEN = 4
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """``url`` with its userinfo, every query value and the fragment replaced by ``***``.

    Scheme, host, port, path and query parameter names stay, so that the message still
    says where the data came from.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{MASK}@{host}" if "@" in parts.netloc else host
    query = "&".join(f"{name}={MASK}" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    if parts.query and not query:
        query = MASK
    fragment = MASK if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def url_secrets(url: str) -> list[str]:
    """The secret pieces of ``url``: user name, password, query values, fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = [parts.username or "", parts.password or "", parts.fragment]
    found += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    if parts.query:
        found.append(parts.query)
    return [s for s in found if s]


class Redactor:
    """Masks known secret values, and the secret parts of any URL, in free text."""

    def __init__(self, secrets: Iterable[str] = ()):
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        """Remember ``secret`` (and its percent-encoded forms) so that it is masked."""
        if not secret or len(secret) < _MIN_SECRET_LEN:
            return
        self._secrets.update({secret, quote(secret, safe=""), quote_plus(secret)})

    def add_url(self, url: str | None) -> None:
        """Remember the secret pieces of ``url``."""
        if url:
            for secret in url_secrets(url):
                self.add(secret)

    def __call__(self, text: object) -> str:
        """``text`` with every known secret and every URL's secret parts masked."""
        out = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), str(text))
        # longest first, so that a secret containing another is masked whole
        for secret in sorted(self._secrets, key=len, reverse=True):
            out = out.replace(secret, MASK)
        return out
