"""The paper-vs-suite table: the authors' Dice values beside the suite's own.

Each published value (``calf.report.reference``) gets the suite's batch-pooled Dice of the
runs with the same model, loss and training ratio ('natural' for the main table, the filter
ratio matched by value for the filtering rows): the mean over seeds, one row per study that
ran it, "not run" where none did. Suite runs without a published counterpart are not listed.
When no study ran the authors' pooled protocol at all, the Markdown, LaTeX and HTML files
say so in one line (``not_run_line``: how to run it) instead of a table of "not run"; the
CSV keeps every published value.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from calf.errors import CalfError
from calf.evaluate.pooled import ORDER, POOLED_BATCH, POOLED_SEED
from calf.layout import ratio_text, ratio_value
from calf.naming import LOSS_NAMES, MODEL_NAMES, display
from calf.report.reference import (
    FILTERING_TABLE,
    MAIN_TABLE,
    PAPER_VALUES,
    SOURCE,
    TEST_SLICES,
    PaperValue,
)
from calf.report.tables.document import MISSING, Block, Cell, Column, Document, fmt
from calf.report.tables.io import output_paths, publish
from calf.report.tables.render import latex_escape, to_html, to_latex, to_markdown

if TYPE_CHECKING:
    import pandas as pd

SUFFIXES = (".csv", ".md", ".tex", ".html")
RUN_COLUMNS = ("study", "model", "loss", "ratio", "seed", "batch_pooled_dice")
DECIMALS = 4  # as the paper prints them
CSV_COLUMNS = ("table", "model", "loss", "ratio", "study", "paper", "suite", "difference",
               "n_seeds", "status")
TITLE = "Paper vs suite: batch-pooled Dice"
_CODE_RE = re.compile(r"`([^`]+)`")


def not_run_line() -> str:
    """One Markdown line: no study ran the authors' pooled protocol, and how to run it
    (config keys as config/README.md names them)."""
    return (f"No study ran the authors' pooled protocol, so none of the paper's "
            f"{len(PAPER_VALUES)} published values has a suite counterpart yet: "
            "`snakemake --configfile config/paper.yaml` runs it (its studies `pooled` and "
            "`filtering`), as does any study with `pool` and `holdout` set (config/README.md).")


def all_not_run(statuses) -> bool:
    """True when every published value's status is 'not run' (no pooled study ran)."""
    statuses = list(statuses)
    return bool(statuses) and all(s == "not run" for s in statuses)


def _not_run_texts() -> list[str]:
    """Markdown, LaTeX and HTML of the one-line page for 'nothing ran'."""
    line = not_run_line()
    tex = "".join(latex_escape(part) if i % 2 == 0 else rf"\texttt{{{latex_escape(part)}}}"
                  for i, part in enumerate(line.split("`")))  # odd parts: `code`
    body = _CODE_RE.sub(r"<code>\1</code>", html.escape(line))
    page = ["<!DOCTYPE html>", '<html lang="en">', '<head><meta charset="utf-8">',
            f"<title>{html.escape(TITLE)}</title></head>", "<body>",
            f"<h1>{html.escape(TITLE)}</h1>", f"<p>{body}</p>", "</body>", "</html>", ""]
    return [f"# {TITLE}\n\n{line}\n", f"% {TITLE}\n{tex}\n", "\n".join(page)]


def _ratio_value(value: object) -> float | None:
    """None for the natural ratio ('natural', empty, null), else the ratio as a float
    (``calf.layout.ratio_value``)."""
    if isinstance(value, str) and not value.strip():
        return None
    try:
        return ratio_value(value.strip() if isinstance(value, str) else value)
    except CalfError as err:
        raise CalfError(f"runs: {err}") from None


