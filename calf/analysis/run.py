"""One study's analysis (``calf analyse``): every table of ``calf.analysis``, written at once.

``compute_analysis`` takes the per-case rows (``calf.stats.collect.load_case_metrics``) and
the training sets' profiles of one study and returns a ``StudyAnalysis``: the tables
(``TABLE_SOURCES``: name -> the module and constant of its columns) and notes;
``write_analysis`` writes every table as ``<name>.csv`` and ``analysis.json`` (settings,
notes, the table files' names) into a staging folder that replaces ``--out-dir`` whole
(``calf._fs.atomic_dir``; a folder without ``analysis.json`` is replaced only with
``force``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from calf._fs import atomic_dir, check_replaceable, json_text
from calf._json import json_safe
from calf.defaults import ALPHA, SEED
from calf.errors import CalfError
from calf.evaluate.conventions import PRESET_NAMES
from calf.naming import CALF_LOSSES
from calf.stats.paired import ZERO_METHODS
from calf.stats.run import MISSING, RESAMPLES, check_metrics, study_rows

if TYPE_CHECKING:
    import pandas as pd

FORMAT = 1
ANALYSIS_JSON = "analysis.json"  # the step's marker in every --out-dir
DEFAULT_METRICS = ("dice", "hd95")
ROBUSTNESS_METRICS = ("dice", "lesion_dice", "nsd", "hd95")
DEFAULT_SIZE_BINS = 4  # quartiles of the study's tumour-bearing patients
# name -> (module, the column tuple's name), in the order written and listed
TABLE_SOURCES = {
    "sizes": ("strata", "SIZES_COLUMNS"),
    "cases": ("strata", "CASE_SIZE_COLUMNS"),
    "regimes": ("strata", "REGIME_COLUMNS"),
    "patient_advantage": ("strata", "ADVANTAGE_COLUMNS"),
    "size_classes": ("size_effect", "SIZE_CLASS_COLUMNS"),
    "interaction": ("interaction", "INTERACTION_COLUMNS"),
    "imbalance": ("interaction", "IMBALANCE_COLUMNS"),
    "imbalance_trend": ("interaction", "TREND_COLUMNS"),
    "rank_stability": ("ranks", "STABILITY_COLUMNS"),
    "rank_counts": ("ranks", "COUNT_COLUMNS"),
    "significance_map": ("ranks", "MAP_COLUMNS"),
    "robustness": ("robustness", "ROBUSTNESS_COLUMNS"),
    "verdict_changes": ("robustness", None),  # wide: one column per preset and metric
}


def table_columns(name: str) -> tuple[str, ...] | None:
    """The columns of table ``name`` (None: decided by the data)."""
    import importlib

    module, constant = TABLE_SOURCES[name]
    if constant is None:
        return None
    return getattr(importlib.import_module(f"calf.analysis.{module}"), constant)


def _metrics(metrics: Sequence[str], option: str) -> tuple[str, ...]:
    if not metrics:
        raise CalfError(f"{option}: at least one metric is needed")
    return check_metrics(metrics, option)


@dataclass(frozen=True)
class AnalysisOptions:
    """The choices that shape the analysis; checked when made (CalfError names the option).

    ``metrics``: of the size-class tests, the interaction model and the ranking;
    ``size_bins``: quantile classes (an integer) or ascending edges in the size unit;
    ``robustness_metrics`` x ``presets``: the verdict's robustness grid;
    ``resamples``: of each median CI; ``rank_resamples``: of the ranking bootstrap;
    ``jobs``: worker processes of the interaction fits (not a setting: no number changes)."""

    metrics: tuple[str, ...] = DEFAULT_METRICS
    size_bins: int | tuple[float, ...] = DEFAULT_SIZE_BINS
    robustness_metrics: tuple[str, ...] = ROBUSTNESS_METRICS
    presets: tuple[str, ...] = PRESET_NAMES
    alpha: float = ALPHA
    missing: str = MISSING[0]
    zero_method: str = ZERO_METHODS[0]
    resamples: int = RESAMPLES
    rank_resamples: int = 2000
    seed: int = SEED
    jobs: int = 1  # worker processes of the interaction fits (changes no number)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", _metrics(self.metrics, "metric"))
        object.__setattr__(self, "robustness_metrics",
                           _metrics(self.robustness_metrics, "robustness metric"))
        if not isinstance(self.size_bins, int):
            object.__setattr__(self, "size_bins", tuple(self.size_bins))
        for preset in self.presets:
            if preset not in PRESET_NAMES:
                raise CalfError(f"preset {preset!r}: expected one of {', '.join(PRESET_NAMES)}")
        for name, allowed in (("missing", MISSING), ("zero_method", ZERO_METHODS)):
            if getattr(self, name) not in allowed:
                raise CalfError(f"{name} {getattr(self, name)!r}: expected one of "
                                f"{', '.join(allowed)}")
        if not 0 < self.alpha < 1:
            raise CalfError(f"alpha {self.alpha!r}: expected a number in (0, 1)")
        for name in ("resamples", "rank_resamples", "jobs"):
            if getattr(self, name) < 1:
                raise CalfError(f"{name} {getattr(self, name)!r}: expected a positive number")

    def settings(self) -> dict[str, object]:
        return {"metrics": list(self.metrics), "size_bins": self.size_bins if isinstance(
                    self.size_bins, int) else list(self.size_bins),
                "robustness_metrics": list(self.robustness_metrics),
                "presets": list(self.presets), "alpha": self.alpha, "missing": self.missing,
                "zero_method": self.zero_method, "resamples": self.resamples,
                "rank_resamples": self.rank_resamples, "seed": self.seed}


@dataclass
class StudyAnalysis:
    """The tables of one study's analysis (``TABLE_SOURCES``' names) and its notes."""

    study: str
    settings: dict[str, object]
    tables: dict[str, "pd.DataFrame"]
    notes: list[str] = field(default_factory=list)


def _strata(rows, profiles, profiles_root, calf_losses, opts: AnalysisOptions, notes):
    from calf.analysis.strata import (
        case_sizes,
        patient_advantages,
        patient_sizes,
        training_regimes,
    )

    sizes, size_notes = patient_sizes(rows, opts.size_bins)
    notes += size_notes
    advantages = patient_advantages(rows, sizes, calf_losses, opts.metrics,
                                    missing=opts.missing)
    regimes = training_regimes(profiles, profiles_root) if profiles else None
    if regimes is not None:
        regimes = regimes[regimes["study"] == rows["study"].iloc[0]]
    return {"sizes": sizes, "cases": case_sizes(rows, sizes), "patient_advantage": advantages,
            "regimes": regimes}


def compute_analysis(cases: "pd.DataFrame", *, study: str, profiles: Sequence[str | Path] = (),
                     profiles_root: str | Path | None = None,
                     calf_losses: Sequence[str] = CALF_LOSSES, **options) -> StudyAnalysis:
    """Every table of the analysis of ``study`` (see the module docstring).

    ``profiles``: the study's training-set profile JSONs below ``profiles_root`` (none: no
    regimes, and the imbalance tables are empty with a note). ``options``: the fields of
    ``AnalysisOptions``."""
    import pandas as pd

    from calf.analysis.interaction import imbalance_advantage, volume_interaction
    from calf.analysis.ranks import rank_tables
    from calf.analysis.robustness import robustness
    from calf.analysis.size_effect import size_class_tests

    unknown = sorted(set(options) - set(AnalysisOptions.__dataclass_fields__))
    if unknown:
        raise TypeError(f"compute_analysis: unknown option(s) {', '.join(unknown)}")
    opts = AnalysisOptions(**options)
    rows = study_rows(cases, study)
    calf_losses = [loss for loss in calf_losses if loss in set(rows["loss"])]
    notes: list[str] = []
    if not calf_losses:
        notes.append(f"study {study!r} has no CALF loss: no size-class, interaction, "
                     "imbalance or robustness comparisons")
    tables = _strata(rows, profiles, profiles_root, calf_losses, opts, notes)
    advantages = tables["patient_advantage"]
    tests = {"alpha": opts.alpha, "zero_method": opts.zero_method,
             "resamples": opts.resamples, "seed": opts.seed}
    tables["size_classes"] = size_class_tests(advantages, **tests)
    tables["interaction"] = volume_interaction(advantages, alpha=opts.alpha, jobs=opts.jobs)
    if tables["regimes"] is None:
        notes.append("no training-set profiles given: no imbalance regimes")
        tables["regimes"] = pd.DataFrame(columns=list(table_columns("regimes")))
    tables["imbalance"], tables["imbalance_trend"] = imbalance_advantage(advantages,
                                                                         tables["regimes"])
    ranked, rank_notes = rank_tables(rows, opts.metrics, missing=opts.missing,
                                     resamples=opts.rank_resamples, seed=opts.seed,
                                     alpha=opts.alpha, zero_method=opts.zero_method)
    tables.update(ranked)
    notes += rank_notes
    tables["robustness"], tables["verdict_changes"], robust_notes = robustness(
        rows, calf_losses=calf_losses, presets=opts.presets, metrics=opts.robustness_metrics,
        missing=opts.missing, **tests)
    notes += robust_notes
    settings = {"calf_losses": list(calf_losses), **opts.settings()}
    return StudyAnalysis(study, settings, {name: tables[name] for name in TABLE_SOURCES}, notes)


def check_out_dir(out_dir: str | Path, force: bool = False) -> Path:
    """``out_dir`` if ``write_analysis`` may replace it (new, empty, a previous run's, or
    ``force``); else a CalfError naming it."""
    return check_replaceable(out_dir, owned_by=ANALYSIS_JSON, force=force)


def analysis_record(analysis: StudyAnalysis) -> dict[str, object]:
    """``analysis.json``: format, study, settings, notes and the table files' names."""
    return json_safe({"format": FORMAT, "study": analysis.study,
                      "settings": analysis.settings, "notes": analysis.notes,
                      "tables": {name: table_path("", name).name for name in analysis.tables}})


