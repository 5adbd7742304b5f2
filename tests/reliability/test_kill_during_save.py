"""A run killed (SIGKILL) half-way through writing an output: the half-written file is never
loaded, and the next run cleans it away and writes the output whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from kedro.io import Version

from efm_seg.framework.datasets import AtomicCSVDataset
from efm_seg.framework.hooks.lock import _DEBRIS
from tests.conftest import kedro_run, latest_version

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")]

TABLE = "data/local/08_reporting/stage_table.csv"

# The reporting pipeline, with the write of one CSV stalled half-way: the parent kills it there.
STALLED_RUN = """
import os, sys, time
from fsspec.implementations.local import LocalFileOpener
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

project, half_written = sys.argv[1], sys.argv[2]

def stall(self, data):
    if os.path.basename(self.path).startswith(".stage_table.csv"):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        open(half_written, "w").close()
        time.sleep(600)
    return self.f.write(data)

LocalFileOpener.write = stall
bootstrap_project(project)
with KedroSession.create(project_path=project) as session:
    session.run(pipeline_names=["reporting"])
"""


def test_a_run_killed_mid_save_leaves_debris_that_is_never_loaded_then_swept(demo_copy, tmp_path):
    project = demo_copy
    complete = pd.read_csv(latest_version(project, TABLE))
    half_written = tmp_path / "half-written"

    child = subprocess.Popen(
        [sys.executable, "-c", STALLED_RUN, str(project), str(half_written)],
        cwd=project,
        env={**os.environ, "DO_NOT_TRACK": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while not half_written.exists():
        if child.poll() is not None:
            pytest.fail(f"the run ended before the stalled save: {child.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, "the stalled save was never reached"
        time.sleep(0.1)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    child.stderr.close()

    # What the kill left: a half-written staging file in a new version folder, and the lock.
    left = [p for p in (project / "data/local").rglob("*") if _DEBRIS.match(p.name)]
    assert [p.name.split(".tmp-")[0] for p in left] == [".stage_table.csv"]
    assert left[0].stat().st_size > 0
    assert (project / "data/local/.run.lock").exists()

    # Nothing loads it: the latest stage table is still the complete one of the earlier run.
    latest = AtomicCSVDataset(filepath=str(project / TABLE), version=Version(None, None))
    pd.testing.assert_frame_equal(latest.load(), complete)

    # The same command again: it takes over the dead run's lock, sweeps the debris and writes
    # every output whole.
    kedro_run(project, ["reporting"])
    assert [p for p in (project / "data/local").rglob("*") if _DEBRIS.match(p.name)] == []
    pd.testing.assert_frame_equal(pd.read_csv(latest_version(project, TABLE)), complete)
    assert not left[0].parent.exists()  # the version folder the killed save had made
