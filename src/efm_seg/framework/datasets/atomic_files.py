"""Kedro's CSV, JSON, text and matplotlib datasets, saved atomically.

Kedro's own datasets write straight into the target file: a crash mid-write leaves a truncated
CSV or PNG that the next run loads as the latest version. These subclasses keep every option of
the originals (``save_args``, ``fs_args``, versioning, ``--load-versions``) and change one thing
for local files: the original ``save`` writes to a hidden staging path beside the target
(``.<name>.tmp-<hex>``, a file or, for a dict of figures, a folder), which is renamed into place
only once complete. Until then Kedro sees no new version; debris left by a killed process is
never loaded and the next run's lock sweeps it away (``efm_seg.framework.hooks.lock``). A write
that fails
(full disk, read-only folder) removes its staging path and any version folder it had created, and
names the file and the cause.

Remote file systems (``s3://`` and the like) replace whole objects on upload already; there the
original ``save`` runs unchanged.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import DatasetError, get_filepath_str
from kedro_datasets.json import JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.pandas import CSVDataset
from kedro_datasets.text import TextDataset

from efm_seg.basics.atomic import created_folders, fsync_folder, remove_empty, write_error


class _AtomicLocalSave:
    """Mixin: run the parent's ``save`` against a staging path, then rename it into place."""

    _staging: PurePosixPath | None = None

    def _get_save_path(self) -> PurePosixPath:
        if self._staging is not None:
            return self._staging
        return super()._get_save_path()  # type: ignore[misc]

    def save(self, data: Any) -> None:
        # The parent's own save, without Kedro's wrapper: this class's save is wrapped already.
        parent_save = super().save  # type: ignore[misc]
        raw_save = getattr(parent_save.__func__, "__wrapped__", parent_save.__func__)
        if self._protocol != "file":  # type: ignore[attr-defined]
            raw_save(self, data)
            return
        # Resolved first, so Kedro's checks (a version is never overwritten) still run.
        target = Path(get_filepath_str(super()._get_save_path(), "file"))  # type: ignore[misc]
        staging = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}")
        created = created_folders(target.parent)
        self._staging = PurePosixPath(staging.as_posix())
        try:
            with self._staged(target, staging):
                raw_save(self, data)
            _move_into_place(staging, target)
        except BaseException as exc:
            _remove(staging)
            remove_empty(created)
            if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
                raise DatasetError(write_error(target, exc).strerror) from exc
            raise
        finally:
            self._staging = None
        fsync_folder(target.parent)

    @contextlib.contextmanager
    def _staged(self, target: Path, staging: Path) -> Iterator[None]:
        """Set up ``staging`` for the parent's save (by default nothing to do)."""
        yield

    def remove(self) -> None:
        """Delete the saved file, so that the dataset no longer exists (e.g. a marker that no
        longer holds). Only for an unversioned local file: versions are never deleted."""
        if self._version is not None or self._protocol != "file":  # type: ignore[attr-defined]
            raise DatasetError(f"{self}: only an unversioned local file can be removed")
        path = Path(get_filepath_str(self._filepath, "file"))  # type: ignore[attr-defined]
        path.unlink(missing_ok=True)
        fsync_folder(path.parent)


def _move_into_place(staging: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():  # an unversioned folder of figures
        retired = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
        os.replace(target, retired)
        os.replace(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, target)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


class AtomicCSVDataset(_AtomicLocalSave, CSVDataset):
    """``pandas.CSVDataset``, saved atomically (same arguments)."""


class AtomicJSONDataset(_AtomicLocalSave, JSONDataset):
    """``json.JSONDataset``, saved atomically (same arguments)."""


class AtomicTextDataset(_AtomicLocalSave, TextDataset):
    """``text.TextDataset``, saved atomically (same arguments)."""


class AtomicMatplotlibDataset(_AtomicLocalSave, MatplotlibDataset):
    """``matplotlib.MatplotlibDataset``, saved atomically (same arguments); a dict or list of
    figures is staged as a whole folder."""

    @contextlib.contextmanager
    def _staged(self, target: Path, staging: Path) -> Iterator[None]:
        # The staging folder replaces the target whole, which is what overwrite=True asks for;
        # without it, figures already in an unversioned folder are kept beside the new ones.
        overwrite, self._overwrite = self._overwrite, False
        try:
            if not overwrite and target.is_dir():
                shutil.copytree(target, staging)
            yield
        finally:
            self._overwrite = overwrite
