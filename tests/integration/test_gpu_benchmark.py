"""``benchmarks/gpu.py --device cpu --quick``: the GPU check's smoke test on the CPU.

One real run (module fixture, a subprocess as CI runs it); the tests read its gpu.json and
gpu.md. Timings are never asserted, only their structure and the ratios' arithmetic.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from calf.report.reference import implied_rate

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu.py"
MODELS = ("unet", "deeplabv3", "fpn")
MODES = ("fp32", "bf16", "bf16_cl", "bf16_cl_fused", "bf16_cl_compile")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu") / "tmp"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    argv = [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out)]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=300,
                          env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"json": json.loads((out / "gpu.json").read_text()),
            "md": (out / "gpu.md").read_text(), "stdout": done.stdout}


def test_report_header(run):
    report = run["json"]
    assert report["complete"] is True and report["quick"] is True
    env = report["environment"]
    assert env["type"] == "cpu" and env["torch"] == torch.__version__
    assert env["name"] and env["cpus"] == len(os.sched_getaffinity(0))
    assert report["created"].endswith("+00:00")
    assert set(report["sections"]) == {"training", "losses", "resume", "loader"}
    for name, section in report["sections"].items():
        assert section["status"] == "ok", (name, section["status"])
    assert run["stdout"].strip() == run["md"].strip()  # the Markdown is what it prints


def test_training_rows_and_ratios(run):
    section = run["json"]["sections"]["training"]
    assert section["settings"] == {"size": 64, "width": 0.125, "batch": 4, "warmup_steps": 1,
                                   "timed_steps": 2, "blocks": 1, "loss": "calf (batch scope)"}
    rows = {(r["model"], r["mode"]): r for r in section["rows"]}
    assert set(rows) == {(m, k) for m in MODELS for k in MODES}
    for model in MODELS:
        low, high = implied_rate(model)
        assert section["authors"][model] == pytest.approx({"low": low, "high": high})
        for mode in ("fp32", "bf16", "bf16_cl"):
            r = rows[model, mode]
            assert r["status"] == "ok", r
            assert math.isfinite(r["slices_per_s"]) and r["slices_per_s"] > 0
            assert r["x_authors_low"] == pytest.approx(r["slices_per_s"] / low)
            assert r["x_authors_high"] == pytest.approx(r["slices_per_s"] / high)
            assert r["peak_memory_mib"] is None  # CPU: no CUDA allocator
            assert r["parameters_finite"] is True and r["parameters"] > 0
        assert rows[model, "bf16_cl_fused"]["status"] == "skipped: CUDA only"
        assert "slices_per_s" not in rows[model, "bf16_cl_fused"]
        assert rows[model, "bf16_cl_compile"]["status"] == "skipped: --quick"
        best = max((rows[model, m] for m in ("fp32", "bf16", "bf16_cl")),
                   key=lambda r: r["slices_per_s"])
        assert section["best"][model]["slices_per_s"] == best["slices_per_s"]
    # the same network in every mode: one parameter count per model
    assert rows["unet", "fp32"]["parameters"] == rows["unet", "bf16_cl"]["parameters"]
    goal = section["goal"]
    assert goal["target_slices_per_s"] == pytest.approx(5 * implied_rate("unet")[1])
    best_bf16 = max(rows["unet", "bf16"]["slices_per_s"], rows["unet", "bf16_cl"]["slices_per_s"])
    assert goal["slices_per_s"] == best_bf16
    assert goal["reached"] is (best_bf16 >= goal["target_slices_per_s"])


def test_loss_section_ratios(run):
    section = run["json"]["sections"]["losses"]
    assert section["shape"] == [4, 1, 64, 64]
    rows = {r["loss"]: r for r in section["rows"]}
    assert set(rows) == {"bce_torch", "calf_batch_pixels", "calf_region"}
    assert rows["bce_torch"]["x_bce"] == 1.0
    for key, ratio in (("calf_batch_pixels", "calf_x_bce"), ("calf_region", "region_x_bce")):
        assert rows[key]["ms"] > 0
        assert rows[key]["x_bce"] == pytest.approx(rows[key]["ms"] / rows["bce_torch"]["ms"])
        assert section[ratio] == pytest.approx(rows[key]["x_bce"])
    stat = {r["statistic"]: r for r in section["statistic"]}
    assert stat["pixels"]["x_pixels"] == 1.0
    pytest.importorskip("cv2")
    assert section["contour_status"] == "ok"
    contour, pixels = stat["contour"], stat["pixels"]
    assert contour["x_pixels"] == pytest.approx(contour["ms"] / pixels["ms"])
    assert section["contour_x_pixels"] == pytest.approx(stat["contour"]["x_pixels"])


def test_sigterm_resume_is_bit_exact_on_the_cpu(run):
    section = run["json"]["sections"]["resume"]
    assert section["bit_exact_expected"] is True
    assert section["settings"]["epochs"] == 2 and section["settings"]["steps_per_epoch"] == 6
    assert [r["model"] for r in section["rows"]] == list(MODELS)
    for r in section["rows"]:
        assert r["sigterm_sent"] is True and r["stopped_exit"] == 75, r
        assert r["checkpoint_after_stop"] is True
        # two steps of 0.2 s after epoch 1's checkpoint: inside epoch 2 (or just after epoch 1)
        assert r["stopped_at"].startswith(("epoch 2, step ", "after epoch 1")), r["stopped_at"]
        assert r["resumed_exit"] == 0 and r["status"] == "complete" and r["attempts"] == 2
        assert r["reference_exit"] == 0 and r["epochs_completed"] == 2
        assert len(r["losses"]) == 2 and all(math.isfinite(v) for v in r["losses"])
        assert r["losses_finite"] is True and r["losses_equal"] is True
        assert r["losses"] == r["reference_losses"]
        assert r["checkpoint"] is True and r["bit_exact"] is True and r["max_abs_diff"] == 0.0
        assert r["ok"] is True and r["problem"] is None
        # the resumed run's cost record adds up both attempts; the CPU has no energy counter
        cost = r["cost"]
        assert cost["attempts"] == 2 and cost["peak_memory_kind"] == "cpu_rss"
        assert cost["peak_memory_bytes"] > 0 and cost["energy_j"] is None
        assert cost["device_s"] >= cost["train_s"] > 0


def test_loader_uses_the_job_workers_and_compares_to_training(run):
    report = run["json"]
    section = report["sections"]["loader"]
    granted = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())["cluster"]["gpu_job"][
        "cpus_per_task"]
    assert granted == 8 and section["cpus_granted"] == granted
    used = min(granted, len(os.sched_getaffinity(0)))
    assert section["cpus_used"] == used
    assert section["workers"] == max(1, min(8, used - 1))  # calf.train.build.default_workers
    assert section["pinned"] is False  # CPU: nothing to pin for
    assert section["size"] == 64 and section["batch"] == 4 and section["batches_timed"] == 20
    assert section["slices_per_s"] > 0
    best = max(r["slices_per_s"] for r in report["sections"]["training"]["rows"]
               if r["status"] == "ok")
    assert section["best_training_slices_per_s"] == best
    assert section["x_training"] == pytest.approx(section["slices_per_s"] / best)
    assert section["gpu_waits_for_data"] is (section["x_training"] < 1)
    assert section["goal_met"] is (section["x_training"] >= 2)


def test_markdown_has_the_table_rows(run):
    md = run["md"]
    for heading in ("## 1. Training throughput: ok", "## 2. Loss steps: ok",
                    "## 3. `calf train`: SIGTERM and resume: ok", "## 4. Data loader: ok"):
        assert heading in md
    lines = md.splitlines()
    for model in MODELS:
        for label in ("fp32", "bf16 autocast", "bf16 + channels-last"):
            assert any(ln.startswith(f"| {model} | {label} | ") and ln.endswith("| ok |")
                       for ln in lines), (model, label)
        fused = f"| {model} | bf16 + channels-last + fused Adam |  |  |  | skipped: CUDA only |"
        assert fused in md
        assert any(ln.startswith(f"| {model} | exit 75 | ") and "| bit-exact | " in ln
                   and ln.endswith(" (cpu_rss), none |") for ln in lines), model
    assert any(ln.startswith("| torch BCEWithLogitsLoss | ") and ln.endswith(" | 1.00 |")
               for ln in lines)
    assert "Goal unet in bf16 >= 5x the authors' high implied rate" in md


def test_bad_budget_is_refused_without_output(tmp_path):
    out = tmp_path / "out"
    argv = [sys.executable, str(SCRIPT), "--device", "cpu", "--budget-s", "0", "--out", str(out)]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "gpu.py: error: --budget-s 0.0: expected a positive number of seconds")
    assert not out.exists()


@pytest.mark.parametrize("script", ["gpu.sh", "gpu_wheels.sh"])
def test_shell_scripts_parse(script):
    done = subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / script)], check=False,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
