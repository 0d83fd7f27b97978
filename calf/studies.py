"""What a workflow config asks for: each study's datasets, folds, variants and training sets,
the files its runs write, the checks the schema cannot make, and each step's arguments.

The Snakemake workflow (``workflow/rules/common.smk``) wraps these functions; they take the
config as ``workflow/schemas/config.schema.yaml`` validated it (defaults filled in) and never
import Snakemake. Run paths and ratio spellings come from ``calf.layout``; every key is
explained in config/README.md. Paths are strings below the config's ``results_dir`` and
``resources_dir``, spelled as the config spells those folders (Snakemake matches the strings).
Command-line arguments are lists of tokens, one word each, which the rules quote (``:q``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from calf.download.sources import URL_ENV
from calf.errors import CalfError
from calf.layout import (
    METRICS,
    METRICS_SUFFIX,
    NATURAL,
    PROFILES,
    RUNS,
    SPLITS,
    SPLITS_FILE,
    STORES,
    SUBJECTS_FILE,
    TRAIN_DONE,
    RunKey,
    format_variant,
    parse_variant,
)
from calf.models.registry import MODELS

Config = Mapping[str, Any]

TEMPLATE_RULE = "train_template"
# a loss is a rule named train_<loss>: `rule train_x:` or `use rule ... as train_x with:`
LOSS_RULE = re.compile(r"^(?:use\s+rule\s+\w+\s+as|rule)\s+train_(\w+)\b", re.MULTILINE)
# the figures of every study (calf report figures), beside one overlay grid per dataset
FIGURES = ("dice", "hd95", "critical_difference", "imbalance", "branches",
           "advantage_volume", "imbalance_advantage", "rank_blobs", "significance_map")
# the pools whose BraTS subjects may also be in these releases (config/README.md, crosswalk)
_LINKED_RELEASES = ("upenn_gbm", "ucsf_pdgm")


class ConfigError(CalfError):
    """A config value the schema cannot catch; the message names the key."""

    def __init__(self, key: str, message: str):
        super().__init__(f"config key {key}: {message}")


def json_arg(value: Any) -> str:
    """A mapping or list as one command-line word: compact JSON (NaN refused)."""
    return json.dumps(value, allow_nan=False)


# ---------------------------------------------------------------- losses
def loss_rule_names(text: str) -> list[str]:
    """The losses a Snakemake rule file defines (each rule ``train_<loss>``, the training
    template aside), in the file's order."""
    names = [name for name in LOSS_RULE.findall(text) if f"train_{name}" != TEMPLATE_RULE]
    return list(dict.fromkeys(names))


def defined_losses(rules_dir: str | Path) -> list[str]:
    """Every loss of the workflow's rule files (``*.smk`` in ``rules_dir``), sorted: read from
    the files, so that it is known whichever file Snakemake parses first."""
    files = sorted(Path(rules_dir).glob("*.smk"))
    return sorted({name for f in files for name in loss_rule_names(f.read_text())})


def study_losses(config: Config, study: str, defined: Sequence[str]) -> list[str]:
    """The losses a study trains: its list, or every defined loss for ``all``."""
    chosen = config["studies"][study]["losses"]
    if chosen == "all":
        return sorted(defined)
    for loss in chosen:
        if loss not in defined:
            raise ConfigError(
                f"studies.{study}.losses",
                f"unknown loss {loss!r}; defined in workflow/rules/losses.smk: "
                f"{', '.join(sorted(defined))}",
            )
    return list(chosen)


def study_calf_losses(config: Config, study: str, losses: Sequence[str]) -> list[str]:
    """The configured CALF losses (stats.calf_losses) among a study's ``losses``; may be none,
    and then the study has no paired tests, only the Friedman test across its losses."""
    return [loss for loss in config["stats"]["calf_losses"] if loss in losses]


# ---------------------------------------------------------------- datasets
def dataset_root(config: Config, name: str) -> str:
    """A cohort's folder: its ``root``, else ``<resources_dir>/<name>``."""
    return config["datasets"][name].get("root") or f"{config['resources_dir']}/{name}"


