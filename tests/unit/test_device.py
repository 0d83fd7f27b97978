"""calf.device: the one set of devices training and evaluation accept, the autocast dtype
of each precision switch, and the deterministic-kernel switches."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from calf.device import (
    amp_dtype,
    check_device,
    describe_device,
    determinism,
    precision_name,
    resolve_device,
    seed_everything,
)
from calf.errors import CalfError


def test_importing_the_device_helpers_imports_no_torch():
    code = "import sys, calf.device; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("text", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_accepted_device_names(text):
    assert check_device(text) == text


@pytest.mark.parametrize("text", ["", "gpu", "CPU", "cuda:", "cuda:x", "mps", "cpu:0", " cpu",
                                  None, 0])
def test_other_device_names_are_refused_naming_the_option(text):
    with pytest.raises(CalfError, match=r"^--where .*: expected auto, cpu, cuda or cuda:N$"):
        check_device(text, "--where")
    with pytest.raises(CalfError, match="expected auto, cpu, cuda or cuda:N"):
        resolve_device(text)  # the same set, checked before torch is asked


def test_resolve_device_on_this_machine():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        for text in ("cuda", "cuda:0"):
            with pytest.raises(CalfError, match=f"^--device {text}: no CUDA device is available"):
                resolve_device(text)
    else:
        count = torch.cuda.device_count()
        assert resolve_device("cuda:0") == torch.device("cuda:0")
        with pytest.raises(CalfError, match=f"this machine has {count} CUDA device"):
            resolve_device(f"cuda:{count}")


def test_training_and_evaluation_accept_the_same_names():
    from calf.train import TrainConfig

    base = dict(stores=("s",), train_slices="t", out="o", model="unet", loss="bce")
    assert TrainConfig(**base, device="cuda:1").device == "cuda:1"  # checked, not resolved
    with pytest.raises(CalfError, match="--device 'gpu': expected auto, cpu, cuda or cuda:N"):
        TrainConfig(**base, device="gpu")


def test_autocast_dtype_of_each_precision():
    assert amp_dtype(torch.device("cpu"), "bf16") is None
    assert amp_dtype(torch.device("cpu"), "fp32") is None
    assert amp_dtype(torch.device("cuda"), "fp32") is None  # no CUDA call needed
    if torch.cuda.is_available():
        assert amp_dtype(torch.device("cuda"), "bf16") in (torch.bfloat16, torch.float16)
    with pytest.raises(CalfError, match="precision 'fp16': expected bf16 or fp32"):
        amp_dtype(torch.device("cpu"), "fp16")
    assert [precision_name(d) for d in (None, torch.bfloat16, torch.float16)] == [
        "fp32", "bf16", "fp16"]


def test_describe_the_cpu():
    threads = torch.get_num_threads()
    assert describe_device(torch.device("cpu")) == (
        f"cpu ({threads} thread{'s' if threads > 1 else ''})")


@pytest.mark.parametrize("deterministic,benchmark", [(True, False), (False, True)])
def test_cuda_determinism_switch_sets_cudnn_flags(deterministic, benchmark):
    # the flags are plain torch.backends settings: no GPU is needed to see them set
    cudnn = torch.backends.cudnn
    before = (cudnn.benchmark, cudnn.deterministic, torch.are_deterministic_algorithms_enabled())
    with determinism(torch.device("cuda"), deterministic):
        assert (cudnn.benchmark, cudnn.deterministic) == (benchmark, deterministic)
        assert torch.are_deterministic_algorithms_enabled() == before[2]  # cuDNN flags only
    assert (cudnn.benchmark, cudnn.deterministic,
            torch.are_deterministic_algorithms_enabled()) == before
    with determinism(torch.device("cpu"), deterministic):
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() == before[2]


def test_seed_everything_repeats_every_generator():
    import random

    import numpy as np

    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    seed_everything(7)
    first = draw()
    seed_everything(7)
    assert draw() == first
    seed_everything(8)
    assert draw() != first
    # numpy's global seed takes 32 bits: a larger seed wraps instead of failing
    seed_everything(2**32 + 7)
    wrapped = float(np.random.rand())
    seed_everything(7)
    assert wrapped == float(np.random.rand())
