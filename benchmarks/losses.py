"""Forward + backward time of every loss, as a ratio to BCE-with-logits in the same run.

    .venv/bin/python benchmarks/losses.py [--batch 32] [--size 256] [--repeats 20] [--device cpu]

Targets (issue 2): CALF batch scope with pixel areas <= 1.3x BCE; the pixel-area statistic
>= 10x faster than the contour one. Prints a table; asserts nothing (timings are noisy).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from calf.imbalance import foreground_areas, moments
from calf.losses import CALFLoss, build_loss


def masks(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """Elliptic tumours of widely varied size, a third of the slices tumour-free."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    out = torch.zeros(batch, 1, size, size)
    for i in range(batch):
        if i % 3 == 0:
            continue
        cy, cx = (torch.rand(2, generator=g) * size * 0.5 + size * 0.25).tolist()
        ry, rx = (torch.rand(2, generator=g) * size * 0.2 + 2).tolist()
        out[i, 0] = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).float()
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_step(fn, device, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    y = masks(args.batch, args.size).to(device)
    x = torch.randn(y.shape, device=device, requires_grad=True)
    areas = foreground_areas(y).cpu().float()
    s, k = moments(areas, dim=0)
    print(
        f"# device {device}, threads {torch.get_num_threads()}, batch {tuple(y.shape)}, "
        f"batch S={s.item():.3f} K={k.item():.3f}"
    )

    losses = {"BCEWithLogitsLoss (torch)": torch.nn.BCEWithLogitsLoss()}
    for name in ("bce", "dice", "iou", "tversky", "focal", "combo"):
        losses[f"{name} (authors)"] = build_loss(name)
    for name in ("monai_dice", "monai_dicece", "monai_focal", "monai_tversky"):
        losses[name] = build_loss(name)
    for branch, (sk, ku) in {
        "fisher": (-2.0, 0.0),
        "logit": (-0.7, 0.0),
        "arcsine": (-0.2, 0.0),
        "log10": (1.5, 0.0),
        "ln": (0.7, 0.0),
        "bce_dice": (0.2, 1.0),
    }.items():
        losses[f"calf dataset scope [{branch}]"] = CALFLoss("dataset", sk, ku)
    losses["calf batch scope, pixels"] = CALFLoss("batch", area="pixels")
    try:
        import cv2  # noqa: F401

        losses["calf batch scope, contour"] = CALFLoss("batch", area="contour")
    except ImportError:
        print("# OpenCV missing: contour rows skipped")
    losses["calf_region (4x4, pixels)"] = build_loss("calf_region")

    def step(loss):
        def run():
            x.grad = None
            loss(x, y).backward()

        return run

    results = {name: time_step(step(loss), device, args.repeats) for name, loss in losses.items()}
    base = results["BCEWithLogitsLoss (torch)"]
    print(f"\n{'loss (forward + backward)':<32} {'ms/step':>9} {'x BCE':>7}")
    for name, seconds in results.items():
        print(f"{name:<32} {seconds * 1e3:>9.2f} {seconds / base:>7.2f}")

    # the statistic alone: areas of the batch and their moments
    stat_pixels = time_step(lambda: moments(foreground_areas(y, "pixels"), 0), device, args.repeats)
    print(f"\n{'imbalance statistic':<32} {'ms/batch':>9} {'x pixels':>9}")
    print(f"{'pixels (on device)':<32} {stat_pixels * 1e3:>9.3f} {1.0:>9.2f}")
    if "calf batch scope, contour" in losses:
        stat_contour = time_step(
            lambda: moments(foreground_areas(y, "contour"), 0), device, args.repeats
        )
        print(f"{'contour (OpenCV, host)':<32} {stat_contour * 1e3:>9.3f} "
              f"{stat_contour / stat_pixels:>9.2f}")

    calf_ratio = results["calf batch scope, pixels"] / base
    print(f"\ntarget: calf batch/pixels <= 1.3x BCE: {calf_ratio:.2f}x")
    if "calf batch scope, contour" in losses:
        print(f"target: pixels statistic >= 10x faster than contour: "
              f"{stat_contour / stat_pixels:.1f}x")


if __name__ == "__main__":
    main()