def datasets_by_source(config: Config, source: str) -> list[str]:
    """The datasets of one ``source`` (synth, download or local)."""
    return [name for name, d in config["datasets"].items() if d["source"] == source]


def store_dir(config: Config, dataset: str) -> str:
    return f"{config['results_dir']}/{STORES}/{dataset}"


def download_pending(config: Config, route: str) -> bool:
    """A dataset of ``source: download`` by ``route`` (default its official one) whose
    folder does not exist yet."""
    for name, d in config["datasets"].items():
        default = "synapse" if d["adapter"] == "brats" else None
        if (d["source"] == "download" and d["download"].get("route", default) == route
                and not Path(dataset_root(config, name)).exists()):
            return True
    return False


# ---------------------------------------------------------------- studies
def study_dataset_names(config: Config, study: str) -> list[str]:
    """The ``{dataset}`` values of a study: each dataset, or the pool's name."""
    s = config["studies"][study]
    return [s["pool"]] if s["pool"] else list(s["datasets"])


def member_datasets(config: Config, study: str, dataset: str) -> list[str]:
    """The datasets whose stores feed the ``{dataset}`` of a study (several for a pool)."""
    s = config["studies"][study]
    return list(s["datasets"]) if s["pool"] == dataset else [dataset]


def fold_ids(config: Config, study: str) -> list[int]:
    s = config["studies"][study]
    return [0] if s["holdout"] else list(range(s["folds"]))


def variants(config: Config, study: str) -> list[str]:
    """Every ``[ratio-R/][seed-N/]foldK`` of a study, ratios outermost, then seeds, then
    folds: a filter ratio names a path part (the natural training set none), a seed only
    when the study has more than one."""
    s = config["studies"][study]
    seeds = s["seeds"] if len(s["seeds"]) > 1 else [None]
    return [format_variant(fold, ratio, seed) for ratio in s["ratios"] for seed in seeds
            for fold in fold_ids(config, study)]


def selection(variant: str) -> str:
    """The training set of a variant, ``[ratio-R/]foldK``: seeds share it."""
    return parse_variant(variant).selection


def selections(config: Config, study: str) -> list[str]:
    """A study's training sets, each once, in the order of its variants."""
    return list(dict.fromkeys(selection(v) for v in variants(config, study)))


def run_key(study: str, dataset: str, model: str, loss: str, variant: str) -> RunKey:
    """The key of a run named by its path's parts (a job's wildcards)."""
    v = parse_variant(variant)
    return RunKey(study, dataset, model, loss, v.fold, v.ratio, v.seed)


def run_keys(config: Config, study: str, losses: Sequence[str]) -> list[RunKey]:
    """Every run of a study: datasets, then models, then losses, then variants."""
    return [run_key(study, dataset, model, loss, variant)
            for dataset in study_dataset_names(config, study)
            for model in config["studies"][study]["models"]
            for loss in losses
            for variant in variants(config, study)]


def run_dir(config: Config, key: RunKey) -> str:
    return f"{config['results_dir']}/{RUNS}/{key.key}"


def metrics_csv(config: Config, key: RunKey) -> str:
    return f"{config['results_dir']}/{METRICS}/{key.key}{METRICS_SUFFIX}"


def train_done(config: Config, key: RunKey) -> str:
    return f"{run_dir(config, key)}/{TRAIN_DONE}"


def run_targets(config: Config, study: str, losses: Sequence[str], kind: str) -> list[str]:
    """Every run's ``train.done`` marker (``kind="runs"``) or per-case metrics file
    (``"metrics"``) of a study."""
    if kind == "runs":
        return [train_done(config, k) for k in run_keys(config, study, losses)]
    if kind == "metrics":
        return [metrics_csv(config, k) for k in run_keys(config, study, losses)]
    raise ValueError(f"kind {kind!r}: expected 'runs' or 'metrics'")


