"""One writing run per data root: a second is refused naming the first; debris is recovered."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

from efm_seg.framework.hooks.lock import LOCK_NAME, RunLock, RunLockedError
from tests.conftest import kedro_run


def write_lock(root, pid: int, host: str | None = None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / LOCK_NAME).write_text(
        json.dumps(
            {
                "pid": pid,
                "host": host or socket.gethostname(),
                "started": "2026-11-24T08:00:00+00:00",
                "command": "kedro run --pipelines training",
            }
        )
    )


def test_a_second_run_on_the_same_data_root_is_refused(kedro_project):
    holder = subprocess.Popen(["sleep", "60"])
    try:
        write_lock(kedro_project / "data/local", holder.pid)
        with pytest.raises(RunLockedError) as error:
            kedro_run(kedro_project, ["ingestion"])
        message = str(error.value)
        assert f"pid {holder.pid} on {socket.gethostname()}" in message
        assert "2026-11-24T08:00:00" in message and "kedro run --pipelines training" in message
        assert not (kedro_project / "data/local/02_intermediate").exists()  # nothing written
        assert not (kedro_project / "data/local/01_raw").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_run_is_taken_over_and_released(kedro_project, caplog):
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid now names no process
    write_lock(kedro_project / "data/local", gone.pid)
    kedro_run(kedro_project, ["ingestion"])
    assert "Taking over the lock" in caplog.text
    assert not (kedro_project / "data/local" / LOCK_NAME).exists()  # released after the run
    assert any((kedro_project / "data/local/02_intermediate/manifest.csv").iterdir())


def test_lock_rules(tmp_path):
    lock = RunLock(tmp_path / "root")
    lock.acquire()
    holder = json.loads(lock.path.read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    with pytest.raises(RunLockedError, match="another run is writing"):
        RunLock(tmp_path / "root").acquire()  # held by this live process
    lock.release()
    assert not lock.path.exists()
    # A holder on another host cannot be checked from here: never taken over.
    write_lock(tmp_path / "root", 1, host="elsewhere")
    with pytest.raises(RunLockedError, match="on elsewhere"):
        RunLock(tmp_path / "root").acquire()
    # An empty lock file is a run starting now, until it is older than a few seconds.
    (tmp_path / "root" / LOCK_NAME).write_text("")
    with pytest.raises(RunLockedError, match="a run starting now"):
        RunLock(tmp_path / "root").acquire()
    old = os.path.getmtime(tmp_path / "root" / LOCK_NAME) - 60
    os.utime(tmp_path / "root" / LOCK_NAME, (old, old))
    RunLock(tmp_path / "root").acquire()


def test_the_lock_is_given_back_when_sweeping_debris_fails(kedro_project, monkeypatch):
    def fail(root):
        raise PermissionError(f"cannot remove debris under {root}")

    monkeypatch.setattr("efm_seg.framework.hooks.lock.sweep_staging_debris", fail)
    with pytest.raises(PermissionError, match="cannot remove debris"):
        kedro_run(kedro_project, ["ingestion"])
    assert not (kedro_project / "data/local" / LOCK_NAME).exists()
