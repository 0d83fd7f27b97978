"""calf.train.rundir: the one reader of run.json and of epochs.csv, and the run folder's
writers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from calf.errors import CalfError
from calf.losses import BRANCHES
from calf.train.rundir import (
    RunDir,
    epoch_columns,
    read_epochs,
    read_run_record,
    run_precision,
)


def _run(tmp_path, record, name="run"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps(record) if isinstance(record, dict) else record)
    return folder


def _epochs(folder, text):
    (folder / "epochs.csv").write_text(text)
    return folder


def test_reading_the_run_folder_imports_no_torch():
    code = ("import sys, calf.train.rundir, calf.train; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_read_run_record(tmp_path):
    record = {"status": "complete", "params": {"loss": "calf"}, "epochs_completed": 2}
    folder = _run(tmp_path, record)
    assert read_run_record(folder) == record
    assert read_run_record(str(folder), complete=True) == record
    running = _run(tmp_path, {**record, "status": "running"}, "running")
    assert read_run_record(running)["status"] == "running"
    with pytest.raises(CalfError, match=r"running/run.json: run status is 'running', not "
                                        r"'complete'; finish training first$"):
        read_run_record(running, complete=True)


@pytest.mark.parametrize(
    "content,message",
    [
        ("{bad", r"run.json: not a readable run record JSON \(Expecting"),
        ("[1, 2]", r"run.json: not a run record JSON object$"),
        ({"params": {}}, r"run.json: not a calf training record \(status None, expected one "
                         r"of running, complete, interrupted, failed\)$"),
        ({"status": "done"}, r"run.json: not a calf training record \(status 'done'"),
        ({"status": "complete", "params": [1]}, r"run.json: params is not an object$"),
    ],
)
def test_a_bad_run_record_is_one_line_naming_the_file(tmp_path, content, message):
    folder = _run(tmp_path, content)
    with pytest.raises(CalfError, match=message) as err:
        read_run_record(folder)
    assert str(folder / "run.json") in str(err.value) and "\n" not in str(err.value)


def test_a_missing_run_folder_or_record(tmp_path):
    with pytest.raises(CalfError, match=r"nowhere: no such run directory$"):
        read_run_record(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalfError, match=r"empty/run.json: not found; .* is not a calf "
                                        r"training run$"):
        read_run_record(tmp_path / "empty")


def test_run_dir_is_fresh_without_a_record_and_refuses_foreign_content(tmp_path):
    assert RunDir(tmp_path / "new").read_run() is None
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / ".lock").write_text("")
    assert RunDir(tmp_path / "locked").read_run() is None  # only our lock: still fresh
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(CalfError, match="not empty and holds no run.json .e.g. notes.txt."):
        RunDir(tmp_path / "mine").read_run()
    (tmp_path / "file").write_text("x")
    with pytest.raises(CalfError, match="exists and is not a directory"):
        RunDir(tmp_path / "file").read_run()
    folder = _run(tmp_path, {"status": "failed", "params": {}})
    assert RunDir(folder).read_run() == {"status": "failed", "params": {}}


def test_run_precision():
    assert run_precision({"params": {"protocol": {"precision": "fp32"}}}) == "fp32"
    assert run_precision({"params": {"loss": "bce"}}) == "bf16"  # runs before the switch
    assert run_precision({}) == "bf16"


def test_written_epochs_read_back(tmp_path):
    run = RunDir(tmp_path / "run")
    run.lock()
    try:
        counts = {f"branch_{b}": 0 for b in BRANCHES}
        rows = [
            {"epoch": 1, "train_loss": 0.75, "steps": 3, "seconds": 1.5,
             "slices_per_second": 16.0, **counts, f"branch_{BRANCHES[0]}": 2, "val_dice": 0.5},
            {"epoch": 2, "train_loss": -0.25, "steps": 3, "seconds": 1.25,
             "slices_per_second": None, **counts, "val_dice": None},
        ]
        run.write_epochs(rows)
        run.write_run({"status": "running", "params": {}})
    finally:
        run.unlock()
    table = read_epochs(run.path, columns=("seconds",))
    assert tuple(table.columns) == epoch_columns()
    assert epoch_columns()[:5] == ("epoch", "train_loss", "steps", "seconds",
                                   "slices_per_second")
    assert epoch_columns()[-1] == "val_dice" and len(epoch_columns()) == 6 + len(BRANCHES)
    assert table["epoch"].tolist() == [1, 2]
    assert table["train_loss"].tolist() == [0.75, -0.25]  # a loss may be negative
    assert table[f"branch_{BRANCHES[0]}"].tolist() == [2, 0]
    assert table["val_dice"].iloc[0] == 0.5 and np.isnan(table["val_dice"].iloc[1])
    assert np.isnan(table["slices_per_second"].iloc[1])
    assert read_run_record(run.path)["status"] == "running"
    # written whole through calf._fs: no temporary file stays beside them
    assert sorted(p.name for p in run.path.iterdir()) == [".lock", "epochs.csv", "run.json"]


def test_a_fresh_run_has_a_header_only_epochs_file(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_epochs([])
    table = read_epochs(run.path)
    assert table.empty and tuple(table.columns) == epoch_columns()


@pytest.mark.parametrize(
    "text,message",
    [
        (None, r"epochs.csv: no such file$"),
        ("", r"epochs.csv: empty \(expected a header line\)$"),
        ("steps,seconds\n3,1.0\n", r"epochs.csv: missing column\(s\) epoch$"),
        ("epoch,steps\n1,3\n", r"epochs.csv: missing column\(s\) seconds$"),
        ("epoch,seconds\n1,1.0\n1,2.0\n", r"column epoch must hold distinct whole numbers"),
        ("epoch,seconds\n1.5,1.0\n", r"column epoch, row 2: not a whole number \(1.5\)$"),
        ("epoch,seconds\n1,1.0\n2,fast\n", r"column seconds, row 3: not a number \(fast\)$"),
        ("epoch,seconds\n1,-1.0\n", r"column seconds, row 2: negative \(-1.0\)$"),
        ("epoch,seconds\n1,\n", r"column seconds, row 2: empty$"),
        ("epoch,seconds,branch_ln\n1,1.0,2.5\n", r"column branch_ln, row 2: not a whole number"),
        ("epoch,seconds,val_dice\n1,1.0,good\n", r"column val_dice, row 2: not a number"),
    ],
)
def test_a_bad_epochs_file_is_one_line_naming_it(tmp_path, text, message):
    folder = tmp_path / "run"
    folder.mkdir()
    if text is not None:
        _epochs(folder, text)
    with pytest.raises(CalfError, match=message) as err:
        read_epochs(folder, columns=("seconds",))
    assert str(folder / "epochs.csv") in str(err.value)


def test_epochs_of_an_older_run_and_unknown_columns(tmp_path):
    # an older run without branch counts or val_dice; a column the suite does not write
    folder = _epochs(tmp_path, "epoch,train_loss,steps,seconds,note\n1,0.5,2,1.0,warm-up\n")
    table = read_epochs(folder)
    assert table["note"].tolist() == ["warm-up"] and table["seconds"].tolist() == [1.0]


def test_lock_removes_stale_temporary_files_only(tmp_path):
    folder = _run(tmp_path, {"status": "running", "params": {}})
    for name in (".checkpoint.pt.tmp-999", ".run.json.abc123.tmp", "keep.tmp"):
        (folder / name).write_bytes(b"torn")
    run = RunDir(folder)
    run.lock()
    run.unlock()
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "keep.tmp", "run.json"]
    # a second process is refused while the first holds the lock
    run.lock()
    try:
        with pytest.raises(CalfError, match="another calf train process is using it"):
            RunDir(folder).lock()
    finally:
        run.unlock()