def training_set(config: Config, study: str, dataset: str, variant: str) -> str:
    """The training-set CSV of a variant (or of a selection)."""
    return f"{config['results_dir']}/{SPLITS}/{study}/{dataset}/{selection(variant)}.csv"


def training_profile(config: Config, study: str, dataset: str, variant: str) -> str:
    """The imbalance profile of a variant's (or a selection's) training set."""
    return f"{config['results_dir']}/{PROFILES}/{study}/{dataset}/{selection(variant)}.json"


def splits_file(config: Config, study: str, dataset: str) -> str:
    return f"{config['results_dir']}/{SPLITS}/{study}/{dataset}/{SPLITS_FILE}"


def subjects_file(config: Config, study: str, dataset: str) -> str:
    return f"{config['results_dir']}/{SPLITS}/{study}/{dataset}/{SUBJECTS_FILE}"


def profile_paths(config: Config, study: str) -> list[str]:
    """One profile per training set of a study: seeds share theirs, so each is listed once."""
    return [training_profile(config, study, dataset, sel)
            for dataset in study_dataset_names(config, study)
            for sel in selections(config, study)]


def pooled_studies(config: Config) -> list[str]:
    """Studies run under the authors' protocol: pooled datasets, one holdout split."""
    return [s for s, c in config["studies"].items() if c["pool"] and c["holdout"]]


def figure_names(config: Config, study: str) -> list[str]:
    """A study's figures: one per kind, and one overlay grid per dataset."""
    return list(FIGURES) + [f"overlays_{d}" for d in study_dataset_names(config, study)]


# ---------------------------------------------------------------- crosswalks
def crosswalk_path(config: Config, file: str) -> str:
    """A bare file name lies in ``<resources_dir>/crosswalk/``, where the crosswalk rule
    fetches the published linking files; a path is taken as it is."""
    return f"{config['resources_dir']}/crosswalk/{file}" if Path(file).name == file else file


def study_crosswalks(config: Config, study: str) -> list[tuple[str, dict[str, str]]]:
    """A study's linking files as (path, {column: namespace}); one path string with
    crosswalk_columns is the older spelling of a single file."""
    s = config["studies"][study]
    if s["crosswalk"] is None:
        return []
    if isinstance(s["crosswalk"], str):
        columns = {}
        for spec in s["crosswalk_columns"]:
            column, _, namespace = spec.rpartition("=")
            columns[column] = namespace
        return [(crosswalk_path(config, s["crosswalk"]), columns)]
    return [(crosswalk_path(config, c["file"]), c["columns"]) for c in s["crosswalk"]]


def crosswalk_downloads(config: Config) -> list[str]:
    """File names that the crosswalk rule fetches (the studies' linking files that lie in
    ``<resources_dir>/crosswalk/`` and are not there yet)."""
    folder = Path(config["resources_dir"]) / "crosswalk"
    return sorted({Path(path).name for study in config["studies"]
                   for path, _ in study_crosswalks(config, study)
                   if Path(path).parent == folder and not Path(path).exists()})


# ---------------------------------------------------------------- checks
def check_config(config: Config, defined: Sequence[str]) -> None:
    """What the schema cannot check, the first problem raised as a ConfigError naming its
    key: datasets' sources and roots, models' networks, studies' datasets, models, pools,
    crosswalks and losses (``defined``: the workflow's loss rules), stats.calf_losses."""
    _check_datasets(config)
    _check_models(config)
    for study in config["studies"]:
        _check_study(config, study, defined)
    for loss in config["stats"]["calf_losses"]:
        if loss not in defined:
            raise ConfigError(
                "stats.calf_losses",
                f"unknown loss {loss!r}; defined in workflow/rules/losses.smk: "
                f"{', '.join(sorted(defined))}",
            )


