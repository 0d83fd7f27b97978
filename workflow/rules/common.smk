"""Every helper of the workflow: config checks, paths, targets and per-job arguments.

Rules only wire files to `calf` commands; what they need to know about the config comes
from the functions here.
"""

import json
import os
import re
import shlex
from pathlib import Path

from snakemake.utils import validate

validate(
    config, workflow.source_path("../schemas/config.schema.yaml"), set_default=True
)

RESULTS = config["results_dir"]
RESOURCES = config["resources_dir"]
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"

MODEL_NETWORKS = ("unet", "deeplabv3", "fpn")
# a {variant} is the part of a run's path after the loss: [ratio-R/][seed-N/]foldK
VARIANT_RE = r"(ratio-[0-9.]+/)?(seed-[0-9]+/)?fold[0-9]+"


class ConfigError(Exception):
    """A config value the schema cannot catch; the message names the key."""


def _fail(key, message):
    raise ConfigError(f"config key {key}: {message}")


# ---------------------------------------------------------------- datasets
def dataset_root(name):
    ds = config["datasets"][name]
    return ds.get("root") or f"{RESOURCES}/{name}"


def _check_datasets():
    for name, ds in config["datasets"].items():
        key = f"datasets.{name}"
        if ds["source"] == "synth" and "synth" not in ds:
            _fail(key, "source 'synth' needs a 'synth' block (layout, preset)")
        if ds["source"] != "synth" and "synth" in ds:
            _fail(
                f"{key}.synth", f"only used with source 'synth', not {ds['source']!r}"
            )
        if ds["source"] == "local" and not Path(dataset_root(name)).is_dir():
            _fail(f"{key}.root", f"folder {dataset_root(name)!r} does not exist")


def synapse_download_pending():
    """A Synapse download still to run; its token is passed on only where it is set, so
    that a plan (snakemake -n) needs no credentials: the download job itself says how to
    get one."""
    return bool(os.environ.get("SYNAPSE_AUTH_TOKEN")) and any(
        d["source"] == "download"
        and d["download"].get("route", "synapse" if d["adapter"] == "brats" else None)
        == "synapse"
        and not Path(dataset_root(n)).exists()
        for n, d in config["datasets"].items()
    )


def store_dir(name):
    return f"{RESULTS}/stores/{name}"


# ---------------------------------------------------------------- losses
def loss_rules():
    """Loss name -> its training rule: every rule named train_<loss> but the template."""
    return {
        r.name.removeprefix("train_"): r
        for r in workflow.rules
        if r.name.startswith("train_") and r.name != "train_template"
    }


def study_losses(study):
    chosen = config["studies"][study]["losses"]
    defined = sorted(loss_rules())
    if chosen == "all":
        return defined
    for loss in chosen:
        if loss not in defined:
            _fail(
                f"studies.{study}.losses",
                f"unknown loss {loss!r}; defined in workflow/rules/losses.smk: {', '.join(defined)}",
            )
    return list(chosen)


# ---------------------------------------------------------------- studies
def study_dataset_names(study):
    """The {dataset} values of a study: each dataset, or the pool's name."""
    s = config["studies"][study]
    return [s["pool"]] if s["pool"] else list(s["datasets"])


def member_datasets(study, dataset):
    """The datasets whose stores feed the {dataset} of a study (several for a pool)."""
    s = config["studies"][study]
    return list(s["datasets"]) if s["pool"] == dataset else [dataset]


def study_crosswalks(study):
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
        return [(crosswalk_path(s["crosswalk"]), columns)]
    return [(crosswalk_path(c["file"]), c["columns"]) for c in s["crosswalk"]]


def crosswalk_path(file):
    """A bare file name lies in <resources_dir>/crosswalk/, where the crosswalk rule
    fetches the published linking files; a path is taken as it is."""
    return f"{RESOURCES}/crosswalk/{file}" if Path(file).name == file else file


def crosswalk_files(wildcards):
    return [path for path, _ in study_crosswalks(wildcards.study)]


def crosswalk_downloads():
    """File names that the crosswalk rule fetches (the studies' linking files that lie in
    <resources_dir>/crosswalk/ and are not there yet)."""
    folder = Path(RESOURCES) / "crosswalk"
    return sorted(
        {
            Path(path).name
            for study in config["studies"]
            for path, _ in study_crosswalks(study)
            if Path(path).parent == folder and not Path(path).exists()
        }
    )


