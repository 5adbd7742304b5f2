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


def _mark(item, folder):
    (folder / f"{item:03d}").touch()
    return item


def test_max_ahead_bounds_the_results_waiting_for_the_caller(tmp_path):
    """A slow caller: never more than max_ahead items handed out beyond what it has taken, so
    memory holds a bounded number of results whatever the number of items."""
    import functools
    import time

    from efm_seg.data.parallel import parallel_map

    func = functools.partial(_mark, folder=tmp_path)
    taken, most_ahead = 0, 0
    for result in parallel_map(func, range(40), workers=2, chunksize=1, max_ahead=3):
        taken += 1
        time.sleep(0.02)  # time for the workers to run ahead, if they could
        most_ahead = max(most_ahead, len(list(tmp_path.iterdir())) - taken)
        assert result == taken - 1
    assert taken == 40 and most_ahead <= 3
    # Without the bound, the workers finish everything long before the caller.
    for marker in tmp_path.iterdir():
        marker.unlink()
    results = parallel_map(func, range(40), workers=2, chunksize=1)
    next(results)
    time.sleep(0.5)
    assert len(list(tmp_path.iterdir())) > 10
    results.close()
