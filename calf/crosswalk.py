"""Crosswalk files: link one subject's IDs across releases, so that it never straddles a split.

A crosswalk is a CSV or an Excel sheet (``.xlsx``: its header row is found by the ID
columns asked for, so a title row above it does no harm). Each chosen ID column is assigned
a *namespace*, and all IDs in one row are linked:

- a namespace equal to a loaded dataset's name matches that dataset's case IDs and patient
  IDs (case-insensitive, ignoring leading zeros in numbers, so ``UCSF-PDGM-004`` matches
  ``UCSF-PDGM-0004``); values that match nothing (subjects not loaded, placeholders such as
  ``new-not-previously-in-TCIA``, other collections' IDs) are ignored. A column named after
  a dataset that is not loaded is not used at all (its placeholders would chain rows);
- any other namespace holds intermediate IDs that only chain rows together, so that two
  files sharing a column link through it; such a column must hold real IDs only, since
  rows sharing a value are linked;
- ``brats2021`` is such an intermediate namespace for BraTS 2021 IDs (``BraTS2021_00495``;
  a bare ``00495`` means the same), and it also matches the cases of a loaded ``brats``
  store named the 2021 way. So one config serves a BraTS store of either naming.

Columns whose header is a loaded dataset's name are always used; further columns are
named per file (``COLUMN=NAMESPACE``), and a named column the file lacks is an error. The
published files and their columns (``calf.download.sources.CROSSWALKS``)::

    BraTS2021_MappingToTCIA.xlsx
        PatientID on TCIA Radiology Portal=upenn_gbm, BraTS2021 ID=brats2021
    UCSF-PDGM-metadata_v5.csv         ID=ucsf_pdgm, BraTS21 ID=brats2021
    BraTS2023_2017_GLI_Mapping.xlsx   BraTS2023=brats, BraTS2021=brats2021

Links compose: a UPENN-GBM scan, its BraTS 2021 ID and the BraTS 2023 exam of that ID are
one group. ``check_links`` refuses a pool of BraTS with UPENN-GBM or UCSF-PDGM that no
crosswalk connects, naming the files that would.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from calf.errors import CalfError

if TYPE_CHECKING:
    import pandas as pd

# a crosswalk node: (namespace, id); for loaded datasets the id is the patient_id
Node = tuple[str, str]
Edge = tuple[Node, Node]

BRATS = "brats"
BRATS_2021 = "brats2021"
# BraTS releases pooled with these need a link to each: subjects appear in both
OVERLAPPING = ("upenn_gbm", "ucsf_pdgm")
_HEADER_ROWS = 20  # how far down an Excel sheet the header row is looked for


@dataclass
class Crosswalk:
    """One linking file: its table and the namespaces of its named columns."""

    name: str
    table: pd.DataFrame
    columns: dict[str, str] = field(default_factory=dict)


def normalise_id(value: str, namespace: str | None = None) -> str:
    """Compare IDs case-insensitively and without leading zeros in numbers."""
    value = value.strip()
    if namespace == BRATS_2021 and value.isdigit():
        value = f"BraTS2021_{value}"  # TCIA's mapping writes a few 2021 IDs bare
    return re.sub(r"\d+", lambda m: str(int(m.group())), value.lower())


def _header_at(raw: pd.DataFrame, wanted: Sequence[str], path: Path) -> int:
    if not wanted:
        return 0
    rows = [[str(c).strip() for c in raw.iloc[r]] for r in range(min(len(raw), _HEADER_ROWS))]
    for row, cells in enumerate(rows):
        if all(w in cells for w in wanted):
            return row
    # the row most like a header names what is missing
    head = max(rows, key=lambda cells: sum(w in cells for w in wanted), default=[])
    missing = [w for w in wanted if w not in head]
    raise CalfError(
        f"{path}: no column {missing[0]!r} (header: {', '.join(repr(h) for h in head if h)})"
    )


def read_crosswalk(path: str | Path, columns: Sequence[str] = ()) -> pd.DataFrame:
    """A crosswalk CSV or ``.xlsx`` (first sheet), every cell a string ("" where empty).

    The header is the first row holding every name in ``columns`` (the first row when
    none are asked for); a named column the file lacks is an error naming both.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise CalfError(f"{path}: crosswalk file not found")
    try:
        if path.suffix.lower() in (".xlsx", ".xlsm"):
            raw = pd.read_excel(path, header=None, dtype=str, keep_default_na=False)
        else:
            raw = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
    except Exception as err:  # pandas, zipfile and openpyxl raise many types for a bad file
        reason = " ".join(str(err).split())
        kind = type(err).__name__
        raise CalfError(f"{path}: cannot read the crosswalk: {kind}: {reason}") from None
    header = _header_at(raw, list(columns), path)
    table = raw.iloc[header + 1 :].reset_index(drop=True)
    table.columns = [str(c).strip() for c in raw.iloc[header]] if len(raw) else []
    return table.loc[:, [c for c in table.columns if c]]