def _check_crosswalks(study):
    key = f"studies.{study}.crosswalk"
    s = config["studies"][study]
    if s["crosswalk_columns"] and not isinstance(s["crosswalk"], str):
        _fail(
            f"studies.{study}.crosswalk_columns",
            "goes with a single crosswalk file; give a list of {file, columns} instead",
        )
    for path, _ in study_crosswalks(study):
        fetched = Path(path).parent == Path(RESOURCES) / "crosswalk"
        if not fetched and not Path(path).is_file():
            _fail(key, f"file {path!r} does not exist")
    # without any crosswalk the split job would refuse the pool; say so before any job
    # (which files link which datasets, calf split checks on the stores themselves)
    adapters = {config["datasets"][d]["adapter"] for d in s["datasets"]}
    if s["pool"] and "brats" in adapters and not study_crosswalks(study):
        for other in ("upenn_gbm", "ucsf_pdgm"):
            if other in adapters:
                _fail(
                    key,
                    f"the pool mixes brats and {other} but names no crosswalk: a subject "
                    f"in both could straddle train and test (`calf download --help` lists "
                    f"the linking files; config/paper.yaml uses them)",
                )


def study_stores(wildcards):
    return [store_dir(d) for d in member_datasets(wildcards.study, wildcards.dataset)]


def store_args(wildcards):
    return " ".join(f"--store {store}" for store in study_stores(wildcards))


def fold_ids(study):
    s = config["studies"][study]
    return [0] if s["holdout"] else list(range(s["folds"]))


def ratio_label(ratio):
    return "natural" if ratio == "natural" else f"{float(ratio):g}"


def variants(study):
    """Every [ratio-R/][seed-N/]foldK of a study; ratio and seed appear when they vary."""
    s = config["studies"][study]
    ratios = [ratio_label(r) for r in s["ratios"]]
    vary_ratio = ratios != ["natural"]
    vary_seed = len(s["seeds"]) > 1
    out = []
    for ratio in ratios:
        for seed in s["seeds"]:
            for fold in fold_ids(study):
                ratio_part = f"ratio-{ratio}/" if vary_ratio else ""
                seed_part = f"seed-{seed}/" if vary_seed else ""
                out.append(f"{ratio_part}{seed_part}fold{fold}")
    return out


def parse_variant(variant):
    """{'fold': int, 'ratio': str, 'seed': int | None} of a variant path."""
    match = re.fullmatch(
        r"(?:ratio-([0-9.]+)/)?(?:seed-([0-9]+)/)?fold([0-9]+)", variant
    )
    if match is None:
        raise ValueError(f"not a run variant: {variant!r}")
    ratio, seed, fold = match.groups()
    return {
        "fold": int(fold),
        "ratio": ratio or "natural",
        "seed": int(seed) if seed else None,
    }


def selection(variant):
    """The training-set file name of a variant: seeds share a selection."""
    v = parse_variant(variant)
    prefix = "" if v["ratio"] == "natural" else f"ratio-{v['ratio']}/"
    return f"{prefix}fold{v['fold']}"


def training_set(wildcards):
    return f"{RESULTS}/splits/{wildcards.study}/{wildcards.dataset}/{selection(wildcards.variant)}.csv"


def training_profile(wildcards):
    return f"{RESULTS}/profiles/{wildcards.study}/{wildcards.dataset}/{selection(wildcards.variant)}.json"


def _check_studies():
    for study, s in config["studies"].items():
        key = f"studies.{study}"
        for ds in s["datasets"]:
            if ds not in config["datasets"]:
                _fail(
                    f"{key}.datasets",
                    f"unknown dataset {ds!r}; known: {', '.join(config['datasets'])}",
                )
        for model in s["models"]:
            if model not in config["models"]:
                _fail(
                    f"{key}.models",
                    f"unknown model {model!r}; known: {', '.join(config['models'])}",
                )
        _check_crosswalks(study)
        if s["pool"] and s["pool"] in config["datasets"]:
            _fail(f"{key}.pool", f"{s['pool']!r} is also a dataset name; pick another")
        study_losses(study)
    _check_stats()


