"""Which ``study`` block the ``study`` pipeline is built from.

A Kedro pipeline's shape is fixed when the registry builds it, before any node sees a
parameter, but the study's grid (architectures, seeds, variants) is configuration. So the
pipeline is built from the ``study`` block of the session being run: :class:`StudyGridHook`
records it when the session's context is created (after ``--env`` and ``--params`` are
applied), and drops a registry built from another block. Without a session (kedro-viz, kedro
airflow, ``kedro registry``) the block is read from ``conf/`` in the working directory, for the
environment in ``KEDRO_ENV`` (default ``local``).
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)

# "session": the running session's study block; "built_from": the block the registered
# pipeline was built from.
_UNBUILT = object()
_blocks: dict[str, Any] = {"session": None, "built_from": _UNBUILT}


def configured_study() -> dict[str, Any] | None:
    """The ``study`` block to build the pipeline from (``None`` when there is none)."""
    block = _blocks["session"] if _blocks["session"] is not None else _read_from_conf()
    _blocks["built_from"] = copy.deepcopy(block)
    return block


def _read_from_conf() -> dict[str, Any] | None:
    from kedro.framework.project import settings

    conf = Path.cwd() / settings.CONF_SOURCE
    if not conf.is_dir():
        return None
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(conf), env=os.environ.get("KEDRO_ENV"), **settings.CONFIG_LOADER_ARGS
    )
    return loader["parameters"].get("study")


class StudyGridHook:
    """Record the session's ``study`` block before the registry builds the pipelines."""

    @hook_impl
    def after_context_created(self, context) -> None:
        block = context.config_loader["parameters"].get("study")
        _blocks["session"] = block
        if _blocks["built_from"] is not _UNBUILT and _blocks["built_from"] != block:
            # Built earlier in this process from another block (another session or env):
            # rebuild, so the pipeline run is the grid this session's parameters describe.
            from kedro.framework.project import PACKAGE_NAME, pipelines

            pipelines.configure(f"{PACKAGE_NAME}.pipeline_registry")