def _check_datasets(config: Config) -> None:
    for name, ds in config["datasets"].items():
        key = f"datasets.{name}"
        if ds["source"] == "synth" and "synth" not in ds:
            raise ConfigError(key, "source 'synth' needs a 'synth' block (layout, preset)")
        if ds["source"] != "synth" and "synth" in ds:
            raise ConfigError(f"{key}.synth",
                              f"only used with source 'synth', not {ds['source']!r}")
        if ds["source"] == "local" and not Path(dataset_root(config, name)).is_dir():
            raise ConfigError(f"{key}.root",
                              f"folder {dataset_root(config, name)!r} does not exist")


def _check_models(config: Config) -> None:
    for name, m in config["models"].items():
        network = m.get("network", name)
        if network not in MODELS and "." not in network:
            raise ConfigError(
                f"models.{name}.network",
                f"unknown network {network!r}; use one of {', '.join(MODELS)} or an import path",
            )


def _check_study(config: Config, study: str, defined: Sequence[str]) -> None:
    key, s = f"studies.{study}", config["studies"][study]
    for kind in ("datasets", "models"):
        for name in s[kind]:
            if name not in config[kind]:
                raise ConfigError(f"{key}.{kind}", f"unknown {kind[:-1]} {name!r}; known: "
                                                   f"{', '.join(config[kind])}")
    _check_crosswalks(config, study)
    if s["pool"] and s["pool"] in config["datasets"]:
        raise ConfigError(f"{key}.pool", f"{s['pool']!r} is also a dataset name; pick another")
    study_losses(config, study, defined)


def _check_crosswalks(config: Config, study: str) -> None:
    key, s = f"studies.{study}.crosswalk", config["studies"][study]
    if s["crosswalk_columns"] and not isinstance(s["crosswalk"], str):
        raise ConfigError(f"studies.{study}.crosswalk_columns",
                          "goes with a single crosswalk file; give a list of {file, columns} "
                          "instead")
    fetched = Path(config["resources_dir"]) / "crosswalk"
    for path, _ in study_crosswalks(config, study):
        if Path(path).parent != fetched and not Path(path).is_file():
            raise ConfigError(key, f"file {path!r} does not exist")
    # without any crosswalk the split job would refuse the pool; say so before any job
    # (which files link which datasets, calf split checks on the stores themselves)
    adapters = {config["datasets"][d]["adapter"] for d in s["datasets"]}
    if s["pool"] and "brats" in adapters and not study_crosswalks(config, study):
        for other in _LINKED_RELEASES:
            if other in adapters:
                raise ConfigError(
                    key,
                    f"the pool mixes brats and {other} but names no crosswalk: a subject in "
                    f"both could straddle train and test (`calf download --help` lists the "
                    f"linking files; config/paper.yaml uses them)",
                )


# ---------------------------------------------------------------- per-job arguments
def _options(pairs: Iterable[tuple[str, object]]) -> list[str]:
    return [token for option, value in pairs for token in (option, str(value))]


def store_args(config: Config, study: str, dataset: str) -> list[str]:
    return _options(("--store", store_dir(config, d))
                    for d in member_datasets(config, study, dataset))


def synth_args(config: Config, dataset: str) -> list[str]:
    synth = config["datasets"][dataset]["synth"]
    return [*_options((f"--{k}", synth[k]) for k in ("layout", "preset", "cases")),
            "--shape", *map(str, synth["shape"]), "--seed", str(synth["seed"])]


def download_args(config: Config, dataset: str) -> list[str]:
    """``calf download``'s route options of a dataset, the URL aside (``download_env``)."""
    download = config["datasets"][dataset]["download"]
    return _options((f"--{k}", v) for k, v in download.items() if k != "url")


def download_env(config: Config, dataset: str) -> dict[str, str]:
    """The URL of a dataset's download as ``calf download`` reads it from the environment:
    a shell never parses it, and no printed command shows it (its query may hold a key)."""
    url = config["datasets"][dataset]["download"].get("url")
    return {URL_ENV: url} if url else {}


