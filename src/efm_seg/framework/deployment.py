"""One step of an orchestrated run: a part of a pipeline that an orchestrator (Airflow, say)
runs as one task, in its own process and Kedro session.

Run apart, the steps of one orchestrated run would each get their own run id (the version their
outputs are saved under) and read the *latest* outputs of the steps before them, whoever wrote
those: a manual ``kedro run`` or another DAG run in between would slip its outputs in.
:func:`run_step` makes the steps of one orchestrated run behave as one ``kedro run``:

- every step runs under the same run id, ``version`` (see :func:`run_version`: in the shipped
  Airflow DAG, the DAG run's logical date, or when it was triggered), so the run's versioned
  outputs share one version and its ``run_info`` and lineage name one run;
- the versioned datasets a step reads that the pipeline's other steps write are loaded at that
  version, never "latest";
- a step run again (an Airflow retry, a cleared task) first removes what an earlier attempt of
  it saved under that version: Kedro never overwrites a version, and each saved file is whole
  (atomic saves), so the step simply runs again from the start.

Nothing here imports the orchestrator: the Airflow DAG (``deploy/airflow``) calls
:func:`run_step`, and so could any other scheduler.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.framework.project import configure_project, pipelines
from kedro.framework.session import KedroSession
from kedro.io import AbstractVersionedDataset
from kedro.io.core import VERSION_FORMAT

logger = logging.getLogger(__name__)

PACKAGE_NAME = "efm_seg"
# Kedro's own version strings: 2026-11-25T04.10.00.000Z (UTC, milliseconds).
_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}\.\d{2}\.\d{2}\.\d{3}Z")


def run_version(when: datetime) -> str:
    """The Kedro version string (as ``kedro run`` makes for its own run id) of ``when``.

    A naive ``datetime`` is taken as UTC. Versions sort by time, so a later orchestrated run's
    outputs are the "latest" a later plain ``kedro run`` reads.
    """
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    stamp = when.astimezone(UTC).strftime(VERSION_FORMAT)
    return stamp[:-4] + stamp[-1:]  # milliseconds, as kedro.io.core.generate_timestamp


def check_version(version: str) -> str:
    """``version`` if it is a Kedro version string, else a ``ValueError`` naming it."""
    if not _VERSION.fullmatch(version):
        raise ValueError(
            f"run version {version!r} is not a Kedro version string such as "
            f"{run_version(datetime(2026, 1, 1, tzinfo=UTC))!r} "
            "(efm_seg.framework.deployment.run_version)"
        )
    return version


def pinned_load_versions(step, pipeline, catalog, version: str) -> dict[str, str]:
    """``{dataset: version}`` for every versioned dataset ``step`` reads that another part of
    ``pipeline`` writes: within one orchestrated run, those were saved under ``version``."""
    written_elsewhere = pipeline.all_outputs() - step.all_outputs()
    return {
        name: version
        for name in sorted(step.inputs() & written_elsewhere)
        if _versioned(catalog, name) is not None
    }


def remove_earlier_attempt(step, catalog, version: str) -> list[str]:
    """Remove what an earlier attempt of ``step`` saved under ``version``; the removed paths.

    Each versioned output lives in ``<filepath>/<version>/``; that folder belongs to this run
    alone (its version), so removing it loses nothing another run wrote.
    """
    removed = []
    for name in sorted(step.all_outputs()):
        dataset = _versioned(catalog, name)
        if dataset is None:
            continue
        folder = PurePosixPath(dataset._get_versioned_path(version)).parent
        filesystem = getattr(dataset, "_fs", None)
        if filesystem is None:  # the project's own datasets are local files
            path = Path(folder)
            if path.exists():
                _remove_tree(path)
                removed.append(str(folder))
        elif filesystem.exists(str(folder)):
            filesystem.rm(str(folder), recursive=True)
            removed.append(str(folder))
    return removed


def run_step(
    *,
    namespaces: Iterable[str],
    version: str,
    pipeline: str = "__default__",
    env: str | None = None,
    conf_source: str | None = None,
    project_path: str | Path | None = None,
    runtime_params: Mapping[str, Any] | None = None,
    package_name: str = PACKAGE_NAME,
) -> dict[str, Any]:
    """Run the nodes of ``pipeline`` in ``namespaces`` as one step of the run ``version``.

    Args:
        namespaces: The step's top-level namespaces (each pipeline of the project is one:
            ``ingestion``, ``baseline``, ``evaluation``, ...).
        version: The orchestrated run's id and save version (:func:`run_version`).
        pipeline: The registered pipeline the whole orchestrated run runs.
        env: The configuration environment (``KEDRO_ENV`` when not given, as ``kedro run``).
        conf_source: A configuration folder or the conf tarball of ``kedro package``; default
            ``<project_path>/conf``.
        project_path: The folder the run works in: its data lies below it (``data/<env>``);
            default the current directory.
        runtime_params: As ``kedro run --params``, nested (``{"training": {"epochs": 3}}``).
        package_name: The installed project package.

    Returns:
        What ``KedroSession.run`` returns.
    """
    version = check_version(version)
    namespaces = list(namespaces)
    project = Path(project_path or Path.cwd()).resolve()
    configure_project(package_name)
    pipelines.set_requested([pipeline])  # build only this pipeline, as `kedro run --pipelines`
    # Relative dataset paths (data/<env>/...) are relative to the project, as under `kedro run`.
    with contextlib.chdir(project):
        session = KedroSession.create(
            project_path=project,
            env=env,
            conf_source=conf_source,
            runtime_params=dict(runtime_params) if runtime_params else None,
        )
        with session:
            _pin_run_id(session, version)
            context = session.load_context()
            whole = pipelines[pipeline]
            step = whole.only_nodes_with_namespaces(namespaces)
            catalog = context.catalog
            load_versions = pinned_load_versions(step, whole, catalog, version)
            for path in remove_earlier_attempt(step, catalog, version):
                logger.warning("Run %s: removed %s, saved by an earlier attempt", version, path)
            logger.info(
                "Run %s, step %s of pipeline %s: reading %s at this run's version",
                version,
                ", ".join(namespaces),
                pipeline,
                ", ".join(load_versions) or "nothing",
            )
            return session.run(
                pipeline_names=[pipeline],
                namespaces=namespaces,
                load_versions=load_versions,
            )


def _pin_run_id(session, version: str) -> None:
    # KedroSession.create always draws a fresh timestamp; its store's session_id is what
    # session.run uses as run id and save version.
    session.session_id = version
    session._store["session_id"] = version


def _versioned(catalog, name: str) -> AbstractVersionedDataset | None:
    """The catalog's dataset ``name`` when it is versioned (entries and factories alike)."""
    if name.startswith("params:") or name == "parameters":
        return None
    dataset = catalog.get(name)
    if isinstance(dataset, AbstractVersionedDataset) and dataset._version is not None:
        return dataset
    return None


def _remove_tree(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
