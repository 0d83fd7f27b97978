import subprocess
import sys

import pytest

from calf.cli import COMMANDS, available

CONTRACT = {"synth", "download", "preprocess", "profile", "split", "train", "evaluate",
            "stats", "report", "mlflow-sync"}


def calf(*args):
    return subprocess.run(
        [sys.executable, "-m", "calf", *args], capture_output=True, text=True, timeout=120
    )


def test_contract_commands_are_registered():
    assert CONTRACT <= set(COMMANDS)


def test_top_level_help_lists_available_commands():
    out = calf("--help")
    assert out.returncode == 0
    for name in available():
        assert name in out.stdout


@pytest.mark.parametrize("name", available())
def test_every_available_command_has_help(name):
    out = calf(name, "--help")
    assert out.returncode == 0, out.stderr
    assert f"usage: calf {name}" in out.stdout


def test_unknown_command_fails():
    out = calf("nosuchcommand")
    assert out.returncode == 2
    assert "invalid choice: 'nosuchcommand'" in out.stderr


def test_import_calf_is_light():
    code = "import sys, calf, calf.cli, calf.errors; " \
           "print(sorted(m for m in ('torch', 'monai', 'pandas', 'nibabel', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_demo_prints_three_branches():
    out = calf("demo", "--slices", "2000")
    assert out.returncode == 0, out.stderr
    rows = out.stdout.strip().splitlines()[1:]
    assert len(rows) == 3
    branches = [row.split()[-1] for row in rows]
    assert branches == ["log10", "ln", "logit"]
