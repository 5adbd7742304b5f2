"""Kedro datasets of the ``predict`` pipeline: a folder of scenes in, a folder of predictions
out (``efm_seg.data.scenes`` says what is in each)."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, AbstractVersionedDataset, DatasetError, Version

from efm_seg.basics.atomic import created_folders, fsync_folder, remove_empty, write_error
from efm_seg.data.scenes import Predictions, SceneFile, scene_files


class SceneFolderDataset(AbstractDataset[None, dict[str, SceneFile]]):
    """The scenes in a folder (PNG, JPEG, GeoTIFF), by name; read only when predicted.

    Example::

        predict_scenes:
          type: efm_seg.framework.datasets.SceneFolderDataset
          path: ${runtime_params:predict_root, ${globals:data_root}/01_raw/predict}
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def _load(self) -> dict[str, SceneFile]:
        return {file.stem: SceneFile(file) for file in scene_files(self._path)}

    def _save(self, data: None) -> None:
        raise DatasetError(f"{self._path} holds the scenes to predict: it is read only")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class PredictionFolderDataset(AbstractVersionedDataset[Any, list[Path]]):
    """A folder of predictions, versioned, written whole or not at all.

    ``save`` takes :class:`~efm_seg.data.scenes.Predictions`: each scene is predicted while its
    files are written (one scene in memory at a time), then ``areas.csv`` and ``legend.csv``
    are written, all into a hidden staging folder renamed into place once complete.
    ``load`` returns the files of the latest (or the ``--load-versions``) version.
    """

    def __init__(
        self, path: str, version: Version | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        self.metadata = metadata
        super().__init__(filepath=PurePosixPath(path), version=version)

    def _save(self, data: Predictions) -> None:
        target = Path(self._get_save_path())
        created = created_folders(target.parent)
        staging = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}")
        try:
            staging.mkdir(parents=True)
            rows = [data.scenes[name](staging) for name in sorted(data.scenes)]
            pd.DataFrame(rows).to_csv(staging / "areas.csv", index=False)
            data.legend.table().to_csv(staging / "legend.csv", index=False)
            os.replace(staging, target)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            remove_empty(created)
            if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
                raise DatasetError(write_error(target, exc).strerror) from exc
            raise
        fsync_folder(target.parent)

    def _load(self) -> list[Path]:
        folder = Path(self._get_load_path())
        if not folder.is_dir():
            raise DatasetError(f"{folder} does not exist: run kedro run --pipelines predict")
        return sorted(folder.iterdir())

    def _exists(self) -> bool:
        try:
            return Path(self._get_load_path()).is_dir()
        except DatasetError:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._filepath), "version": self._version}