def parse_crosswalk_columns(specs: Sequence[str]) -> dict[str, str]:
    """``["COLUMN=NAMESPACE", ...]`` -> ``{column: namespace}`` (the last ``=`` splits)."""
    columns: dict[str, str] = {}
    for spec in specs:
        column, sep, namespace = spec.rpartition("=")
        if not sep or not column.strip() or not namespace.strip():
            raise CalfError(f"crosswalk column {spec!r} is not of the form COLUMN=DATASET")
        columns[column.strip()] = namespace.strip()
    return columns


def load_crosswalk(path: str | Path, specs: Sequence[str] = ()) -> Crosswalk:
    """Read one linking file with its ``COLUMN=NAMESPACE`` specs (each column must exist)."""
    columns = parse_crosswalk_columns(specs)
    return Crosswalk(str(path), read_crosswalk(path, list(columns)), columns)


def _lookup(cases: pd.DataFrame) -> dict[str, dict[str, set[Node]]]:
    """Normalised case or patient ID -> patient nodes, per namespace that matches cases."""
    from calf.datasets.brats import NAMING_2021

    lookup: dict[str, dict[str, set[Node]]] = {d: {} for d in set(cases["dataset"])}
    for row in cases.itertuples(index=False):
        node = (row.dataset, row.patient_id)
        spaces = [row.dataset]
        if row.dataset == BRATS and NAMING_2021.folder.match(row.case_id):
            spaces.append(BRATS_2021)
        for space in spaces:
            for value in (row.case_id, row.patient_id):
                lookup.setdefault(space, {}).setdefault(normalise_id(value, space), set()).add(node)
    return lookup


def _used_columns(crosswalk: Crosswalk, datasets: set[str]) -> dict[str, str]:
    from calf.datasets import ADAPTERS

    table = crosswalk.table
    missing = [c for c in crosswalk.columns if c not in table.columns]
    if missing:  # read_crosswalk checks this too; a hand-made table may not have
        raise CalfError(f"{crosswalk.name}: no column {missing[0]!r}")
    used = {c: c for c in table.columns if c in datasets}
    used.update(crosswalk.columns)
    # a column of a dataset that is not loaded can only chain rows through placeholders
    used = {c: ns for c, ns in used.items() if ns in datasets or ns not in ADAPTERS}
    if len(used) < 2:
        wanted = sorted(datasets | set(crosswalk.columns.values()))
        raise CalfError(
            f"{crosswalk.name}: needs at least two ID columns, found {sorted(used) or 'none'} "
            f"of {wanted} (name columns after loaded datasets or pass COLUMN=DATASET)"
        )
    return used


