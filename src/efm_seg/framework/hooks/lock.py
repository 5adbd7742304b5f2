"""One writing run per data root: a lock file that names its holder and recovers from crashes.

Two ``kedro run`` processes writing into the same data root would interleave their versions of the
store, the split and the checkpoints without noticing. :class:`RunLockHook` takes
``<data_root>/.run.lock`` before the first node runs and gives it back when the run ends, whether
it succeeded or failed. A second run on the same root is refused with a message that names the
holder (pid, host, start time, command). A lock left by a run that was killed (its process is gone
from this host) is taken over, with a warning. Runs in other environments have other data roots
and never wait for each other.

Holding the lock, a run is the root's only writer, so it then removes what interrupted writes
left behind: the hidden staging and retired folders of the sample store (``.<name>.tmp-*``,
``.<name>.old-*``) and the temporary files of atomic saves (``.<name>.*.tmp``), with any version
folder that held nothing else. No later run ever loaded them; now they no longer take space.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from efm_seg.basics.atomic import write_error

logger = logging.getLogger(__name__)

LOCK_NAME = ".run.lock"
_UNWRITTEN_GRACE_S = 10.0
"""A lock file that is still empty or unreadable is a run being started for this long; after
that it is the debris of a run killed while writing it."""


_DEBRIS = re.compile(r"^\..+(\.tmp|\.tmp-[0-9a-f]+|\.old-[0-9a-f]+)$")
"""Names of staging files and folders (efm_seg.data.samples.write_store,
efm_seg.framework.datasets.checkpoint.atomic_write)."""


def sweep_staging_debris(root: Path) -> list[Path]:
    """Remove the leftovers of interrupted writes below ``root``; return what was removed.

    Call only while holding the root's lock: a running writer's staging files look the same.
    """
    removed: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*filenames, *dirnames]:
            if not _DEBRIS.match(name):
                continue
            path = Path(dirpath) / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                dirnames.remove(name)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
            parent = path.parent
            if parent != root and not any(parent.iterdir()):
                parent.rmdir()  # a version folder the interrupted save had just created
    return removed


class RunLockedError(RuntimeError):
    """Another run holds the data root."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class RunLock:
    """The lock of one data root.

    Args:
        root: The data root (``data/<env>``); created if missing.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self._held = False

    def describe_holder(self, holder: dict[str, Any]) -> str:
        return (
            f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
            f" ({holder.get('command')})"
        )

    def _read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def _is_stale(self, holder: dict[str, Any] | None) -> bool:
        if holder is None:  # empty or unreadable: started just now, or killed while writing it
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return True
            return age > _UNWRITTEN_GRACE_S
        if holder.get("host") != socket.gethostname():
            return False  # cannot tell from here whether it still runs
        return not _alive(int(holder.get("pid", -1)))

    def acquire(self) -> None:
        """Take the lock, or raise :class:`RunLockedError` naming the run that holds it.

        Raises:
            OutputWriteError: The data root cannot be written (read-only, full disk): the run
                stops before it writes anything.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(self.root, exc) from exc
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) or "python",
        }
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                if not self._is_stale(holder):
                    held_by = self.describe_holder(holder) if holder else "a run starting now"
                    raise RunLockedError(
                        f"another run is writing to {self.root}: {held_by}. Wait for it to "
                        f"finish, or use another environment (--env). If that run is certainly "
                        f"gone (e.g. its machine was lost), delete {self.path}."
                    ) from None
                logger.warning(
                    "Taking over the lock of %s from a run that is gone (%s)",
                    self.root,
                    self.describe_holder(holder) if holder else "lock file never written",
                )
                self.path.unlink(missing_ok=True)
                continue
            except OSError as exc:
                raise write_error(self.path, exc) from exc
            try:
                with os.fdopen(fd, "w") as handle:
                    json.dump(me, handle)
            except OSError as exc:
                self.path.unlink(missing_ok=True)
                raise write_error(self.path, exc) from exc
            self._held = True
            return
        raise RunLockedError(f"could not take the lock {self.path}: another run took it first")

    def release(self) -> None:
        """Give the lock back if this process holds it."""
        if not self._held:
            return
        holder = self._read()
        if holder is None or holder.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        self._held = False


class RunLockHook:
    """Holds the environment's data-root lock for the duration of every ``kedro run``."""

    def __init__(self) -> None:
        self._root: Path | None = None
        self._lock: RunLock | None = None

    @hook_impl
    def after_context_created(self, context) -> None:
        data_root = context.config_loader["globals"].get("data_root")
        self._root = None if data_root is None else Path(context.project_path) / data_root

    @hook_impl(wrapper=True)
    def before_pipeline_run(self, run_params, pipeline, catalog):
        # A wrapper: the lock is taken before every other hook's before_pipeline_run (the pre-run
        # checks, the study's summary refresh, which writes) and given back if one of them
        # refuses the run, since Kedro calls no on_pipeline_error for a refusal there.
        if self._root is not None:
            self._lock = RunLock(self._root)
            self._lock.acquire()
        try:
            removed = sweep_staging_debris(self._root) if self._root is not None else []
            result = yield
        except BaseException:
            self._release()
            raise
        if removed:
            logger.warning(
                "Removed %d leftover(s) of interrupted writes under %s: %s",
                len(removed),
                self._root,
                [str(path.relative_to(self._root)) for path in removed[:5]],
            )
        return result

    @hook_impl
    def after_pipeline_run(self, run_params, run_result, pipeline, catalog) -> None:
        self._release()

    @hook_impl
    def on_pipeline_error(self, error, run_params, pipeline, catalog) -> None:
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
