"""The project's config loader: runtime parameters that change exactly what they name.

Kedro's ``OmegaConfigLoader`` merges ``--params`` into the base folder's parameters and into the
environment folder's parameters separately, then lets the environment replace whole top-level
blocks (the default "destructive" merge between environments). So ``--params split.seed=7`` in an
environment that has any parameters file turns that environment's ``split`` into
``{seed: 7}``, which then replaces the base ``split`` block: every other key of it is lost, and a
run may exit 0 after training something other than what was asked.

:class:`ProjectConfigLoader` keeps the environments' block replacement (an environment still
replaces the blocks it defines), leaves runtime parameters out of the per-folder merge, and
deep-merges them once into the combined result: ``--params a.b.c=v`` changes ``a.b.c`` and
nothing else, in every environment. ``${runtime_params:...}`` interpolations work as before.

Each run environment keeps its own data root: the resolver ``${run_env:}`` gives the environment's
name (``local`` for a plain ``kedro run``), and ``conf/base/globals.yml`` sets
``data_root: data/${run_env:}``, which every catalog path starts with. So ``--env dubai`` reads and
writes only ``data/dubai/...`` and can never train on the demo's store, or the reverse.

OmegaConf's resolvers are process-wide, and Kedro binds ``${globals:}`` and ``${runtime_params:}``
to the loader made last in the process. A second loader (another session, a notebook, a script)
would then answer for the first one, and a session would read another environment's data. So
every read binds this loader's resolvers first, under one lock, and resolves with them: no
other loader can change what a loader's configuration says.

``--params raw_root=...`` is read only by catalogs that interpolate it (the dataset environments'
``raw_dataset``). Where nothing reads it — the base environment's generated demo — the loader
refuses it instead of running on other data than the one named.

Kedro 1.7 registers its resolvers (``globals``, ``runtime_params``, ``oc.env``) with
``OmegaConf.register_new_resolver``, which OmegaConf 2.4 deprecates with a ``UserWarning`` on
every ``kedro`` command; this loader registers the same resolvers through
``OmegaConf.register_resolver``, the API that replaces it (same arguments, no warning).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
from omegaconf import DictConfig, OmegaConf
from omegaconf.resolvers import oc

# One resolution at a time in the process: each binds the resolvers of its own loader.
_RESOLVING = threading.RLock()


def _absolute_path(path: str) -> str:
    """``${abspath:mlflow.db}``: the path made absolute from the working directory (the project
    root under ``kedro run``), so that a long-lived process that later works elsewhere (a
    notebook, an orchestrator) still means the same file."""
    return str(Path(path).resolve())


class ProjectConfigLoader(OmegaConfigLoader):
    """``OmegaConfigLoader`` whose runtime parameters are merged after base and environment,
    with a ``${run_env:}`` resolver for per-environment data roots."""

    @property
    def run_env(self) -> str:
        """The environment this loader reads on top of base (``local`` unless ``--env``)."""
        return self.env or self.default_run_env

    def _run_env_resolver(self) -> str:
        return self.run_env

    # Kedro's resolver registrations, through OmegaConf 2.4's register_resolver (see the module
    # docstring): each does what the OmegaConfigLoader method of the same name does.

    def _register_globals_resolver(self) -> None:
        OmegaConf.register_resolver("globals", self._get_globals_value, replace=True)

    def _register_runtime_params_resolver(self) -> None:
        OmegaConf.register_resolver("runtime_params", self._get_runtime_value, replace=True)

    @staticmethod
    def _register_new_resolvers(resolvers: dict[str, Callable]) -> None:
        for name, resolver in resolvers.items():
            if not OmegaConf.has_resolver(name):
                OmegaConf.register_resolver(name, resolver)

    @staticmethod
    def _resolve_environment_variables(config: DictConfig) -> None:
        # ${oc.env:...} is allowed in credentials only: registered just for this resolution.
        if OmegaConf.has_resolver("oc.env"):
            OmegaConf.resolve(config)
            return
        OmegaConf.register_resolver("oc.env", oc.env, annotation_validation="off")  # as OmegaConf
        try:
            OmegaConf.resolve(config)
        finally:
            OmegaConf.clear_resolver("oc.env")

    def _merge_and_resolve(self, key: str, config_per_file: dict) -> dict[str, Any]:
        if key != "parameters":
            return super()._merge_and_resolve(key, config_per_file)
        if not config_per_file:
            return {}
        # One folder's files, without the runtime parameters (see the module docstring).
        return OmegaConf.to_container(
            OmegaConf.unsafe_merge(*config_per_file.values()), resolve=True
        )

    def __getitem__(self, key: str) -> dict[str, Any]:
        with _RESOLVING:
            self._bind_resolvers()
            config = super().__getitem__(key)
            if key == "catalog":
                self._check_raw_root_is_read()
            if key != "parameters" or not self.runtime_params:
                return config
            merged = OmegaConf.merge(
                OmegaConf.create(config), OmegaConf.create(self.runtime_params)
            )
            return OmegaConf.to_container(merged, resolve=True)

    def _bind_resolvers(self) -> None:
        """Register this loader's resolvers (see the module docstring)."""
        self._register_globals_resolver()
        self._register_runtime_params_resolver()
        OmegaConf.register_resolver("run_env", self._run_env_resolver, replace=True)
        OmegaConf.register_resolver("abspath", _absolute_path, replace=True)

    def _check_raw_root_is_read(self) -> None:
        if "raw_root" not in (self.runtime_params or {}):
            return
        if "raw_root" in self._runtime_params_hits:  # a catalog entry interpolated it
            return
        raise ValueError(
            f"--params raw_root={self.runtime_params['raw_root']}: nothing in the catalog of "
            f"environment '{self.run_env}' reads raw_root (the base environment trains on the "
            "generated demo in data/<env>/01_raw/demo). Name the environment that describes "
            "your data, e.g. --env dubai or --env loveda, or your own whose raw_dataset path is "
            "${runtime_params:raw_root, ...} (see the README, 'Configuring a new dataset')."
        )