def preprocess_args(config: Config, dataset: str) -> list[str]:
    ds, p = config["datasets"][dataset], config["preprocess"]
    return ["--modalities", *ds["modalities"],
            *_options(("--option", f"{k}={v}") for k, v in ds["options"].items()),
            *_options((f"--{k.replace('_', '-')}", p[k])
                      for k in ("size", "scaling", "mask_resize")),
            "--region", ds["region"]]


def split_args(config: Config, study: str) -> list[str]:
    s = config["studies"][study]
    args = ["--holdout", str(s["holdout"])] if s["holdout"] else ["--folds", str(s["folds"])]
    args += ["--seed", str(config["training"]["seed"])]
    for path, columns in study_crosswalks(config, study):
        args += ["--crosswalk", path]
        args += _options(("--crosswalk-column", f"{c}={n}") for c, n in columns.items())
    return args


def selection_args(config: Config, selection_name: str) -> list[str]:
    """``calf split select``'s fold, ratio and seed of a training set ``[ratio-R/]foldK``."""
    v = parse_variant(selection_name)
    return _options((("--fold", v.fold), ("--ratio", v.ratio),
                     ("--seed", config["training"]["seed"])))


def profile_args(config: Config, dataset: str, selection_name: str) -> list[str]:
    v = parse_variant(selection_name)
    return _options((("--area", config["calf"]["area"]), ("--dataset", dataset),
                     ("--fold", v.fold), ("--ratio", v.ratio)))


def model_args(config: Config, model: str) -> list[str]:
    m = config["models"][model]
    return _options((("--model", m.get("network", model)), ("--width", m["width"]),
                     ("--model-kwargs", json_arg(m["kwargs"]))))


def training_seed(config: Config, variant: str) -> int:
    """A run's seed: its variant's, in a study of several seeds, else training.seed."""
    seed = parse_variant(variant).seed
    return config["training"]["seed"] if seed is None else seed


def training_args(config: Config, variant: str) -> list[str]:
    t = config["training"]
    args = _options((("--epochs", t["epochs"]), ("--batch-size", t["batch_size"]),
                     ("--lr", t["lr"]), ("--seed", training_seed(config, variant)),
                     ("--device", t["device"]), ("--precision", t["precision"])))
    args.append("--deterministic" if t["deterministic"] else "--no-deterministic")
    if t["compile"]:  # off by default: existing jobs' command lines stay as they were
        args.append("--compile")
    for key in ("workers", "max_steps_per_epoch"):
        if t[key] is not None:
            args += [f"--{key.replace('_', '-')}", str(t[key])]
    return args


def loss_args(loss: str, kwargs: Mapping[str, Any] | None) -> list[str]:
    """``--loss NAME --loss-kwargs JSON`` of one loss rule's ``loss`` and ``loss_kwargs``."""
    return ["--loss", loss, "--loss-kwargs", json_arg(dict(kwargs or {}))]


def run_args(runs: Iterable[tuple[str, Mapping[str, Any] | None, str]]) -> list[str]:
    """``--run LOSS KWARGS RUN`` of each (loss, kwargs, run folder): one job, several runs."""
    return [token for loss, kwargs, out in runs
            for token in ("--run", loss, json_arg(dict(kwargs or {})), out)]


def evaluation_pairs(config: Config, study: str, dataset: str, model: str, variant: str,
                     losses: Sequence[str]) -> list[str]:
    """``--run RUN --out CSV --loss NAME`` for each loss of one evaluate job."""
    args = []
    for loss in losses:
        key = run_key(study, dataset, model, loss, variant)
        args += ["--run", run_dir(config, key), "--out", metrics_csv(config, key),
                 "--loss", loss]
    return args


