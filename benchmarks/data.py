"""Data-layer benchmark: the slice store against the authors' PNG pipeline, and friends.

Generates its own NIfTI cohort (``folder`` layout, gzipped, 1 mm affines) in a temp dir,
then measures in one run and prints a table of ratios (no asserts):

1. random mini-batches of 32 slices from the slice store (``SliceStore.batch``) versus the
   authors' pipeline on the same slices: one PNG per slice and mask written beforehand
   with PIL at the native resolution, then per batch PIL open, resize to the training
   size (bilinear; mask bilinear then > 0), to float tensors; target >= 10x;
2. ``calf.profile.profile`` (pixels) over the whole store versus only decoding the
   cohort's mask volumes with nibabel; target <= 1.3x (lower is better);
3. preprocessing throughput in image volumes per second with 1 and 2 workers;
4. the training data path (issue 13, item 3): slices/s of seeded random batches of 32 at
   the training size through ``calf.train.data``'s loader (``TrainingSlices``,
   ``EpochSampler``, ``make_loader``, as ``calf train`` builds them) with 0, 1, 2, ... CPU
   workers, tensors pinned where CUDA is available, and the workers needed to deliver
   twice a GPU training rate (``--gpu-rate``, default 5x the authors' implied U-Net rate).

Run: ``.venv/bin/python benchmarks/data.py [--cases 20 --shape 128 128 64 ...]``;
``--loader-only`` measures 4 alone.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from PIL import Image

from calf.datasets import discover
from calf.preprocess import PreprocessSettings, minmax_scale, preprocess, read_canonical
from calf.profile import profile
from calf.store import SliceStore
from calf.train.data import EpochSampler, TrainingSlices, make_loader

MODALITIES = ("t1", "t2", "flair")


def make_cohort(root: Path, cases: int, shape: tuple[int, int, int], seed: int) -> None:
    """Head-like ellipsoid volumes with an ellipsoidal tumour of random size per case."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n, dtype=np.float32) for n in shape), indexing="ij")
    head = (x / 0.85) ** 2 + (y / 0.95) ** 2 + (z / 0.9) ** 2 <= 1
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    for c in range(cases):
        folder = root / f"case{c:03d}"
        folder.mkdir(parents=True)
        centre = rng.uniform(-0.4, 0.4, size=3)
        radius = rng.uniform(0.08, 0.35, size=3)
        tumour = (
            ((x - centre[0]) / radius[0]) ** 2
            + ((y - centre[1]) / radius[1]) ** 2
            + ((z - centre[2]) / radius[2]) ** 2
        ) <= 1
        tumour &= head
        seg = np.where(tumour, rng.choice([1, 2, 4]), 0).astype(np.uint8)
        nib.save(nib.Nifti1Image(seg, affine), folder / "seg.nii.gz")
        for k, modality in enumerate(MODALITIES):
            noise = rng.normal(0, 20, size=shape).astype(np.float32)
            img = np.where(head, 300 + 100 * k + noise, 0) + np.where(tumour, 200 - 150 * k, 0)
            nib.save(nib.Nifti1Image(img.astype(np.int16), affine), folder / f"{modality}.nii.gz")


def write_pngs(cases, png_root: Path, scaling: str) -> dict[tuple[str, str, int], Path]:
    """The authors' intermediate: one PNG per scaled image slice and per mask slice."""
    paths = {}
    for case in cases:
        mask = read_canonical(case.mask) > 0
        for z in range(mask.shape[2]):
            p = png_root / f"{case.case_id}_mask_{z:03d}.png"
            Image.fromarray(mask[:, :, z].astype(np.uint8) * 255).save(p)
            paths[(case.case_id, "mask", z)] = p
        for modality in MODALITIES:
            vol = np.rint(minmax_scale(read_canonical(case.images[modality]), scaling))
            vol = vol.astype(np.uint8)
            for z in range(vol.shape[2]):
                p = png_root / f"{case.case_id}_{modality}_{z:03d}.png"
                Image.fromarray(vol[:, :, z]).save(p)
                paths[(case.case_id, modality, z)] = p
    return paths


