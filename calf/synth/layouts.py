"""The file names, IDs, label sets and exam structure of each release, for writing.

Each layout reproduces its release's folder layout exactly as the adapters in
``calf.datasets`` read it (see their module docstrings for the real releases):

- ``upenn_gbm``: ``images_structural/UPENN-GBM-00001_11/UPENN-GBM-00001_11_{T1,T1GD,T2,FLAIR}.nii.gz``,
  ``automated_segm/UPENN-GBM-00001_11_automated_approx_segm.nii.gz`` for every ``_11``
  baseline and ``images_segm/UPENN-GBM-00001_11_segm.nii.gz`` (expert: sub-regions
  relabelled, same whole tumour) for every third baseline; every fourth exam is a ``_21``
  follow-up of the patient before it, written without a mask, as in the real release
  (masks for baselines only), so the adapter skips it. Labels {0, 1, 2, 4}.
- ``ucsf_pdgm``: ``UCSF-PDGM-0001_nifti/UCSF-PDGM-0001_{T1,T1c,T2,FLAIR,tumor_segmentation,
  brain_segmentation}.nii.gz``; every fifth exam a follow-up ``UCSF-PDGM-0004_FU060d_nifti``.
  Labels {0, 1, 2, 4}.
- ``brats2021``: ``BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz``, labels {0, 1, 2, 4}.
- ``brats2023``: ``BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz``; every
  fourth exam the ``-001`` timepoint of the patient before it. Labels {0, 1, 2, 3}.
- ``lgg_1p19q``: ``NiFTiSegmentationsEdited/LGG-101/LGG-101_{T1,T2}.nii.gz`` (underscore)
  and ``LGG-101-Segmentation.nii.gz`` (hyphen), the release's real names,
  T1 post-contrast, not skull-stripped, mask {0, 1} on three axial slices only (the one of
  largest tumour area and its neighbours), as in the release.
- ``folder``: ``case-001/{t1,t1c,t2,flair,seg}.nii.gz``, mask {0, 1}.

No numpy here: the CLI imports this module to build ``--help``.
"""

from __future__ import annotations

from dataclasses import dataclass

LAYOUTS = ("upenn_gbm", "ucsf_pdgm", "brats2021", "brats2023", "lgg_1p19q", "folder")

# the calf.datasets adapter that reads each layout
DATASET_OF = {
    "upenn_gbm": "upenn_gbm",
    "ucsf_pdgm": "ucsf_pdgm",
    "brats2021": "brats",
    "brats2023": "brats",
    "lgg_1p19q": "lgg_1p19q",
    "folder": "folder",
}

# release label of (necrosis, oedema, enhancing)
LABELS = {
    "upenn_gbm": (1, 2, 4),
    "ucsf_pdgm": (1, 2, 4),
    "brats2021": (1, 2, 4),
    "brats2023": (1, 2, 3),
    "lgg_1p19q": (1, 1, 1),
    "folder": (1, 1, 1),
}

# every n-th exam is a follow-up of the patient before it (0: no follow-ups)
FOLLOWUP_EVERY = {"upenn_gbm": 4, "ucsf_pdgm": 5, "brats2023": 4}

# sequences written; the LGG release has only a post-contrast T1 and a T2
SEQUENCES = {
    "upenn_gbm": {"t1": "T1", "t1c": "T1GD", "t2": "T2", "flair": "FLAIR"},
    "ucsf_pdgm": {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR"},
    "brats2021": {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair"},
    "brats2023": {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f"},
    "lgg_1p19q": {"t1c": "T1", "t2": "T2"},
    "folder": {"t1": "t1", "t1c": "t1c", "t2": "t2", "flair": "flair"},
}

# layouts whose images keep skull and scalp, and whose masks cover only a few slices
WITH_SKULL = {"lgg_1p19q"}
MASK_SLICES = {"lgg_1p19q": 3}


@dataclass(frozen=True)
class ExamFiles:
    """Where one exam's files go, relative to the cohort root."""

    case_id: str
    patient_id: str
    images: dict[str, str]  # canonical modality -> path
    mask: str | None  # the tumour mask the adapter reads by default (None: not released)
    expert_mask: str | None = None  # UPENN-GBM expert-corrected segmentation
    brain_mask: str | None = None  # UCSF-PDGM brain segmentation


def exam_plan(layout: str, n_exams: int) -> list[tuple[int, int]]:
    """(patient number, visit number) of each exam, follow-ups after their baseline."""
    every = FOLLOWUP_EVERY.get(layout, 0)
    plan: list[tuple[int, int]] = []
    for j in range(n_exams):
        if every and plan and (j + 1) % every == 0:
            patient, visit = plan[-1]
            plan.append((patient, visit + 1))
        else:
            plan.append((len({p for p, _ in plan}), 0))
    return plan


def exam_files(layout: str, patient: int, visit: int) -> ExamFiles:
    """The release's names for exam ``visit`` (0 = baseline) of patient number ``patient``."""
    tokens = SEQUENCES[layout]
    if layout == "upenn_gbm":
        pid = f"UPENN-GBM-{patient + 1:05d}"
        cid = f"{pid}_{11 + 10 * visit}"
        return ExamFiles(
            cid,
            pid,
            {m: f"images_structural/{cid}/{cid}_{t}.nii.gz" for m, t in tokens.items()},
            f"automated_segm/{cid}_automated_approx_segm.nii.gz" if visit == 0 else None,
            expert_mask=(
                f"images_segm/{cid}_segm.nii.gz" if visit == 0 and patient % 3 == 0 else None
            ),
        )
    if layout == "ucsf_pdgm":
        pid = f"UCSF-PDGM-{patient + 1:04d}"
        cid = pid + (f"_FU{60 * visit:03d}d" if visit else "")
        folder = f"{cid}_nifti"
        return ExamFiles(
            cid,
            pid,
            {m: f"{folder}/{cid}_{t}.nii.gz" for m, t in tokens.items()},
            f"{folder}/{cid}_tumor_segmentation.nii.gz",
            brain_mask=f"{folder}/{cid}_brain_segmentation.nii.gz",
        )
    if layout == "brats2021":
        cid = f"BraTS2021_{patient:05d}"
        return ExamFiles(
            cid,
            cid,
            {m: f"{cid}/{cid}_{t}.nii.gz" for m, t in tokens.items()},
            f"{cid}/{cid}_seg.nii.gz",
        )
    if layout == "brats2023":
        pid = f"BraTS-GLI-{patient:05d}"
        cid = f"{pid}-{visit:03d}"
        return ExamFiles(
            cid,
            pid,
            {m: f"{cid}/{cid}-{t}.nii.gz" for m, t in tokens.items()},
            f"{cid}/{cid}-seg.nii.gz",
        )
    if layout == "lgg_1p19q":
        cid = f"LGG-{patient + 101}"
        folder = f"NiFTiSegmentationsEdited/{cid}"
        return ExamFiles(
            cid,
            cid,
            {m: f"{folder}/{cid}_{t}.nii.gz" for m, t in tokens.items()},
            f"{folder}/{cid}-Segmentation.nii.gz",
        )
    if layout == "folder":
        cid = f"case-{patient + 1:03d}"
        return ExamFiles(
            cid, cid, {m: f"{cid}/{t}.nii.gz" for m, t in tokens.items()}, f"{cid}/seg.nii.gz"
        )
    raise ValueError(f"unknown layout {layout!r}")
