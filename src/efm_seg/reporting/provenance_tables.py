"""The report's provenance section: where the compared stages come from, as tables.

Input: the ``report_provenance`` record built by the reporting pipeline (see
``efm_seg.pipelines.reporting.nodes.collect_provenance``)::

    {"report_run": <run_info of the run that made the report>,
     "data": {"store": ..., "split": ..., "classes": ..., "dataset": <name>},
     "stages": {<stage>: {"training_run", "started_from", "device", "precision", "epochs_run",
                          "best_epoch", "image_size", "train_seconds", "evaluation_run",
                          "evaluation_device", "evaluation_seconds", "git", "packages",
                          "machine", "recipe": {...}}}}

Plain functions without Kedro, like the rest of :mod:`efm_seg.reporting`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from efm_seg.basics.names import EQUAL_BUDGET
from efm_seg.basics.provenance import describe_commit
from efm_seg.reporting.report import stage_label

Table = tuple[str, str, pd.DataFrame]


def _text(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str) if value else "–"
    return str(value)


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def run_table(run: Mapping[str, Any]) -> pd.DataFrame:
    """The report's own run: id, time, environment, code, data root and what it was given."""
    rows = [
        ("run id", run.get("run_id")),
        ("started (UTC)", run.get("started")),
        ("environment", run.get("env")),
        ("data root", run.get("data_root")),
        ("git commit", describe_commit(run.get("git"))),
        ("pipelines", ", ".join(run.get("pipelines") or [])),
        ("--params", run.get("runtime_params") or {}),
        ("--load-versions", run.get("load_versions") or {}),
    ]
    return pd.DataFrame([(k, _text(v)) for k, v in rows], columns=["item", "value"])


