"""Model checkpoints (``torch.save``) and dicts of arrays (``.npz``) as versioned Kedro datasets.

Both write atomically: the data go to a temporary file beside the target, which then replaces
the target in one ``os.replace``. A crash or an error while writing never leaves a truncated
file that a later run would load, and never touches an earlier version. Both read without
unpickling: checkpoints with ``torch.load(weights_only=True)``, arrays with
``np.load(allow_pickle=False)``, so loading a file cannot run arbitrary code.

Local files only. ``versioned: true`` in ``catalog.yml`` and ``kedro run --load-versions``
work as for Kedro's own datasets (``<filepath>/<version>/<name>``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    VersionNotFoundError,
    get_protocol_and_path,
)

from efm_seg.basics.atomic import atomic_write


class _LocalVersionedDataset(AbstractVersionedDataset[Any, Any]):
    """A local file, optionally versioned; subclasses read and write its bytes."""

    def __init__(
        self,
        filepath: str | os.PathLike[str],
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(str(filepath), version)
        if protocol != "file":
            raise DatasetError(
                f"{type(self).__name__} reads and writes local files only; got {filepath}"
            )
        self.metadata = metadata
        super().__init__(filepath=PurePosixPath(path), version=version)

    def _load_file(self) -> Path:
        try:
            path = Path(self._get_load_path())
        except VersionNotFoundError:
            raise DatasetError(
                f"nothing has been saved at {self._filepath} yet in this environment: run the "
                "pipeline that writes it first (a stage's checkpoint comes from that stage, e.g. "
                "kedro run --pipelines baseline before --pipelines efm)"
            ) from None
        if not path.is_file():
            requested = self._version.load if self._version else None
            if requested:
                saved = sorted(
                    v.name for v in Path(self._filepath).glob("*") if (v / path.name).is_file()
                )
                raise DatasetError(
                    f"version {requested} of {self._filepath} does not exist (saved versions: "
                    f"{', '.join(saved) or 'none'}); check --load-versions"
                )
            raise DatasetError(f"{path} does not exist")
        return path

    def _save_file(self) -> Path:
        return Path(self._get_save_path())

    def _exists(self) -> bool:
        try:
            path = self._get_load_path()
        except DatasetError:  # no version saved yet
            return False
        return Path(path).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}


# -- checkpoints ----------------------------------------------------------------------------------
_LEAVES = (
    torch.Tensor,
    str,
    bytes,
    int,
    float,
    complex,
    bool,
    type(None),
    torch.dtype,
    torch.device,
    torch.Size,
)


def _check_loadable(value: Any, where: str) -> None:
    """Raise unless ``torch.load(weights_only=True)`` can read ``value`` back."""
    if isinstance(value, _LEAVES):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool | type(None)):
                raise DatasetError(f"checkpoint{where} has a key of type {type(key).__name__}")
            _check_loadable(item, f"{where}[{key!r}]")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_loadable(item, f"{where}[{i}]")
        return
    raise DatasetError(
        f"checkpoint{where} is a {type(value).__module__}.{type(value).__qualname__}; a checkpoint "
        "may hold only tensors and plain values (str, int, float, bool, None, lists, tuples and "
        "dicts of them), which torch.load(weights_only=True) can read back"
    )


def _check_finite(value: Any, where: str) -> None:
    """Raise if a floating-point tensor in ``value`` holds NaN or infinite values."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise DatasetError(
                f"checkpoint{where} holds NaN or infinite values; a checkpoint is never saved "
                "with them (the training diverged: see the stage's log)"
            )
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_finite(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_finite(item, f"{where}[{i}]")


class TorchCheckpointDataset(_LocalVersionedDataset):
    """A checkpoint dict written with ``torch.save`` and read with ``weights_only=True``.

    ``save`` checks that the dict holds only tensors and plain values (what a weights-only
    load can read back: better to fail now than when the next stage starts) and no NaN or
    infinite floats, and writes it atomically. ``load`` returns it with tensors on
    ``map_location`` (the CPU by default).

    Example (``conf/base/catalog.yml``)::

        "{stage}.best_checkpoint":
          type: efm_seg.framework.datasets.TorchCheckpointDataset
          filepath: ${globals:data_root}/06_models/{stage}/best_checkpoint.pt
          versioned: true
    """

    _LOAD_ARGS = frozenset({"map_location", "mmap"})

    def __init__(
        self,
        filepath: str | os.PathLike[str],
        version: Version | None = None,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """
        Args:
            filepath: The checkpoint file (local).
            version: Set by Kedro for ``versioned: true`` entries.
            load_args: Passed to ``torch.load``: ``map_location`` (default ``"cpu"``) and
                ``mmap``. ``weights_only`` is always true.
            metadata: Ignored by Kedro; for plugins and users.
        """
        load_args = dict(load_args or {})
        unknown = sorted(set(load_args) - self._LOAD_ARGS)
        if unknown:
            raise DatasetError(
                f"TorchCheckpointDataset load_args {unknown} are not supported (allowed: "
                f"{sorted(self._LOAD_ARGS)}); checkpoints are always loaded with weights_only=True"
            )
        self._load_args = {"map_location": "cpu", **load_args}
        super().__init__(filepath, version, metadata)

    def load(self) -> dict[str, Any]:
        path = self._load_file()
        try:
            return torch.load(path, weights_only=True, **self._load_args)
        except Exception as exc:
            raise DatasetError(
                f"cannot load the checkpoint {path} with torch.load(weights_only=True): "
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}. Checkpoints hold "
                "only tensors and plain values; a file holding other objects is not loaded"
            ) from exc

    def save(self, data: Mapping[str, Any]) -> None:
        if not isinstance(data, Mapping):
            raise DatasetError(f"a checkpoint is a dict, got {type(data).__name__}")
        _check_loadable(data, "")
        _check_finite(data, "")
        atomic_write(self._save_file(), lambda file: torch.save(dict(data), file))

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "load_args": self._load_args}