def _check_runs(runs: "pd.DataFrame") -> "pd.DataFrame":
    import pandas as pd

    if runs.empty:
        return pd.DataFrame({c: pd.Series(dtype=float if c in ("ratio", "batch_pooled_dice")
                                          else object) for c in RUN_COLUMNS})
    missing = [c for c in RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise CalfError(f"runs: missing column(s) {', '.join(missing)}")
    runs = runs[list(RUN_COLUMNS)].copy()
    for key in ("study", "model", "loss"):
        runs[key] = runs[key].astype(str)
    runs["ratio"] = runs["ratio"].map(_ratio_value).astype(float)  # NaN: natural
    dice = pd.to_numeric(runs["batch_pooled_dice"], errors="coerce")
    bad = dice.isna() & runs["batch_pooled_dice"].notna()
    if bad.any():
        raise CalfError(f"runs: batch_pooled_dice {runs['batch_pooled_dice'][bad].iloc[0]!r} "
                        "is not a number")
    runs["batch_pooled_dice"] = dice.astype(float)
    identity = runs[["study", "model", "loss", "ratio", "seed"]].astype(str)
    duplicated = identity.duplicated()
    if duplicated.any():
        row = runs[duplicated].iloc[0]
        ratio = ratio_text(row["ratio"])
        raise CalfError(f"runs: {row['study']}/{row['model']}/{row['loss']} ratio {ratio} "
                        f"seed {row['seed']} is listed twice")
    return runs


def _matches(runs: "pd.DataFrame", ref: PaperValue) -> "pd.DataFrame":
    if ref.ratio is None:
        same_ratio = runs["ratio"].isna()
    else:
        same_ratio = runs["ratio"].map(lambda r: math.isclose(r, ref.ratio))
    return runs[(runs["model"] == ref.model) & (runs["loss"] == ref.loss) & same_ratio]


def paper_rows(runs: "pd.DataFrame") -> list[dict[str, object]]:
    """The CSV's rows: one per published value and study that ran it ('not run' else)."""
    runs = _check_runs(runs)
    rows = []
    for ref in PAPER_VALUES:
        base = {"table": ref.table, "model": ref.model, "loss": ref.loss,
                "ratio": ratio_text(ref.ratio), "paper": ref.dice}
        matched = _matches(runs, ref)
        if matched.empty:
            rows.append({**base, "study": "", "suite": math.nan, "difference": math.nan,
                         "n_seeds": 0, "status": "not run"})
            continue
        for study, mine in matched.groupby("study", sort=True):
            values = mine["batch_pooled_dice"].dropna()
            suite = float(values.mean()) if len(values) else math.nan
            rows.append({**base, "study": study, "suite": suite, "difference": suite - ref.dice,
                         "n_seeds": len(values), "status": "run" if len(values) else "no value"})
    return rows


def _cells(row: dict[str, object], first: str) -> list[Cell]:
    if row["status"] == "run":
        suite = [Cell(fmt(row["suite"], DECIMALS)), Cell(fmt(row["difference"], DECIMALS, True))]
    else:
        suite = [Cell(str(row["status"])), Cell(MISSING)]
    return [Cell(first), Cell(display(str(row["loss"]), LOSS_NAMES)),
            Cell(str(row["study"]) or MISSING), Cell(str(row["n_seeds"])),
            Cell(fmt(row["paper"], DECIMALS)), *suite]


def _document(rows: list[dict[str, object]], protocol: str | None = None) -> Document:
    tail = [Column("Loss", numeric=False), Column("Study", numeric=False), Column("Seeds"),
            Column("Paper"), Column("Suite"), Column("Suite − paper")]
    main = [r for r in rows if r["table"] == "main"]
    filtering = [r for r in rows if r["table"] == "filtering"]
    blocks = [
        Block(f"Main table: {len(MAIN_TABLE)} published values, natural tumour-slice ratio",
              [Column("Model", numeric=False), *tail],
              [_cells(r, display(str(r["model"]), MODEL_NAMES)) for r in main]),
        Block(f"FPN with dataset filtering: {len(FILTERING_TABLE)} published values",
              [Column("Ratio"), *tail], [_cells(r, str(r["ratio"])) for r in filtering]),
    ]
    caption = [
        "Batch-pooled Dice under the authors' pooled protocol: the four datasets pooled, one "
        "patient-level split of about 90/10 (no validation set, the model after the last "
        f"epoch tested once), Dice pooled over each batch of {POOLED_BATCH} test slices (1 for a "
        "batch without tumour and prediction) and averaged over batches, the batches drawn "
        f"from one seeded random permutation of the test slices, seed {POOLED_SEED} (the "
        "authors' DistributedSampler(shuffle=True), set_epoch never called; order "
        f"'{ORDER}'), for the paper and the suite alike.",
        f"Paper: the authors' values on their pooled test set of {TEST_SLICES:,} slices; "
        f"source: {SOURCE}.",
        "Suite: the mean over seeds of the suite's runs of that model, loss and training "
        "ratio, one row per study that ran it; 'not run' where no study ran it under this "
        "protocol. Suite − paper: the difference of the two.",
    ]
    if protocol:
        caption.append(f"Suite runs: {protocol}")
    return Document(TITLE, caption, blocks)


def write_paper_table(runs: "pd.DataFrame", out_prefix: str | Path,
                      protocol: str | None = None, *, force: bool = False) -> list[Path]:
    """Write ``{out_prefix}.csv/.md/.tex/.html``; returns their paths.

    ``runs``: one row per holdout run of a pooled study, columns study, model, loss, ratio
    ('natural' or the filter ratio), seed, batch_pooled_dice (may be empty). The CSV has
    one row per published value and matching study: table (main/filtering), model, loss,
    ratio, study ('' if not run), paper, suite, difference (suite - paper; empty if not run),
    n_seeds, status (run / not run / no value: runs without a batch-pooled Dice). When
    every status is 'not run', the other three files hold ``not_run_line`` alone.
    ``protocol``: the protocol switches of those runs (``calf.protocol.protocol_summary``),
    added to the caption. Existing files are replaced only with ``force``.
    """
    import pandas as pd

    paths = output_paths(out_prefix, SUFFIXES)
    rows = paper_rows(runs)
    table = pd.DataFrame(rows, columns=list(CSV_COLUMNS))
    if all_not_run(table["status"]):
        texts = _not_run_texts()
    else:
        doc = _document(rows, protocol)
        texts = [to_markdown(doc), to_latex(doc), to_html(doc)]
    return publish(dict(zip(paths, [table.to_csv(index=False), *texts], strict=True)),
                   force=force)