def evaluation_args(config: Config, study: str, dataset: str, model: str,
                    variant: str) -> list[str]:
    v, e = parse_variant(variant), config["evaluation"]
    # a pooled run's cases keep their member dataset (their store's) in the CSV's column
    pooled = config["studies"][study]["pool"] == dataset
    args = ["--fold", str(v.fold), *([] if pooled else ["--dataset", dataset]),
            *_options((("--model", model), ("--batch-size", e["batch_size"]),
                       ("--device", config["training"]["device"])))]
    if v.ratio != NATURAL:
        args += ["--ratio", v.ratio]
    if v.seed is not None:
        args += ["--seed", str(v.seed)]
    args += _options((("--space", e["space"]), ("--resample", e["resample"]),
                      ("--preset", e["preset"]), ("--nsd-tolerance", e["nsd_tolerance_mm"])))
    for key in ("conventions", "lesions"):
        if e[key]:
            args += [f"--{key}", json_arg(e[key])]
    if not e["lesion_metrics"]:
        args.append("--no-lesion-metrics")
    return args


def stats_args(config: Config, study: str, losses: Sequence[str]) -> list[str]:
    st = config["stats"]
    calf = study_calf_losses(config, study, losses)
    args = _options(("--calf-loss", loss) for loss in calf) if calf else ["--no-paired"]
    args += _options(("--metric", m) for m in st["metrics"])
    args += _options(("--friedman-metric", m) for m in st["friedman_metrics"])
    args += _options((f"--{k.replace('_', '-')}", st[k])
                     for k in ("alpha", "family", "missing", "zero_method", "resamples", "seed"))
    if st["by_modality"]:
        args.append("--by-modality")
    return args


def analysis_args(config: Config, study: str, losses: Sequence[str]) -> list[str]:
    """``calf analyse``'s options: its own (``analysis:``) and the tests' shared ones
    (``stats:`` alpha, missing, zero_method, resamples, seed and the CALF losses)."""
    an, st = config["analysis"], config["stats"]
    args = _options(("--calf-loss", loss) for loss in study_calf_losses(config, study, losses))
    args += _options(("--metric", m) for m in an["metrics"])
    bins = an["size_bins"]
    args += ["--size-bins", str(bins) if isinstance(bins, int) else
             ",".join(f"{float(edge):g}" for edge in bins)]
    args += _options(("--robustness-metric", m) for m in an["robustness_metrics"])
    args += _options(("--preset", p) for p in an["presets"])
    args += ["--rank-resamples", str(an["rank_resamples"])]
    args += _options((f"--{k.replace('_', '-')}", st[k])
                     for k in ("alpha", "missing", "zero_method", "resamples", "seed"))
    return args


def table_args(config: Config, study: str, losses: Sequence[str]) -> list[str]:
    calf = study_calf_losses(config, study, losses)
    return [*_options(("--calf-loss", loss) for loss in calf),
            "--alpha", str(config["stats"]["alpha"])]


def readme_study_args(config: Config) -> list[str]:
    return _options(("--study", f"{s}:{','.join(study_dataset_names(config, s))}")
                    for s in config["studies"])


def previous_sync(config: Config, study: str) -> list[str]:
    """Syncs run one study after another: one writer for the SQLite store at a time."""
    studies = list(config["studies"])
    i = studies.index(study)
    return [f"{config['results_dir']}/mlflow/{studies[i - 1]}.synced.json"] if i else []


def tracking_uri(config: Config) -> str:
    """mlflow.tracking_uri, else a SQLite file in the results folder."""
    results = Path(config["results_dir"]).resolve()
    return config["mlflow"]["tracking_uri"] or f"sqlite:///{results}/mlflow.db"


# ---------------------------------------------------------------- cluster
def gpu_resources(config: Config) -> dict[str, Any]:
    """What a train or evaluate job asks for: CPUs, memory, runtime and one GPU in the
    site's spelling (cluster.gpu: none, resource ``gpu``, or ``gres``)."""
    c = config["cluster"]
    res = dict(c["gpu_job"])
    if c["gpu"] == "gpu":
        res["gpu"] = 1
        if c["gpu_model"]:
            res["gpu_model"] = c["gpu_model"]
    elif c["gpu"] == "gres":
        res["gres"] = f"gpu:{c['gpu_model']}:1" if c["gpu_model"] else "gpu:1"
    return res