def write_analysis(analysis: StudyAnalysis, out_dir: str | Path,
                   force: bool = False) -> list[Path]:
    """Every table as ``<name>.csv`` and ``analysis.json`` into ``out_dir``, together."""
    with atomic_dir(out_dir, owned_by=ANALYSIS_JSON, force=force) as staging:
        for name, table in analysis.tables.items():
            columns = table_columns(name)
            table.to_csv(table_path(staging, name), index=False,
                         columns=None if columns is None else list(columns))
        (staging / ANALYSIS_JSON).write_text(json_text(analysis_record(analysis)))
    return [table_path(out_dir, name) for name in analysis.tables] + [
        Path(out_dir) / ANALYSIS_JSON]


def table_path(out_dir: str | Path, name: str) -> Path:
    """Where ``write_analysis`` puts table ``name`` (one of ``TABLE_SOURCES``)."""
    if name not in TABLE_SOURCES:
        raise CalfError(f"{name!r}: not a table of calf analyse ({', '.join(TABLE_SOURCES)})")
    return Path(out_dir) / f"{name}.csv"


def read_table(out_dir: str | Path, name: str, needs: Sequence[str] = ()) -> "pd.DataFrame":
    """Table ``name`` of a ``calf analyse`` folder, its identity columns as text (``ratio``
    ``calf.layout.NATURAL`` where empty); a one-line CalfError naming the file when it is missing,
    unreadable or lacks a column of ``needs``."""
    import pandas as pd

    from calf.layout import NATURAL

    path = table_path(out_dir, name)
    if not path.is_file():
        raise CalfError(f"{path}: no such file (written by calf analyse; run it again)")
    try:
        table = pd.read_csv(path, dtype={k: str for k in ("study", "dataset", "model",
                                                           "ratio", "subject_id")})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CalfError(f"{path}: not a readable CSV ({reason})") from None
    missing = [c for c in needs if c not in table.columns]
    if missing:
        raise CalfError(f"{path}: missing column(s) {', '.join(missing)}")
    if "ratio" in table.columns:
        table["ratio"] = table["ratio"].fillna(NATURAL).astype(str)
    return table


def read_analysis_record(out_dir: str | Path) -> dict:
    """``analysis.json`` of a ``calf analyse`` folder, checked for its format."""
    from calf._json import read_json_object

    path = Path(out_dir) / ANALYSIS_JSON
    record = read_json_object(path, "analysis record")
    if record.get("format") != FORMAT:
        raise CalfError(f"{path}: format {record.get('format')!r}, expected {FORMAT} "
                        "(run calf analyse again)")
    return record
