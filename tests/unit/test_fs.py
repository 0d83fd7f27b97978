"""calf._fs: atomic files and folders, the one rule for existing outputs, sha256_file."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from calf import _fs
from calf.errors import CalfError


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_sha256_file_is_hashlib_over_the_bytes(tmp_path):
    data = os.urandom(3 * _fs.CHUNK + 17)  # more than one chunk, not a multiple of it
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert _fs.sha256_file(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert _fs.sha256_file(tmp_path / "empty") == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


@pytest.mark.parametrize("durable", [False, True])
def test_write_text_creates_parents_and_leaves_no_temp(tmp_path, durable):
    target = tmp_path / "a" / "b" / "out.txt"
    _fs.write_text(target, "hello\n", durable=durable)
    assert target.read_text() == "hello\n"
    assert _leftovers(target.parent) == []


def test_written_file_gets_the_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        _fs.write_bytes(tmp_path / "x", b"1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == 0o640


def test_write_json_refuses_nan_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "r.json"
    _fs.write_json(target, {"a": 1})
    assert target.read_text() == '{\n  "a": 1\n}\n'
    with pytest.raises(ValueError):
        _fs.write_json(target, {"a": float("nan")})
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert _leftovers(tmp_path) == []


def test_an_existing_file_needs_force(tmp_path):
    target = tmp_path / "user.csv"
    target.write_text("mine\n")
    with pytest.raises(CalfError, match=r"user\.csv: already exists \(pass --force"):
        _fs.write_text(target, "new\n", force=False)
    assert target.read_text() == "mine\n"
    _fs.write_text(target, "new\n", force=True)
    assert target.read_text() == "new\n"


def test_a_folder_is_not_a_file_path(tmp_path):
    with pytest.raises(CalfError, match="is a directory"):
        _fs.write_text(tmp_path, "x", force=True)


def test_atomic_files_renames_all_or_none(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    with pytest.raises(RuntimeError):
        with _fs.atomic_files([a, b]) as (ta, tb):
            ta.write_text("new a")
            tb.write_text("new b")
            raise RuntimeError("the second writer failed")
    assert a.read_text() == "old a" and not b.exists()
    assert _leftovers(tmp_path) == []
    with _fs.atomic_files([a, b]) as (ta, tb):
        ta.write_text("new a")
        tb.write_text("new b")
    assert (a.read_text(), b.read_text()) == ("new a", "new b")


def test_write_with_passes_a_binary_file(tmp_path):
    _fs.write_with(tmp_path / "w.bin", lambda f: f.write(b"\x00\x01"), durable=True)
    assert (tmp_path / "w.bin").read_bytes() == b"\x00\x01"


def test_atomic_dir_builds_then_replaces_its_own_folder(tmp_path):
    out = tmp_path / "stats"
    with _fs.atomic_dir(out, owned_by="stats.json") as staging:
        assert staging.parent == tmp_path and not out.exists()
        (staging / "stats.json").write_text("{}")
        (staging / "t.csv").write_text("1")
    assert sorted(p.name for p in out.iterdir()) == ["stats.json", "t.csv"]
    with _fs.atomic_dir(out, owned_by="stats.json") as staging:  # its own: replaced
        (staging / "stats.json").write_text('{"v": 2}')
    assert sorted(p.name for p in out.iterdir()) == ["stats.json"]
    assert _leftovers(tmp_path) == []


def test_atomic_dir_failure_keeps_the_old_folder(tmp_path):
    out = tmp_path / "stats"
    out.mkdir()
    (out / "stats.json").write_text("old")
    with pytest.raises(KeyError):
        with _fs.atomic_dir(out, owned_by="stats.json") as staging:
            (staging / "stats.json").write_text("new")
            raise KeyError("half way")
    assert (out / "stats.json").read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_atomic_dir_refuses_a_folder_it_did_not_write(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(CalfError, match=r"mine: already exists \(no stats\.json"):
        with _fs.atomic_dir(out, owned_by="stats.json"):
            pass
    assert (out / "notes.txt").read_text() == "keep me"
    assert _leftovers(tmp_path) == []
    with _fs.atomic_dir(out, owned_by="stats.json", force=True) as staging:
        (staging / "stats.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["stats.json"]


def test_atomic_dir_takes_an_empty_folder_and_refuses_a_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with _fs.atomic_dir(tmp_path / "empty") as staging:
        (staging / "x").write_text("1")
    assert (tmp_path / "empty" / "x").is_file()
    (tmp_path / "file").write_text("1")
    with pytest.raises(CalfError, match="exists and is not a folder"):
        with _fs.atomic_dir(tmp_path / "file"):
            pass


def test_atomic_dir_gets_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with _fs.atomic_dir(tmp_path / "d"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
