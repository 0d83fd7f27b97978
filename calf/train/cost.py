"""What a run costs (run.json ``cost``) and how long its process ran before training.

``CostMeter`` sums the run's attempts: wall and device seconds, the seconds inside
training steps and per epoch, the peak memory (CUDA allocations, or the process's peak RSS
on the CPU) and, where NVML reports it, the GPU's energy.
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from calf.device import describe_device


def nvml_energy_reader(device: torch.device) -> Callable[[], float | None] | None:
    """A reader of the total energy (mJ) NVML counts for the GPU of ``device``, or None
    on the CPU, without nvidia-ml-py (``pynvml``), or where the GPU does not report it
    (MIG slices, GPUs before Volta). Never raises. The counter is the whole GPU's, other
    processes on it included."""
    if device.type != "cuda":
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        props = torch.cuda.get_device_properties(device)
        uuid = str(props.uuid)
        try:
            handle = pynvml.nvmlDeviceGetHandleByUUID(
                uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
        except Exception:  # noqa: BLE001 - older drivers: by PCI address
            handle = pynvml.nvmlDeviceGetHandleByPciBusId_v2(
                f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0")
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception:  # noqa: BLE001 - energy is optional: any NVML failure means none
        return None

    def read() -> float | None:
        try:
            return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except Exception:  # noqa: BLE001
            return None

    return read


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux counts KiB


class CostMeter:
    """What a run costs (run.json ``cost``): this attempt's figures added to those of the
    earlier attempts (``previous``, their ``cost``; runs older than the record have none,
    and their wall seconds stand in for the device seconds).

    ``device_s`` is the seconds the run held its device (wall time x one GPU, or x the
    CPU process), in the unit of ``device_s_per_epoch``; ``cpu_s`` the training process's
    CPU seconds (user + system, all its threads; data-loading workers excluded). Peaks are
    the maximum over the attempts on the same kind of device (the CUDA peak is reset when
    the attempt starts; the CPU's peak RSS is the whole process's, earlier runs of a
    ``--run`` process included); ``energy_j`` and ``cpu_s`` are None unless every attempt
    measured them.
    """

    def __init__(self, device: torch.device, previous: dict[str, Any] | None,
                 previous_seconds: float, previous_attempts: int):
        self.device = device
        self.previous = previous if isinstance(previous, dict) else {}
        self.previous_attempts = previous_attempts
        self.previous_device_s = float(self.previous.get("device_s", previous_seconds) or 0.0)
        self.start_cpu = _cpu_seconds()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            self.name = torch.cuda.get_device_name(device)
        else:
            self.name = describe_device(device)
        self.energy = nvml_energy_reader(device)
        self.energy_start = self.energy() if self.energy is not None else None

    def record(self, wall_s: float, attempt_s: float, history: list[dict[str, Any]],
               attempts: int) -> dict[str, Any]:
        """The ``cost`` object now: ``wall_s`` is the run's (all attempts), ``attempt_s``
        this attempt's wall seconds, ``history`` the run's epoch rows."""
        cuda = self.device.type == "cuda"
        cpu_s = self.previous.get("cpu_s") if self.previous_attempts else 0.0
        if cpu_s is not None:
            cpu_s = round(float(cpu_s) + _cpu_seconds() - self.start_cpu, 3)
        train_s = sum(float(row["seconds"]) for row in history)
        epochs = len(history)
        kind = "cuda_allocated" if cuda else "cpu_rss"
        peak = torch.cuda.max_memory_allocated(self.device) if cuda else _peak_rss_bytes()
        if self.previous.get("peak_memory_kind") == kind and self.previous.get(
                "peak_memory_bytes") is not None:
            peak = max(peak, int(self.previous["peak_memory_bytes"]))
        energy = None
        now_mj = self.energy() if self.energy is not None else None
        earlier = self.previous.get("energy_j") if self.previous_attempts else 0.0
        if now_mj is not None and self.energy_start is not None and earlier is not None:
            energy = round(float(earlier) + (now_mj - self.energy_start) / 1000, 3)
        return {
            "device": self.device.type,
            "device_name": self.name,
            "wall_s": round(wall_s, 3),
            "device_s": round(self.previous_device_s + attempt_s, 3),
            "train_s": round(train_s, 3),
            "epochs": epochs,
            "device_s_per_epoch": round(train_s / epochs, 4) if epochs else None,
            "peak_memory_bytes": int(peak),
            "peak_memory_kind": kind,
            "energy_j": energy,
            "attempts": attempts,
            "cpu_s": cpu_s,
        }




def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``; None elsewhere): what the
    interpreter, the imports and the argument parsing took before training began."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 3)
    except (OSError, ValueError, IndexError):
        return None
