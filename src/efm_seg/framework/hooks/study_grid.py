"""The study's grid: built from the running session's ``study`` block, its kept cells checked,
its summary refreshed.

A Kedro pipeline's shape is fixed when the registry builds it, before any node sees a
parameter, but the study's grid (architectures, seeds, variants) is configuration. So the
``study`` pipeline is built from the ``study`` block of the session being run, read through
that session's own config loader: :class:`StudyGridHook` records the block when the session's
context is created (after ``--env`` and ``--params`` are applied) and has the registry built
again when it was built from another block. No second config loader is ever made.

Without a session (``kedro registry list``, a script that imports the registry) there is no
configuration to build the grid from, and the ``study`` pipeline is empty until a session
starts.

The block is kept in a context variable: a session run in this thread (or a task started from
it) sees the block of the session created last in it.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from kedro.framework import project
from kedro.framework.hooks import hook_impl

from efm_seg.basics.names import STAGES

# The study's library (pandas, the grid, the cells' checks) is imported when a study continues:
# every `kedro` command imports the hooks, and `kedro --help` needs none of it.

logger = logging.getLogger(__name__)

_UNSET: Any = object()
_session_block: ContextVar[Any] = ContextVar("efm_seg_study_block", default=_UNSET)
_built_from: ContextVar[Any] = ContextVar("efm_seg_study_built_from", default=_UNSET)


def session_study_block() -> dict[str, Any] | None:
    """The running session's ``study`` block (``None`` before a session, or without one)."""
    block = _session_block.get()
    block = None if block is _UNSET else block
    _built_from.set(block)
    return block


class StudyGridHook:
    """The study pipeline's grid, from the session being run."""

    @hook_impl(tryfirst=True)
    def after_context_created(self, context) -> None:
        block = context.config_loader["parameters"].get("study")
        _session_block.set(block)
        built_from = _built_from.get()
        if built_from is not _UNSET and built_from != block:
            # Built earlier in this process from another block (another session or env):
            # build again, so the pipeline run is the grid this session's parameters describe.
            project.pipelines.configure(f"{project.PACKAGE_NAME}.pipeline_registry")

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        # Runs while this run holds the data root's lock (RunLockHook takes it first).
        if run_params.get("only_missing_outputs"):
            check_kept_cells(pipeline, catalog)
            refresh_stale_convergence(pipeline, catalog)
            refresh_stale_summary(pipeline, catalog)
        log_progress(pipeline, catalog, only_missing=bool(run_params.get("only_missing_outputs")))


def log_progress(pipeline, catalog, *, only_missing: bool) -> None:
    """Log what this run of the study will train (cells, epochs) and about how long that takes
    at the pace of its finished cells (:mod:`efm_seg.study.progress`)."""
    names = [
        node.name.removesuffix(".train")
        for node in pipeline.nodes
        if node.name.startswith("study.") and node.name.endswith(".train")
    ]
    if not names:
        return
    from efm_seg.study.grid import checked_cell_recipe
    from efm_seg.study.progress import study_progress

    def params(name: str):
        return catalog.load(f"params:{name}")

    finished = [name for name in names if catalog.exists(f"{name}.history")]
    to_train = [
        name for name in names
        if not (only_missing and catalog.exists(f"{name}.best_checkpoint"))
    ]  # fmt: skip
    progress = study_progress(
        {name: checked_cell_recipe(name, params).epochs for name in to_train},
        len(names),
        (catalog.load(f"{name}.history") for name in finished),
    )
    logger.info(progress.message())


