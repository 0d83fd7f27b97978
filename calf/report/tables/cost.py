"""The cost table of a study: what each loss's training runs cost, from the runs' own records.

Per dataset and model (one block each) and loss (one row): the runs counted, the device they
trained on, the mean over runs of the device-seconds per training epoch (``run.json``
``cost.device_s_per_epoch``: wall seconds inside training steps per epoch, GPU-seconds on
CUDA), the total device-hours (``cost.device_s`` of every attempt, start-up, validation and
checkpoints included: the wall time the device was held, one GPU on CUDA, the training
process on the CPU), the
peak memory (the largest over the runs, MiB), the energy (kJ, summed over the runs whose GPU
reported it; a column only when some run has it) and, for each CALF loss, its overhead over
BCE of the same dataset and model: the ratio of their mean seconds per epoch and the
difference. The unit is named by the device the block's runs used (GPU-s, CPU-s: wall
seconds on that device, not CPU time).

Runs trained before ``run.json`` recorded ``cost`` fall back to ``epochs.csv``'s ``seconds``
(their mean per epoch) and ``run.json``'s ``seconds`` (the wall time of every attempt, taken
as device time), with no peak memory or energy; their rows are marked and counted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calf.errors import CalfError
from calf.layout import EPOCHS_FILE, RUN_FILE, RunKey
from calf.naming import LOSS_NAMES, MODEL_NAMES, display, ordered
from calf.report.tables.document import MISSING, Block, Cell, Column, Document, fmt
from calf.report.tables.io import output_paths, publish
from calf.report.tables.render import to_html, to_markdown
from calf.train.rundir import read_epochs, read_run_record

if TYPE_CHECKING:
    import pandas as pd

SUFFIXES = (".csv", ".md", ".html")
GROUP_KEYS = ("study", "dataset", "model")
RUN_COLUMNS = (*GROUP_KEYS, "loss", "run", "device", "device_name", "device_s",
               "device_s_per_epoch", "peak_memory_bytes", "peak_memory_kind", "energy_j",
               "recorded")
CSV_COLUMNS = (*GROUP_KEYS, "loss", "runs", "device", "device_name", "unit",
               "device_s_per_epoch", "device_hours", "peak_memory_mib", "peak_memory_kind",
               "energy_kj", "energy_runs", "ratio_vs_bce", "diff_s_per_epoch_vs_bce",
               "fallback_runs")
BASELINE = "bce"
FALLBACK = "†"
MIB = 2**20
# the unit of device time by the device the runs trained on
UNITS = {"cuda": "GPU-s", "cpu": "CPU-s"}
# run.json's ``device`` of a CUDA run, "cuda:0 (NVIDIA H200)": the GPU's name is cost's
# device_name
_CUDA_NAME = re.compile(r"cuda(?::\d+)? \((.+)\)")


def _number(value: Any, where: str, key: str, *, nullable: bool = False) -> float | None:
    """A finite number >= 0 (or None where ``nullable``); CalfError naming the key."""
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value >= 0):
        raise CalfError(f"{where}: {key} {value!r}: expected a number >= 0"
                        + (" or null" if nullable else ""))
    return float(value)


def _text(value: Any, where: str, key: str, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value:
        raise CalfError(f"{where}: {key} {value!r}: expected a non-empty string")
    return value


def _recorded(cost: Any, where: str) -> dict[str, Any]:
    """The figures of a run.json ``cost`` object (schema: calf/train/cost.py), checked."""
    if not isinstance(cost, dict):
        raise CalfError(f"{where}: cost is not an object")
    for key in ("device", "device_s", "device_s_per_epoch"):
        if key not in cost:
            raise CalfError(f"{where}: cost has no {key}")
    peak = _number(cost.get("peak_memory_bytes"), where, "cost.peak_memory_bytes", nullable=True)
    return {
        "device": _text(cost["device"], where, "cost.device"),
        "device_name": _text(cost.get("device_name"), where, "cost.device_name", nullable=True)
        or cost["device"],
        "device_s": _number(cost["device_s"], where, "cost.device_s"),
        "device_s_per_epoch": _number(cost["device_s_per_epoch"], where,
                                      "cost.device_s_per_epoch", nullable=True),
        "peak_memory_bytes": peak,
        "peak_memory_kind": None if peak is None else _text(
            cost.get("peak_memory_kind"), where, "cost.peak_memory_kind"),
        "energy_j": _number(cost.get("energy_j"), where, "cost.energy_j", nullable=True),
        "recorded": True,
    }


def _epoch_seconds(run_dir: Path) -> pd.Series:
    """``epochs.csv``'s ``seconds`` column (seconds inside training steps per epoch), read
    and checked by ``calf.train.rundir.read_epochs``."""
    if not (run_dir / EPOCHS_FILE).is_file():
        raise CalfError(f"{run_dir / EPOCHS_FILE}: no such file (needed for a run.json "
                        "without cost)")
    return read_epochs(run_dir, columns=("seconds",))["seconds"]


def _fallback(record: dict[str, Any], run_dir: Path, where: str) -> dict[str, Any]:
    """A run without ``cost``: epochs.csv's mean seconds, run.json's seconds and device."""
    device = (record.get("execution") or {}).get("device") or record.get("device")
    device = _text(device, where, "execution.device")
    seconds = _epoch_seconds(run_dir)
    name = _text(record.get("device"), where, "device", nullable=True) or device
    gpu = _CUDA_NAME.fullmatch(name)
    return {
        "device": device.split(":")[0].split(" ")[0],
        "device_name": gpu.group(1) if gpu else name,
        "device_s": _number(record.get("seconds"), where, "seconds"),
        "device_s_per_epoch": float(seconds.mean()) if len(seconds) else None,
        "peak_memory_bytes": None, "peak_memory_kind": None, "energy_j": None,
        "recorded": False,
    }


def run_cost(run_dir: str | Path, runs_root: str | Path) -> dict[str, Any]:
    """One run's identity (from its path, ``calf.layout.RunKey``) and cost figures."""
    run_dir = Path(run_dir)
    key = RunKey.from_path(run_dir, root=runs_root)
    run_file = run_dir / RUN_FILE
    record = read_run_record(run_dir, complete=True)
    cost = (_recorded(record["cost"], str(run_file)) if record.get("cost") is not None
            else _fallback(record, run_dir, str(run_file)))
    return {"study": key.study, "dataset": key.dataset, "model": key.model, "loss": key.loss,
            "run": key.key, **cost}


