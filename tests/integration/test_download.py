"""``calf download``: transfer, resume, checksum, safe extraction, manifests, access messages.

The HTTP tests run against a real ``http.server`` on 127.0.0.1 (a free port, in a thread)
that serves archives built in ``tmp_path``, honours ``Range`` requests when asked to, and
can cut a response short to simulate a dropped connection. ``synapseclient`` and ``ascli``
cannot be installed or reach their servers here: the Synapse and Aspera routes are run
end to end against small stand-ins written into ``tmp_path`` that play the clients' part
(the documented calls ``Synapse().login(authToken=...)``/``.get(...)`` and
``ascli faspex5 packages receive --url=... --to-folder=...``).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import os
import re
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import nibabel as nib
import numpy as np
import pytest

from calf.cli import main
from calf.download import Redactor, redact_url, safe_extract
from calf.errors import CalfError

TOKEN = "syn-TOKEN-5f3a9c1e77"  # a made-up credential that must never be echoed
PASSWORD = "pw-Q8zL2x"
QUERY_TOKEN = "qtok-91be7f"


# ---------------------------------------------------------------- fixtures and helpers


def _payload() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    return {
        "cohort/case01/t1.nii.gz": rng.bytes(150_000),
        "cohort/case01/seg.nii.gz": rng.bytes(40_000),
        "cohort/README.txt": b"tiny release\n",
    }


def _zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar_bytes(files: dict[str, bytes], links: dict[str, tuple[bytes, str]] | None = None) -> bytes:
    """A .tar.gz of ``files``; ``links`` maps a member name to (SYMTYPE/LNKTYPE, target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tf.addfile(info)
    return buf.getvalue()


def _zip_with_symlink(name: str, target: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("data/ok.txt", b"ok")
        info = zipfile.ZipInfo(name)
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, target)
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        srv = self.server
        srv.seen.append(
            {
                "path": self.path,
                "range": self.headers.get("Range"),
                "auth": self.headers.get("Authorization"),
            }
        )
        if srv.auth and self.headers.get("Authorization") != srv.auth:
            self.send_error(401)
            return
        data = srv.files.get(urlsplit(self.path).path.lstrip("/"))
        if data is None:
            self.send_error(404)
            return
        start, status = 0, 200
        requested = self.headers.get("Range")
        if requested and srv.ranges:
            start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes" if srv.ranges else "none")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if srv.drops > 0:  # send only the first `cut` bytes, then hang up
            srv.drops -= 1
            self.wfile.write(body[: srv.cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    """A Range-capable HTTP server on 127.0.0.1; tests set .files, .ranges, .drops, .cut."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.files, srv.seen, srv.ranges, srv.drops, srv.cut, srv.auth = {}, [], True, 0, 0, None
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def _cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["download", *map(str, argv)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _http(capsys, url, out, *extra) -> tuple[int, str, str]:
    return _cli(
        capsys,
        "--dataset",
        "folder",
        "--route",
        "http",
        "--url",
        url,
        "--out",
        out,
        "--timeout",
        "5",
        "--backoff",
        "0",
        *extra,
    )


def _leftovers(parent: Path, out: Path) -> list[str]:
    """Anything a failed run left next to ``out`` (the target, staging, temp folders)."""
    return sorted(p.name for p in parent.iterdir() if p.name.lstrip(".").startswith(out.name))


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _env(**extra) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("SYNAPSE_AUTH_TOKEN", "CALF_DOWNLOAD_URL")
    }
    env.update(extra)
    return env


def _run_cli(args, env, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "calf", "download", *map(str, args)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


# ---------------------------------------------------------------- HTTP transfer


@pytest.mark.parametrize(
    "name,build", [("release.zip", _zip_bytes), ("release.tar.gz", _tar_bytes)]
)
def test_good_archive_is_downloaded_extracted_and_verified(server, tmp_path, capsys, name, build):
    files = _payload()
    archive = build(files)
    server.files[name] = archive
    out = tmp_path / "data"

    rc, stdout, _ = _http(
        capsys,
        f"{server.url}/{name}",
        out,
        "--sha256",
        _sha(archive).upper(),
        "--size",
        len(archive),
    )

    assert rc == 0 and "wrote" in stdout
    manifest_file = out / "calf_manifest.json"
    assert _tree(out) == {**files, "calf_manifest.json": manifest_file.read_bytes()}
    manifest = json.loads(manifest_file.read_text())
    assert manifest["route"] == "http" and manifest["dataset"] == "folder"
    assert manifest["files"] == [
        {"path": k, "size": len(files[k]), "sha256": _sha(files[k])} for k in sorted(files)
    ]
    assert manifest["n_files"] == 3 and manifest["total_bytes"] == 190_013
    assert manifest["archives"] == [{"path": name, "size": len(archive), "sha256": _sha(archive)}]
    assert _leftovers(tmp_path, out) == ["data"]  # no .partial, no temp folder
    assert [r["range"] for r in server.seen] == [None]

    rc, stdout, _ = _cli(capsys, "--verify", out)
    assert rc == 0 and "OK: 3 files" in stdout


def test_verify_reports_missing_and_changed_files(server, tmp_path, capsys):
    server.files["r.zip"] = _zip_bytes(_payload())
    out = tmp_path / "data"
    assert _http(capsys, f"{server.url}/r.zip", out)[0] == 0
    (out / "cohort/README.txt").unlink()
    seg = out / "cohort/case01/seg.nii.gz"
    seg.write_bytes(b"X" + seg.read_bytes()[1:])  # same size, other content

    rc, stdout, stderr = _cli(capsys, "--verify", out)

    assert rc == 2
    assert "missing: cohort/README.txt" in stdout
    assert "changed: cohort/case01/seg.nii.gz (sha256 differs)" in stdout
    assert "1 missing, 1 changed of 3 files (first: cohort/README.txt)" in stderr
    assert len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "name,build,corruption,message",
    [
        ("release.zip", _zip_bytes, "flip", "sha256 "),
        ("release.tar.gz", _tar_bytes, "flip", "sha256 "),
        ("release.zip", _zip_bytes, "truncate", "not a valid zip archive"),
        ("release.tar.gz", _tar_bytes, "truncate", "not a valid tar archive"),
    ],
)
def test_corrupted_archive_leaves_nothing(
    server, tmp_path, capsys, name, build, corruption, message
):
    good = build(_payload())
    if corruption == "flip":  # caught by the expected checksum
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0xFF
        extra = ("--sha256", _sha(good))
    else:  # no checksum given: the archive itself is broken (zip without its directory,
        bad = good[: len(good) // 2]  # gzip stream cut short)
        extra = ()
    server.files[name] = bytes(bad)
    out = tmp_path / "data"

    rc, _, stderr = _http(capsys, f"{server.url}/{name}", out, *extra)

    assert rc == 2
    assert name in stderr and message in stderr
    assert _leftovers(tmp_path, out) == []


@pytest.mark.parametrize("ranges", [True, False], ids=["range", "no-range"])
def test_truncated_transfer_resumes_on_the_next_call(server, tmp_path, capsys, ranges):
    files = _payload()
    archive = _zip_bytes(files)
    server.files["release.zip"], server.ranges = archive, ranges
    server.drops, server.cut = 1, len(archive) // 3
    out = tmp_path / "data"
    url = f"{server.url}/release.zip"

    rc, _, stderr = _http(capsys, url, out, "--retries", "0", "--sha256", _sha(archive))
    part = tmp_path / "data.partial" / "release.zip.part"
    assert rc == 2 and "run the same command again to resume" in stderr
    assert not out.exists()
    assert part.read_bytes() == archive[: len(archive) // 3]

    rc, _, _ = _http(capsys, url, out, "--retries", "0", "--sha256", _sha(archive))

    assert rc == 0
    expected_second = f"bytes={len(archive) // 3}-"
    assert [r["range"] for r in server.seen] == [None, expected_second]
    assert {k: v for k, v in _tree(out).items() if k != "calf_manifest.json"} == files
    assert _leftovers(tmp_path, out) == ["data"]
    assert _cli(capsys, "--verify", out)[0] == 0


def test_retries_in_one_call_resume_with_range(server, tmp_path, capsys):
    archive = _zip_bytes(_payload())
    server.files["r.zip"] = archive
    server.drops, server.cut = 2, 50_000
    out = tmp_path / "data"

    rc, _, _ = _http(
        capsys, f"{server.url}/r.zip", out, "--retries", "2", "--sha256", _sha(archive)
    )

    assert rc == 0
    assert [r["range"] for r in server.seen] == [None, "bytes=50000-", "bytes=100000-"]


def test_retries_are_bounded(server, tmp_path, capsys):
    server.files["r.zip"] = _zip_bytes(_payload())
    server.drops, server.cut = 1000, 1000
    out = tmp_path / "data"

    rc, _, stderr = _http(capsys, f"{server.url}/r.zip", out, "--retries", "2")

    assert rc == 2
    assert len(server.seen) == 3
    assert "failed after 3 attempt(s)" in stderr
    assert (tmp_path / "data.partial" / "r.zip.part").stat().st_size == 3000


def test_http_error_is_not_retried_and_leaves_nothing(server, tmp_path, capsys):
    out = tmp_path / "data"
    rc, _, stderr = _http(capsys, f"{server.url}/missing.zip", out, "--retries", "3")
    assert rc == 2 and "HTTP 404" in stderr and "missing.zip" in stderr
    assert len(server.seen) == 1
    assert _leftovers(tmp_path, out) == []


def test_existing_output_is_never_overwritten(server, tmp_path, capsys):
    server.files["r.zip"] = _zip_bytes(_payload())
    out = tmp_path / "data"
    out.mkdir()
    (out / "mine.txt").write_text("user data")

    rc, _, stderr = _http(capsys, f"{server.url}/r.zip", out)

    assert rc == 2 and "already exists" in stderr
    assert _tree(out) == {"mine.txt": b"user data"}
    assert server.seen == []


# ---------------------------------------------------------------- safe extraction

_MALICIOUS = {
    "zip-dotdot": (
        "'..' in the path",
        "evil.zip",
        lambda: _zip_bytes({"data/ok.txt": b"ok", "../evil.txt": b"pwned"}),
    ),
    "zip-absolute": (
        "absolute path",
        "evil.zip",
        lambda: _zip_bytes({"data/ok.txt": b"ok", "/tmp/calf-evil.txt": b"pwned"}),
    ),
    "zip-symlink-out": (
        "symlink points outside the target folder",
        "evil.zip",
        lambda: _zip_with_symlink("data/link", "../../outside"),
    ),
    "tar-dotdot": (
        "'..' in the path",
        "evil.tar.gz",
        lambda: _tar_bytes({"data/ok.txt": b"ok", "../evil.txt": b"pwned"}),
    ),
    "tar-absolute": (
        "absolute path",
        "evil.tar.gz",
        lambda: _tar_bytes({"data/ok.txt": b"ok", "/tmp/calf-evil.txt": b"pwned"}),
    ),
    "tar-symlink-out": (
        "symlink to an absolute path",
        "evil.tar.gz",
        lambda: _tar_bytes({"data/ok.txt": b"ok"}, {"data/link": (tarfile.SYMTYPE, "/etc")}),
    ),
    "tar-hardlink-abs": (
        "absolute path",
        "evil.tar.gz",
        lambda: _tar_bytes({"data/ok.txt": b"ok"}, {"data/hard": (tarfile.LNKTYPE, "/etc/passwd")}),
    ),
    "tar-symlink-chain": (
        "symlink through another symlink",  # each link alone stays inside; l3 -> l2/.. resolves to ../..
        "evil.tar.gz",
        lambda: _tar_bytes(
            {"data/ok.txt": b"ok"},
            {"data/l2": (tarfile.SYMTYPE, ".."), "data/l3": (tarfile.SYMTYPE, "l2/..")},
        ),
    ),
    "tar-write-through-symlink": (
        "goes through the symlink 'data/l'",
        "evil.tar.gz",
        lambda: _tar_bytes({"data/l/x.txt": b"x"}, {"data/l": (tarfile.SYMTYPE, ".")}),
    ),
    "tar-hardlink-out": (
        "'..' in the path",
        "evil.tar.gz",
        lambda: _tar_bytes({"data/ok.txt": b"ok"}, {"data/hard": (tarfile.LNKTYPE, "../outside")}),
    ),
}


@pytest.mark.parametrize("case", sorted(_MALICIOUS))
def test_path_traversing_archive_is_refused_and_nothing_extracted(tmp_path, case):
    reason, name, build = _MALICIOUS[case]
    archive = tmp_path / "dl" / name
    archive.parent.mkdir()
    archive.write_bytes(build())
    target = tmp_path / "work" / "target"

    with pytest.raises(CalfError, match="refused member") as err:
        safe_extract(archive, target)

    assert f"{name}: refused member" in str(
        err.value
    ) and f": {reason}; nothing was extracted" in str(err.value)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "dl",
        f"dl/{name}",
        "work",
    ]
    assert not Path("/tmp/calf-evil.txt").exists()


def test_path_traversing_archive_over_http_leaves_nothing(server, tmp_path, capsys):
    server.files["evil.zip"] = _zip_bytes({"data/ok.txt": b"ok", "../../evil.txt": b"pwned"})
    out = tmp_path / "dl" / "data"

    rc, _, stderr = _http(capsys, f"{server.url}/evil.zip", out)

    assert rc == 2 and "refused member '../../evil.txt'" in stderr
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["dl"]


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_links_inside_the_target_are_extracted(tmp_path, fmt):
    if fmt == "zip":
        data, name = _zip_with_symlink("data/link", "ok.txt"), "a.zip"
    else:
        data, name = (
            _tar_bytes({"data/ok.txt": b"ok"}, {"data/link": (tarfile.SYMTYPE, "ok.txt")}),
            "a.tar.gz",
        )
    archive = tmp_path / name
    archive.write_bytes(data)
    target = tmp_path / "target"

    made = safe_extract(archive, target)

    assert made == [target / "data"]
    assert (target / "data/link").is_symlink() and (target / "data/link").read_bytes() == b"ok"


def test_a_fresh_target_gets_the_umask_permissions_and_no_staging_stays(tmp_path):
    # the staging folder is made private (mkdtemp: 0700); the target it becomes is not
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip_bytes({"data/x.txt": b"x"}))
    old = os.umask(0o022)
    try:
        made = safe_extract(archive, tmp_path / "target")
    finally:
        os.umask(old)
    assert made == [tmp_path / "target" / "data"]
    assert stat.S_IMODE((tmp_path / "target").stat().st_mode) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "target"]


def test_extract_refuses_clash_with_existing_entry(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip_bytes({"data/new.txt": b"new"}))
    target = tmp_path / "target"
    (target / "data").mkdir(parents=True)

    with pytest.raises(CalfError, match="'data' already exists"):
        safe_extract(archive, target)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "target"]
    assert list((target / "data").iterdir()) == []


# ---------------------------------------------------------------- credentials


@pytest.mark.parametrize(
    "url,expected",
    [
        (
            "https://u:p@host.org:8443/a/b.zip?token=xyz&v=1#frag",
            "https://***@host.org:8443/a/b.zip?token=***&v=***#***",
        ),
        (
            "https://host.org/pkg?context=eyJwYXNzY29kZSI6IjEyMyJ9",
            "https://host.org/pkg?context=***",
        ),
        ("http://127.0.0.1:8000/plain.tar.gz", "http://127.0.0.1:8000/plain.tar.gz"),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_redactor_masks_known_secrets_and_their_encodings():
    redact = Redactor([TOKEN])
    redact.add_url("https://h/x?sig=a b/c")
    text = f"auth {TOKEN} failed; sig a%20b%2Fc and a+b%2Fc; see https://h/x?sig=zzz"
    assert redact(text) == "auth *** failed; sig *** and ***; see https://h/x?sig=***"


def test_token_never_appears_in_output_or_manifest(server, tmp_path, capsys):
    archive = _zip_bytes(_payload())
    server.files["r.zip"] = archive
    server.auth = "Basic " + base64.b64encode(f"reader:{PASSWORD}".encode()).decode()
    port = server.server_address[1]
    url = f"http://reader:{PASSWORD}@127.0.0.1:{port}/r.zip?token={QUERY_TOKEN}"
    out = tmp_path / "data"

    rc, stdout, stderr = _http(capsys, url, out, "--sha256", _sha(archive))
    rc_missing, stdout2, stderr2 = _http(
        capsys, url.replace("/r.zip", "/gone.zip"), tmp_path / "other"
    )

    assert rc == 0 and server.seen[0]["auth"] == server.auth  # the credentials were used...
    assert rc_missing == 2 and f"http://***@127.0.0.1:{port}/gone.zip?token=***" in stderr2
    manifest = json.loads((out / "calf_manifest.json").read_text())
    assert manifest["source"] == f"http://***@127.0.0.1:{port}/r.zip?token=***"
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for secret in (PASSWORD, QUERY_TOKEN):  # ...and never echoed or written
        assert secret not in stdout + stderr + stdout2 + stderr2
        assert secret.encode() not in written


def test_url_from_environment_keeps_it_off_the_command_line(server, tmp_path):
    archive = _zip_bytes(_payload())
    server.files["r.zip"] = archive
    url = f"{server.url}/r.zip?token={QUERY_TOKEN}"
    out = tmp_path / "data"

    proc = _run_cli(
        ["--dataset", "folder", "--route", "http", "--out", out, "--timeout", "5"],
        _env(CALF_DOWNLOAD_URL=url),
        tmp_path,
    )

    assert proc.returncode == 0, proc.stderr
    assert server.seen[0]["path"] == f"/r.zip?token={QUERY_TOKEN}"
    assert QUERY_TOKEN not in proc.stdout + proc.stderr
    assert QUERY_TOKEN not in (out / "calf_manifest.json").read_text()


# ---------------------------------------------------------------- official routes

_SYNAPSE_STUB = '''\
"""Stand-in for synapseclient: the calls calf makes, serving a local archive."""
import os, shutil
from types import SimpleNamespace


class Synapse:
    def __init__(self, skip_checks=False, silent=None):
        self.token = None

    def login(self, authToken=None, silent=False):
        if os.environ.get("STUB_FAIL"):
            raise RuntimeError("401 Unauthorized: invalid token " + authToken)
        self.token = authToken

    def get(self, entity, downloadLocation=None, ifcollision=None):
        assert self.token == os.environ["SYNAPSE_AUTH_TOKEN"], "login did not get the token"
        assert entity == "syn51514132", entity
        dest = os.path.join(downloadLocation, "ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData.zip")
        shutil.copyfile(os.environ["STUB_ARCHIVE"], dest)
        return SimpleNamespace(path=dest, id=entity)
'''

_ASCLI_STUB = '''\
#!{python}
"""Stand-in for the Aspera CLI: records its argv, copies a local archive into --to-folder."""
import json, os, shutil, sys
args = sys.argv[1:]
link = os.environ.get("CALF_ASPERA_PACKAGE_URL")
with open(os.environ["STUB_RECORD"], "w") as f:
    json.dump({{"argv": sys.argv, "link_received": link == os.environ["STUB_EXPECT"]}}, f)
assert args[:3] == ["faspex5", "packages", "receive"], args
assert "--url=@env:CALF_ASPERA_PACKAGE_URL" in args, args
to = next(a.split("=", 1)[1] for a in args if a.startswith("--to-folder="))
print("receiving package " + link, flush=True)  # a chatty client echoing the link
shutil.copyfile(os.environ["STUB_ARCHIVE"], os.path.join(to, "UCSF-PDGM-v5.zip"))
sys.exit(int(os.environ.get("STUB_EXIT", "0")))
'''


@pytest.fixture
def fake_synapse(tmp_path) -> Path:
    lib = tmp_path / "lib_synapse"
    (lib / "synapseclient").mkdir(parents=True)
    (lib / "synapseclient" / "__init__.py").write_text(_SYNAPSE_STUB)
    return lib


@pytest.fixture
def no_synapse(tmp_path) -> Path:
    lib = tmp_path / "lib_blocked"
    (lib / "synapseclient").mkdir(parents=True)
    (lib / "synapseclient" / "__init__.py").write_text(
        "raise ImportError('synapseclient is absent in this test')\n"
    )
    return lib


@pytest.fixture
def empty_bin(tmp_path) -> Path:
    path = tmp_path / "emptybin"
    path.mkdir()
    return path


@pytest.mark.parametrize(
    "case,dataset,phrases",
    [
        (
            "no-client",
            "brats",
            [
                "synapseclient is not installed",
                "pip install synapseclient",
                "Personal Access Tokens",
                "export SYNAPSE_AUTH_TOKEN",
                "syn51156910",
            ],
        ),
        ("no-token", "brats", ["SYNAPSE_AUTH_TOKEN is not set", "Personal Access Tokens"]),
        (
            "no-ascli",
            "upenn_gbm",
            [
                "`ascli` is not on PATH",
                "gem install aspera-cli",
                "cancerimagingarchive.net/collection/upenn-gbm",
            ],
        ),
        (
            "no-ascli",
            "ucsf_pdgm",
            ["`ascli` is not on PATH", "cancerimagingarchive.net/collection/ucsf-pdgm"],
        ),
        ("gated", "lgg_1p19q", ["controlled access", "lgg-1p19qdeletion"]),
    ],
)
def test_missing_client_or_credentials_explain_access(
    tmp_path, fake_synapse, no_synapse, empty_bin, case, dataset, phrases
):
    out = tmp_path / "data"
    env = _env(
        PATH=str(empty_bin), PYTHONPATH=str(fake_synapse if case == "no-token" else no_synapse)
    )
    if case != "no-token":
        env["SYNAPSE_AUTH_TOKEN"] = TOKEN

    proc = _run_cli(["--dataset", dataset, "--out", out], env, tmp_path)

    assert proc.returncode == 2
    for phrase in phrases:
        assert phrase in proc.stderr, phrase
    # where to put the data, and how to check it afterwards
    assert f"--dataset {dataset} --route local --source {out}" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("calf download: error:")
    assert TOKEN not in proc.stdout + proc.stderr
    assert not out.exists() and not (tmp_path / "data.partial").exists()


@pytest.mark.parametrize("fail", [False, True], ids=["ok", "login-fails"])
def test_synapse_route_with_stand_in_client(tmp_path, fake_synapse, fail):
    files = _payload()
    archive = tmp_path / "src-archive.zip"
    archive.write_bytes(_zip_bytes(files))
    out = tmp_path / "brats"
    env = _env(PYTHONPATH=str(fake_synapse), SYNAPSE_AUTH_TOKEN=TOKEN, STUB_ARCHIVE=str(archive))
    if fail:
        env["STUB_FAIL"] = "1"

    proc = _run_cli(["--dataset", "brats", "--out", out], env, tmp_path)

    assert TOKEN not in proc.stdout + proc.stderr
    if fail:
        assert proc.returncode == 2
        assert (
            "Synapse download of syn51514132 failed: RuntimeError: 401 Unauthorized: invalid token ***"
            in proc.stderr
        )
        assert _leftovers(tmp_path, out) == []
        return
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "calf_manifest.json").read_text())
    assert (manifest["route"], manifest["source"], manifest["n_files"]) == (
        "synapse",
        "synapse:syn51514132",
        3,
    )
    assert {k: v for k, v in _tree(out).items() if k != "calf_manifest.json"} == files
    assert all(TOKEN.encode() not in p.read_bytes() for p in out.rglob("*") if p.is_file())


@pytest.mark.parametrize("exit_code", [0, 3])
def test_aspera_route_passes_the_link_through_the_environment(tmp_path, exit_code):
    files = _payload()
    archive = tmp_path / "pkg.zip"
    archive.write_bytes(_zip_bytes(files))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    ascli = bindir / "ascli"
    ascli.write_text(_ASCLI_STUB.format(python=sys.executable))
    ascli.chmod(0o755)
    link = f"https://faspex.example.org/aspera/faspex/public/package?context={QUERY_TOKEN}"
    record = tmp_path / "argv.json"
    out = tmp_path / "ucsf"
    env = _env(
        PATH=str(bindir),
        STUB_RECORD=str(record),
        STUB_EXPECT=link,
        STUB_ARCHIVE=str(archive),
        STUB_EXIT=str(exit_code),
        CALF_DOWNLOAD_URL=link,
    )

    proc = _run_cli(["--dataset", "ucsf_pdgm", "--out", out], env, tmp_path)

    seen = json.loads(record.read_text())
    assert seen["link_received"] is True
    assert all(QUERY_TOKEN not in arg for arg in seen["argv"])  # not in the process list
    assert QUERY_TOKEN not in proc.stdout + proc.stderr
    assert (
        "receiving package https://faspex.example.org/aspera/faspex/public/package?context=***"
        in proc.stderr
    )
    if exit_code:
        assert proc.returncode == 2 and "ascli exited with status 3" in proc.stderr
        assert not out.exists() and (tmp_path / "ucsf.partial" / "UCSF-PDGM-v5.zip").exists()
        return
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "calf_manifest.json").read_text())
    assert manifest["route"] == "aspera" and QUERY_TOKEN not in json.dumps(manifest)
    assert {k: v for k, v in _tree(out).items() if k != "calf_manifest.json"} == files


def test_route_must_fit_the_dataset(capsys, tmp_path):
    rc, _, stderr = _cli(capsys, "--dataset", "brats", "--route", "aspera", "--out", tmp_path / "x")
    assert rc == 2 and "--route aspera serves upenn_gbm, ucsf_pdgm, not --dataset brats" in stderr


# ---------------------------------------------------------------- local folder


def _write_cohort(root: Path, n_cases: int = 2) -> None:
    """A tiny `folder`-layout cohort: <case>/{t1,t2,flair,seg}.nii.gz."""
    rng = np.random.default_rng(3)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    for i in range(n_cases):
        case = root / f"case{i:02d}"
        case.mkdir(parents=True)
        for modality in ("t1", "t2", "flair"):
            image = rng.random((8, 8, 4)).astype(np.float32)
            nib.save(nib.Nifti1Image(image, affine), case / f"{modality}.nii.gz")
        seg = np.zeros((8, 8, 4), np.uint8)
        seg[2:5, 2:5, 1:3] = 1
        nib.save(nib.Nifti1Image(seg, affine), case / "seg.nii.gz")


def test_local_route_checks_layout_and_writes_manifest(tmp_path, capsys):
    cohort = tmp_path / "cohort"
    _write_cohort(cohort)
    (cohort / "notes.txt").write_text("not part of any case")

    rc, stdout, _ = _cli(capsys, "--dataset", "folder", "--route", "local", "--source", cohort)

    assert rc == 0 and "2 folder cases, 8 files" in stdout
    manifest = json.loads((cohort / "calf_manifest.json").read_text())
    expected = sorted(
        f"case{i:02d}/{m}.nii.gz" for i in range(2) for m in ("t1", "t2", "flair", "seg")
    )
    assert [e["path"] for e in manifest["files"]] == expected
    for entry in manifest["files"]:
        data = (cohort / entry["path"]).read_bytes()
        assert (entry["size"], entry["sha256"]) == (len(data), _sha(data))
    assert (manifest["route"], manifest["n_cases"]) == ("local", 2)

    assert _cli(capsys, "--verify", cohort)[0] == 0
    image = cohort / "case01" / "t2.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 4), np.float32), np.eye(4)), image)
    rc, stdout, stderr = _cli(capsys, "--verify", cohort)
    assert rc == 2 and "changed: case01/t2.nii.gz" in stdout and "first: case01/t2.nii.gz" in stderr


def test_local_route_rejects_a_folder_without_cases(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, stderr = _cli(capsys, "--dataset", "folder", "--route", "local", "--source", empty)
    assert rc == 2 and str(empty) in stderr
    assert list(empty.iterdir()) == []


def test_local_manifest_never_overwrites_a_user_file(tmp_path, capsys):
    cohort = tmp_path / "cohort"
    _write_cohort(cohort, n_cases=1)
    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "notes"}')

    rc, _, stderr = _cli(
        capsys, "--dataset", "folder", "--route", "local", "--source", cohort, "--manifest", mine
    )

    assert rc == 2 and "not a calf manifest; not overwriting it" in stderr
    assert mine.read_text() == '{"my": "notes"}'


@pytest.mark.parametrize(
    "content,message",
    [
        ("{not json", "not a readable JSON manifest"),
        ('{"format": "other"}', "not a calf download manifest"),
        (
            json.dumps(
                {
                    "format": "calf-download-manifest",
                    "version": 1,
                    "files": [{"path": "../x", "size": 1, "sha256": "0" * 64}],
                }
            ),
            "escapes the dataset folder",
        ),
    ],
)
def test_verify_rejects_bad_manifests(tmp_path, capsys, content, message):
    (tmp_path / "calf_manifest.json").write_text(content)
    rc, _, stderr = _cli(capsys, "--verify", tmp_path)
    assert rc == 2 and message in stderr and "calf_manifest.json" in stderr


def test_nothing_is_fetched_or_imported_at_import():
    code = "import sys, calf.download, calf.commands.download; print('requests' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False"


def test_connection_errors_are_redacted_too(tmp_path, capsys):
    # requests quotes the path and query (without the scheme) in its connection errors
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    url = f"http://127.0.0.1:{port}/r.zip?token={QUERY_TOKEN}"

    rc, stdout, stderr = _http(capsys, url, tmp_path / "data", "--retries", "1")

    assert rc == 2 and "failed after 2 attempt(s): ConnectionError" in stderr
    assert QUERY_TOKEN not in stdout + stderr
    assert _leftovers(tmp_path, tmp_path / "data") == []


# ---------------------------------------------------------------- crosswalk files


def _crosswalk(capsys, name, out, *extra) -> tuple[int, str, str]:
    return _cli(capsys, "--crosswalk", name, "--out", out, "--timeout", "5", "--backoff", "0",
                *extra)


@pytest.mark.parametrize("name", ["BraTS2021_MappingToTCIA.xlsx", "UCSF-PDGM-metadata_v5.csv"])
def test_a_published_crosswalk_file_is_fetched_whole(server, tmp_path, capsys, name):
    from calf.download import CROSSWALKS

    data = np.random.default_rng(3).bytes(70_000)
    server.files[name] = data
    out = tmp_path / "resources" / "crosswalk" / name
    # TCIA publishes it over plain HTTPS; the test serves it from a local mirror
    assert CROSSWALKS[name].url == f"https://www.cancerimagingarchive.net/wp-content/uploads/{name}"
    rc, stdout, _ = _crosswalk(capsys, name, out, "--url", f"{server.url}/{name}")
    assert rc == 0
    assert out.read_bytes() == data and f"sha256 {_sha(data)}" in stdout
    assert sorted(p.name for p in out.parent.iterdir()) == [name]
    # an existing file is never replaced
    rc, _, err = _crosswalk(capsys, name, out, "--url", f"{server.url}/{name}")
    assert rc == 2 and "already exists" in err and out.read_bytes() == data


def test_an_interrupted_crosswalk_download_resumes(server, tmp_path, capsys):
    name = "UCSF-PDGM-metadata_v5.csv"
    data = b"ID,Sex,BraTS21 ID\n" + b"UCSF-PDGM-004,F,BraTS2021_00097\n" * 2000
    server.files[name] = data
    server.drops, server.cut = 1, 10_000
    out = tmp_path / name
    url = f"{server.url}/{name}"
    rc, _, err = _crosswalk(capsys, name, out, "--url", url, "--retries", "0")
    assert rc == 2 and "run the same command again to resume" in err
    assert not out.exists() and (tmp_path / f"{name}.part").stat().st_size == 10_000
    rc, _, _ = _crosswalk(capsys, name, out, "--url", url)
    assert rc == 0 and out.read_bytes() == data
    assert server.seen[-1]["range"] == "bytes=10000-"


def test_a_crosswalk_without_public_source_says_where_to_get_it(tmp_path, capsys):
    name = "BraTS2023_2017_GLI_Mapping.xlsx"
    out = tmp_path / "resources" / "crosswalk" / name
    rc, _, err = _crosswalk(capsys, name, out)
    assert rc == 2
    for phrase in ("no public download", "https://www.synapse.org/Synapse:syn51514105",
                   "ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData.zip", f"put it at {out}"):
        assert phrase in err, phrase
    assert not out.parent.exists()
    with pytest.raises(SystemExit) as stop:  # argparse's exit: only the known files
        _crosswalk(capsys, "mapping.csv", out)
    assert stop.value.code == 2 and "invalid choice: 'mapping.csv'" in capsys.readouterr().err
