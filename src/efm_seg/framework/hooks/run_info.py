"""Provenance: what a run is, recorded when it starts, for the outputs that need to say so.

:class:`RunInfoHook` fills the catalog's ``run_info`` entry before the first node runs with:

- ``run_id``: Kedro's session id, which is also the version every versioned output of the run
  is saved under, and ``started`` (UTC);
- ``env``, ``data_root``, the ``pipelines`` run, the runtime ``--params`` and
  ``--load-versions`` given;
- ``git``: the project's commit (and whether the working tree had uncommitted changes), when the
  project is a git checkout;
- ``inputs``: the version of every versioned dataset the run reads from earlier runs: the one
  chosen with ``--load-versions`` (``explicit``) or the latest saved (``latest``); everything
  else it reads, it wrote itself;
- ``packages``: the versions of Python, efm-seg, kedro, torch, segmentation-models-pytorch,
  torchmetrics and albumentations.
- ``machine``: the processor, its logical CPUs and the operating system (a seeded run repeated
  on another processor differs in the last digits).

Training records the run id in its checkpoint (lineage), evaluation in its tables, and the
report shows all of it in its provenance section.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset

from efm_seg.basics.provenance import (
    describe_commit,
    git_state,
    machine_facts,
    package_versions,
)

logger = logging.getLogger(__name__)

RUN_INFO = "run_info"


def input_versions(pipeline, catalog, load_versions: dict[str, str] | None) -> dict[str, str]:
    """The version each versioned input of ``pipeline`` made by earlier runs is read at."""
    explicit = dict(load_versions or {})
    versions: dict[str, str] = {}
    for name in sorted(pipeline.inputs()):
        if name.startswith("params:") or name == "parameters":
            continue
        try:
            dataset = catalog.get(name, fallback_to_runtime_pattern=True)
        except Exception:  # an entry that cannot be built fails the run itself, with its message
            continue
        if not isinstance(dataset, AbstractVersionedDataset):
            continue
        if name in explicit:
            versions[name] = f"{explicit[name]} (explicit)"
        else:
            try:
                versions[name] = f"{dataset.resolve_load_version()} (latest)"
            except Exception:  # nothing saved yet: the node that reads it says so
                versions[name] = "none saved"
    return versions


def run_info(
    run_params: dict[str, Any],
    pipeline,
    catalog,
    project_path: Path,
    env: str | None,
    data_root: str | None,
) -> dict[str, Any]:
    """The ``run_info`` of a run about to start (see the module doc)."""
    return {
        "run_id": run_params["run_id"],
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "env": env,
        "data_root": data_root,
        "pipelines": list(run_params.get("pipeline_names") or ["__default__"]),
        "runtime_params": dict(run_params.get("runtime_params") or {}),
        "load_versions": dict(run_params.get("load_versions") or {}),
        "git": git_state(project_path),
        "inputs": input_versions(pipeline, catalog, run_params.get("load_versions")),
        "packages": package_versions(),
        "machine": machine_facts(),
    }


class RunInfoHook:
    """Puts :func:`run_info` into the catalog (entry ``run_info``) before every run."""

    def __init__(self) -> None:
        self._project_path: Path | None = None
        self._env: str | None = None
        self._data_root: str | None = None

    @hook_impl
    def after_context_created(self, context) -> None:
        loader = context.config_loader
        self._project_path = Path(context.project_path)
        # The environment that applies: --env, else the default run environment ("local").
        self._env = context.env or getattr(loader, "default_run_env", None) or None
        self._data_root = loader["globals"].get("data_root")

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        info = run_info(
            run_params,
            pipeline,
            catalog,
            self._project_path or Path.cwd(),
            self._env,
            self._data_root,
        )
        catalog.save(RUN_INFO, info)
        logger.info(
            "Run %s (env %s, data root %s, commit %s)",
            info["run_id"],
            info["env"],
            info["data_root"],
            describe_commit(info["git"]),
        )