def _check_models():
    for name, m in config["models"].items():
        network = m.get("network", name)
        if network not in MODEL_NETWORKS and "." not in network:
            _fail(
                f"models.{name}.network",
                f"unknown network {network!r}; use one of {', '.join(MODEL_NETWORKS)} or an import path",
            )


# ---------------------------------------------------------------- per-job arguments
def split_args(wildcards):
    s = config["studies"][wildcards.study]
    args = [f"--holdout {s['holdout']}" if s["holdout"] else f"--folds {s['folds']}"]
    args.append(f"--seed {config['training']['seed']}")
    for path, columns in study_crosswalks(wildcards.study):
        args.append(f"--crosswalk {shlex.quote(path)}")
        args += [
            f"--crosswalk-column {shlex.quote(f'{c}={n}')}" for c, n in columns.items()
        ]
    return " ".join(args)


def selection_args(wildcards):
    v = parse_variant(wildcards.selection)
    return (
        f"--fold {v['fold']} --ratio {v['ratio']} --seed {config['training']['seed']}"
    )


def model_args(wildcards):
    m = config["models"][wildcards.model]
    return (
        f"--model {m.get('network', wildcards.model)} --width {m['width']} "
        f"--model-kwargs '{json.dumps(m['kwargs'])}'"
    )


def training_args(wildcards):
    t = config["training"]
    v = parse_variant(wildcards.variant)
    seed = v["seed"] if v["seed"] is not None else t["seed"]
    args = [
        f"--epochs {t['epochs']}",
        f"--batch-size {t['batch_size']}",
        f"--lr {t['lr']}",
        f"--seed {seed}",
        f"--device {t['device']}",
        f"--precision {t['precision']}",
        "--deterministic" if t["deterministic"] else "--no-deterministic",
    ]
    if t["compile"]:  # off by default: existing jobs' command lines stay as they were
        args.append("--compile")
    if t["workers"] is not None:
        args.append(f"--workers {t['workers']}")
    if t["max_steps_per_epoch"] is not None:
        args.append(f"--max-steps-per-epoch {t['max_steps_per_epoch']}")
    return " ".join(args)


def group_markers(study):
    """A grouped_training_<study> job's outputs: the train.done of each of the study's losses."""
    return [
        f"{RESULTS}/runs/{{study}}/{{dataset}}/{{model}}/{loss}/{{variant}}/train.done"
        for loss in study_losses(study)
    ]


def group_run_args(wildcards):
    """--run LOSS KWARGS RUN of each loss, the loss and kwargs from the loss's own rule."""
    rules = loss_rules()
    args = []
    for loss in study_losses(wildcards.study):
        params = rules[loss].params
        kwargs = json.dumps(getattr(params, "loss_kwargs", None) or {})
        run = f"{RESULTS}/runs/{wildcards.study}/{wildcards.dataset}/{wildcards.model}/{loss}/{wildcards.variant}"
        args.append(f"--run {params.loss} {shlex.quote(kwargs)} {run}")
    return " ".join(args)


def evaluation_runs(wildcards):
    """The training runs one evaluate job reads: every loss of a (study, dataset, model, fold)."""
    return [
        f"{RESULTS}/runs/{wildcards.study}/{wildcards.dataset}/{wildcards.model}/{loss}/{wildcards.variant}/train.done"
        for loss in study_losses(wildcards.study)
    ]


def evaluation_outputs(study, suffix):
    """One evaluate job's outputs of a kind (.csv, .json, _slices.csv, _overlays): one per loss."""
    return [
        f"{RESULTS}/metrics/{{study}}/{{dataset}}/{{model}}/{loss}/{{variant}}{suffix}"
        for loss in study_losses(study)
    ]


def evaluation_pairs(wildcards):
    """--run RUN --out CSV --loss NAME for each loss of the job."""
    pairs = []
    for loss in study_losses(wildcards.study):
        run = f"{wildcards.study}/{wildcards.dataset}/{wildcards.model}/{loss}/{wildcards.variant}"
        pairs.append(
            f"--run {RESULTS}/runs/{run} --out {RESULTS}/metrics/{run}.csv --loss {loss}"
        )
    return " ".join(pairs)