# -- arrays ---------------------------------------------------------------------------------------
class NpzDataset(_LocalVersionedDataset):
    """A dict of NumPy arrays in a compressed ``.npz`` file.

    ``save`` takes ``{name: ndarray}`` (no object arrays: they would need pickle) and writes it
    atomically with ``np.savez_compressed``; ``load`` returns a plain dict of arrays, fully
    read, with the file closed, using ``allow_pickle=False``.

    Example (``conf/base/catalog.yml``)::

        "{stage}.efm_snapshots":
          type: efm_seg.framework.datasets.NpzDataset
          filepath: ${globals:data_root}/07_model_output/{stage}/efm_snapshots.npz
          versioned: true
    """

    def load(self) -> dict[str, np.ndarray]:
        path = self._load_file()
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return {name: arrays[name] for name in arrays.files}
        except Exception as exc:
            raise DatasetError(
                f"cannot load {path} as a .npz file of arrays (allow_pickle=False): "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def save(self, data: Mapping[str, np.ndarray]) -> None:
        if not isinstance(data, Mapping):
            raise DatasetError(
                f"NpzDataset saves a dict of NumPy arrays, got {type(data).__name__}"
            )
        for name, array in data.items():
            if not isinstance(name, str) or not name:
                raise DatasetError(f"NpzDataset: array names must be non-empty strings: {name!r}")
            if not isinstance(array, np.ndarray):
                raise DatasetError(
                    f"NpzDataset: {name!r} is a {type(array).__name__}, not a NumPy array"
                )
            if array.dtype.hasobject:
                raise DatasetError(
                    f"NpzDataset: {name!r} is an object array, which could only be stored with "
                    "pickle; convert it to a numeric or fixed-width string dtype"
                )
        reserved = {"file", "allow_pickle"} & set(data)
        if reserved:
            raise DatasetError(
                f"NpzDataset: array names {sorted(reserved)} clash with the arguments of "
                "np.savez_compressed; rename them"
            )
        arrays = dict(data)
        atomic_write(self._save_file(), lambda file: np.savez_compressed(file, **arrays))


class OnnxModelDataset(_LocalVersionedDataset):
    """A serialised ONNX model (``bytes``), written atomically; ``load`` returns its bytes.

    Example (``conf/base/catalog.yml``)::

        export.onnx_model:
          type: efm_seg.framework.datasets.OnnxModelDataset
          filepath: ${globals:data_root}/06_models/export/model.onnx
          versioned: true
    """

    def load(self) -> bytes:
        return self._load_file().read_bytes()

    def save(self, data: bytes) -> None:
        if not isinstance(data, bytes | bytearray):
            raise DatasetError(f"OnnxModelDataset saves bytes, got {type(data).__name__}")
        atomic_write(self._save_file(), lambda file: file.write(data))
