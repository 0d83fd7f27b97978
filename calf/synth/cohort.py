"""Generate a synthetic cohort in memory and write it, atomically, in a release's layout.

Determinism: everything follows from ``seed``. The cohort's tumour sizes are drawn
first (stratified, see ``calf.synth.presets``), then each exam draws from its own child
generator (``numpy.random.SeedSequence(seed).spawn``), so the arrays are identical
for the same arguments on any machine with the same numpy.

Geometry: the volume covers the 240 x 240 x 155 mm field of view of the BraTS/SRI24
space, so voxels are 1 mm at 240 x 240 x 155 and proportionally larger at the small
default grid; the affine is RAS with the volume's centre at the world origin.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

from calf._fs import atomic_dir, json_text
from calf.errors import CalfError
from calf.synth import layouts, phantom
from calf.synth.presets import PRESETS, Preset

FIELD_OF_VIEW_MM = (240.0, 240.0, 155.0)
SHAPE_LIMITS = (8, 1024)
PROVENANCE_FILE = "calf_synth.json"


@dataclass
class Exam:
    """One synthetic exam: its file names and its volumes (release labels in ``mask``)."""

    files: layouts.ExamFiles
    images: dict[str, np.ndarray]
    mask: np.ndarray
    expert_mask: np.ndarray | None
    brain_mask: np.ndarray | None


def affine_for(shape: Sequence[int]) -> np.ndarray:
    """RAS affine covering FIELD_OF_VIEW_MM, the volume centre at the origin."""
    spacing = np.array(FIELD_OF_VIEW_MM) / np.array(shape, dtype=float)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2.0 * spacing
    return affine


def _stratified(rng: np.random.Generator, n: int, median: float, spread: float) -> np.ndarray:
    """n log-normal draws, one per quantile stratum, in random order."""
    u = (rng.permutation(n) + rng.uniform(0.15, 0.85, n)) / n
    z = np.array([NormalDist().inv_cdf(float(q)) for q in u])
    return median * np.exp(spread * z)


def resolve_preset(preset: str | Preset) -> Preset:
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise CalfError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    return PRESETS[preset]


def check_arguments(layout: str, n_cases: int, shape: Sequence[int]) -> tuple[int, int, int]:
    """Validate layout, case count and grid; the grid as a tuple of three ints."""
    if layout not in layouts.LAYOUTS:
        raise CalfError(f"unknown layout {layout!r}; known: {', '.join(layouts.LAYOUTS)}")
    if int(n_cases) < 1:
        raise CalfError(f"the number of cases must be at least 1, got {n_cases}")
    grid = tuple(int(n) for n in shape)
    lo, hi = SHAPE_LIMITS
    if len(grid) != 3 or not all(lo <= n <= hi for n in grid):
        raise CalfError(
            f"shape must be three voxel counts between {lo} and {hi}, got {tuple(shape)}"
        )
    return grid  # type: ignore[return-value]


def synthesize(
    layout: str,
    preset: str | Preset,
    n_cases: int,
    shape: Sequence[int],
    seed: int,
    *,
    images: bool = True,
) -> Iterator[Exam]:
    """The cohort's exams, one at a time (baselines and follow-ups per the layout).

    ``images=False`` skips the MR volumes (``Exam.images`` stays empty) for a quick look
    at the masks, which are the same either way.
    """
    spec = resolve_preset(preset)
    grid = check_arguments(layout, n_cases, shape)
    plan = layouts.exam_plan(layout, n_cases)
    rng = np.random.default_rng(seed)
    radii = np.minimum(_stratified(rng, n_cases, spec.radius, spec.radius_spread), 0.9)
    heights = np.minimum(_stratified(rng, n_cases, spec.half_height, spec.half_height_spread), 1.0)
    children = np.random.SeedSequence(seed).spawn(n_cases)
    label_of = np.array((0, *layouts.LABELS[layout]), dtype=np.uint8)
    subjects: dict[int, tuple[phantom.Anatomy, tuple[float, ...]]] = {}
    for j, (patient, visit) in enumerate(plan):
        exam_rng = np.random.default_rng(children[j])
        if patient not in subjects:  # follow-ups keep the anatomy and the tumour's site
            anatomy = phantom.random_anatomy(exam_rng)
            site = tuple(
                float(v) for v in exam_rng.uniform((0, 0, -1, 0), (2 * np.pi, 1, 1, np.pi))
            )
            subjects[patient] = (anatomy, site)
        anatomy, (angle, reach, lift, yaw) = subjects[patient]
        radius, half_height = float(radii[j]), float(heights[j])
        offset = max(0.0, 0.75 - radius) * np.sqrt(reach)
        centre = (
            offset * np.cos(angle),
            offset * np.sin(angle),
            lift * spec.z_jitter * max(0.0, 0.95 - half_height),
        )
        tumour = phantom.Tumour(
            centre=centre,
            radius=radius,
            elongation=float(exam_rng.uniform(0.8, 1.0)),
            half_height=half_height,
            z_power=spec.z_power,
            yaw=yaw,
            lumpiness=spec.lumpiness,
            texture_seed=int(exam_rng.integers(2**31)),
        )
        skull = layout in layouts.WITH_SKULL
        if images:
            rendered = phantom.render(grid, anatomy, tumour, exam_rng, skull=skull)
            codes, brain, volumes = rendered.labels, rendered.brain, rendered.images
        else:
            _, brain = phantom.tissue_map(grid, anatomy, skull)
            codes, volumes = phantom.tumour_labels(grid, anatomy, tumour, brain), {}
        mask = label_of[codes]
        if layout in layouts.MASK_SLICES:
            mask = _keep_largest_slices(mask, layouts.MASK_SLICES[layout])
        files = layouts.exam_files(layout, patient, visit)
        yield Exam(
            files=files,
            images={m: volumes[m] for m in layouts.SEQUENCES[layout] if m in volumes},
            mask=mask,
            expert_mask=(
                _corrected(mask, int(label_of[phantom.NECROSIS]), int(label_of[phantom.ENHANCING]))
                if files.expert_mask
                else None
            ),
            brain_mask=brain.astype(np.uint8) if files.brain_mask else None,
        )


def _keep_largest_slices(mask: np.ndarray, count: int) -> np.ndarray:
    """Only the axial slice of largest tumour area and its neighbours keep their labels."""
    areas = (mask > 0).sum(axis=(0, 1))
    centre = int(np.argmax(areas))
    start = min(max(centre - count // 2, 0), max(mask.shape[2] - count, 0))
    out = np.zeros_like(mask)
    out[:, :, start : start + count] = mask[:, :, start : start + count]
    return out


def _corrected(mask: np.ndarray, necrosis: int, enhancing: int) -> np.ndarray:
    """An "expert-corrected" version of an automated mask: enhancing voxels next to the
    necrosis (within an axial slice) relabelled as necrosis. The whole tumour (label > 0)
    stays as it is, so a preset's statistics do not depend on the segmentation chosen."""
    from scipy import ndimage

    grown = ndimage.binary_dilation(mask == necrosis, structure=np.ones((3, 3, 1), dtype=bool))
    return np.where(grown & (mask == enhancing), np.uint8(necrosis), mask).astype(mask.dtype)


