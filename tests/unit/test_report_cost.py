"""`calf report cost`: the training cost table from run folders with hand-set cost records,
the fallback for runs without one, and bad records refused with one line naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from calf.cli import main
from calf.report.readme import _cost_section

GIB = 2**30


def _run(root: Path, key: str, cost: dict | None = None, *, epoch_seconds=(1.0, 1.0),
         seconds: float = 100.0, device: str = "cuda:0", status: str = "complete",
         record: str | None = None) -> Path:
    """A run folder as calf train leaves it: run.json (with ``cost`` when given, the schema
    of calf/train/cost.py) and epochs.csv."""
    run_dir = root / key
    run_dir.mkdir(parents=True)
    name = f"{device} (NVIDIA H200)" if device.startswith("cuda") else "cpu (2 threads)"
    body = {"status": status, "params": {"loss": key.split("/")[3]}, "seconds": seconds,
            "execution": {"device": device}, "device": name, "epochs_completed": len(epoch_seconds)}
    if cost is not None:
        body["cost"] = {"device": device.split(":")[0], "device_name": "NVIDIA H200",
                        "wall_s": seconds, "train_s": 0.0, "epochs": len(epoch_seconds),
                        "peak_memory_kind": "cuda_allocated", "energy_j": None, "attempts": 1,
                        "peak_memory_bytes": None} | cost
    (run_dir / "run.json").write_text(record if record is not None else json.dumps(body))
    pd.DataFrame({"epoch": range(1, len(epoch_seconds) + 1), "seconds": epoch_seconds}).to_csv(
        run_dir / "epochs.csv", index=False)
    (run_dir / "train.done").touch()
    return run_dir


@pytest.fixture
def tree(tmp_path):
    """Study s: focal x U-Net with cost records (CUDA, energy on some runs), focal x FPN whose
    BCE run predates the cost record."""
    root = tmp_path / "runs"
    runs = [
        _run(root, "s/focal/unet/bce/fold0", {"device_s": 3600.0, "device_s_per_epoch": 10.0,
                                              "peak_memory_bytes": GIB, "energy_j": 500_000.0}),
        _run(root, "s/focal/unet/bce/fold1", {"device_s": 1800.0, "device_s_per_epoch": 14.0,
                                              "peak_memory_bytes": 2 * GIB,
                                              "energy_j": 700_000.0}),
        _run(root, "s/focal/unet/calf/fold0", {"device_s": 7200.0, "device_s_per_epoch": 15.0,
                                               "peak_memory_bytes": 3 * GIB,
                                               "energy_j": 900_000.0}),
        _run(root, "s/focal/unet/calf/fold1", {"device_s": 3600.0, "device_s_per_epoch": 21.0,
                                               "peak_memory_bytes": GIB}),
        _run(root, "s/focal/unet/calf_region/fold0", {"device_s": 1800.0,
                                                      "device_s_per_epoch": 30.0}),
        # before run.json held cost: epochs.csv's seconds (mean 6) and run.json's 720 s
        _run(root, "s/focal/fpn/bce/fold0", epoch_seconds=(4.0, 6.0, 8.0), seconds=720.0),
        _run(root, "s/focal/fpn/calf/fold0", {"device_s": 1440.0, "device_s_per_epoch": 9.0}),
    ]
    return root, runs


def _cost(root: Path, runs, out: Path, *extra: str, study: str = "s") -> int:
    return main(["report", "cost", "--runs-root", str(root), "--study", study,
                 "--out-prefix", str(out), *extra, *map(str, runs)])


def test_cost_table_numbers_by_hand(tree, tmp_path):
    root, runs = tree
    out = tmp_path / "report" / "cost"
    assert _cost(root, runs, out) == 0
    table = pd.read_csv(f"{out}.csv").set_index(["model", "loss"])
    assert list(table.index) == [("unet", "bce"), ("unet", "calf"), ("unet", "calf_region"),
                                 ("fpn", "bce"), ("fpn", "calf")]
    bce, calf = table.loc[("unet", "bce")], table.loc[("unet", "calf")]
    assert bce["runs"] == 2 and bce["device"] == "cuda" and bce["unit"] == "GPU-s"
    assert bce["device_s_per_epoch"] == pytest.approx(12.0)  # (10 + 14) / 2
    assert bce["device_hours"] == pytest.approx(1.5)  # (3600 + 1800) / 3600
    assert bce["peak_memory_mib"] == pytest.approx(2048)  # the larger of 1 and 2 GiB
    assert bce["energy_kj"] == pytest.approx(1200) and bce["energy_runs"] == 2
    assert pd.isna(bce["ratio_vs_bce"]) and bce["fallback_runs"] == 0
    assert calf["device_s_per_epoch"] == pytest.approx(18.0)  # (15 + 21) / 2
    assert calf["ratio_vs_bce"] == pytest.approx(1.5)  # 18 / 12
    assert calf["diff_s_per_epoch_vs_bce"] == pytest.approx(6.0)
    assert calf["device_hours"] == pytest.approx(3.0) and calf["peak_memory_mib"] == 3072
    assert calf["energy_kj"] == pytest.approx(900) and calf["energy_runs"] == 1
    region = table.loc[("unet", "calf_region")]
    assert region["ratio_vs_bce"] == pytest.approx(2.5)  # 30 / 12
    assert region["diff_s_per_epoch_vs_bce"] == pytest.approx(18.0)

    md = Path(f"{out}.md").read_text()
    assert "## focal, U-Net" in md and "## focal, FPN" in md
    assert "| Loss | Runs | Device | GPU-s / epoch | GPU-hours | Peak memory (MiB) | " \
           "Energy (kJ) | vs BCE ratio | vs BCE Δ GPU-s / epoch |" in md
    assert "| BCE | 2 | NVIDIA H200 | 12.00 | 1.50 | 2048 | 1200.0 | – | – |" in md
    assert "| CALF | 2 | NVIDIA H200 | 18.00 | 3.00 | 3072 | 900.0 (1 of 2 runs) | 1.50× | " \
           "+6.00 |" in md
    assert "| Region-specific | 1 | NVIDIA H200 | 30.00 | 0.500 | – | – | 2.50× | +18.00 |" in md
    html = Path(f"{out}.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<td class=\"num\">1.50×</td>" in html


def test_runs_without_cost_fall_back_to_epochs_csv_and_run_seconds(tree, tmp_path):
    root, runs = tree
    out = tmp_path / "cost"
    assert _cost(root, runs, out) == 0
    table = pd.read_csv(f"{out}.csv").set_index(["model", "loss"])
    bce, calf = table.loc[("fpn", "bce")], table.loc[("fpn", "calf")]
    assert bce["fallback_runs"] == 1 and calf["fallback_runs"] == 0
    assert bce["device_s_per_epoch"] == pytest.approx(6.0)  # mean of 4, 6, 8
    assert bce["device_hours"] == pytest.approx(0.2)  # 720 s
    assert bce["device"] == "cuda" and bce["device_name"] == "NVIDIA H200"
    assert pd.isna(bce["peak_memory_mib"]) and pd.isna(bce["energy_kj"])
    assert calf["ratio_vs_bce"] == pytest.approx(1.5)  # 9 / 6
    assert calf["diff_s_per_epoch_vs_bce"] == pytest.approx(3.0)
    md = Path(f"{out}.md").read_text()
    fpn = md.split("## focal, FPN")[1]
    assert "| BCE† | 1 | NVIDIA H200 | 6.00 | 0.200 | – | – | – | – |" in fpn
    assert "† Runs without a cost record in run.json (BCE 1 of 1)" in fpn
    assert "†" not in md.split("## focal, FPN")[0].split("## focal, U-Net")[1]


def test_cpu_runs_name_cpu_seconds_and_unlike_devices_get_no_ratio(tmp_path):
    root = tmp_path / "runs"
    runs = [_run(root, "c/bulky/unet/bce/fold0", epoch_seconds=(2.0, 4.0), device="cpu"),
            _run(root, "c/bulky/unet/calf/fold0", {"device_s": 60.0, "device_s_per_epoch": 5.0,
                                                   "peak_memory_bytes": 512 * 2**20,
                                                   "peak_memory_kind": "cpu_rss"},
                 device="cpu"),
            _run(root, "c/bulky/unet/calf_region/fold0", {"device_s": 60.0,
                                                          "device_s_per_epoch": 8.0})]
    out = tmp_path / "cost"
    assert _cost(root, runs, out, "--calf-loss", "calf", "--calf-loss", "calf_region",
                 study="c") == 0
    table = pd.read_csv(f"{out}.csv").set_index("loss")
    assert table.loc["calf", "ratio_vs_bce"] == pytest.approx(5.0 / 3.0)  # mean(2, 4) = 3
    assert table.loc["calf", "unit"] == "CPU-s" and table.loc["calf", "peak_memory_mib"] == 512
    assert pd.isna(table.loc["calf_region", "ratio_vs_bce"])  # CUDA against BCE's CPU
    md = Path(f"{out}.md").read_text()
    assert "| BCE† | 1 | cpu (2 threads) | 3.00 | 0.0278 |" in md  # 100 s, 3 digits
    assert "Energy" not in md  # no run reported energy
    assert "device-s / epoch" in md  # the block mixes CPU and CUDA runs
    assert "BCE did not run for this dataset and model, or ran on another device" in md
    assert "peak resident memory of the training process" in md


@pytest.mark.parametrize(
    "key, kwargs, message",
    [
        ("s/focal/unet/dice/fold0", {"record": '{"status": "complete", '},
         "s/focal/unet/dice/fold0/run.json: not a readable run record JSON"),
        ("s/focal/unet/dice/fold0", {"cost": {"device_s": 1.0, "device_s_per_epoch": "fast"}},
         ("s/focal/unet/dice/fold0/run.json: cost.device_s_per_epoch 'fast': expected a "
          "number >= 0 or null")),
        ("s/focal/unet/dice/fold0", {"cost": {"device_s_per_epoch": 1.0}},
         "s/focal/unet/dice/fold0/run.json: cost has no device_s"),
        ("s/focal/unet/dice/fold0", {"status": "running"},
         "s/focal/unet/dice/fold0/run.json: run status is 'running', not 'complete'"),
        ("s/focal/unet/dice/fold0", {"epoch_seconds": ("x",)},
         "s/focal/unet/dice/fold0/epochs.csv: column seconds, row 2: not a number"),
        ("s/focal/unet/dice/run0", {}, "s/focal/unet/dice/run0: not a results path"),
        ("t/focal/unet/dice/fold0", {}, "run folders of several studies (s, t)"),
    ],
)
def test_bad_runs_are_refused_in_one_line_naming_the_file(tree, tmp_path, capsys, key,
                                                          kwargs, message):
    root, runs = tree
    bad = _run(root, key, **kwargs)
    out = tmp_path / "report" / "cost"
    assert _cost(root, [*runs, bad], out) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "report").exists()  # nothing written


def test_fallback_without_epochs_csv_names_it(tree, tmp_path, capsys):
    root, runs = tree
    (runs[5] / "epochs.csv").unlink()
    assert _cost(root, runs, tmp_path / "cost") != 0
    err = capsys.readouterr().err
    assert "s/focal/fpn/bce/fold0/epochs.csv: no such file" in err


def test_runs_of_another_study_are_refused(tree, tmp_path, capsys):
    root, runs = tree
    assert _cost(root, runs, tmp_path / "cost", study="t") != 0
    assert "--study t: run folders of study 's' given" in capsys.readouterr().err
    assert not list(tmp_path.glob("cost*"))


def test_readme_shows_the_cost_table_with_its_links(tree, tmp_path):
    root, runs = tree
    report = tmp_path / "report"
    assert _cost(root, runs, report / "s" / "cost") == 0
    lines = _cost_section("s", report)
    text = "\n".join(lines)
    assert text.startswith("### Training cost of study s")
    assert "#### focal, U-Net" in text
    assert "The cost also as [csv](s/cost.csv), [html](s/cost.html)." in text


def test_readme_without_the_cost_table_names_the_missing_file(tmp_path):
    from calf.errors import CalfError

    with pytest.raises(CalfError, match=r"s/cost\.md: no such file"):
        _cost_section("s", tmp_path)
