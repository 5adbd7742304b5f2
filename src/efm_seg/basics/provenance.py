"""Run provenance without Kedro: package versions, the machine, the git state, and the run id of
run_info."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "efm-seg",
    "kedro",
    "torch",
    "segmentation-models-pytorch",
    "torchmetrics",
    "albumentations",
)


def package_versions() -> dict[str, str]:
    """The installed versions of Python and of the packages that decide a run's results."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def processor_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux's ``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_facts() -> dict[str, Any]:
    """The machine a run ran on. The same seed gives slightly different numbers on another
    processor (its floating-point kernels differ), so a rerun that does not match to the last
    digit can be told apart from a changed recipe."""
    try:  # the CPUs this process may use (affinity, a container's cpuset), not the host's
        cpus: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count()
    return {"processor": processor_name(), "logical_cpus": cpus, "system": platform.platform()}


def git_state(path: Path) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout at ``path``; ``None`` outside one
    (e.g. an installed package) or without git."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(path), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != path.resolve():
            return None  # a folder inside some other repository is not this project's checkout
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def describe_commit(git: dict[str, Any] | None) -> str:
    """A :func:`git_state` for people: the short commit, and whether the tree had changes."""
    if not git:
        return "none (not a git checkout)"
    return str(git.get("commit", ""))[:12] + (" + uncommitted changes" if git.get("dirty") else "")


def run_id_of(run_info: dict[str, Any] | None) -> str:
    """The run id in ``run_info``; nodes that record lineage cannot run without one."""
    run_id = (run_info or {}).get("run_id")
    if not run_id:
        raise ValueError(
            "run_info has no run_id: it is filled in by efm_seg.framework.hooks.run_info."
            "RunInfoHook when a kedro run starts (settings.HOOKS); outside Kedro, pass "
            "{'run_id': ...}"
        )
    return str(run_id)