def collect_costs(run_dirs: Sequence[str | Path], runs_root: str | Path) -> pd.DataFrame:
    """One row per run (``RUN_COLUMNS``), every run of one study, each given once."""
    import pandas as pd

    if not run_dirs:
        raise CalfError("no run folders given")
    rows = [run_cost(run_dir, runs_root) for run_dir in run_dirs]
    frame = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    studies = sorted(set(frame["study"]))
    if len(studies) > 1:
        raise CalfError(f"run folders of several studies ({', '.join(studies)}); "
                        "write one cost table per study")
    twice = frame["run"][frame["run"].duplicated()]
    if len(twice):
        raise CalfError(f"run {twice.iloc[0]}: given twice")
    return frame


def _joined(values: pd.Series) -> str:
    return "; ".join(sorted({str(v) for v in values.dropna()}))


def summarise_costs(runs: pd.DataFrame, calf_losses: Sequence[str]) -> pd.DataFrame:
    """One row per (study, dataset, model, loss): ``CSV_COLUMNS``; the overhead over BCE only
    for ``calf_losses``, where BCE ran in the same (dataset, model) on the same device."""
    import pandas as pd

    rows = []
    for (study, dataset, model, loss), mine in runs.groupby([*GROUP_KEYS, "loss"], sort=False):
        devices = sorted(set(mine["device"]))
        energy = mine["energy_j"].dropna()
        peak = mine["peak_memory_bytes"].dropna()
        rows.append({
            "study": study, "dataset": dataset, "model": model, "loss": loss,
            "runs": len(mine), "device": "; ".join(devices),
            "device_name": _joined(mine["device_name"]),
            "unit": UNITS.get(devices[0], f"{devices[0]}-s") if len(devices) == 1 else "device-s",
            "device_s_per_epoch": mine["device_s_per_epoch"].astype(float).mean(),
            "device_hours": mine["device_s"].sum() / 3600,
            "peak_memory_mib": peak.max() / MIB if len(peak) else math.nan,
            "peak_memory_kind": _joined(mine["peak_memory_kind"]) or None,
            "energy_kj": energy.sum() / 1000 if len(energy) else math.nan,
            "energy_runs": len(energy),
            "fallback_runs": int((~mine["recorded"].astype(bool)).sum()),
        })
    table = pd.DataFrame(rows)
    table["ratio_vs_bce"] = math.nan
    table["diff_s_per_epoch_vs_bce"] = math.nan
    base = table[table["loss"] == BASELINE].set_index(list(GROUP_KEYS))
    for index, row in table[table["loss"].isin(list(calf_losses))].iterrows():
        group = tuple(row[k] for k in GROUP_KEYS)
        if group not in base.index:
            continue
        bce = base.loc[group]
        if bce["device"] != row["device"] or ";" in row["device"] or not (
                bce["device_s_per_epoch"] > 0):
            continue  # unlike devices (or no BCE epoch time): no ratio
        table.loc[index, "ratio_vs_bce"] = row["device_s_per_epoch"] / bce["device_s_per_epoch"]
        table.loc[index, "diff_s_per_epoch_vs_bce"] = (row["device_s_per_epoch"]
                                                       - bce["device_s_per_epoch"])
    return table[list(CSV_COLUMNS)]


