"""Which CALF branch batch-scope training used, epoch by epoch.

CALF in batch scope (the authors' code) recomputes S and K from each batch's masks, so its
branch can change from step to step; the region variant does so per image region. The
training loop counts the branch of every step (every region, for the region variant) in
``epochs.csv`` (``branch_<name>`` columns). Here each run's counts become shares per epoch
(counts / their sum), averaged over the folds and seeds of one (dataset, model, loss,
ratio), and drawn as stacked areas with a fixed colour per branch. Dataset-scope CALF and
the baselines have no such variation and are left out; a study without any batch-scope
CALF run gets a figure that says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calf.layout import RunKey, ratio_sort_key
from calf.report.figures._common import (
    BRANCH_COLOURS,
    loss_name,
    loss_order,
    message_figure,
    model_name,
    model_order,
    new_figure,
    row_label,
    save_figure,
    style,
)
from calf.train.rundir import read_epochs, read_run_record

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

BRANCH_COLUMNS = tuple(f"branch_{b}" for b in BRANCH_COLOURS)
PANEL_KEYS = ("study", "dataset", "model", "loss", "ratio")
NO_RUNS = "no batch-scope CALF runs in this study"


def is_batch_calf(record: dict[str, Any]) -> bool:
    """True for CALF whose branch varies by step: batch scope, or the region variant."""
    scope = (record.get("imbalance") or {}).get("scope")
    if scope is not None:
        return scope in ("batch", "region")
    params = record.get("params") or {}
    loss, kwargs = params.get("loss"), params.get("loss_kwargs") or {}
    return loss == "calf_region" or (loss == "calf" and kwargs.get("scope", "batch") == "batch")


def read_branch_counts(run_dir: str | Path) -> "pd.DataFrame":
    """``epoch`` and the ``branch_*`` counts of a run folder's ``epochs.csv``, read and
    checked by ``calf.train.rundir.read_epochs``."""
    return read_epochs(run_dir, columns=BRANCH_COLUMNS)[["epoch", *BRANCH_COLUMNS]]


def branch_shares(
    run_dirs: Sequence[str | Path], runs_root: str | Path | None = None
) -> "pd.DataFrame":
    """Mean share of each branch per epoch over the batch-scope CALF runs of each panel.

    Columns ``study, dataset, model, loss, ratio, epoch, runs`` (how many runs counted steps
    that epoch) and one ``share_<branch>`` per branch; epochs without any counted step are
    left out of a run's mean. Runs other than batch-scope CALF are skipped.
    """
    import pandas as pd

    frames = []
    for run_dir in run_dirs:
        ident = RunKey.from_path(run_dir, root=runs_root).as_dict()
        if not is_batch_calf(read_run_record(run_dir)):
            continue
        counts = read_branch_counts(run_dir)
        totals = counts[list(BRANCH_COLUMNS)].sum(axis=1)
        counted = counts[totals > 0]
        shares = counted[list(BRANCH_COLUMNS)].div(totals[totals > 0], axis=0)
        shares.columns = [c.replace("branch_", "share_") for c in BRANCH_COLUMNS]
        shares.insert(0, "epoch", counted["epoch"].astype(int))
        for key in reversed(PANEL_KEYS):
            shares.insert(0, key, ident[key])
        frames.append(shares)
    share_columns = [c.replace("branch_", "share_") for c in BRANCH_COLUMNS]
    if not frames:
        return pd.DataFrame(columns=[*PANEL_KEYS, "epoch", "runs", *share_columns])
    every = pd.concat(frames, ignore_index=True)
    grouped = every.groupby([*PANEL_KEYS, "epoch"], sort=True)
    result = grouped[share_columns].mean()
    result.insert(0, "runs", grouped.size())
    return result.reset_index()


def build_branch_shares(
    run_dirs: Sequence[str | Path], runs_root: str | Path | None = None
) -> "Figure":
    """The figure: rows (dataset, ratio), columns (model, loss), stacked shares per epoch."""
    import numpy as np
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    shares = branch_shares(run_dirs, runs_root)
    if shares.empty:
        return message_figure(NO_RUNS)
    several_studies = shares["study"].nunique() > 1
    rows = sorted({(r.study, r.dataset, r.ratio) for r in shares.itertuples()},
                  key=lambda r: (r[0], r[1], ratio_sort_key(r[2])))
    models = model_order(shares["model"].unique())
    losses = loss_order(shares["loss"].unique())
    columns = [(m, x) for m in models for x in losses
               if ((shares["model"] == m) & (shares["loss"] == x)).any()]
    panels = dict(iter(shares.groupby(list(PANEL_KEYS))))
    share_columns = [f"share_{b}" for b in BRANCH_COLOURS]

    with style():
        fig = new_figure(max(len(columns) * 2.9 + 0.6, 6.0), len(rows) * 2.1 + 1.2)
        axes = fig.subplots(len(rows), len(columns), squeeze=False)
        for i, (study, dataset, ratio) in enumerate(rows):
            for j, (model, loss) in enumerate(columns):
                ax = axes[i, j]
                unit = "regions" if loss == "calf_region" else "steps"
                ax.set_title(f"{model_name(model)} / {loss_name(loss)} (share of {unit})")
                part = panels.get((study, dataset, model, loss, ratio))
                if j == 0:
                    label = row_label(dataset, ratio, study if several_studies else None)
                    ax.set_ylabel(f"{label}\nbranch share")
                if part is None:
                    ax.text(0.5, 0.5, "no runs", ha="center", va="center", color="0.35",
                            transform=ax.transAxes)
                    ax.set_xticks([])
                    continue
                epochs = part["epoch"].to_numpy(dtype=float)
                # each epoch a step of width one: also visible for a single epoch
                x = np.repeat(epochs, 2) + np.tile([-0.5, 0.5], epochs.size)
                lower = np.zeros(x.size)
                for column, colour in zip(share_columns, BRANCH_COLOURS.values()):
                    upper = lower + np.repeat(part[column].to_numpy(dtype=float), 2)
                    ax.fill_between(x, lower, upper, color=colour, linewidth=0)
                    lower = upper
                ax.set_xlim(epochs.min() - 0.5, epochs.max() + 0.5)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_ylim(0, 1)
                runs = part["runs"]
                ax.text(0.98, 0.02, f"mean of {runs.min()}" + ("" if runs.min() == runs.max()
                        else f"-{runs.max()}") + " runs", ha="right", va="bottom", fontsize=6.5,
                        transform=ax.transAxes, bbox={"facecolor": "white", "alpha": 0.7,
                                                      "linewidth": 0, "pad": 1})
                if i == len(rows) - 1:
                    ax.set_xlabel("epoch")
        handles = [Patch(color=c, label=b) for b, c in BRANCH_COLOURS.items()]
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles),
                   title="CALF branch", handlelength=1.2, columnspacing=1.0)
        fig.suptitle("Share of each CALF branch per epoch, batch-scope CALF\n"
                     "(mean over folds and seeds)", fontsize=9)
    return fig


def plot_branch_shares(
    run_dirs: Sequence[str | Path], out_prefix: str | Path, *,
    runs_root: str | Path | None = None, force: bool = False,
) -> list[Path]:
    """Write ``{out_prefix}.png`` and ``.svg``: the branch shares of batch-scope CALF runs.

    ``run_dirs``: run folders ``.../<study>/<dataset>/<model>/<loss>/[ratio-R/][seed-N/]foldK``
    (below ``runs_root`` when given, which then checks the whole layout).
    """
    return save_figure(build_branch_shares(run_dirs, runs_root), out_prefix, force)
