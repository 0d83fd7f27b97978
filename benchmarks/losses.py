"""Forward + backward time of every loss, as a ratio to BCE-with-logits in the same run.

    .venv/bin/python benchmarks/losses.py [--batch 32] [--size 256] [--repeats 20] [--device cpu]

Targets (issues 2 and 13): CALF batch scope with pixel areas <= 1.3x BCE and region CALF
<= 2x BCE, both as training builds them (``check_target=False``: the slice store's masks are
checked once, when the store is written); the pixel-area statistic >= 10x faster than the
contour one. Prints a table; asserts nothing (timings are noisy).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from calf.imbalance import contour_areas, foreground_areas, moments
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


def time_all(fns: dict, device, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each function, measured round-robin so that a burst
    of load on the machine hits every entry alike rather than one of them."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


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
    losses["calf batch, pixels, no check"] = CALFLoss("batch", check_target=False)
    try:
        import cv2  # noqa: F401

        losses["calf batch scope, contour"] = CALFLoss("batch", area="contour")
    except ImportError:
        print("# OpenCV missing: contour rows skipped")
    losses["calf_region (4x4, pixels)"] = build_loss("calf_region")
    losses["calf_region, no check"] = build_loss("calf_region", check_target=False)

    def step(loss):
        def run():
            x.grad = None
            loss(x, y).backward()

        return run

    results = time_all({name: step(loss) for name, loss in losses.items()}, device, args.repeats)
    base = results["BCEWithLogitsLoss (torch)"]
    print(f"\n{'loss (forward + backward)':<32} {'ms/step':>9} {'x BCE':>7}")
    for name, seconds in results.items():
        print(f"{name:<32} {seconds * 1e3:>9.2f} {seconds / base:>7.2f}")

    # the statistic alone: areas of the batch and their moments
    # the statistic alone, as the loss computes it: the areas of the batch, their moments
    # and the one host transfer that the branch choice needs
    statistic = {"pixels": lambda: moments(y.flatten(1).sum(1, dtype=torch.float64), 0)[0].item()}
    if "calf batch scope, contour" in losses:
        statistic["contour"] = lambda: moments(contour_areas(y), 0)[0].item()
    stat = time_all(statistic, device, args.repeats)
    stat_pixels = stat["pixels"]
    print(f"\n{'imbalance statistic':<32} {'ms/batch':>9} {'x pixels':>9}")
    for name, seconds in stat.items():
        print(f"{name:<32} {seconds * 1e3:>9.3f} {seconds / stat_pixels:>9.2f}")
    stat_contour = stat.get("contour", float("nan"))

    calf_ratio = results["calf batch, pixels, no check"] / base
    region_ratio = results["calf_region, no check"] / base
    print(f"\ntarget: calf batch/pixels (training: no check) <= 1.3x BCE: {calf_ratio:.2f}x")
    print(f"target: calf_region (training: no check) <= 2x BCE: {region_ratio:.2f}x")
    if "calf batch scope, contour" in losses:
        print(f"target: pixels statistic >= 10x faster than contour: "
              f"{stat_contour / stat_pixels:.1f}x")


if __name__ == "__main__":
    main()
