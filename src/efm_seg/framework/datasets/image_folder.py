"""Read-only raw dataset folders, and the embedded synthetic demo folder."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from efm_seg.data.raw import RawFolder
from efm_seg.data.synthetic import write_demo_dataset

logger = logging.getLogger(__name__)


class ImageFolderDataset(AbstractDataset[Any, RawFolder]):
    """A raw dataset folder (images and masks in any layout), read-only.

    Loading only checks that the folder exists and returns a :class:`RawFolder` handle; the
    ingestion pipeline finds and validates the files in it.

    Example (``conf/dubai/catalog.yml``)::

        raw_dataset:
          type: efm_seg.framework.datasets.ImageFolderDataset
          path: ${runtime_params:raw_root, ../shared/data/dubai_aerial}

    Args:
        path: The folder. Symbolic links inside it are followed.
        max_image_pixels: Pillow's decompression-bomb guard: files of more than twice this many
            pixels are refused, naming the file. Raise it for genuine very large scenes;
            ``None`` keeps Pillow's default (89 478 485).
        metadata: Free-form metadata (kedro-viz shows it).
    """

    def __init__(
        self,
        path: str,
        max_image_pixels: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if max_image_pixels is not None and (
            isinstance(max_image_pixels, bool)
            or not isinstance(max_image_pixels, int)
            or max_image_pixels < 1
        ):
            raise DatasetError(
                f"raw_dataset max_image_pixels: {max_image_pixels!r} must be a positive integer "
                "(or null for Pillow's default)"
            )
        self._path = Path(path)
        self._max_image_pixels = max_image_pixels
        self.metadata = metadata

    def load(self) -> RawFolder:
        if not self._path.is_dir():
            raise DatasetError(
                f"raw dataset folder {self._path.resolve()} does not exist or is not a folder; "
                "put the data there or point the catalog at it, e.g. "
                "kedro run --env <env> --params raw_root=/path/to/data"
            )
        return RawFolder(root=self._path.resolve(), max_image_pixels=self._max_image_pixels)

    def save(self, data: Any) -> None:
        raise DatasetError(f"{self._path} is raw input and is never written by the pipelines")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "max_image_pixels": self._max_image_pixels}


class SyntheticSceneFolderDataset(ImageFolderDataset):
    """The embedded demo data: synthetic aerial scenes, generated on first load.

    The generator is deterministic for a given ``seed``, so every fresh clone gets the same
    demo dataset without downloading anything. An existing folder is used as it is (delete it
    to regenerate with other settings).
    """

    def __init__(
        self,
        path: str,
        n_scenes: int = 40,
        seed: int = 0,
        min_size: int = 256,
        max_size: int = 384,
        max_image_pixels: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(path, max_image_pixels, metadata)
        self._generator_args = {
            "n_scenes": n_scenes,
            "seed": seed,
            "min_size": min_size,
            "max_size": max_size,
        }

    def load(self) -> RawFolder:
        if not self._path.is_dir() or not any(self._path.iterdir()):
            logger.info(
                "Generating the synthetic demo dataset at %s (%s)", self._path, self._generator_args
            )
            write_demo_dataset(self._path, **self._generator_args)
        return super().load()

    def _exists(self) -> bool:
        return True  # generated on demand

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), **self._generator_args}