def check_kept_cells(pipeline, catalog) -> None:
    """Before a study continues (``--only-missing-outputs``), refuse the cells it would keep
    that the current configuration would train differently, before anything runs.

    Without this, Kedro would skip every finished cell, retrain only the missing ones and mix
    two configurations in one comparison (or, with the summary already written, do nothing).
    """
    import pandas as pd

    from efm_seg.study.cells import check_cells, lineage_as_text
    from efm_seg.study.grid import Cell

    names = [node.name.removesuffix(".evaluate") for node in pipeline.nodes]
    kept = [Cell.from_name(n) for n in names if n.startswith("study.") and n.count(".") == 5]
    kept = [cell for cell in kept if catalog.exists(f"{cell.name}.scores")]
    if not kept:
        return
    scores = pd.concat([catalog.load(f"{cell.name}.scores") for cell in kept], ignore_index=True)
    check_cells(
        lineage_as_text(scores[~scores["tta"].astype(bool)]),
        catalog.load("params:study"),
        catalog.load("params:training"),
        catalog.load("params:efm_method"),
        {stage: catalog.load(f"params:{stage}.overrides") for stage in STAGES},
        require_all=False,
    )


def refresh_stale_convergence(pipeline, catalog) -> None:
    """Before a study continues (``--only-missing-outputs``), make sure the reference's
    convergence is judged again if a reference run it was judged from was trained again (or
    the grid's references or the rule changed): ``study.convergence_runs`` records them, and is
    removed when they differ, so that ``study.check_convergence`` counts as missing and runs
    (Kedro would otherwise keep the old verdict, its output being there)."""
    from efm_seg.parameters import StudyParams
    from efm_seg.study.convergence import history_run

    check = next((n for n in pipeline.nodes if n.name == "study.check_convergence"), None)
    if check is None or not catalog.exists("study.convergence_runs"):
        return
    record = catalog.load("study.convergence_runs")
    names = [name.removesuffix(".history") for name in check.inputs if name.endswith(".history")]
    runs = {
        name: history_run(catalog.load(f"{name}.history"))
        if catalog.exists(f"{name}.history")
        else None
        for name in names
    }
    rule = StudyParams.model_validate(catalog.load("params:study")).convergence.model_dump()
    if record.get("runs") == runs and record.get("rule") == rule:
        return
    logger.warning(
        "the reference's convergence was judged from other runs or another rule than this "
        "study's: study.check_convergence runs again"
    )
    catalog.get("study.convergence_runs").remove()


def refresh_stale_summary(pipeline, catalog) -> None:
    """Before a study continues (``--only-missing-outputs``), make sure its summary is computed
    again if it no longer describes the grid's cells.

    Kedro skips a node whose outputs exist, even when its inputs are about to change: after
    variants or seeds are added or removed, or a cell is trained again, the new cells would be
    trained and the old summary kept. ``study.cells`` records the cells (and the run of each
    scored checkpoint) the summary was computed from, and its settings (``tta``,
    ``confidence``); when they differ from what this run will summarize, that record is
    removed, so that ``study.summarize`` counts as missing and runs.
    """
    from efm_seg.parameters import StudyParams
    from efm_seg.study.cells import some, summary_settings

    summarize = next((n for n in pipeline.nodes if n.name == "study.summarize"), None)
    if summarize is None or not catalog.exists("study.cells"):
        return
    record = catalog.load("study.cells")
    made_from: dict[str, str] = record["cells"]
    grid = [name.removesuffix(".scores") for name in summarize.inputs if name.endswith(".scores")]
    runs = {
        name: str(catalog.load(f"{name}.scores")["checkpoint_run"].iloc[0])
        for name in grid
        if catalog.exists(f"{name}.scores")
    }
    settings = summary_settings(StudyParams.model_validate(catalog.load("params:study")))
    changes = {
        "added": [name for name in grid if name not in made_from],
        "removed": [name for name in made_from if name not in grid],
        "trained again": [
            name for name in grid if name in made_from and runs.get(name) != made_from[name]
        ],
        "settings changed": [
            f"{key}={value}" for key, value in settings.items()
            if record.get("settings", {}).get(key) != value
        ],
    }  # fmt: skip
    if not any(changes.values()):
        return
    logger.warning(
        "the study's summary no longer matches its cells (%s): study.summarize runs again",
        "; ".join(f"{what}: {some(names)}" for what, names in changes.items() if names),
    )
    catalog.get("study.cells").remove()