def png_batch(keys, paths, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per slice: PIL open, resize, to float tensor; then stack (the authors' loader)."""
    images, masks = [], []
    for case_id, modality, z in keys:
        img = Image.open(paths[(case_id, modality, z)]).resize((size, size), Image.BILINEAR)
        msk = Image.open(paths[(case_id, "mask", z)]).resize((size, size), Image.BILINEAR)
        images.append(torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0))
        masks.append(torch.from_numpy((np.asarray(msk) > 0).astype(np.float32)))
    return torch.stack(images).unsqueeze(1), torch.stack(masks).unsqueeze(1)


def interleaved(first, second, rounds: int) -> tuple[float, float]:
    """Median wall times (s) of two callables run alternately ``rounds`` times each.

    Alternating them, and taking medians, keeps the ratio fair on a machine whose load
    changes during the run.
    """
    a, b = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        first()
        t1 = time.perf_counter()
        second()
        b.append(time.perf_counter() - t1)
        a.append(t1 - t0)
    return statistics.median(a), statistics.median(b)


def loader_rates(
    store: SliceStore, workers: list[int], batches: int, batch_size: int, seed: int
) -> tuple[dict[int, float], dict[int, float], bool]:
    """Slices/s of the training loader per worker count, after its first batch (the
    workers' start-up, timed apart: seconds to the first batch), and whether pinned."""
    pin = torch.cuda.is_available()
    data = TrainingSlices([store], [np.arange(len(store))])
    rates, first = {}, {}
    for n in workers:
        sampler = EpochSampler(len(data), batch_size, seed, max_batches=batches + 1)
        t0 = time.perf_counter()
        loader = make_loader(data, sampler, n, pin, seed)
        it = iter(loader)
        x, y = next(it)
        t1 = time.perf_counter()
        slices = 0
        for x, y in it:
            slices += len(x)
        rates[n] = slices / (time.perf_counter() - t1)
        first[n] = t1 - t0
        assert x.dtype == torch.float32 and x.is_pinned() == pin
        del it, loader
    return rates, first, pin


def print_loader(store, args) -> None:
    from calf.report.reference import implied_rate

    gpu_rate = args.gpu_rate or 5 * implied_rate("unet")[1]
    counts = sorted({0, 1, 2, *range(3, (os.cpu_count() or 2) + 1)})
    rates, first, pin = loader_rates(store, counts, args.loader_batches, args.batch_size,
                                     args.seed)
    print(f"\ntraining loader (calf.train.data.make_loader), random batches of "
          f"{args.batch_size} at {store.size}x{store.size} from {len(store)} slices, "
          f"{args.loader_batches} batches per row; "
          + ("tensors pinned" if pin else "not pinned: no CUDA"))
    print(f"{'workers':>7}  {'slices/s':>9}  {'per worker':>10}  {'first batch (s)':>15}")
    for n in counts:
        per = rates[n] / n if n else rates[n]
        print(f"{n:>7}  {rates[n]:>9.0f}  {per:>10.0f}  {first[n]:>15.2f}")
    # one worker alone is the per-worker rate free of contention with the others
    per_worker = rates[1]
    need = math.ceil(2 * gpu_rate / per_worker)
    print(f"GPU training rate {gpu_rate:.0f} slices/s (--gpu-rate; default 5x the authors' "
          f"U-Net {implied_rate('unet')[1]:.0f}): twice it, {2 * gpu_rate:.0f} slices/s, "
          f"needs {need} worker(s) at {per_worker:.0f} slices/s each "
          f"(this machine: {os.cpu_count()} CPUs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--shape", type=int, nargs=3, default=(240, 240, 155),
                        help="volume grid (default: the BraTS grid)")
    parser.add_argument("--size", type=int, default=256, help="training size")
    parser.add_argument("--batches", type=int, default=40, help="random mini-batches timed")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gpu-rate", type=float, default=None,
                        help="GPU training slices/s the loader must feed twice over "
                        "(default: 5x the authors' implied U-Net rate)")
    parser.add_argument("--loader-batches", type=int, default=60,
                        help="batches timed per worker count (item 4)")
    parser.add_argument("--loader-only", action="store_true",
                        help="build the store and measure the training loader only")
    parser.add_argument(
        "--keep",
        metavar="DIR",
        default=None,
        help="work in DIR (must not exist) and keep it; default: a temp dir",
    )
    args = parser.parse_args()
    if args.keep is not None:
        Path(args.keep).mkdir(parents=True)
    torch.set_num_threads(1)  # the loader of one training process; fair to both sides

    with tempfile.TemporaryDirectory(prefix="calf-bench-data-") as tmp:
        root = Path(args.keep or tmp)
        cohort = root / "cohort"
        t0 = time.perf_counter()
        make_cohort(cohort, args.cases, tuple(args.shape), args.seed)
        print(
            f"cohort: {args.cases} cases of {tuple(args.shape)} x {len(MODALITIES)} "
            f"modalities, written in {time.perf_counter() - t0:.1f} s"
        )
        cases = discover("folder", cohort, modalities=MODALITIES)
        settings = PreprocessSettings(size=args.size)
        n_volumes = len(cases) * len(MODALITIES)

        # 3. preprocessing throughput: a fresh store per run, 1 and 2 workers alternately
        outs = iter(range(1000))

        def build(workers: int):
            return lambda: preprocess(
                cases, root / f"store-{next(outs)}", settings, workers=workers, progress=False
            )

        if args.loader_only:
            preprocess(cases, root / "store-0", settings, workers=2, progress=False)
            print_loader(SliceStore(root / "store-0"), args)
            return
        t_w1, t_w2 = interleaved(build(1), build(2), rounds=2)
        throughput = {1: n_volumes / t_w1, 2: n_volumes / t_w2}
        store = SliceStore(root / "store-0")

        # 1. random mini-batches: store versus per-slice PNGs
        png_root = root / "png"
        png_root.mkdir()
        paths = write_pngs(cases, png_root, settings.scaling)
        rng = np.random.default_rng(args.seed)
        batches = [
            rng.choice(len(store), size=args.batch_size, replace=False) for _ in range(args.batches)
        ]
        keys = [
            list(
                zip(
                    store.index["case_id"].to_numpy()[b],
                    store.index["modality"].to_numpy()[b],
                    store.index["slice"].to_numpy()[b],
                )
            )
            for b in batches
        ]
        # first pass: store pages not yet touched by this process; then per batch,
        # store and PNG alternately, 3 passes, medians
        t0 = time.perf_counter()
        for b in batches:
            store.batch(b)
        t_store_first = (time.perf_counter() - t0) / len(batches)
        pairs = [(b, k) for _ in range(3) for b, k in zip(batches, keys)]
        times = [
            interleaved(lambda: store.batch(b), lambda: png_batch(k, paths, args.size), 1)
            for b, k in pairs
        ]
        t_store = statistics.median(t for t, _ in times)
        t_png = statistics.median(t for _, t in times)
        x_store, y_store = store.batch(batches[0])
        x_png, y_png = png_batch(keys[0], paths, args.size)
        mask_agreement = float((y_store == y_png).float().mean())
        image_gap = float((x_store - x_png).abs().max()) * 255

        # 2. profile (pixels, from the index) versus decoding the mask volumes
        profile([store.path], root / "warm.json")  # imports warm

        def decode():
            return [np.asanyarray(nib.load(c.mask).dataobj) for c in cases]

        t_profile, t_decode = interleaved(
            lambda: profile([store.path], root / "p.json", force=True), decode, rounds=5
        )
        t_profile_fig, t_decode_fig = interleaved(
            lambda: profile([store.path], root / "p.json", figure=root / "h.png", force=True),
            decode,
            rounds=3,
        )
        print_loader(store, args)  # 4. the training loader, while the store exists

    rows = [
        ("store batch of 32, first pass (ms)", f"{t_store_first * 1e3:.2f}", ""),
        ("store batch of 32 (ms)", f"{t_store * 1e3:.2f}", ""),
        ("PNG pipeline batch of 32 (ms)", f"{t_png * 1e3:.2f}", ""),
        ("speed-up store / PNG", f"{t_png / t_store:.1f}x", ">= 10x"),
        ("mask pixels equal, store vs PNG", f"{mask_agreement:.4f}", "(same slices)"),
        ("max image difference, store vs PNG (grey levels)", f"{image_gap:.1f}", ""),
        ("decode all mask volumes, nibabel (s)", f"{t_decode:.3f}", ""),
        ("calf profile, pixels, JSON (s)", f"{t_profile:.3f}", ""),
        ("calf profile, pixels, JSON + figure (s)", f"{t_profile_fig:.3f}", ""),
        ("profile / decode, JSON", f"{t_profile / t_decode:.2f}x", "<= 1.3x"),
        ("profile / decode, JSON + figure", f"{t_profile_fig / t_decode_fig:.2f}x", "<= 1.3x"),
        ("preprocess, 1 worker (volumes/s)", f"{throughput[1]:.2f}", ""),
        ("preprocess, 2 workers (volumes/s)", f"{throughput[2]:.2f}", ""),
        ("speed-up 2 / 1 workers", f"{throughput[2] / throughput[1]:.2f}x", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'value':>10}  target")
    print("-" * (width + 22))
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>10}  {target}")
    print(
        f"\n{len(store)} image slices of {args.size}x{args.size}; "
        f"{args.batches} random batches of {args.batch_size}; torch threads 1; "
        f"volumes = image volumes ({n_volumes})"
    )


if __name__ == "__main__":
    main()
