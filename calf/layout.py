"""Where every result of a study lives: the one place that builds and parses result paths.

Below the results folder (``results/`` by default, key ``results_dir``)::

    stores/<dataset>/                                   a slice store (``calf preprocess``)
    splits/<study>/<dataset>/splits_final.json          the folds (``calf split``)
    splits/<study>/<dataset>/<selection>.csv            a training set
    profiles/<study>/<dataset>/<selection>.json         its imbalance profile
    runs/<study>/<dataset>/<model>/<loss>/<variant>/    a run folder (run.json, epochs.csv, ...)
    metrics/<study>/<dataset>/<model>/<loss>/<variant>.csv   its per-case metrics
        ... <variant>.json, <variant>_slices.csv, <variant>_overlays/   their companions
    stats/<study>/                                      tests and tables (``calf stats``)

A ``<variant>`` is ``[ratio-R/][seed-N/]foldK``: the filter ratio and the seed appear only in
studies that vary them. A ``<selection>`` is ``[ratio-R/]foldK``: the seeds of one ratio and
fold train on the same training set. The natural (unfiltered) training set has no ratio
component: ``ratio-natural`` is not a path. A ratio is spelled as Python's ``{:g}`` spells
the number (``0.25``, ``1``), so ``0.250`` and ``0.25`` name one path.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from calf.errors import CalfError

NATURAL = "natural"

# the files of a run folder (calf train) and of a metrics file's companions (calf evaluate)
RUN_FILE = "run.json"
EPOCHS_FILE = "epochs.csv"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_SUFFIX = ".csv"
SPLITS_FILE = "splits_final.json"
SUBJECTS_FILE = "subjects.csv"  # beside SPLITS_FILE: each case's subject (calf split)
# the marker the workflow touches once `calf train` finished a run (the run's own files are
# not the job's outputs, so that a failed attempt keeps its checkpoint)
TRAIN_DONE = "train.done"
# the folders below the results folder
STORES, SPLITS, PROFILES, RUNS, METRICS, STATS = (
    "stores", "splits", "profiles", "runs", "metrics", "stats")

# one path component of a key (study, dataset, model, loss): no "/", no quote, and not
# spelled like a variant's part (so a path's last parts parse one way only)
COMPONENT = r"(?!ratio-|seed-|fold[0-9]+(?:/|$))[^/'\"]+"
# regexes of a variant and a selection, for Snakemake's wildcard_constraints
VARIANT_PATTERN = r"(ratio-[0-9.]+/)?(seed-[0-9]+/)?fold[0-9]+"
SELECTION_PATTERN = r"(ratio-[0-9.]+/)?fold[0-9]+"
_VARIANT = r"(?:ratio-(?P<ratio>[0-9.]+)/)?(?:seed-(?P<seed>[0-9]+)/)?fold(?P<fold>[0-9]+)"
_KEY = (rf"(?P<study>{COMPONENT})/(?P<dataset>{COMPONENT})/(?P<model>{COMPONENT})/"
        rf"(?P<loss>{COMPONENT})/{_VARIANT}")
SHAPE = "<study>/<dataset>/<model>/<loss>/[ratio-R/][seed-N/]foldK"


def ratio_text(value: object) -> str:
    """A filter ratio's one spelling: ``"natural"`` (also for None and NaN) or the number
    as ``{:g}`` writes it; CalfError for anything else or a number outside (0, 1), the
    share of tumour slices a filtered training set is drawn to."""
    if value is None or value == NATURAL or (isinstance(value, float) and math.isnan(value)):
        return NATURAL
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CalfError(f"ratio {value!r}: expected 'natural' or a number in (0, 1)") from None
    if not 0 < number < 1:  # also NaN
        raise CalfError(f"ratio {value!r}: expected 'natural' or a number in (0, 1)")
    return f"{number:g}"


def ratio_value(value: object) -> float | None:
    """A ratio as a number, None for the natural training set."""
    text = ratio_text(value)
    return None if text == NATURAL else float(text)


def ratio_sort_key(value: object) -> tuple[int, float]:
    """Sort key: the natural training set first, then the ratios ascending."""
    number = ratio_value(value)
    return (0, 0.0) if number is None else (1, number)


def format_selection(fold: int, ratio: object = None) -> str:
    """``[ratio-R/]foldK``: a training set's name below its study and dataset."""
    text = ratio_text(ratio)
    return ("" if text == NATURAL else f"ratio-{text}/") + f"fold{int(fold)}"


def format_variant(fold: int, ratio: object = None, seed: int | None = None) -> str:
    """``[ratio-R/][seed-N/]foldK``: a run's name below its loss."""
    text = ratio_text(ratio)
    parts = [] if text == NATURAL else [f"ratio-{text}"]
    parts += [] if seed is None else [f"seed-{int(seed)}"]
    return "/".join([*parts, f"fold{int(fold)}"])


@dataclass(frozen=True)
class Variant:
    """A run's place below its loss: fold, ratio (text, ``"natural"`` when none) and seed
    (None when the study does not vary it)."""

    fold: int
    ratio: str = NATURAL
    seed: int | None = None

    @property
    def path(self) -> str:
        return format_variant(self.fold, self.ratio, self.seed)

    @property
    def selection(self) -> str:
        """The training set the run trains on (seeds share it)."""
        return format_selection(self.fold, self.ratio)


def _variant_of(match: re.Match[str], where: object) -> Variant:
    ratio, seed, fold = match.group("ratio"), match.group("seed"), match.group("fold")
    try:
        text = ratio_text(ratio)
    except CalfError:
        raise CalfError(f"{where}: ratio-{ratio} is not a ratio in (0, 1)") from None
    if ratio is not None and ratio != text:
        raise CalfError(f"{where}: ratio-{ratio} is spelled ratio-{text} in this layout")
    return Variant(int(fold), text, None if seed is None else int(seed))