def evaluation_args(wildcards):
    v = parse_variant(wildcards.variant)
    # a pooled run's cases keep their member dataset (their store's) in the CSV's column
    pooled = config["studies"][wildcards.study]["pool"] == wildcards.dataset
    args = [
        f"--fold {v['fold']}",
        *([] if pooled else [f"--dataset {wildcards.dataset}"]),
        f"--model {wildcards.model}",
        f"--batch-size {config['evaluation']['batch_size']}",
        f"--device {config['training']['device']}",
    ]
    if v["ratio"] != "natural":
        args.append(f"--ratio {v['ratio']}")
    if v["seed"] is not None:
        args.append(f"--seed {v['seed']}")
    e = config["evaluation"]
    args += [
        f"--space {e['space']}",
        f"--resample {e['resample']}",
        f"--preset {e['preset']}",
        f"--nsd-tolerance {e['nsd_tolerance_mm']}",
    ]
    if e["conventions"]:
        args.append(f"--conventions '{json.dumps(e['conventions'])}'")
    if e["lesions"]:
        args.append(f"--lesions '{json.dumps(e['lesions'])}'")
    if not e["lesion_metrics"]:
        args.append("--no-lesion-metrics")
    return " ".join(args)


def gpu_resources():
    """What a train or evaluate job asks for: CPUs, memory, runtime and one GPU in the
    site's spelling (config cluster.gpu). Set on the template rule, so that every loss
    rule, a user's new one included, inherits it."""
    c = config["cluster"]
    res = dict(c["gpu_job"])
    if c["gpu"] == "gpu":
        res["gpu"] = 1
        if c["gpu_model"]:
            res["gpu_model"] = c["gpu_model"]
    elif c["gpu"] == "gres":
        res["gres"] = f"gpu:{c['gpu_model']}:1" if c["gpu_model"] else "gpu:1"
    return res


def train_threads():
    """A training job's threads: its CPUs (cluster.gpu_job.cpus_per_task), at most the cores
    Snakemake was given; passed on as torch's thread count."""
    return config["cluster"]["gpu_job"]["cpus_per_task"]


def previous_sync(wildcards):
    """Syncs run one study after another: one writer for the SQLite store at a time."""
    studies = list(config["studies"])
    i = studies.index(wildcards.study)
    return [f"{RESULTS}/mlflow/{studies[i - 1]}.synced.json"] if i else []


def tracking_uri():
    return (
        config["mlflow"]["tracking_uri"]
        or f"sqlite:///{Path(RESULTS).resolve()}/mlflow.db"
    )


# ---------------------------------------------------------------- statistics, report
def study_calf_losses(study):
    """The configured CALF losses (stats.calf_losses) that a study trains; may be none,
    and then the study has no paired tests, only the Friedman test across its losses."""
    return [
        loss for loss in config["stats"]["calf_losses"] if loss in study_losses(study)
    ]


def _check_stats():
    defined = sorted(loss_rules())
    for loss in config["stats"]["calf_losses"]:
        if loss not in defined:
            _fail(
                "stats.calf_losses",
                f"unknown loss {loss!r}; defined in workflow/rules/losses.smk: {', '.join(defined)}",
            )


def stats_args(wildcards):
    st = config["stats"]
    calf = study_calf_losses(wildcards.study)
    args = [f"--calf-loss {loss}" for loss in calf] if calf else ["--no-paired"]
    args += [f"--metric {m}" for m in st["metrics"]]
    args += [f"--friedman-metric {m}" for m in st["friedman_metrics"]]
    args += [
        f"--alpha {st['alpha']}",
        f"--family {st['family']}",
        f"--missing {st['missing']}",
        f"--zero-method {st['zero_method']}",
        f"--resamples {st['resamples']}",
        f"--seed {st['seed']}",
    ]
    if st["by_modality"]:
        args.append("--by-modality")
    return " ".join(args)


def table_args(wildcards):
    calf = " ".join(
        f"--calf-loss {loss}" for loss in study_calf_losses(wildcards.study)
    )
    return f"{calf} --alpha {config['stats']['alpha']}"


