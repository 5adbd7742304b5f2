"""Lineage: what every output was made from, and the checks that keep the stages comparable.

Each ``kedro run`` has an id, Kedro's session id, which is also the version folder its versioned
outputs are saved under; a *run id* therefore names the version of everything that run wrote.
Three fingerprints identify the data a model is trained and scored on:

- ``store``: the encoded samples, by content (ids, image and label bytes). Preprocessing the same
  data with the same parameters gives the same fingerprint; anything else gives another one;
- ``split``: which sample goes to train, val and test;
- ``classes``: the class names in label order and the ignore index: what a label *means*.

A training stage records them in its checkpoint, with its run id and the checkpoint it started
from (``init``). Evaluation refuses a checkpoint whose data differ from the current store and
split, and the stages are only compared when they share one lineage: the same data, each stage
started from the checkpoint compared before it, each record from the run that made it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from efm_seg.basics.names import MODELS

DATA_KEYS = ("store", "split", "classes")


class LineageError(ValueError):
    """Outputs that do not come from one lineage would be compared; the message names them."""


def digest(parts: Iterable[bytes | str]) -> str:
    """A short (64-bit, hex) SHA-256 fingerprint of ``parts``, each length-prefixed so that
    the boundaries between parts count."""
    sha = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        sha.update(len(data).to_bytes(8, "little"))
        sha.update(data)
    return sha.hexdigest()[:16]


def split_fingerprint(split: pd.DataFrame) -> str:
    """The split table's assignment of samples, independent of row order and other columns."""
    if not {"sample_id", "split"} <= set(split.columns):
        raise ValueError(
            "the split table needs columns sample_id and split; run the split pipeline"
        )
    pairs = sorted(zip(split["sample_id"].astype(str), split["split"].astype(str), strict=True))
    return digest(f"{sample_id}\t{subset}" for sample_id, subset in pairs)


def classes_fingerprint(classes: Sequence[str], ignore_index: int) -> str:
    """What the training labels mean: the class names in label order and the ignore label."""
    return digest([json.dumps([list(classes), int(ignore_index)])])


def config_fingerprint(config: Mapping[str, Any]) -> str:
    """A parameter block (JSON-able), independent of key order."""
    return digest([json.dumps(config, sort_keys=True, default=str)])


@dataclass(frozen=True)
class DataLineage:
    """The data a model was trained or scored on, by fingerprint."""

    store: str
    split: str
    classes: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def differences(self, other: Mapping[str, Any]) -> list[str]:
        """The fields (``store``, ``split``, ``classes``) on which ``other`` differs."""
        return [key for key in DATA_KEYS if other.get(key) != getattr(self, key)]


_WHAT = {
    "store": "sample store (preprocessing output)",
    "split": "split",
    "classes": "classes",
}
_REDO = {
    "store": "the samples were preprocessed again since (other data or parameters)",
    "split": "the data were split again since (other seed or fractions)",
    "classes": "dataset.classes or dataset.ignore_index changed since",
}


