"""calf.studies: what a workflow config asks for, without Snakemake running (the config is
validated, defaults filled in, by Snakemake's own validate against the workflow's schema)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from snakemake.utils import validate

from calf import studies
from calf.download.sources import URL_ENV
from calf.errors import CalfError
from calf.layout import RunKey

REPO = next(p for p in Path(__file__).resolve().parents if (p / "workflow/Snakefile").is_file())
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
DEFINED = ["bce", "calf", "calf_dataset", "dice"]


def config(**studies_):
    """A validated config: two synthetic cohorts, two models, the studies given."""
    c = {
        "results_dir": "res",
        "resources_dir": "rsc",
        "datasets": {
            name: {"adapter": adapter, "source": "synth",
                   "synth": {"layout": adapter, "preset": "moderate"}}
            for name, adapter in (("a", "upenn_gbm"), ("b", "ucsf_pdgm"))
        },
        "models": {"unet": {"width": 0.5}, "fpn": {"kwargs": {"init": "monai"}}},
        "studies": studies_ or {"s": {"datasets": ["a"], "models": ["unet"]}},
    }
    validate(c, str(SCHEMA), set_default=True)
    return c


@pytest.mark.parametrize("study, expected", [
    ({"folds": 2}, ["fold0", "fold1"]),
    ({"holdout": 0.1}, ["fold0"]),
    # one seed names no path part; a filter ratio does, the natural training set does not
    ({"folds": 2, "seeds": [7]}, ["fold0", "fold1"]),
    ({"holdout": 0.1, "ratios": [0.10, 0.25]}, ["ratio-0.1/fold0", "ratio-0.25/fold0"]),
    ({"holdout": 0.1, "ratios": ["natural", 0.5], "seeds": [1, 2]},
     ["seed-1/fold0", "seed-2/fold0", "ratio-0.5/seed-1/fold0", "ratio-0.5/seed-2/fold0"]),
    ({"folds": 3, "seeds": [3, 4]},
     ["seed-3/fold0", "seed-3/fold1", "seed-3/fold2", "seed-4/fold0", "seed-4/fold1",
      "seed-4/fold2"]),
])
def test_variants_of_a_study(study, expected):
    c = config(s={"datasets": ["a"], "models": ["unet"], **study})
    assert studies.variants(c, "s") == expected


@pytest.mark.parametrize("study, expected", [
    ({"folds": 2, "seeds": [1, 2]}, ["fold0", "fold1"]),  # seeds share their training set
    ({"holdout": 0.1, "ratios": ["natural", 0.5], "seeds": [1, 2]},
     ["fold0", "ratio-0.5/fold0"]),
])
def test_selections_are_each_training_set_once(study, expected):
    c = config(s={"datasets": ["a"], "models": ["unet"], **study})
    assert studies.selections(c, "s") == expected


@pytest.mark.parametrize("variant, selection", [
    ("fold3", "fold3"), ("seed-9/fold0", "fold0"), ("ratio-0.25/seed-1/fold2", "ratio-0.25/fold2"),
])
def test_selection_of_a_variant(variant, selection):
    assert studies.selection(variant) == selection


@pytest.mark.parametrize("variant", ["ratio-natural/fold0", "ratio-0.250/fold0", "fold", "x"])
def test_a_variant_the_layout_refuses(variant):
    with pytest.raises(CalfError):
        studies.selection(variant)


def test_a_pooled_study_has_one_dataset_fed_by_every_store():
    c = config(p={"datasets": ["a", "b"], "pool": "ab", "holdout": 0.25, "models": ["unet"]},
               s={"datasets": ["a", "b"], "models": ["unet"]})
    assert studies.study_dataset_names(c, "p") == ["ab"]
    assert studies.member_datasets(c, "p", "ab") == ["a", "b"]
    assert studies.study_dataset_names(c, "s") == ["a", "b"]
    assert studies.member_datasets(c, "s", "b") == ["b"]
    assert studies.store_args(c, "p", "ab") == ["--store", "res/stores/a", "--store",
                                                "res/stores/b"]
    assert studies.pooled_studies(c) == ["p"]
    assert studies.figure_names(c, "s")[-2:] == ["overlays_a", "overlays_b"]


def test_run_targets_in_order_datasets_models_losses_variants():
    c = config(s={"datasets": ["a", "b"], "models": ["unet", "fpn"], "folds": 2,
                  "seeds": [1, 2]})
    runs = studies.run_targets(c, "s", ["dice", "bce"], "runs")
    assert len(runs) == 2 * 2 * 2 * 4
    assert runs[:5] == [
        "res/runs/s/a/unet/dice/seed-1/fold0/train.done",
        "res/runs/s/a/unet/dice/seed-1/fold1/train.done",
        "res/runs/s/a/unet/dice/seed-2/fold0/train.done",
        "res/runs/s/a/unet/dice/seed-2/fold1/train.done",
        "res/runs/s/a/unet/bce/seed-1/fold0/train.done",
    ]
    assert runs[-1] == "res/runs/s/b/fpn/bce/seed-2/fold1/train.done"
    metrics = studies.run_targets(c, "s", ["dice"], "metrics")
    assert metrics[0] == "res/metrics/s/a/unet/dice/seed-1/fold0.csv"
    # each path is the layout's: the run key parses back from it
    assert RunKey.from_path(metrics[-1], ".csv", root="res/metrics") == RunKey(
        "s", "b", "fpn", "dice", 1, seed=2)
    with pytest.raises(ValueError, match="kind 'model'"):
        studies.run_targets(c, "s", ["dice"], "model")


def test_profiles_and_training_sets_per_selection():
    c = config(s={"datasets": ["a"], "models": ["unet"], "holdout": 0.2,
                  "ratios": ["natural", 0.25], "seeds": [1, 2]})
    assert studies.profile_paths(c, "s") == ["res/profiles/s/a/fold0.json",
                                             "res/profiles/s/a/ratio-0.25/fold0.json"]
    assert (studies.training_set(c, "s", "a", "ratio-0.25/seed-2/fold0")
            == "res/splits/s/a/ratio-0.25/fold0.csv")
    assert studies.splits_file(c, "s", "a") == "res/splits/s/a/splits_final.json"
    assert studies.subjects_file(c, "s", "a") == "res/splits/s/a/subjects.csv"


LOSS_RULES = '''
# A loss is a rule; the example below is a comment:
#   use rule train_template as train_gdice with:
rule train_template:
    output: "x"

use rule train_template as train_bce with:
    params:
        loss="bce",

use rule train_bce as train_bce2 with:
    params:
        loss="bce",

rule train_custom:
    output: "y"

rule grouped_training_s:
    output: "z"
'''


def test_loss_rule_names_are_the_train_rules_but_the_template():
    assert studies.loss_rule_names(LOSS_RULES) == ["bce", "bce2", "custom"]


def test_the_workflows_losses_are_read_from_its_rule_files():
    assert studies.defined_losses(REPO / "workflow/rules") == [
        "bce", "calf", "calf_dataset", "calf_region", "combo", "dice", "focal", "iou",
        "tversky"]


def test_study_losses():
    c = config(s={"datasets": ["a"], "models": ["unet"]},
               t={"datasets": ["a"], "models": ["unet"], "losses": ["dice", "calf"]})
    assert studies.study_losses(c, "s", ["dice", "bce"]) == ["bce", "dice"]
    assert studies.study_losses(c, "t", DEFINED) == ["dice", "calf"]
    assert studies.study_calf_losses(c, "t", ["dice", "calf"]) == ["calf"]
    with pytest.raises(CalfError, match="config key studies.t.losses: unknown loss 'calf'; "
                                        "defined in workflow/rules/losses.smk: bce, dice"):
        studies.study_losses(c, "t", ["dice", "bce"])


def _edit(path, value):
    def edit(c):
        *parents, last = path.split(".")
        node = c
        for key in parents:
            node = node[key]
        node[last] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (_edit("studies.s.datasets", ["a", "zz"]),
     "config key studies.s.datasets: unknown dataset 'zz'; known: a, b"),
    (_edit("studies.s.models", ["vit"]),
     "config key studies.s.models: unknown model 'vit'; known: unet, fpn"),
    (_edit("models.unet.network", "resnet"),
     "config key models.unet.network: unknown network 'resnet'; use one of unet, deeplabv3, "
     "fpn or an import path"),
    (_edit("studies.s.pool", "a"), "config key studies.s.pool: 'a' is also a dataset name"),
    (_edit("stats.calf_losses", ["calf", "calf_region"]),
     "config key stats.calf_losses: unknown loss 'calf_region'"),
    (_edit("studies.s.crosswalk_columns", ["ID=upenn_gbm"]),
     "config key studies.s.crosswalk_columns: goes with a single crosswalk file"),
    (_edit("studies.s.crosswalk", "/nonexistent/map.csv"),
     "config key studies.s.crosswalk: file '/nonexistent/map.csv' does not exist"),
    (_edit("datasets.a.source", "local"),
     "config key datasets.a.synth: only used with source 'synth', not 'local'"),
])
def test_config_errors_name_their_key(edit, message):
    c = config(s={"datasets": ["a", "b"], "models": ["unet"]})
    c["stats"]["calf_losses"] = ["calf"]
    studies.check_config(c, DEFINED)  # the unedited config passes
    edit(c)
    with pytest.raises(studies.ConfigError) as err:
        studies.check_config(c, DEFINED)
    assert message in str(err.value)


def test_a_pool_of_brats_with_a_tcia_release_needs_a_crosswalk(tmp_path):
    c = config(p={"datasets": ["a", "b"], "pool": "ab", "holdout": 0.1, "models": ["unet"]})
    c["stats"]["calf_losses"] = ["calf"]
    c["datasets"]["b"]["adapter"] = "brats"
    with pytest.raises(studies.ConfigError, match="the pool mixes brats and upenn_gbm"):
        studies.check_config(c, DEFINED)
    # a bare file name is fetched to resources_dir/crosswalk/ (not checked); a path must exist
    c["studies"]["p"]["crosswalk"] = [{"file": "map.xlsx", "columns": {"ID": "upenn_gbm"}}]
    studies.check_config(c, DEFINED)
    assert studies.crosswalk_downloads(c) == ["map.xlsx"]
    assert studies.split_args(c, "p") == ["--holdout", "0.1", "--seed", "12345",
                                          "--crosswalk", "rsc/crosswalk/map.xlsx",
                                          "--crosswalk-column", "ID=upenn_gbm"]


def test_training_and_model_arguments():
    c = config(s={"datasets": ["a"], "models": ["unet"], "seeds": [1, 2]})
    c["training"].update(workers=0, max_steps_per_epoch=3, compile=True)
    assert studies.training_args(c, "seed-2/fold1") == [
        "--epochs", "20", "--batch-size", "32", "--lr", "1e-05", "--seed", "2",
        "--device", "auto", "--precision", "bf16", "--no-deterministic", "--compile",
        "--workers", "0", "--max-steps-per-epoch", "3"]
    # a study of one seed trains with training.seed
    assert studies.training_seed(c, "fold0") == 12345
    assert studies.model_args(c, "fpn") == ["--model", "fpn", "--width", "1.0",
                                            "--model-kwargs", '{"init": "monai"}']
    assert studies.model_args(c, "unet")[-1] == "{}"


def test_losses_and_runs_pass_their_kwargs_as_json():
    assert studies.loss_args("calf", {"scope": "batch", "area": "pixels"}) == [
        "--loss", "calf", "--loss-kwargs", '{"scope": "batch", "area": "pixels"}']
    assert studies.loss_args("bce", None) == ["--loss", "bce", "--loss-kwargs", "{}"]
    assert studies.run_args([("bce", {}, "r/bce"), ("m.Loss", {"sigmoid": True}, "r/m")]) == [
        "--run", "bce", "{}", "r/bce", "--run", "m.Loss", '{"sigmoid": true}', "r/m"]
    with pytest.raises(ValueError):
        studies.json_arg({"w": math.nan})


@pytest.mark.parametrize("study, dataset, variant, expected", [
    ("s", "a", "fold1", ["--fold", "1", "--dataset", "a", "--model", "unet"]),
    # a pooled run's cases keep their own dataset: no --dataset
    ("p", "ab", "ratio-0.25/seed-3/fold0",
     ["--fold", "0", "--model", "unet", "--ratio", "0.25", "--seed", "3"]),
])
def test_evaluation_arguments(study, dataset, variant, expected):
    c = config(s={"datasets": ["a"], "models": ["unet"]},
               p={"datasets": ["a", "b"], "pool": "ab", "holdout": 0.2, "models": ["unet"],
                  "ratios": [0.25], "seeds": [3, 4]})
    c["evaluation"]["conventions"] = {"empty_both": 1.0}
    args = studies.evaluation_args(c, study, dataset, "unet", variant)
    common = ["--batch-size", "64", "--device", "auto"]
    head = [a for a in args if a not in common][:len(expected)]
    assert head == expected
    assert args[-2:] == ["--conventions", '{"empty_both": 1.0}']
    assert studies.evaluation_pairs(c, study, dataset, "unet", variant, ["bce"]) == [
        "--run", f"res/runs/{study}/{dataset}/unet/bce/{variant}",
        "--out", f"res/metrics/{study}/{dataset}/unet/bce/{variant}.csv", "--loss", "bce"]


def test_stats_arguments_without_a_calf_loss():
    c = config(s={"datasets": ["a"], "models": ["unet"]})
    args = studies.stats_args(c, "s", ["bce", "dice"])
    assert args[:5] == ["--no-paired", "--metric", "dice", "--metric", "hd95"]
    assert args[-4:] == ["--resamples", "2000", "--seed", "12345"]
    assert studies.table_args(c, "s", ["bce", "calf"]) == ["--calf-loss", "calf", "--alpha",
                                                           "0.05"]


@pytest.mark.parametrize("analysis, bins", [
    ({}, ["--size-bins", "4"]),
    ({"size_bins": 3}, ["--size-bins", "3"]),
    ({"size_bins": [1, 10.5, 50]}, ["--size-bins", "1,10.5,50"]),
])
def test_analysis_arguments(analysis, bins):
    c = config(s={"datasets": ["a"], "models": ["unet"]})
    c["analysis"] = analysis
    validate(c, str(SCHEMA), set_default=True)
    args = studies.analysis_args(c, "s", ["bce", "calf"])
    assert args[:6] == ["--calf-loss", "calf", "--metric", "dice", "--metric", "hd95"]
    assert args[6:8] == bins
    assert args[8:16] == ["--robustness-metric", "dice", "--robustness-metric", "lesion_dice",
                          "--robustness-metric", "nsd", "--robustness-metric", "hd95"]
    assert args[16:22] == ["--preset", "suite", "--preset", "brats", "--preset", "nnunet"]
    # the tests' shared settings come from stats:
    assert args[22:] == ["--rank-resamples", "2000", "--alpha", "0.05", "--missing", "error",
                         "--zero-method", "wilcox", "--resamples", "2000", "--seed", "12345"]


@pytest.mark.parametrize("bins", [1, [], [0, 5], "four"])
def test_analysis_size_bins_the_schema_refuses(bins):
    c = config(s={"datasets": ["a"], "models": ["unet"]})
    c["analysis"] = {"size_bins": bins}
    with pytest.raises(Exception, match="size_bins"):
        validate(c, str(SCHEMA), set_default=True)


def test_a_download_url_goes_to_the_environment_only():
    c = config()
    c["datasets"]["a"] = {"adapter": "folder", "source": "download",
                          "download": {"route": "http", "url": "https://h/x?a=1&b=2",
                                       "sha256": "ab"}}
    validate(c, str(SCHEMA), set_default=True)
    assert studies.download_args(c, "a") == ["--route", "http", "--sha256", "ab"]
    assert studies.download_env(c, "a") == {URL_ENV: "https://h/x?a=1&b=2"}
    assert studies.datasets_by_source(c, "download") == ["a"]
    assert studies.download_pending(c, "http") and not studies.download_pending(c, "synapse")


def test_synth_and_preprocess_arguments():
    c = config()
    c["datasets"]["a"]["options"] = {"segmentation": "expert"}
    assert studies.synth_args(c, "a") == ["--layout", "upenn_gbm", "--preset", "moderate",
                                          "--cases", "10", "--shape", "64", "64", "32",
                                          "--seed", "0"]
    assert studies.preprocess_args(c, "a") == [
        "--modalities", "t1", "t2", "flair", "--option", "segmentation=expert", "--size",
        "256", "--scaling", "volume", "--mask-resize", "bilinear", "--region", "wt"]
    assert studies.profile_args(c, "a", "ratio-0.5/fold2") == [
        "--area", "pixels", "--dataset", "a", "--fold", "2", "--ratio", "0.5"]
    assert studies.selection_args(c, "fold1") == ["--fold", "1", "--ratio", "natural",
                                                  "--seed", "12345"]


@pytest.mark.parametrize("cluster, expected", [
    ({}, {}),
    ({"gpu": "gpu", "gpu_model": "a100"}, {"gpu": 1, "gpu_model": "a100"}),
    ({"gpu": "gres"}, {"gres": "gpu:1"}),
    ({"gpu": "gres", "gpu_model": "h100"}, {"gres": "gpu:h100:1"}),
])
def test_gpu_resources_in_the_sites_spelling(cluster, expected):
    c = config()
    c["cluster"].update(cluster)
    assert studies.gpu_resources(c) == {"cpus_per_task": 8, "mem_mb": 64000, "runtime": 1440,
                                        **expected}


def test_syncs_follow_one_another_and_the_readme_names_every_study():
    c = config(s={"datasets": ["a"], "models": ["unet"]},
               p={"datasets": ["a", "b"], "pool": "ab", "holdout": 0.2, "models": ["unet"]})
    assert studies.previous_sync(c, "s") == []
    assert studies.previous_sync(c, "p") == ["res/mlflow/s.synced.json"]
    assert studies.readme_study_args(c) == ["--study", "s:a", "--study", "p:ab"]
    assert studies.tracking_uri(c) == f"sqlite:///{Path('res').resolve()}/mlflow.db"
    assert json.loads(studies.json_arg({"k": [1, 2]})) == {"k": [1, 2]}