def _save(array: np.ndarray, path: Path, affine: np.ndarray) -> None:
    import nibabel as nib

    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))


def write_cohort(
    layout: str,
    root: str | os.PathLike[str],
    preset: str | Preset = "moderate",
    n_cases: int = 10,
    shape: Sequence[int] = (64, 64, 32),
    seed: int = 0,
    force: bool = False,
) -> list[str]:
    """Write a synthetic cohort into ``root`` in ``layout``; return the IDs of its cases
    (the exams written with a mask, those an adapter finds), sorted. ``n_cases`` counts
    exams, so a UPENN-GBM cohort has fewer cases than ``n_cases`` (its ``_21``
    follow-ups have images only).

    An existing ``root`` is replaced when it is empty or an earlier cohort (it holds
    ``calf_synth.json``), or with ``force``; any other folder is refused. The cohort is
    built beside it and takes its place at the end, so a failure leaves nothing behind.
    """
    spec = resolve_preset(preset)
    grid = check_arguments(layout, n_cases, shape)
    target = Path(root).expanduser()
    affine = affine_for(grid)
    case_ids: list[str] = []
    with atomic_dir(target, owned_by=PROVENANCE_FILE, force=force) as staging:
        for exam in synthesize(layout, spec, n_cases, grid, seed):
            for modality, rel in exam.files.images.items():
                _save(exam.images[modality], staging / rel, affine)
            if exam.files.mask is None:  # an exam the release gives no mask (UPENN _21)
                continue
            _save(exam.mask, staging / exam.files.mask, affine)
            if exam.expert_mask is not None and exam.files.expert_mask:
                _save(exam.expert_mask, staging / exam.files.expert_mask, affine)
            if exam.brain_mask is not None and exam.files.brain_mask:
                _save(exam.brain_mask, staging / exam.files.brain_mask, affine)
            case_ids.append(exam.files.case_id)
        provenance = {
            "layout": layout,
            "dataset": layouts.DATASET_OF[layout],
            "preset": spec.name,
            "expected_branch": None if layout in layouts.MASK_SLICES else spec.branch,
            "n_cases": int(n_cases),
            "shape": list(grid),
            "seed": int(seed),
            "case_ids": sorted(case_ids),
        }
        (staging / PROVENANCE_FILE).write_text(json_text(provenance))
    return sorted(case_ids)
