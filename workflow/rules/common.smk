"""The workflow's helpers: the config check, targets and per-job arguments.

Rules only wire files to `calf` commands. What they need to know about the config comes
from calf.studies (pure functions of the config, unit-tested without Snakemake) and the
run layout from calf.layout; the functions here are thin wrappers that take a job's
wildcards. Argument helpers return lists of words, which the rules all quote the same
way, {params.x:q}.
"""

import os
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from calf import layout, studies
from calf.download.sources import SYNAPSE_TOKEN_ENV
from calf.layout import SELECTION_PATTERN, SPLITS_FILE, VARIANT_PATTERN

validate(
    config, workflow.source_path("../schemas/config.schema.yaml"), set_default=True
)

RESULTS = config["results_dir"]
RESOURCES = config["resources_dir"]
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
RULES_DIR = Path(workflow.current_basedir.get_path_or_uri(secret_free=True))
# the checkout that workflow/envs/calf.yaml installs (snakemake --sdm conda): Snakemake
# creates that environment from a copy of the file, so its pip reads the path from here
# (and which jobs elsewhere, e.g. on a cluster, are given too)
os.environ["CALF_CHECKOUT"] = str(RULES_DIR.parents[1].resolve())


envvars:
    "CALF_CHECKOUT",


# the report's description, from the workflow's own folder (the working directory may be
# elsewhere: snakemake --directory)
REPORT_DESCRIPTION = str((RULES_DIR.parent / "report/workflow.rst").resolve())
# the losses (each a train_<loss> rule), read from the rule files themselves (known here,
# before losses.smk is parsed, so that no include has to come before another)
LOSSES = studies.defined_losses(RULES_DIR)

# path patterns of the rules ({variant} is [ratio-R/][seed-N/]foldK, {selection} is
# [ratio-R/]foldK)
KEY = "{study}/{dataset}/{model}/{loss}/{variant}"
RUN = f"{RESULTS}/{layout.RUNS}/{KEY}"
METRICS = f"{RESULTS}/{layout.METRICS}/{KEY}"
RUN_DONE = f"{RUN}/{layout.TRAIN_DONE}"
SPLITS = f"{RESULTS}/{layout.SPLITS}/{{study}}/{{dataset}}"
PROFILES = f"{RESULTS}/{layout.PROFILES}/{{study}}/{{dataset}}"


def _per_loss(pattern, loss):
    """A pattern with its {loss} filled in, the other wildcards kept."""
    return pattern.replace("{loss}", loss)


studies.check_config(config, LOSSES)


# ---------------------------------------------------------------- datasets
def dataset_root(name):
    return studies.dataset_root(config, name)


def synapse_download_pending():
    """A Synapse download still to run; its token is passed on only where it is set, so
    that a plan (snakemake -n) needs no credentials: the download job itself says how to
    get one."""
    return bool(os.environ.get(SYNAPSE_TOKEN_ENV)) and studies.download_pending(
        config, "synapse"
    )


def download_env(wildcards):
    """The dataset's URL for `calf download`, in its environment, never in a command."""
    return studies.download_env(config, wildcards.dataset)


# ---------------------------------------------------------------- studies
def loss_rules():
    """Loss name -> its training rule: every rule named train_<loss> but the template."""
    return {
        r.name.removeprefix("train_"): r
        for r in workflow.rules
        if r.name.startswith("train_") and r.name != studies.TEMPLATE_RULE
    }


def study_losses(study):
    return studies.study_losses(config, study, LOSSES)


def study_dataset_names(study):
    return studies.study_dataset_names(config, study)


def study_stores(wildcards):
    return [
        studies.store_dir(config, d)
        for d in studies.member_datasets(config, wildcards.study, wildcards.dataset)
    ]


def crosswalk_files(wildcards):
    return [path for path, _ in studies.study_crosswalks(config, wildcards.study)]


def training_set(wildcards):
    return studies.training_set(
        config, wildcards.study, wildcards.dataset, wildcards.variant
    )


def training_profile(wildcards):
    return studies.training_profile(
        config, wildcards.study, wildcards.dataset, wildcards.variant
    )


def run_paths(study, kind):
    """Every training output ('runs': train.done) or per-case metrics file ('metrics')."""
    return studies.run_targets(config, study, study_losses(study), kind)


def profile_paths(study):
    return studies.profile_paths(config, study)


def pooled_metrics(wildcards=None):
    return [
        p
        for study in studies.pooled_studies(config)
        for p in run_paths(study, "metrics")
    ]


