"""Where each dataset officially comes from, and what to tell a user who cannot fetch it.

The sources are those the README's "Data" section lists. The guidance texts are printed
when a client or a credential is missing or a dataset is gated: they say how to get access
and where to put the data so that ``calf download --route local`` can check it.
"""

from __future__ import annotations

from dataclasses import dataclass

# the BraTS 2023 adult glioma (GLI) training data on Synapse:
# ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData.zip, in challenge project syn51156910
BRATS_2023_GLI_TRAINING = "syn51514132"
BRATS_PROJECT_URL = "https://www.synapse.org/Synapse:syn51156910"
SYNAPSE_TOKEN_ENV = "SYNAPSE_AUTH_TOKEN"
# a URL (e.g. a Faspex public link, whose query holds a passcode, or a signed mirror link)
# may be given in this variable instead of on the command line
URL_ENV = "CALF_DOWNLOAD_URL"


@dataclass(frozen=True)
class DatasetSource:
    """One dataset's official route, home page and expected folder layout."""

    name: str
    title: str
    route: str | None  # official route; None for the generic `folder` layout
    home: str
    layout: str


DATASETS: dict[str, DatasetSource] = {
    source.name: source
    for source in (
        DatasetSource(
            "brats",
            "BraTS (2023 GLI training data)",
            "synapse",
            BRATS_PROJECT_URL,
            "BraTS-GLI-NNNNN-NNN/BraTS-GLI-NNNNN-NNN-{t1n,t1c,t2w,t2f,seg}.nii.gz (2023+) or "
            "BraTS2021_NNNNN/BraTS2021_NNNNN_{t1,t1ce,t2,flair,seg}.nii.gz (2021)",
        ),
        DatasetSource(
            "upenn_gbm",
            "UPENN-GBM",
            "aspera",
            "https://www.cancerimagingarchive.net/collection/upenn-gbm/",
            "images_structural/<ID>/<ID>_{T1,T1GD,T2,FLAIR}.nii.gz, "
            "automated_segm/<ID>_automated_approx_segm.nii.gz, images_segm/<ID>_segm.nii.gz",
        ),
        DatasetSource(
            "ucsf_pdgm",
            "UCSF-PDGM",
            "aspera",
            "https://www.cancerimagingarchive.net/collection/ucsf-pdgm/",
            "UCSF-PDGM-NNNN_nifti/UCSF-PDGM-NNNN_{T1,T1c,T2,FLAIR}.nii.gz, "
            "UCSF-PDGM-NNNN_nifti/UCSF-PDGM-NNNN_tumor_segmentation.nii.gz",
        ),
        DatasetSource(
            "lgg_1p19q",
            "LGG-1p19qDeletion",
            "gated",
            "https://www.cancerimagingarchive.net/collection/lgg-1p19qdeletion/",
            "LGG-NNN/LGG-NNN-{T1,T2,Segmentation}.nii.gz (the NIfTI package "
            "NiFTiSegmentationsEdited, or a folder up to three levels above it)",
        ),
        DatasetSource(
            "folder",
            "a folder of cases",
            None,
            "",
            "<case>/{t1,t1c,t2,flair}.nii.gz and <case>/seg.nii.gz",
        ),
    )
}

ROUTES = ("synapse", "aspera", "gated", "local", "http")
# which datasets each dataset-specific route serves (local and http serve all)
ROUTE_DATASETS = {
    "synapse": ("brats",),
    "aspera": ("upenn_gbm", "ucsf_pdgm"),
    "gated": ("lgg_1p19q",),
}


def _put_it(source: DatasetSource, out: str) -> str:
    return (
        f"Put the data under {out} so that it holds {source.layout}, then check it and write "
        f"its manifest with:\n"
        f"  calf download --dataset {source.name} --route local --source {out}"
    )


def synapse_help(out: str, problem: str) -> str:
    """How to get BraTS from Synapse; ``problem`` says what is missing."""
    return (
        f"BraTS cannot be downloaded: {problem}.\n"
        f"To get access:\n"
        f"  1. register for the BraTS challenge on Synapse ({BRATS_PROJECT_URL}) and accept "
        f"its data use terms;\n"
        f"  2. create a personal access token with 'view' and 'download' scope "
        f"(Synapse > Account Settings > Personal Access Tokens);\n"
        f"  3. pip install synapseclient\n"
        f"  4. export {SYNAPSE_TOKEN_ENV}=<your token>   (never put the token on the command line)\n"
        f"and run this command again. Or download "
        f"ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData.zip ({BRATS_2023_GLI_TRAINING}) "
        f"in a browser and unzip it yourself.\n" + _put_it(DATASETS["brats"], out)
    )


