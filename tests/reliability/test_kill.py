"""A training stage killed with SIGKILL and started again with the same command ends with the
uninterrupted run's history (the issue's acceptance test: a real subprocess, really killed)."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import kedro_run, latest_version, make_project

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")]

EPOCHS = 6
COMMAND = ["run", "--pipelines", "baseline", "--params", f"baseline.overrides.epochs={EPOCHS}"]
STATE = "data/local/06_models/baseline/training_state.pt"
HISTORY = "data/local/07_model_output/baseline/history.csv"


def kedro(project: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kedro", *COMMAND],
        cwd=project,
        # Wide log lines: a message is never wrapped across lines.
        env={**os.environ, "DO_NOT_TRACK": "1", "PYTHONHASHSEED": "0", "COLUMNS": "500"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def saved_epoch(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["epoch"])
    except Exception:  # not there yet
        return 0


def history(project: Path) -> pd.DataFrame:
    return pd.read_csv(latest_version(project, HISTORY)).drop(columns=["seconds", "run_id"])


def test_sigkill_at_a_random_epoch_then_the_same_command(tmp_path, monkeypatch):
    killed = make_project(tmp_path)
    monkeypatch.chdir(killed)
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    kedro_run(killed, ["ingestion", "preprocessing", "split"])
    reference = tmp_path / "reference"
    shutil.copytree(killed, reference)

    uninterrupted = kedro(reference)
    kill_after = random.Random().randint(1, EPOCHS - 2)
    print(f"killing after epoch {kill_after}")  # shown when the test fails
    process = kedro(killed)
    deadline = time.monotonic() + 300
    while saved_epoch(killed / STATE) < kill_after:
        assert process.poll() is None, f"finished before the kill:\n{process.stdout.read()}"
        assert time.monotonic() < deadline, "no training state was saved"
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_run = re.search(r"Run (\S+Z) \(env", process.stdout.read()).group(1)
    assert process.returncode == -signal.SIGKILL
    saved = saved_epoch(killed / STATE)
    assert kill_after <= saved < EPOCHS
    assert not (killed / HISTORY).exists()  # nothing of the killed run's stage was saved
    assert (killed / "data/local/.run.lock").exists()  # left behind; the next run takes it over

    again = kedro(killed)
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0, output
    assert f"after epoch {saved} of {EPOCHS}" in " ".join(output.split())
    output_ref, _ = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, output_ref

    # The epochs trained before the kill keep the killed run's id; the rest are the new run's.
    runs = pd.read_csv(latest_version(killed, HISTORY))["run_id"].tolist()
    assert runs[:saved] == [killed_run] * saved
    assert len(set(runs[saved:])) == 1 and runs[-1] != killed_run
    resumed, expected = history(killed), history(reference)
    assert resumed["epoch"].tolist() == list(range(1, EPOCHS + 1))
    pd.testing.assert_frame_equal(resumed, expected, check_exact=False, rtol=0, atol=1e-6)
    assert not (killed / STATE).exists()  # finished: removed