def checkpoint_lineage(stage: str, checkpoint: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The lineage recorded in a stage's checkpoint; refuses a checkpoint that has none."""
    lineage = checkpoint.get("lineage")
    if not isinstance(lineage, Mapping) or not lineage.get("run_id"):
        raise LineageError(
            f"{stage}: {what} has no lineage record (it was written by an earlier efm-seg), so "
            "its data cannot be checked; train the stage again: kedro run --pipelines "
            f"{checkpoint.get('stage', stage)}"
        )
    return dict(lineage)


def check_same_data(
    stage: str, lineage: Mapping[str, Any], current: DataLineage, what: str, remedy: str
) -> None:
    """Refuse a record whose data (store, split, classes) differ from ``current``."""
    differing = current.differences(lineage)
    if differing:
        details = "; ".join(
            f"{_WHAT[key]} {lineage.get(key)} there, {getattr(current, key)} now ({_REDO[key]})"
            for key in differing
        )
        raise LineageError(
            f"{stage}: {what} (run {lineage.get('run_id')}) was made from other data than the "
            f"current one: {details}. {remedy}"
        )


def check_stage_rows(rows: pd.DataFrame, what: str) -> dict[str, dict[str, Any]]:
    """Check that the stages of an evaluation table share one lineage; return it per stage.

    ``rows`` has one or more rows per stage with the lineage columns written by evaluation
    (``checkpoint_run``, ``init_stage``, ``init_run``, ``store``, ``split``, ``classes``,
    ``evaluation_run`` and ``evaluation``, the fingerprint of the evaluation settings).

    Refused: a table without those columns; a stage scored more than once with different
    checkpoints; stages on different data or scored with different evaluation settings; a stage
    that started from a checkpoint other than the one of the previous stage compared here.
    """
    needed = {
        "stage",
        "checkpoint_run",
        "init_stage",
        "init_run",
        *DATA_KEYS,
        "evaluation_run",
        "evaluation",
    }
    missing = sorted(needed - set(rows.columns))
    if missing:
        raise LineageError(
            f"{what} has no lineage column(s) {missing} (it was made by an earlier efm-seg); "
            "run the evaluation again: kedro run --pipelines evaluation"
        )
    stages: dict[str, dict[str, Any]] = {}
    for stage, group in rows.groupby("stage", sort=False):
        records = group[sorted(needed - {"stage"})].fillna("").astype(str).drop_duplicates()
        if len(records) > 1:
            raise LineageError(
                f"{what}: stage {stage} has rows from different checkpoints or evaluations "
                f"(runs {sorted(set(records['checkpoint_run']))}); run the evaluation again"
            )
        stages[str(stage)] = records.iloc[0].to_dict()
    check_stages(stages, what)
    return stages


def check_stages(stages: Mapping[str, Mapping[str, Any]], what: str) -> None:
    """Refuse stages that do not share one lineage (see :func:`check_stage_rows`).

    ``stages`` maps a stage to its record: ``checkpoint_run``, ``init_stage``, ``init_run``,
    the data fingerprints and (optionally) ``evaluation_run`` and ``evaluation``.
    """
    ordered = sorted(stages, key=lambda s: (MODELS.index(s) if s in MODELS else 99, s))
    if not ordered:
        return
    first = stages[ordered[0]]
    for stage in ordered[1:]:
        record = stages[stage]
        differing = [key for key in DATA_KEYS if record.get(key) != first.get(key)]
        if differing:
            versions = ", ".join(f"{s}: run {stages[s].get('checkpoint_run')}" for s in ordered)
            details = "; ".join(
                f"{_WHAT[key]} {first.get(key)} ({ordered[0]}) vs {record.get(key)} ({stage})"
                for key in differing
            )
            raise LineageError(
                f"{what}: the stages were trained on different data and cannot be compared: "
                f"{details}. Checkpoints: {versions}. Train the stages again on the current data "
                "(kedro run --pipelines training), or choose checkpoints made from the same data "
                "with --load-versions <stage>.best_checkpoint:<run id>"
            )
    scored = {stages[s].get("evaluation") for s in ordered}
    if len(scored) > 1:
        versions = ", ".join(f"{s}: run {stages[s].get('evaluation_run')}" for s in ordered)
        raise LineageError(
            f"{what}: the stages were scored with different evaluation settings (evaluations "
            f"{versions}); score them together: kedro run --pipelines evaluation"
        )
    for stage in ordered:
        record = stages[stage]
        parent_stage, parent_run = record.get("init_stage") or "", record.get("init_run") or ""
        if not parent_run or parent_stage not in stages:
            continue
        compared = stages[parent_stage].get("checkpoint_run")
        if compared != parent_run:
            raise LineageError(
                f"{what}: {stage} (run {record.get('checkpoint_run')}) started from the "
                f"{parent_stage} checkpoint of run {parent_run}, but the {parent_stage} "
                f"checkpoint compared is from run {compared}. Train {stage} again from it "
                f"(kedro run --pipelines {stage}), or compare the one it started from: "
                f"--load-versions {parent_stage}.best_checkpoint:{parent_run}"
            )