def _hours(value: float) -> str:
    """Hours to 3 significant digits without an exponent (at most 6 decimals)."""
    if value is None or math.isnan(value) or value <= 0:
        return fmt(value, 3)
    return fmt(value, min(6, max(0, 2 - math.floor(math.log10(value)))))


def _group_order(group: tuple) -> tuple:
    _, dataset, model = group
    known = list(MODEL_NAMES)
    return (dataset, known.index(model) if model in known else len(known), model)


def _block(mine: pd.DataFrame, group: tuple, losses: list[str], calf_losses: Sequence[str],
           energy: bool) -> Block:
    """One (dataset, model): a row per loss, the unit named by the block's device."""
    _, dataset, model = group
    units = set(mine["unit"])
    unit = units.pop() if len(units) == 1 else "device-s"
    hours = unit.replace("-s", "-hours")
    columns = [Column("Loss", numeric=False), Column("Runs"), Column("Device", numeric=False),
               Column(f"{unit} / epoch"), Column(hours), Column("Peak memory (MiB)")]
    if energy:
        columns.append(Column("Energy (kJ)"))
    columns += [Column("ratio", "vs BCE"), Column(f"Δ {unit} / epoch", "vs BCE")]
    rows, fallback, no_ratio = [], False, False
    for loss in losses:
        r = mine.loc[loss]
        mark = FALLBACK if r["fallback_runs"] else ""
        fallback = fallback or bool(mark)
        row = [Cell(display(loss, LOSS_NAMES), markers=mark), Cell(str(int(r["runs"]))),
               Cell(r["device_name"]), Cell(fmt(r["device_s_per_epoch"], 2)),
               Cell(_hours(r["device_hours"])), Cell(fmt(r["peak_memory_mib"], 0))]
        if energy:
            text = fmt(r["energy_kj"], 1)
            if 0 < r["energy_runs"] < r["runs"]:
                text += f" ({int(r['energy_runs'])} of {int(r['runs'])} runs)"
            row.append(Cell(text))
        if loss in calf_losses:
            no_ratio = no_ratio or math.isnan(r["ratio_vs_bce"])
            ratio = fmt(r["ratio_vs_bce"], 2)
            row += [Cell(ratio if ratio == MISSING else f"{ratio}×"),
                    Cell(fmt(r["diff_s_per_epoch_vs_bce"], 2, signed=True))]
        else:
            row += [Cell(MISSING), Cell(MISSING)]
        rows.append(row)
    notes = []
    if fallback:
        counts = ", ".join(f"{display(loss, LOSS_NAMES)} {int(mine.loc[loss, 'fallback_runs'])} "
                           f"of {int(mine.loc[loss, 'runs'])}" for loss in losses
                           if mine.loc[loss, "fallback_runs"])
        notes.append(f"{FALLBACK} Runs without a cost record in run.json ({counts}): their "
                     "seconds per epoch are epochs.csv's seconds, their device time run.json's "
                     "wall seconds; they have no peak memory or energy.")
    if no_ratio:
        notes.append(f"{MISSING} overhead: BCE did not run for this dataset and model, or ran "
                     "on another device.")
    kinds = set(mine["peak_memory_kind"].dropna())
    if kinds:
        notes.append("Peak memory: " + "; ".join(
            {"cuda_allocated": "CUDA memory allocated by torch (max_memory_allocated)",
             "cpu_rss": "peak resident memory of the training process"}.get(k, k)
            for k in sorted(kinds)) + ".")
    return Block(f"{dataset}, {display(model, MODEL_NAMES)}", columns, rows, notes)


