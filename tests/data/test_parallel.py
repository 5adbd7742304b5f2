"""The process-parallel map: input order, errors, and hosts that handle signals themselves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from efm_seg.data.parallel import parallel_map

# A host like Airflow 3's task runner: it handles SIGTERM itself, and forked workers inherit the
# handler. Here the handler never returns (as one that waits on a lock held at fork time); a
# pool that terminates its workers with SIGTERM and waits for them would wait forever.
HOST = """
import math, signal, sys, threading
from efm_seg.data.parallel import parallel_map

signal.signal(signal.SIGTERM, lambda signum, frame: threading.Event().wait())


def fail_on_five(x):
    if x == 5:
        raise ValueError("item 5")
    return x


scenario = sys.argv[1]
if scenario == "complete":
    assert list(parallel_map(math.sqrt, range(40), 2)) == [math.sqrt(i) for i in range(40)]
elif scenario == "stopped_early":
    for value in parallel_map(math.sqrt, range(40), 2):
        break
elif scenario == "error":
    try:
        list(parallel_map(fail_on_five, range(40), 2))
    except ValueError as error:
        assert str(error) == "item 5"
    else:
        raise AssertionError("the worker's error was lost")
print("done")
"""


def square(x: int) -> int:
    return x * x


def test_results_come_in_input_order():
    assert list(parallel_map(square, range(25), 3)) == [i * i for i in range(25)]
    assert list(parallel_map(square, range(25), 1)) == [i * i for i in range(25)]


@pytest.mark.parametrize("scenario", ["complete", "stopped_early", "error"])
def test_a_host_with_its_own_sigterm_handler_never_hangs_the_map(scenario):
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOST), scenario],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a hung run is killed with its workers
    )
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"{scenario}: the map hung under a host SIGTERM handler")
    assert process.returncode == 0, err
    assert out.strip() == "done"
