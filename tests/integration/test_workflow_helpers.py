"""The workflow's shape: the catalog's layout (workflow/Snakefile, its catalog file, the
entry Snakefile), includes in any order, and the conda environment that installs calf."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from packaging.version import Version
from workflow_helpers import REPO, copy_workflow, job_counts, snakemake, tiny_config, write_config

CONDA_ENV = REPO / "workflow/envs/calf.yaml"


def test_the_entry_snakefile_includes_the_workflow():
    entry = (REPO / "Snakefile").read_text()
    assert re.findall(r"^include: \"(.+)\"", entry, re.M) == ["workflow/Snakefile"]
    assert "rule " not in entry  # every rule is in workflow/


def test_min_version_is_the_floor_of_pyproject_and_holds_for_the_installed_snakemake():
    import snakemake

    (floor,) = re.findall(r'min_version\("([^"]+)"\)', (REPO / "workflow/Snakefile").read_text())
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'"snakemake>={floor.removesuffix(".0")}"' in pyproject
    assert Version(snakemake.__version__) >= Version(floor)


def test_the_catalog_file_states_conda_and_the_report():
    catalog = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    usage = catalog["usage"]
    assert usage["software-stack-deployment"]["conda"] is True
    assert usage["report"] is True
    assert set(usage["mandatory-flags"]) == {"desc", "flags"}


def test_torch_is_pinned_in_the_constraints_only():
    pin = re.compile(r"^\s*-?\s*torch\s*[=<>~]", re.M)
    pins = {p.relative_to(REPO).as_posix(): pin.findall(p.read_text())
            for p in (CONDA_ENV, REPO / "environment.yml", REPO / "workflow/envs/constraints.txt")}
    assert pins == {"workflow/envs/calf.yaml": [], "environment.yml": [],
                    "workflow/envs/constraints.txt": ["torch="]}


def _conda_pip_lines() -> list[str]:
    env = yaml.safe_load(CONDA_ENV.read_text())
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))


def test_the_conda_environment_installs_this_checkout(tmp_path):
    """What conda does with the env file's pip part: a requirements file beside the copy
    Snakemake made of it, installed by pip, which expands ${CALF_CHECKOUT}. A dry run
    here: the checkout resolves, its constraints are read (no download)."""
    lines = _conda_pip_lines()
    assert lines == ["-c ${CALF_CHECKOUT}/workflow/envs/constraints.txt",
                     "-e ${CALF_CHECKOUT}[contour]"]
    requirements = tmp_path / "condaenv.requirements.txt"
    requirements.write_text("\n".join(lines))
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index",
         "--no-build-isolation", "-r", str(requirements)],
        cwd=tmp_path, env=os.environ | {"CALF_CHECKOUT": str(REPO)}, capture_output=True,
        text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Would install calf-bench" in out.stdout


def test_the_workflow_tells_pip_where_the_checkout_is(tmp_path):
    """common.smk sets CALF_CHECKOUT (the env file's path) to the workflow's own checkout,
    which a job's shell sees: a copy of the workflow names the copy."""
    work = copy_workflow(tmp_path / "wf")
    rules = work / "workflow/rules/common.smk"
    rules.write_text(rules.read_text() + '\n\nrule where:\n    output:\n        "where.txt",\n'
                     '    log:\n        "where.log",\n    conda:\n        "../envs/calf.yaml"\n'
                     '    shell:\n        "echo $CALF_CHECKOUT > {output:q} 2> {log:q}"\n')
    run = snakemake("--cores", "1", "where.txt", cwd=work)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert (work / "where.txt").read_text().strip() == str(work.resolve())


def test_snakemake_sdm_conda_runs_a_job(tmp_path):
    """One job (a synthetic cohort) in the environment Snakemake creates from calf.yaml."""
    if shutil.which("conda") is None:
        pytest.skip("conda is not installed here: `snakemake --sdm conda` cannot create "
                    "workflow/envs/calf.yaml (its pip part is checked by a pip dry run)")
    work = copy_workflow(tmp_path / "wf")
    config = tiny_config()
    write_config(work / "config/config.yaml", config)
    run = snakemake("--cores", "1", "--sdm", "conda", "resources/tiny", cwd=work, timeout=3600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (work / "resources/tiny").is_dir()


# every rule that reads the losses first, the loss rules last (after the training template,
# which `use rule` needs before it)
SHUFFLED = ("common", "report", "analysis", "stats", "evaluate", "train_groups", "download",
            "preprocess", "split", "profile", "train", "losses")


def test_the_includes_work_in_any_order(tmp_path):
    """The losses are read from the rule files, so a workflow whose rules that use them are
    included before the loss rules plans the same jobs."""
    config = tiny_config(t={"datasets": ["tiny"], "folds": 2, "models": ["unet"],
                            "losses": "all"})
    config["training"]["group_losses"] = True
    counts = []
    for order in ("as_written", "shuffled"):
        work = copy_workflow(tmp_path / order)
        snakefile = work / "workflow/Snakefile"
        if order == "shuffled":
            text = snakefile.read_text()
            written = re.findall(r'^include: "rules/(\w+)\.smk"$', text, re.M)
            assert sorted(written) == sorted(SHUFFLED)
            body = re.sub(r"^include: .+\n", "", text, flags=re.M)
            includes = "\n".join(f'include: "rules/{name}.smk"' for name in SHUFFLED)
            snakefile.write_text(body.replace("\n\nrule all:", f"\n{includes}\n\n\nrule all:"))
        write_config(work / "config/config.yaml", config)
        out = snakemake("-n", "--quiet", "rules", cwd=work)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        counts.append(job_counts(out.stdout + out.stderr))
    assert counts[0] == counts[1]
    assert counts[0]["grouped_training_t"] == 2 and counts[0]["evaluate_t"] == 2


def test_a_loss_rule_outside_the_rule_files_is_refused(tmp_path):
    """A train_<loss> rule that the rule files do not hold (here: one in the entry Snakefile)
    would be trained but not evaluated: the plan stops, naming it."""
    work = copy_workflow(tmp_path / "wf")
    with (work / "Snakefile").open("a") as f:
        f.write('\n\nuse rule train_template as train_extra with:\n    wildcard_constraints:\n'
                '        loss="extra",\n    params:\n        loss="bce",\n')
    write_config(work / "config/config.yaml", tiny_config())
    out = snakemake("-n", cwd=work)
    assert out.returncode != 0
    assert "are not the train_<loss> rules found in" in out.stdout + out.stderr


def test_snakemake_finds_the_workflow_from_the_root_and_from_workflow_snakefile(tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny_config())
    counts = []
    for args in ([], ["-s", str(REPO / "workflow/Snakefile")]):
        out = snakemake("-n", "--quiet", "rules", "--configfile", str(config),
                        "--directory", str(tmp_path), *args)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        counts.append(job_counts(out.stdout + out.stderr))
    assert counts[0] == counts[1] and counts[0]["all"] == 1


def test_the_schema_spells_the_natural_ratio_as_the_layout_does():
    from calf.layout import NATURAL

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    ratios = schema["properties"]["studies"]["additionalProperties"]["properties"]["ratios"]
    assert ratios["items"]["oneOf"][0] == {"const": NATURAL}
    assert ratios["default"] == [NATURAL]
