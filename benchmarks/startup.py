"""Start-up cost of a workflow job: importing torch and MONAI, with and without hiding the
optional dependencies MONAI would load (calf._lazy), each in a fresh interpreter.

    .venv/bin/python benchmarks/startup.py [--repeats 5]

Prints medians and the ratio measured in the same run (no asserts: timings are noisy).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "python (empty)": "pass",
    "import calf, calf.cli": "import calf, calf.cli",
    "import torch": "import torch",
    "import torch, monai (plain)": "import torch, monai",
    "import torch, monai (calf._lazy)": (
        "import torch; from calf._lazy import import_monai; import_monai()"
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.repeats):  # round-robin: load bursts hit every case alike
        for name, code in CASES.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"{'fresh interpreter':<36} {'median s':>9}")
    for name, seconds in medians.items():
        print(f"{name:<36} {seconds:>9.2f}")
    plain, lazy = medians["import torch, monai (plain)"], medians["import torch, monai (calf._lazy)"]
    print(f"\nMONAI's import with hidden optional deps: {lazy - medians['import torch']:.2f} s "
          f"vs {plain - medians['import torch']:.2f} s plain; whole start-up {lazy / plain:.2f}x")


if __name__ == "__main__":
    main()