def all_targets(wildcards=None):
    _check_loss_rules()
    targets = [p for study in config["studies"] for p in run_paths(study, "metrics")]
    for study in config["studies"]:
        targets += profile_paths(study)
        targets.append(f"{RESULTS}/mlflow/{study}.synced.json")
    targets.append(f"{RESULTS}/report/README.md")
    return targets


def _check_loss_rules():
    """The loss rules Snakemake parsed are the ones read from the rule files."""
    parsed = sorted(loss_rules())
    if parsed != LOSSES:
        raise WorkflowError(
            f"the loss rules {', '.join(parsed)} are not the train_<loss> rules found in "
            f"{RULES_DIR}/*.smk ({', '.join(LOSSES)}): define each loss rule there"
        )


# ---------------------------------------------------------------- per-job arguments
def store_args(wildcards):
    return studies.store_args(config, wildcards.study, wildcards.dataset)


def loss_args(wildcards):
    """--loss NAME --loss-kwargs JSON, from the params of the loss's own rule."""
    params = loss_rules()[wildcards.loss].params
    return studies.loss_args(params.loss, getattr(params, "loss_kwargs", None))


def training_args(wildcards):
    return studies.training_args(config, wildcards.variant)


def model_args(wildcards):
    return studies.model_args(config, wildcards.model)


def _run_key(wildcards, loss):
    w = wildcards
    return studies.run_key(w.study, w.dataset, w.model, loss, w.variant)


def group_markers(study):
    """A grouped_training_<study> job's outputs: the train.done of each of the study's losses."""
    return [_per_loss(RUN_DONE, loss) for loss in study_losses(study)]


def group_run_args(wildcards):
    """--run LOSS KWARGS RUN of each loss, the loss and kwargs from the loss's own rule."""
    rules, runs = loss_rules(), []
    for loss in study_losses(wildcards.study):
        params = rules[loss].params
        kwargs = getattr(params, "loss_kwargs", None)
        runs.append(
            (params.loss, kwargs, studies.run_dir(config, _run_key(wildcards, loss)))
        )
    return studies.run_args(runs)


def evaluation_runs(wildcards):
    """The training runs one evaluate job reads: every loss of a (study, dataset, model, fold)."""
    return [
        studies.train_done(config, _run_key(wildcards, loss))
        for loss in study_losses(wildcards.study)
    ]


def evaluation_outputs(study, suffix):
    """One evaluate job's outputs of a kind (.csv, .json, _slices.csv, _overlays): one per loss."""
    return [_per_loss(METRICS, loss) + suffix for loss in study_losses(study)]


def evaluation_pairs(wildcards):
    return studies.evaluation_pairs(
        config,
        wildcards.study,
        wildcards.dataset,
        wildcards.model,
        wildcards.variant,
        study_losses(wildcards.study),
    )


def evaluation_args(wildcards):
    return studies.evaluation_args(
        config, wildcards.study, wildcards.dataset, wildcards.model, wildcards.variant
    )


def gpu_resources():
    """Set on the template rule, so that every loss rule, a user's new one included,
    inherits it (calf.studies.gpu_resources)."""
    return studies.gpu_resources(config)


def train_threads():
    """A training job's threads: its CPUs (cluster.gpu_job.cpus_per_task), at most the cores
    Snakemake was given; passed on as torch's thread count."""
    return config["cluster"]["gpu_job"]["cpus_per_task"]


def previous_sync(wildcards):
    return studies.previous_sync(config, wildcards.study)


# ---------------------------------------------------------------- statistics, report
def stats_args(wildcards):
    return studies.stats_args(config, wildcards.study, study_losses(wildcards.study))


def analysis_args(wildcards):
    return studies.analysis_args(config, wildcards.study, study_losses(wildcards.study))


def table_args(wildcards):
    return studies.table_args(config, wildcards.study, study_losses(wildcards.study))


def figure_outputs(study, suffix):
    return [
        f"{RESULTS}/report/{study}/figures/{n}{suffix}"
        for n in studies.figure_names(config, study)
    ]


def figure_report_outputs(study):
    """Named outputs of a study's figure job: each PNG in the report, with its caption."""
    outputs = {}
    for name in studies.figure_names(config, study):
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
        files.append(f"{RESULTS}/analysis/{study}/analysis.json")
        files += figure_outputs(study, ".png")
    return files


def _names(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    study=_names(config["studies"]),
    dataset=_names(
        set(config["datasets"])
        | {s["pool"] for s in config["studies"].values() if s["pool"]}
    ),
    model=_names(config["models"]),
    variant=VARIANT_PATTERN,
    selection=SELECTION_PATTERN,
