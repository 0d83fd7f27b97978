"""The HTML report as a reader sees it: the demo config's workflow run end to end, shrunk to
seconds, then `snakemake --report`, then the page rendered in headless Chromium.

The report's front page must lead with every study's answer (`calf report readme
--front-page`, wired by rule report_readme and the global `report:` directive) and no
docutils "System Message" may appear anywhere in it, front page or captions (a report
category named like one of Snakemake's own link targets, e.g. "Statistics", makes one).
Chromium is Debian's `chromium`, installed by the test when it is missing and the test
runs as root with apt-get; otherwise the browser test is skipped with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from workflow_helpers import REPO, copy_workflow, snakemake, write_config

FRONT_PAGE_TITLE = "CALF benchmark: the answer"
SYSTEM_MESSAGE = "System Message"
APT_TIMEOUT_S = 600  # ~25 s on a warm mirror; a first `apt-get update` takes longer
CHROMIUM_TIMEOUT_S = 180  # ~3 s for the demo's report on an idle machine


# ---------------------------------------------------------------- the demo, shrunk
def demo_overrides(demo: dict) -> dict:
    """What shrinks the demo config (config/config.yaml) to seconds per job, read from it
    rather than written against its numbers: one epoch, at most four cases and one modality
    per synthetic cohort, per study one model (U-Net where it has it), BCE and CALF with
    dataset scope, one seed, one filter ratio, two folds. Given as a second --configfile:
    `--config` would turn every nested number into a string (Snakemake parses its values
    with YAML's BaseLoader) and the schema refuses those."""
    datasets = {}
    for name, ds in demo["datasets"].items():
        shrunk = {}
        if ds.get("source") == "synth":
            shrunk["synth"] = {"cases": min(int(ds["synth"].get("cases", 4)), 4)}
        if ds.get("modalities"):
            shrunk["modalities"] = ds["modalities"][:1]
        datasets[name] = shrunk
    studies = {}
    for name, s in demo["studies"].items():
        models = s.get("models") or list(demo["models"])
        shrunk = {"models": ["unet"] if "unet" in models else models[:1],
                  "losses": ["bce", "calf_dataset"], "folds": 2}
        for key in ("seeds", "ratios"):
            if s.get(key):
                shrunk[key] = s[key][:1]
        studies[name] = shrunk
    return {"datasets": datasets, "training": {"epochs": 1}, "stats": {"resamples": 200},
            "studies": studies}


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    """The demo config's workflow run (shrunk by demo_overrides) and its HTML report:
    (the workflow's folder, the demo config as read, before the overrides)."""
    work = copy_workflow(tmp_path_factory.mktemp("demo") / "wf")
    demo = yaml.safe_load((work / "config/config.yaml").read_text())
    write_config(work / "overrides.yaml", demo_overrides(demo))
    configs = ("--configfile", "config/config.yaml", "overrides.yaml")
    started = time.monotonic()
    run = snakemake("--cores", "2", *configs, cwd=work, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = snakemake("--report", "results/report.html", *configs, cwd=work)
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    print(f"demo workflow and report: {time.monotonic() - started:.0f} s")
    return work, demo


# ---------------------------------------------------------------- the browser
def chromium() -> str:
    """Debian's chromium, installed quietly (apt-get) when missing: idempotent, timed."""
    found = shutil.which("chromium")
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and there is no apt-get to install it")
    if os.geteuid() != 0:
        pytest.skip("chromium is not installed and installing it needs root "
                    "(apt-get install chromium)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
               "-o", "DPkg::Lock::Timeout=120", "chromium"]
    started = time.monotonic()
    done = subprocess.run(install, check=False, env=env, capture_output=True, text=True,
                          timeout=APT_TIMEOUT_S)
    if done.returncode != 0:  # e.g. no package lists yet: fetch them once, then retry
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True,
                       text=True, timeout=APT_TIMEOUT_S)
        done = subprocess.run(install, check=False, env=env, capture_output=True, text=True,
                              timeout=APT_TIMEOUT_S)
    found = shutil.which("chromium")
    if done.returncode != 0 or found is None:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        pytest.skip(f"apt-get install chromium failed (exit {done.returncode}): {last}")
    print(f"installed chromium in {time.monotonic() - started:.0f} s")
    return found


def rendered_dom(html: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran (the report is a React app that builds the
    front page from data embedded in the file)."""
    done = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom",
         html.resolve().as_uri()],
        check=False, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S,
    )
    assert done.returncode == 0 and "<body" in done.stdout, done.stderr[-3000:]
    return done.stdout


class _VisibleText(HTMLParser):
    """The text of a page outside <script> and <style>: what the reader sees."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        self._hidden += tag in ("script", "style")

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data):
        if not self._hidden:
            self.parts.append(data)


def visible_text(html: str) -> str:
    """The visible text with its whitespace collapsed (block boundaries become spaces)."""
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    return " ".join(" ".join(parser.parts).split())


def rst_text(rst: str) -> str:
    """What docutils makes of an RST fragment, as visible text (Snakemake renders the
    front page with docutils too)."""
    from docutils.core import publish_parts

    body = publish_parts(rst, writer="html",
                         settings_overrides={"report_level": 5})["html_body"]
    return visible_text(body)


# ---------------------------------------------------------------- the README's answers
def study_section(readme: str, study: str) -> str:
    """The README's "## Study `<study>`" section, up to the next "## " heading."""
    match = re.search(rf"^## Study `{re.escape(study)}`$(.*?)(?=^## |\Z)", readme,
                      re.MULTILINE | re.DOTALL)
    assert match, f"README.md has no section for study {study!r}"
    return match.group(1)


def answer_lead(section: str) -> str:
    """The first paragraph under "### Answer", its Markdown escapes undone."""
    after = section.split("### Answer", 1)[1].strip()
    lead = after.split("\n\n", 1)[0]
    return " ".join(re.sub(r"\\(.)", r"\1", lead).split())


# ---------------------------------------------------------------- the tests
@pytest.mark.slow
def test_the_demo_readme_and_front_page_lead_with_every_studys_answer(demo_report):
    work, demo = demo_report
    report = work / "results/report"
    readme = (report / "README.md").read_text()
    front = (report / "front_page.rst").read_text()
    description = (work / "workflow/report/workflow.rst").read_text()
    assert demo["studies"]
    for study in demo["studies"]:
        section = study_section(readme, study)
        assert "### Answer" in section, f"study {study}: no ### Answer"
        first_table = re.search(r"^\|", section, re.MULTILINE)
        assert first_table and section.index("### Answer") < first_table.start(), (
            f"study {study}: ### Answer is not above its tables")
        assert answer_lead(section), f"study {study}: an empty answer"
    # the title first, then a section per study, then the workflow description, unchanged
    assert front.lstrip("=\n").startswith(FRONT_PAGE_TITLE)
    assert front.endswith(description)
    answers = rst_text(front[: front.rindex(description)])
    assert answers.startswith(FRONT_PAGE_TITLE)
    for study in demo["studies"]:
        assert f"Study {study} " in answers, f"front page: no section for study {study}"
        lead = answer_lead(study_section(readme, study))
        assert lead in answers, f"front page: study {study}'s answer differs from README's"


@pytest.mark.slow
def test_the_html_report_shows_the_answer_first_and_no_docutils_message(demo_report,
                                                                       tmp_path):
    work, demo = demo_report
    html = work / "results/report.html"
    dom = rendered_dom(html, tmp_path / "chromium-profile")
    page = visible_text(dom)
    # no docutils complaint anywhere: the front page is rendered, the captions are in the
    # page's data until a result is opened
    assert SYSTEM_MESSAGE not in dom, dom[dom.find(SYSTEM_MESSAGE) - 200:][:600]
    assert FRONT_PAGE_TITLE in page
    # each study's answer, as the browser shows it: the front page's answers (everything
    # before the appended description) rendered ...
    front = (work / "results/report/front_page.rst").read_text()
    description = (work / "workflow/report/workflow.rst").read_text()
    answers = rst_text(front[: front.rindex(description)])
    assert answers.startswith(FRONT_PAGE_TITLE) and answers in page
    # ... and the README's lead of every study, word for word
    readme = (work / "results/report/README.md").read_text()
    for study in demo["studies"]:
        lead = answer_lead(study_section(readme, study))
        assert f"Study {study}" in page and lead in page, (study, lead)
    # the description follows the answers on the same page
    start = rst_text(description)[:80]
    assert start in page and page.index(FRONT_PAGE_TITLE) < page.index(start)


def test_no_report_category_collides_with_snakemakes_own_link_targets():
    """Snakemake appends `.. _Workflow:`, `.. _Statistics:`, one target per category and one
    per result file to every caption and to the front page; RST target names ignore case,
    so a category or file named like another is a "Duplicate explicit target name"."""
    text = "\n".join(p.read_text() for p in sorted((REPO / "workflow/rules").glob("*.smk")))
    categories = set(re.findall(r'(?<!\w)category="([^"{]+)"', text))
    assert categories, "no report categories found"
    names = [n.lower() for n in ("Workflow", "Statistics", *sorted(categories))]
    assert len(names) == len(set(names)), sorted(categories)