def aspera_help(dataset: str, out: str, problem: str) -> str:
    """How to get a TCIA NIfTI release through Aspera; ``problem`` says what is missing."""
    source = DATASETS[dataset]
    return (
        f"{source.title} cannot be downloaded: {problem}.\n"
        f"The NIfTI release is an IBM Aspera Faspex package on TCIA ({source.home}). Either:\n"
        f"  - install the Aspera CLI: Ruby >= 3.1, then `gem install aspera-cli` and "
        f"`ascli config ascp install` (fetches the transfer engine); copy the public package "
        f"link from the collection page's Download button and run this command again with "
        f"--url LINK (or export {URL_ENV}=LINK to keep it off the command line); or\n"
        f"  - download the package by hand from the collection page (IBM Aspera Connect in a browser).\n"
        + _put_it(source, out)
    )


def gated_help(dataset: str, out: str) -> str:
    """How to request a controlled-access dataset."""
    source = DATASETS[dataset]
    return (
        f"{source.title} is gated: it is reported to have moved to NIH controlled access in 2025, "
        f"so there is no anonymous download.\n"
        f"Request access as described on its TCIA page ({source.home}) (a data access request "
        f"approved for you and your institution), then download the release's NIfTI package "
        f"with the tool the approval names.\n" + _put_it(source, out)
    )


# ---------------------------------------------------------------- crosswalk files

TCIA_UPLOADS = "https://www.cancerimagingarchive.net/wp-content/uploads"
BRATS_2023_GLI_FOLDER = "syn51514105"  # the GLI data folder: training zip, mapping xlsx


@dataclass(frozen=True)
class CrosswalkSource:
    """A published file that links one release's subject IDs to another's.

    ``columns`` maps the file's ID columns to crosswalk namespaces (see
    ``calf.crosswalk``); ``url`` is None where the file has no public download.
    """

    file: str
    title: str
    columns: dict[str, str]
    url: str | None
    home: str


CROSSWALKS: dict[str, CrosswalkSource] = {
    source.file: source
    for source in (
        CrosswalkSource(
            "BraTS2021_MappingToTCIA.xlsx",
            "TCIA's BraTS 2021 mapping (BraTS 2021 IDs to UPENN-GBM and other TCIA IDs)",
            {"PatientID on TCIA Radiology Portal": "upenn_gbm", "BraTS2021 ID": "brats2021"},
            f"{TCIA_UPLOADS}/BraTS2021_MappingToTCIA.xlsx",
            "https://www.cancerimagingarchive.net/analysis-result/rsna-asnr-miccai-brats-2021/",
        ),
        CrosswalkSource(
            "UCSF-PDGM-metadata_v5.csv",
            "UCSF-PDGM's metadata (column BraTS21 ID links its patients to BraTS 2021)",
            {"ID": "ucsf_pdgm", "BraTS21 ID": "brats2021"},
            f"{TCIA_UPLOADS}/UCSF-PDGM-metadata_v5.csv",
            "https://www.cancerimagingarchive.net/collection/ucsf-pdgm/",
        ),
        CrosswalkSource(
            "BraTS2023_2017_GLI_Mapping.xlsx",
            "the BraTS 2023 GLI mapping (BraTS 2023 IDs to the BraTS 2017-2021 IDs)",
            {"BraTS2023": "brats", "BraTS2021": "brats2021"},
            None,
            f"https://www.synapse.org/Synapse:{BRATS_2023_GLI_FOLDER}",
        ),
    )
}


def crosswalk_help(source: CrosswalkSource, out: str) -> str:
    """Where to get a linking file and where to put it (one line)."""
    if source.url:
        where = f"download it from {source.url} (listed on {source.home})"
    else:
        where = (
            f"it has no public download: it ships with the BraTS 2023 GLI data on Synapse "
            f"({source.home}, beside ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData.zip; "
            f"needs the challenge registration): download it there"
        )
    return f"{source.file} is {source.title}; {where} and put it at {out}"