def resolve(crosswalk: Crosswalk, cases: pd.DataFrame) -> tuple[list[Edge], set[str]]:
    """The links one crosswalk makes between the loaded patients, and the namespaces it
    connects (loaded datasets it matched, intermediate namespaces it holds values of)."""
    datasets = set(cases["dataset"])
    used = _used_columns(crosswalk, datasets)
    lookup = _lookup(cases)
    touched: set[str] = set()
    nodes_by_row: list[list[Node]] = [[] for _ in range(len(crosswalk.table))]
    for column, namespace in used.items():
        values = crosswalk.table[column].astype(str).str.strip()
        matched = 0
        for i, value in enumerate(values):
            if not value:
                continue
            key = normalise_id(value, namespace)
            found = sorted(lookup.get(namespace, {}).get(key, set()))
            matched += bool(found)
            touched.update(node[0] for node in found)
            nodes_by_row[i].extend(found)
            if namespace not in datasets:  # an intermediate ID: chains rows of all files
                nodes_by_row[i].append((namespace, key))
                touched.add(namespace)
        if namespace in datasets and matched == 0 and (values != "").any():
            example = next(v for v in values if v)
            known = cases.loc[cases["dataset"] == namespace, "case_id"].iat[0]
            raise CalfError(
                f"{crosswalk.name}: column {column!r} matches none of the IDs of dataset "
                f"{namespace!r} (e.g. {example!r} vs {known!r})"
            )
    edges: list[Edge] = []
    for nodes in nodes_by_row:
        edges.extend(zip(nodes, nodes[1:]))
    return edges, touched


def crosswalk_edges(crosswalk: Crosswalk, cases: pd.DataFrame) -> list[Edge]:
    """The links one crosswalk makes between the loaded patients (module docstring)."""
    return resolve(crosswalk, cases)[0]


def _components(groups: Sequence[set[str]]) -> dict[str, str]:
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    for group in groups:
        first, *rest = sorted(group)
        find(first)
        for other in rest:
            parent[find(other)] = find(first)
    return {x: find(x) for x in parent}


def check_links(cases: pd.DataFrame, touched: Sequence[set[str]]) -> None:
    """Refuse a pool of BraTS with UPENN-GBM or UCSF-PDGM that no crosswalk connects.

    ``touched`` holds the namespaces each crosswalk connects (``resolve``). The error names
    the published files missing for each unlinked pair, where to get them and where to
    put them.
    """
    from calf.datasets.brats import NAMING_2023
    from calf.download.sources import CROSSWALKS, crosswalk_help

    datasets = set(cases["dataset"])
    if BRATS not in datasets:
        return
    root = _components([set(t) for t in touched if t])

    def linked(a: str, b: str) -> bool:
        return a in root and b in root and root[a] == root[b]

    brats_ids = cases.loc[cases["dataset"] == BRATS, "case_id"]
    named_2023 = bool(brats_ids.map(lambda c: bool(NAMING_2023.folder.match(c))).any())
    for other in OVERLAPPING:
        if other not in datasets or linked(BRATS, other):
            continue
        needed = [s for s in CROSSWALKS.values() if other in s.columns.values()]
        if named_2023:
            needed += [s for s in CROSSWALKS.values() if BRATS in s.columns.values()]
        missing = [s for s in needed if not linked(*sorted(set(s.columns.values())))]
        advice = "; ".join(crosswalk_help(s, f"resources/crosswalk/{s.file}") for s in missing)
        raise CalfError(
            f"pooled split of {BRATS} and {other} with no crosswalk linking them (a subject "
            f"in both releases could straddle train and test): missing "
            f"{', '.join(s.file for s in missing)}; {advice}; then pass each as --crosswalk "
            f"FILE with its --crosswalk-column COLUMN=NAMESPACE"
        )


def link_edges(cases: pd.DataFrame, crosswalks: Sequence[Crosswalk] = ()) -> list[Edge]:
    """Every crosswalk's links between the loaded patients, after ``check_links``."""
    edges: list[Edge] = []
    touched: list[set[str]] = []
    for crosswalk in crosswalks:
        found, spaces = resolve(crosswalk, cases)
        edges += found
        touched.append(spaces)
    check_links(cases, touched)
    return edges


__all__ = [
    "Crosswalk",
    "Edge",
    "Node",
    "check_links",
    "crosswalk_edges",
    "link_edges",
    "load_crosswalk",
    "normalise_id",
    "parse_crosswalk_columns",
    "read_crosswalk",
    "resolve",
]
