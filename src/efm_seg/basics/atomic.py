"""Atomic file writes: a crash or an error mid-write never leaves a file a later run would load."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

_HINTS = {
    errno.ENOSPC: "the disk is full: free some space (or point the data root elsewhere)",
    errno.EDQUOT: "the disk quota is exhausted: free some space (or point the data root elsewhere)",
    errno.EACCES: "permission denied: make the folder writable by this user",
    errno.EPERM: "operation not permitted: make the folder writable by this user",
    errno.EROFS: "the file system is read-only: point the data root at a writable one",
}


class OutputWriteError(OSError):
    """An output could not be written; the message names the file, the cause and a way out.

    Raised after the partial write has been removed: nothing half-written is left behind.
    """


def write_error(path: Path | str, error: OSError) -> OutputWriteError:
    """A clear :class:`OutputWriteError` for ``error`` raised while writing ``path``."""
    if isinstance(error, OutputWriteError):
        return error
    reason = _HINTS.get(error.errno or 0) or (error.strerror or str(error))
    code = errno.errorcode.get(error.errno or 0, "")
    return OutputWriteError(
        error.errno,
        f"cannot write {path}: {reason}{f' ({code})' if code else ''}. Nothing was written "
        "there; run the same command again once this is fixed",
    )


def created_folders(folder: Path) -> list[Path]:
    """The folders that creating ``folder`` would create, innermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (innermost first) where they are still empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system allows it)."""
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a temporary file beside ``path``, then move it onto ``path``.

    On any error the temporary file, and the folders this call created, are removed and
    ``path`` is left as it was. Operating-system errors (a full disk, a read-only folder)
    become an :class:`OutputWriteError` that names ``path``.
    """
    created = created_folders(path.parent)
    temp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException as exc:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        remove_empty(created)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from exc
        raise
    fsync_folder(path.parent)