def stages_table(stages: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per stage: the runs that trained and scored it, where, and for how long."""
    rows = []
    for stage, record in stages.items():
        rows.append(
            {
                "stage": stage_label(stage),
                "training run": record.get("training_run"),
                "git commit": describe_commit(record.get("git")),
                "started from": record.get("started_from"),
                "device": record.get("device"),
                "precision": record.get("precision"),
                "image size": "×".join(str(v) for v in record.get("image_size") or []) or "–",
                "epochs": record.get("epochs_run"),
                "best epoch": record.get("best_epoch"),
                "training time (s)": record.get("train_seconds"),
                "evaluation run": record.get("evaluation_run"),
                "evaluation device": record.get("evaluation_device"),
                "evaluation time (s)": record.get("evaluation_seconds"),
            }
        )
    return pd.DataFrame(rows)


def budget_table(stages: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per stage: its epochs, and the epochs behind its model in all (a stage started
    from another's checkpoint carries that stage's too)."""
    return pd.DataFrame(
        [
            {
                "stage": stage_label(stage),
                "started from": record.get("started_from"),
                "epochs in the stage": record.get("epochs_run"),
                "epochs behind the model": record.get("epochs_behind"),
            }
            for stage, record in stages.items()
        ]
    )


def budget_sentence(stages: Mapping[str, Mapping[str, Any]]) -> str:
    """What the stage comparison can and cannot say, given the stages' budgets."""
    behind = {stage: record.get("epochs_behind") for stage, record in stages.items()}
    listed = ", ".join(f"{stage_label(s)} {n}" for s, n in behind.items())
    if len(set(behind.values())) <= 1:
        return f"Every stage's model had the same training behind it ({listed} epochs)."
    sentence = (
        f"The models compared had different amounts of training behind them ({listed} epochs): "
        "a difference between the stages' scores mixes the EFM with the extra training, and "
        "says nothing about EFM on its own."
    )
    if EQUAL_BUDGET in stages:
        sentence += (
            f" {stage_label(EQUAL_BUDGET)} is the baseline's recipe trained for as many epochs as "
            "the three stages together: a stage gains over plain training only where it scores "
            "above it. One run is one seed; `kedro run --pipelines study` repeats the comparison "
            'over seeds and folds (README, "study").'
        )
    else:
        sentence += (
            " `kedro run --pipelines study` compares EFM with a baseline trained for as long "
            '(README, "study").'
        )
    return sentence


def recipe_table(stages: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Every setting each stage trained with (the shared recipe with its overrides applied),
    as recorded in its checkpoint; ``differs`` marks the settings the stages do not share."""
    flat = {stage: _flatten(record.get("recipe") or {}) for stage, record in stages.items()}
    for stage, record in stages.items():  # "auto" is what was asked; show what it became
        if stage in flat and "device" in flat[stage]:
            flat[stage]["device"] = f"{flat[stage]['device']} → {record.get('device')}"
        if stage in flat and "precision" in flat[stage]:
            flat[stage]["precision"] = f"{flat[stage]['precision']} → {record.get('precision')}"
    keys = [key for key in dict.fromkeys(k for f in flat.values() for k in f) if key != "stage"]
    rows = []
    for key in keys:
        values = [_text(flat[stage].get(key)) for stage in flat]
        rows.append(
            {
                "setting": key,
                "differs": "•" if len(set(values)) > 1 else "",
                **{stage_label(stage): value for stage, value in zip(flat, values, strict=True)},
            }
        )
    return pd.DataFrame(rows)


def inputs_table(run: Mapping[str, Any]) -> pd.DataFrame:
    """The version of every versioned dataset the report's run read from earlier runs."""
    inputs = run.get("inputs") or {}
    if not inputs:
        return pd.DataFrame(
            [("(none)", "everything the report shows was made by this run")],
            columns=["dataset", "version"],
        )
    return pd.DataFrame(sorted(inputs.items()), columns=["dataset", "version"])


MACHINE_ROWS = (("processor", "processor"), ("logical CPUs", "logical_cpus"), ("system", "system"))


def software_table(run: Mapping[str, Any], stages: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Package versions and machine of the report's run and of each stage's training run."""
    runs = {"this report": run} | {stage_label(s): r for s, r in stages.items()}
    packages = {column: r.get("packages") or {} for column, r in runs.items()}
    names = list(dict.fromkeys(name for versions in packages.values() for name in versions))
    rows = [
        {"item": name, **{c: versions.get(name, "–") for c, versions in packages.items()}}
        for name in names
    ]
    # Runs recorded before the machine was part of provenance have none: their cells say "–".
    rows += [
        {"item": label, **{c: _text((r.get("machine") or {}).get(key)) for c, r in runs.items()}}
        for label, key in MACHINE_ROWS
    ]
    return pd.DataFrame(rows)


def data_table(data: Mapping[str, Any]) -> pd.DataFrame:
    rows = [
        ("dataset", data.get("dataset")),
        ("sample store fingerprint", data.get("store")),
        ("split fingerprint", data.get("split")),
        ("classes fingerprint", data.get("classes")),
    ]
    return pd.DataFrame([(k, _text(v)) for k, v in rows], columns=["item", "value"])


def provenance_tables(provenance: Mapping[str, Any]) -> list[Table]:
    """The provenance section of the report, as ``(heading, sentence, table)`` triples."""
    run = provenance.get("report_run") or {}
    stages = provenance.get("stages") or {}
    return [
        (
            "This report's run",
            "The run that made this report: its id is also the version folder of everything it "
            "wrote. The stages it compares may come from earlier runs (next table).",
            run_table(run),
        ),
        (
            "Stages compared",
            "The run that trained each stage (the version of its checkpoint) and the one that "
            "scored it, the checkpoint it started from, the device and precision actually "
            "used, the epochs trained, the epoch kept (best validation IoU) and the time taken.",
            stages_table(stages),
        ),
        (
            "Data",
            "Every stage was trained and scored on this data; the report is refused otherwise. "
            "The fingerprints identify the encoded samples (by content), the split and the "
            "classes.",
            data_table(provenance.get("data") or {}),
        ),
        (
            "Effective training recipe",
            "What each stage trained with: the shared training block with the stage's overrides "
            "and the EFM method applied, as recorded in its checkpoint. • marks a setting that "
            "differs between stages.",
            recipe_table(stages),
        ),
        (
            "Input versions",
            "The version read of each versioned input made by an earlier run: chosen with "
            "--load-versions (explicit) or the latest saved (latest). The run wrote everything "
            "else it read itself.",
            inputs_table(run),
        ),
        (
            "Software and machine",
            "The packages and the machine of the report's run and of the run that trained each "
            "stage. The same seed gives slightly different numbers on another processor.",
            software_table(run, stages),
        ),
    ]