def write_cost_table(runs: pd.DataFrame, out_prefix: str | Path, *,
                     calf_losses: Sequence[str], force: bool = False) -> list[Path]:
    """Write ``{out_prefix}.csv/.md/.html`` from one study's runs (``collect_costs``);
    returns their paths. The CSV holds ``CSV_COLUMNS``, one row per (dataset, model, loss):
    mean device-seconds per epoch over the runs, total device-hours, peak memory in MiB,
    energy in kJ over the ``energy_runs`` that have it, the ratio and difference of seconds
    per epoch to BCE's (``calf_losses`` only) and the runs without a cost record. Existing
    files are replaced only with ``force``."""
    import pandas as pd

    paths = output_paths(out_prefix, SUFFIXES)
    calf_losses = list(calf_losses)
    table = summarise_costs(runs, calf_losses)
    energy = bool(table["energy_runs"].sum())
    groups = sorted(set(table[list(GROUP_KEYS)].itertuples(index=False, name=None)),
                    key=_group_order)
    blocks, frames = [], []
    for group in groups:
        mine = table[(table[list(GROUP_KEYS)] == list(group)).all(axis=1)].set_index("loss")
        names = set(mine.index)
        losses = ordered(names - set(calf_losses), LOSS_NAMES) + [
            c for c in calf_losses if c in names]
        blocks.append(_block(mine, group, losses, calf_losses, energy))
        frames.append(mine.loc[losses].reset_index())
    csv = pd.concat(frames, ignore_index=True)[list(CSV_COLUMNS)]
    study = groups[0][0]
    doc = Document(
        f"Training cost of study {study}",
        [f"What the training runs of study {study} cost, from each run's own record "
         "(run.json cost), per dataset, model and loss: the mean over runs of the "
         "device-seconds per epoch (wall seconds inside training steps; GPU-seconds on "
         "CUDA), the total device-hours of every attempt, start-up, validation and "
         "checkpoints included (the wall time the device was held: one GPU on CUDA, the "
         "training process on the CPU), the peak memory (the largest of the runs)"
         + (", the energy the GPUs reported" if energy else "")
         + ", and each CALF loss's overhead over BCE of the same dataset and model: the "
         "ratio of their seconds per epoch and the difference."],
        blocks)
    return publish(dict(zip(paths, [csv.to_csv(index=False), to_markdown(doc), to_html(doc)],
                            strict=True)), force=force)
