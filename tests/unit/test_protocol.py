"""The protocol switches (calf.protocol): what each run records, the captions, the configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from calf.protocol import AUTHORS_MODALITIES, SWITCHES, protocol_summary, run_protocol
from calf.tracking.client import flatten_params

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())["properties"]

AUTHORS = {"scaling": "slice", "modalities": {"brats": "t1c,t2,flair"}, "area": "contour",
           "scope": "batch", "precision": "fp32", "deterministic": True, "init": "pytorch"}


def _record(execution_precision=None, **changes):
    record = {"params": {"protocol": {**AUTHORS, **changes}}}
    if execution_precision:
        record["execution"] = {"precision": execution_precision}
    return record


@pytest.mark.parametrize(
    "stores,model,model_kwargs,loss,loss_kwargs,expected",
    [
        ([{"dataset": "brats", "scaling": "slice", "modalities": ["t1c", "t2", "flair"]}],
         "fpn", {"init": "pytorch"}, "calf", {"scope": "batch", "area": "contour"},
         {"scaling": "slice", "modalities": {"brats": "t1c,t2,flair"}, "area": "contour",
          "scope": "batch", "precision": "fp32", "deterministic": True, "init": "pytorch",
          "output_stride": None}),
        # the suite's defaults: FPN keeps MONAI's init, CALF pixel areas
        ([{"dataset": "upenn_gbm", "scaling": "volume", "modalities": ["flair"]}],
         "fpn", {}, "calf", {"scope": "dataset"},
         {"scaling": "volume", "modalities": {"upenn_gbm": "flair"}, "area": "pixels",
          "scope": "dataset", "precision": "fp32", "deterministic": True, "init": "monai",
          "output_stride": None}),
        # a pooled run over stores scaled differently; a baseline loss has no CALF switches
        ([{"dataset": "brats", "scaling": "slice", "modalities": ["t2"]},
          {"dataset": "lgg_1p19q", "scaling": "volume", "modalities": ["t2"]}],
         "unet", {}, "bce", {},
         {"scaling": "mixed", "modalities": {"brats": "t2", "lgg_1p19q": "t2"}, "area": None,
          "scope": None, "precision": "fp32", "deterministic": True, "init": "pytorch",
          "output_stride": None}),
        # DeepLabV3 records its output stride: the authors' 32 unless its kwargs choose one
        ([{"dataset": "x", "scaling": "volume", "modalities": ["t1"]}],
         "deeplabv3", {}, "bce", {},
         {"scaling": "volume", "modalities": {"x": "t1"}, "area": None, "scope": None,
          "precision": "fp32", "deterministic": True, "init": "pytorch", "output_stride": 32}),
        ([{"dataset": "x", "scaling": "volume", "modalities": ["t1"]}],
         "deeplabv3", {"output_stride": 8}, "bce", {},
         {"scaling": "volume", "modalities": {"x": "t1"}, "area": None, "scope": None,
          "precision": "fp32", "deterministic": True, "init": "pytorch", "output_stride": 8}),
        # the region variant: batch scope; a network by import path has no known init
        ([{"dataset": "x", "scaling": "slice", "modalities": ["t1"]}],
         "monai.networks.nets.BasicUNet", {}, "calf_region", {"grid": 4, "area": "contour"},
         {"scaling": "slice", "modalities": {"x": "t1"}, "area": "contour", "scope": "batch",
          "precision": "fp32", "deterministic": True, "init": None, "output_stride": None}),
    ],
)
def test_run_protocol(stores, model, model_kwargs, loss, loss_kwargs, expected):
    got = run_protocol(stores, model, model_kwargs, loss, loss_kwargs, "fp32", True)
    assert got == expected


def test_summary_of_the_authors_protocol():
    text = protocol_summary([_record(), _record()])
    assert text == (
        "Protocol switches: intensity scaling per slice (authors'); CALF areas contour "
        "(authors'); CALF scope batch (authors'); precision fp32 (authors'); deterministic "
        "cuDNN on (authors'); initialisation pytorch (authors'); brats series t1c, t2, flair "
        "(authors')."
    )


def test_summary_lists_every_value_and_whose_choice():
    records = [_record(), _record(scope="dataset", area="pixels"),
               _record(scaling="volume", modalities={"brats": "t1,t2,flair"}, init="monai",
                       precision="bf16", deterministic=False, execution_precision="fp32"),
               {"params": {"loss": "bce"}}]  # a run made before the switches existed
    text = protocol_summary(records)
    assert "intensity scaling per slice (authors') and volume (suite's)" in text
    assert "CALF areas contour (authors') and pixels (suite's)" in text
    assert "CALF scope batch (authors') and dataset (suite's)" in text
    assert "precision fp32 (authors') and bf16 (suite's), run as fp32 where" in text
    assert "deterministic cuDNN on (authors') and off (suite's)" in text
    assert "initialisation pytorch (authors') and monai (suite's)" in text
    assert ("brats series t1c, t2, flair (authors'); brats series t1, t2, flair "
            "(not the authors')") in text
    assert text.endswith(" 1 run(s) recorded no switches.")


def test_summary_leaves_out_switches_no_run_has_and_says_when_none_recorded():
    text = protocol_summary([_record(area=None, scope=None)])
    assert "CALF" not in text and "precision fp32" in text
    assert protocol_summary([{"params": {}}]) == "Protocol switches: not recorded by these runs."
    assert "other" in protocol_summary([_record(scaling="zscore")])


def test_switches_are_flattened_into_mlflow_params():
    params = flatten_params({"loss": "calf", "protocol": AUTHORS})
    assert params["protocol.scaling"] == "slice" and params["protocol.area"] == "contour"
    assert params["protocol.deterministic"] == "true"
    assert params["protocol.modalities.brats"] == "t1c,t2,flair"


# --------------------------------------------------------------- the configs and the schema


def _schema_default(*keys):
    node = SCHEMA
    for key in keys[:-1]:
        node = node[key]["properties"]
    return node[keys[-1]]["default"]


def test_schema_defaults_are_the_suites_choices():
    assert _schema_default("preprocess", "scaling") == SWITCHES["scaling"].suite
    assert _schema_default("calf", "area") == SWITCHES["area"].suite
    assert _schema_default("training", "precision") == SWITCHES["precision"].suite
    assert _schema_default("training", "deterministic") == SWITCHES["deterministic"].suite


def test_paper_config_is_the_authors_protocol():
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    assert paper["preprocess"]["scaling"] == SWITCHES["scaling"].authors
    assert paper["calf"]["area"] == SWITCHES["area"].authors
    assert paper["training"]["precision"] == SWITCHES["precision"].authors
    assert paper["training"]["deterministic"] is SWITCHES["deterministic"].authors
    assert paper["models"]["fpn"]["kwargs"]["init"] == SWITCHES["init"].authors
    default = SCHEMA["datasets"]["additionalProperties"]["properties"]["modalities"]["default"]
    for name, ds in paper["datasets"].items():
        assert tuple(ds.get("modalities", default)) == AUTHORS_MODALITIES[ds["adapter"]], name
    # both CALF scopes run in every study of the paper (the losses default to all rules)
    rules = (ROOT / "workflow/rules/losses.smk").read_text()
    assert "train_calf_dataset" in rules and '"scope": "dataset"' in rules
    assert all(s.get("losses", "all") == "all" for s in paper["studies"].values())


def test_demo_config_keeps_the_suites_choices():
    demo = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    for section, key in (("preprocess", "scaling"), ("calf", "area"),
                         ("training", "precision"), ("training", "deterministic")):
        assert key not in demo.get(section, {}), f"{section}.{key}"
    assert all("init" not in m.get("kwargs", {}) for m in demo["models"].values())