def parse_variant(variant: str) -> Variant:
    """The fold, ratio and seed of ``[ratio-R/][seed-N/]foldK``; CalfError otherwise."""
    match = re.fullmatch(_VARIANT, variant)
    if match is None:
        raise CalfError(f"{variant!r}: not a run variant ([ratio-R/][seed-N/]foldK)")
    return _variant_of(match, variant)


def _component(name: str, value: str) -> str:
    if not value or value in (".", "..") or re.fullmatch(COMPONENT, value) is None:
        raise CalfError(f"run key {name} {value!r}: expected a plain path component")
    return value


@dataclass(frozen=True)
class RunKey:
    """The identity of one training run: study, dataset, model, loss and its variant.

    ``ratio`` is ``"natural"`` or the ratio's one spelling (``ratio_text``); ``seed`` is None
    in a study with one seed. The key round-trips through every path below."""

    study: str
    dataset: str
    model: str
    loss: str
    fold: int
    ratio: str = NATURAL
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("study", "dataset", "model", "loss"):
            _component(name, getattr(self, name))
        object.__setattr__(self, "ratio", ratio_text(self.ratio))
        object.__setattr__(self, "fold", int(self.fold))
        if self.seed is not None:
            object.__setattr__(self, "seed", int(self.seed))

    @property
    def variant(self) -> Variant:
        return Variant(self.fold, self.ratio, self.seed)

    @property
    def key(self) -> str:
        """``<study>/<dataset>/<model>/<loss>/<variant>``: the run's path below ``runs/``."""
        return f"{self.study}/{self.dataset}/{self.model}/{self.loss}/{self.variant.path}"

    @property
    def name(self) -> str:
        """The key without the study."""
        return self.key.split("/", 1)[1]

    def run_dir(self, runs_root: str | Path) -> Path:
        return Path(runs_root, *self.key.split("/"))

    def metrics_csv(self, metrics_root: str | Path) -> Path:
        """``<metrics_root>/<key>.csv``, the run's per-case metrics."""
        return Path(metrics_root, *self.key.split("/")).with_suffix(METRICS_SUFFIX)

    def profile_json(self, profiles_root: str | Path) -> Path:
        """``<profiles_root>/<study>/<dataset>/<selection>.json``."""
        return training_file(profiles_root, self.study, self.dataset, self.variant, ".json")

    def training_csv(self, splits_root: str | Path) -> Path:
        """``<splits_root>/<study>/<dataset>/<selection>.csv``."""
        return training_file(splits_root, self.study, self.dataset, self.variant, ".csv")

    def as_dict(self) -> dict[str, object]:
        return {"study": self.study, "dataset": self.dataset, "model": self.model,
                "loss": self.loss, "ratio": self.ratio, "seed": self.seed, "fold": self.fold}

    @classmethod
    def from_path(cls, path: str | Path, suffix: str = "", root: str | Path | None = None
                  ) -> RunKey:
        """The key of a run folder (``suffix=""``) or a metrics file (``".csv"``).

        With ``root`` the whole path below it must be a key; without, its last parts."""
        pattern = _KEY + re.escape(suffix)
        if root is not None:
            try:
                rel = Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
            except ValueError:
                raise CalfError(f"{path}: not under {root}") from None
            match = re.fullmatch(pattern, rel)
        else:
            match = re.search(r"(?:^|/)" + pattern + "$", Path(path).as_posix())
        if match is None:
            raise CalfError(f"{path}: not a results path ({SHAPE}{suffix})")
        v = _variant_of(match, path)
        return cls(match["study"], match["dataset"], match["model"], match["loss"],
                   v.fold, v.ratio, v.seed)


def training_file(root: str | Path, study: str, dataset: str, variant: Variant | str,
                  suffix: str) -> Path:
    """A training set (``.csv``, below ``splits/``) or its profile (``.json``, below
    ``profiles/``): ``<root>/<study>/<dataset>/<selection><suffix>``."""
    v = parse_variant(variant) if isinstance(variant, str) else variant
    return Path(root, study, dataset, *v.selection.split("/")).with_suffix(suffix)


def training_key(path: str | Path, root: str | Path, suffix: str) -> tuple[str, str, Variant]:
    """(study, dataset, variant) of a training set or profile ``training_file`` wrote below
    ``root``: ``<root>/<study>/<dataset>/[ratio-R/]foldK<suffix>``; CalfError otherwise."""
    try:
        rel = Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        raise CalfError(f"{path}: not under {root}") from None
    pattern = (rf"(?P<study>{COMPONENT})/(?P<dataset>{COMPONENT})/"
               rf"(?:ratio-(?P<ratio>[0-9.]+)/)?(?P<seed>(?!))?fold(?P<fold>[0-9]+)"
               + re.escape(suffix))
    match = re.fullmatch(pattern, rel)
    if match is None:
        raise CalfError(f"{path}: not a training-set path "
                        f"(<study>/<dataset>/[ratio-R/]foldK{suffix} below {root})")
    return match["study"], match["dataset"], _variant_of(match, path)  # seed: never


def metrics_companions(csv: str | Path) -> tuple[Path, Path, Path, Path]:
    """A metrics CSV ``X.csv`` and its companions: ``X.json`` (conventions, summary),
    ``X_slices.csv`` (per slice), ``X_overlays/`` (figures)."""
    csv = Path(csv)
    if csv.suffix != METRICS_SUFFIX:
        raise CalfError(f"{csv}: a metrics file ends in {METRICS_SUFFIX}")
    stem = csv.with_suffix("")
    return csv, stem.with_suffix(".json"), Path(f"{stem}_slices.csv"), Path(f"{stem}_overlays")
