"""A run's training set (run.json ``params.train_slices``) and validation set, if any, as
MLflow *dataset inputs* (``mlflow.data``, contexts ``training`` and ``validation``): the
CSV's rows as a pandas dataset, its absolute path as the source, and as digest the CSV's
SHA-256 (run.json ``params.train_slices_sha256``) cut to the 36 characters MLflow keeps.
The live logger and the sync log them with the same names, so syncing a live-logged run
adds nothing twice."""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calf._fs import sha256_file
from calf.layout import RunKey, format_selection

# the training-set CSVs of a run: (run.json param, MLflow dataset context)
DATASET_PARAMS = (("train_slices", "training"), ("val_slices", "validation"))
MAX_DATASET_DIGEST = 36  # mlflow.utils.validation.MAX_DATASET_DIGEST_SIZE
SCHEMA_ROWS = 1000  # rows of a training-set CSV that MLflow's schema is inferred from


@dataclass(frozen=True)
class TrainingSetFile:
    """A training or validation CSV of a run, as it is now and unchanged since training."""

    context: str  # the MLflow dataset context: training or validation
    name: str  # the MLflow dataset name (dataset_name)
    path: Path
    sha256: str


def training_set_files(params: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    """(MLflow dataset context, CSV path, SHA-256 recorded in run.json or None) of the run's
    training set and its validation set, where run.json ``params`` name them."""
    found = []
    for param, context in DATASET_PARAMS:
        path = params.get(param)
        if isinstance(path, str) and path:
            sha = params.get(f"{param}_sha256")
            found.append((context, path, sha if isinstance(sha, str) and sha else None))
    return found


def dataset_name(key: RunKey | None, path: str | Path, context: str) -> str:
    """The MLflow dataset name of a run's training or validation set: by its place in the run
    layout (``{dataset}/[ratio-R/]foldK/{context}``: the runs of every loss, model and seed
    of one fold share it), else by the CSV's file name."""
    if key is None:
        return f"{Path(path).stem}/{context}"
    return f"{key.dataset}/{format_selection(key.fold, key.ratio)}/{context}"


def unchanged_training_sets(key: RunKey, params: Mapping[str, Any],
                            hashes: MutableMapping[Path, str]
                            ) -> tuple[list[TrainingSetFile], list[str]]:
    """The run's training and validation CSVs that still hold what it trained on, and a
    line for each one that does not (gone, or another SHA-256 than run.json's). ``hashes``
    caches the SHA-256 of each CSV (many runs share one)."""
    found, missing = [], []
    for context, path_text, recorded in training_set_files(params):
        path = Path(path_text)
        if not path.is_file():
            missing.append(f"{key.key}: {context} set {path} not found")
            continue
        if path not in hashes:
            hashes[path] = sha256_file(path)
        if recorded is not None and hashes[path] != recorded:
            missing.append(f"{key.key}: {context} set {path} changed since training "
                           f"(sha256 {hashes[path][:12]}..., run.json {recorded[:12]}...)")
            continue
        found.append(TrainingSetFile(context, dataset_name(key, path, context), path,
                                     hashes[path]))
    return found, missing


def dataset_entity(path: str | Path, sha256: str, name: str) -> Any:
    """The CSV at ``path`` as an MLflow dataset entity (``mlflow.data.from_pandas``: its
    schema and row count; source the path; digest the file's SHA-256, cut to MLflow's 36
    characters)."""
    import warnings

    import mlflow.data
    import pandas as pd
    from mlflow.entities import Dataset

    table = pd.read_csv(path)
    with warnings.catch_warnings():
        # MLflow's notes on integer columns and on a local path matching two source kinds
        warnings.simplefilter("ignore", UserWarning)
        # MLflow infers the schema of a text column value by value (16 s for a 532,748-row
        # training set); the columns of a CSV read by pandas are uniform, so the schema of
        # the first rows is the table's. The profile (row and value counts) is the table's.
        dataset = mlflow.data.from_pandas(table.head(SCHEMA_ROWS),
                                          source=str(Path(path).resolve()), name=name,
                                          digest=sha256[:MAX_DATASET_DIGEST])
        fields = dataset.to_dict()
    fields["profile"] = json.dumps({"num_rows": len(table), "num_elements": int(table.size)})
    return Dataset(**fields)


def dataset_input(dataset: Any, context: str) -> Any:
    """An MLflow dataset entity as a run input in ``context`` (training or validation)."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    return DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