def pooled_studies():
    """Studies run under the authors' protocol: pooled datasets, one holdout split."""
    return [s for s, c in config["studies"].items() if c["pool"] and c["holdout"]]


def pooled_metrics(wildcards=None):
    return [p for study in pooled_studies() for p in run_paths(study, "metrics")]


FIGURES = ("dice", "hd95", "critical_difference", "imbalance", "branches")


def figure_names(study):
    """A study's figures: one per kind, and one overlay grid per dataset."""
    return list(FIGURES) + [f"overlays_{d}" for d in study_dataset_names(study)]


def figure_outputs(study, suffix):
    return [
        f"{RESULTS}/report/{study}/figures/{n}{suffix}" for n in figure_names(study)
    ]


def figure_report_outputs(study):
    """Named outputs of a study's figure job: each PNG in the report, with its caption."""
    outputs = {}
    for name in figure_names(study):
        base = f"{RESULTS}/report/{{study}}/figures/{name}"
        caption = "overlays" if name.startswith("overlays_") else name
        outputs[f"{name}_png"] = report(
            f"{base}.png",
            caption=f"../report/{caption}.rst",
            category="Figures",
            subcategory="{study}",
            labels={"study": "{study}", "figure": name.replace("_", " ")},
        )
        outputs[f"{name}_svg"] = f"{base}.svg"
    return outputs


def readme_study_args():
    return " ".join(
        f"--study {s}:{','.join(study_dataset_names(s))}" for s in config["studies"]
    )


# the report's description, from the workflow's own folder (the working directory may be
# elsewhere: snakemake --directory)
REPORT_DESCRIPTION = str(Path(workflow.basedir) / "workflow/report/workflow.rst")


def report_front_page():
    """The front page of `snakemake --report`: once report_readme wrote it, every study's
    answer on top of workflow/report/workflow.rst; before that the description alone.
    Snakemake reads it only when it builds the report, after the workflow ran. The
    generated page is given absolute: a relative path would be taken from
    workflow/rules/, the folder of the report directive (as the fallback is)."""
    page = Path(f"{RESULTS}/report/front_page.rst")
    return str(page.resolve()) if page.is_file() else "../report/workflow.rst"


def report_files(wildcards=None):
    """What results/report/README.md links: every table and figure of every study."""
    files = [f"{RESULTS}/report/paper_vs_suite.md"]
    for study in config["studies"]:
        files.append(f"{RESULTS}/report/{study}/summary.md")
        files.append(f"{RESULTS}/stats/{study}/stats.json")
        files += figure_outputs(study, ".png")
    return files


# ---------------------------------------------------------------- targets
def run_paths(study, kind):
    """Every training output ('runs') or per-case metrics file ('metrics') of a study."""
    out = []
    s = config["studies"][study]
    losses, study_variants = study_losses(study), variants(study)
    for dataset in study_dataset_names(study):
        for model in s["models"]:
            for loss in losses:
                for variant in study_variants:
                    base = f"{study}/{dataset}/{model}/{loss}/{variant}"
                    if kind == "runs":
                        out.append(f"{RESULTS}/runs/{base}/train.done")
                    else:
                        out.append(f"{RESULTS}/metrics/{base}.csv")
    return out


def profile_paths(study):
    """One profile per training set: seeds share theirs, so each is listed once."""
    return list(
        dict.fromkeys(
            f"{RESULTS}/profiles/{study}/{dataset}/{selection(v)}.json"
            for dataset in study_dataset_names(study)
            for v in variants(study)
        )
    )


def all_metrics(wildcards=None):
    return [p for study in config["studies"] for p in run_paths(study, "metrics")]


def all_targets(wildcards=None):
    targets = all_metrics()
    for study in config["studies"]:
        targets += profile_paths(study)
        targets.append(f"{RESULTS}/mlflow/{study}.synced.json")
    targets.append(f"{RESULTS}/report/README.md")
    return targets


_check_datasets()
_check_models()


def _names(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    study=_names(config["studies"]),
    dataset=_names(
        set(config["datasets"])
        | {s["pool"] for s in config["studies"].values() if s["pool"]}
    ),
    model=_names(config["models"]),
    selection=r"(ratio-[0-9.]+/)?fold[0-9]+",
