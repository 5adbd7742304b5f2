"""A process-parallel ``map`` for CPU-bound per-file work (decoding, resizing, encoding)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def available_cpus() -> int:
    """CPU cores this process may use (respects affinity masks and container limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: Any, n_items: int, where: str = "workers") -> int:
    """``"auto"``/``None``/``0`` → one process per core; never more processes than items."""
    if workers in (None, "auto", 0):
        count = available_cpus()
    elif isinstance(workers, int) and not isinstance(workers, bool) and workers > 0:
        count = workers
    else:
        raise ValueError(f"{where}: {workers!r} must be 'auto' or a positive integer")
    return max(1, min(count, n_items))


def parallel_map(
    func: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    chunksize: int | None = None,
    max_ahead: int | None = None,
) -> Iterator[R]:
    """``map(func, items)`` over ``workers`` processes, results in input order.

    ``max_ahead`` bounds the items handed out whose results the caller has not taken yet: with
    it, a slow consumer (one writing each result to disk) holds at most that many results in
    memory, however many items there are. Without it, the workers run as far ahead as they can.

    ``chunksize`` (items sent to a worker at a time) defaults to 2: half the round trips of
    one item at a time, and small enough that the workers finish together.

    With one worker it runs in this process (no pool start-up, easy to debug). The pool uses
    ``fork`` where available: workers inherit the imported modules and start in milliseconds;
    they only run numpy/PIL code, so forking a process that has imported torch is safe.

    Forked workers also inherit the host's signal handlers. A host that handles SIGTERM itself
    (Airflow 3's task runner does) would leave a worker that never exits when the pool is
    terminated, and the map would hang. So workers restore the default SIGTERM action (and
    leave SIGINT to the parent, which stops the pool), and a map that finishes closes its pool
    and lets the workers exit on their own; only an interrupted one terminates them.
    """
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        yield from map(func, items)
        return
    if chunksize is None:
        chunksize = 2 if len(items) >= 4 * workers else 1
    method = "fork" if "fork" in mp.get_all_start_methods() else None
    # SIGTERM stays blocked while the workers are forked, so that none can receive it under the
    # host's handler before its initializer restores the default action (a worker terminated
    # that early would otherwise never exit, and join() would hang).
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        pool = mp.get_context(method).Pool(processes=workers, initializer=_worker_signals)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    # The pool's feeder thread takes an item only when a result has been taken (or while
    # fewer than max_ahead are out): a plain semaphore, released once per result.
    gate = threading.Semaphore(max(max_ahead or len(items), chunksize))
    stopped = threading.Event()

    def gated() -> Iterator[T]:
        for item in items:
            gate.acquire()
            if stopped.is_set():
                return
            yield item

    try:
        for result in pool.imap(func, gated(), chunksize=chunksize):
            yield result
            gate.release()
        pool.close()
    except BaseException:  # an error, or the caller stopped iterating (GeneratorExit)
        stopped.set()
        for _ in range(len(items)):  # never leave the feeder thread waiting on the gate
            gate.release()
        pool.terminate()
        raise
    finally:
        pool.join()


def _worker_signals() -> None:
    """A pool worker's signals: SIGTERM ends it (whatever the host installed), Ctrl-C is the
    parent's to handle."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # blocked by the parent's fork
