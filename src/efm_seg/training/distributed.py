"""Data-parallel training: launching the worker processes and coordinating them (plain PyTorch).

Design
------
:func:`launch` runs a function in ``nproc_per_node`` worker processes through
:func:`torch.distributed.launcher.api.elastic_launch`, the engine behind ``torchrun``, called from
inside Python rather than from a ``torchrun ...`` command line. That keeps ``kedro run`` one
command whether it trains on one process or on many: the node that trains simply launches its
workers, waits for them, and carries on with rank 0's return value.

Each worker is started with the ``spawn`` method (a fresh interpreter, never a ``fork`` of a
process that may hold CUDA state or threads), so the function must be defined at module level and
its arguments must be picklable. Inside the worker, before the function runs, the default process
group is initialised from the variables the launcher sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); with NCCL the worker's CUDA device is
``LOCAL_RANK``. The group is destroyed when the function returns or raises.

Multi-node training runs the same command on every node, with the same ``nnodes`` and the same
``rdzv_endpoint`` (a ``host:port`` every node can reach; the node whose address is ``host`` serves
the rendezvous store). The launcher's c10d rendezvous then waits until all nodes have joined and
assigns each node its rank; a node's workers get global ranks ``node_rank * nproc_per_node + 0..``.
Which node gets node rank 0 is the rendezvous's choice, not necessarily the endpoint's host.

Inside a worker, the helpers :func:`rank`, :func:`world_size`, :func:`is_main`,
:func:`all_reduce_sum`, :func:`all_gather_rows`, :func:`barrier` and :func:`broadcast_object`
coordinate the ranks. Without a process group (single-process training) they are identities and
no-ops, so the training code calls them unconditionally.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, record
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from efm_seg.parameters import DistributedParams, parse_endpoint

logger = logging.getLogger(__name__)

T = TypeVar("T")


# The launcher's own loggers; at INFO they print every rendezvous round and worker-group state.
_ELASTIC_LOGGERS = ("torch.distributed.elastic", "torch.distributed.launcher")
# The signals elastic installs handlers for in the launching process (and never uninstalls).
_ELASTIC_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
_SIGNALS_ENV = "TORCHELASTIC_SIGNALS_TO_HANDLE"

# Collectives of these dtypes work on both gloo and NCCL; others travel as a wider type.
_WIRE_NATIVE = {
    torch.uint8,
    torch.int8,
    torch.int32,
    torch.int64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
}

_PREFIX = "training.distributed"


# Launches of a single node whose workers could not set up the process group (gloo's TCP
# connect between freshly started workers fails now and then, about 1 launch in 30 on a busy
# 2-core machine: "Gloo connectFullMesh failed ... Connection closed by peer").
SETUP_ATTEMPTS = 3


class DistributedError(RuntimeError):
    """A worker process of a distributed launch failed."""


class ProcessGroupInitError(RuntimeError):
    """A worker could not join the default process group (raised inside the worker)."""


DistributedConfig = DistributedParams
"""How many processes train, where they meet, and how they communicate: ``training.distributed``
(:class:`efm_seg.parameters.DistributedParams`, the one definition of these settings)."""


def resolve_backend(config: DistributedConfig, device: str | torch.device | None = None) -> str:
    """The process-group backend: ``config.backend`` itself, or for ``auto`` NCCL when CUDA is
    available and ``device`` (when given) is a CUDA device, gloo otherwise."""
    if config.backend != "auto":
        return config.backend
    on_cuda = device is None or torch.device(device).type == "cuda"
    return "nccl" if on_cuda and torch.cuda.is_available() else "gloo"


# --- launching ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """What every worker receives: one object, so the launcher's ``${local_rank}`` substitution
    in string arguments never touches the caller's arguments."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    backend: str
    local_world_size: int
    root_level: int
    package_level: int
    timeout: float = 1800.0


def _free_port(host: str) -> int:
    """A port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _configure_worker_logging(job: _Job, rank_: int) -> None:
    """Send a spawned worker's log records to stderr, as the parent would, marked with the rank.

    A spawned process starts with no logging configuration at all; without this only bare
    warnings would come through, and nothing would tell which rank wrote them.
    """
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter(
                f"%(asctime)s [rank {rank_}] %(levelname)s %(name)s: %(message)s",
                datefmt="%Y-%m-%d %H:%M:%S",
            )
        )
        root.addHandler(handler)
    root.setLevel(job.root_level)
    logging.getLogger(__name__.split(".")[0]).setLevel(job.package_level)


@record
def _run_worker(job: _Job) -> Any:
    """Worker entry: join the process group, run the job's function, always leave the group.

    ``@record`` writes an uncaught exception with its traceback to the error file the launcher
    reads, which is where :class:`DistributedError` gets the worker's message from.
    """
    rank_ = int(os.environ["RANK"])
    local_rank_ = int(os.environ["LOCAL_RANK"])
    _configure_worker_logging(job, rank_)
    if "OMP_NUM_THREADS" not in os.environ:
        # Unlike the torchrun command, elastic_launch leaves thread counts alone: every worker
        # would start one thread per core and the workers of a node would oversubscribe it.
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // job.local_world_size))
    device_id = None
    if job.backend == "nccl":
        torch.cuda.set_device(local_rank_)
        device_id = torch.device("cuda", local_rank_)
    try:
        dist.init_process_group(
            backend=job.backend,
            init_method="env://",
            rank=rank_,
            world_size=int(os.environ["WORLD_SIZE"]),
            device_id=device_id,
            timeout=datetime.timedelta(seconds=job.timeout),
        )
        # Every rank has joined once this returns: the function never starts on some ranks
        # of a launch that fails to set up on another (and is then launched again).
        dist.barrier()
    except Exception as error:
        # Its own type, so the launcher can tell a failed setup (worth launching again) from a
        # failure of the job's function (never run twice).
        raise ProcessGroupInitError(
            f"rank {rank_} could not join the {job.backend} process group: "
            f"{type(error).__name__}: {error}"
        ) from error
    try:
        return job.fn(*job.args)
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def _quiet_launcher() -> Iterator[None]:
    """Keep the launcher's loggers at WARNING, and undo its process-wide changes afterwards.

    elastic logs every rendezvous step and worker-group state at INFO, which comes through as
    soon as ``LOGLEVEL=INFO`` is set or torch's loggers are made verbose (they write through
    torch's own stderr handler, not the root logger, so a logging config does not filter them).
    elastic also installs handlers for SIGTERM, SIGINT, SIGHUP and SIGQUIT that raise
    ``SignalException``, sets ``TORCHELASTIC_SIGNALS_TO_HANDLE`` in ``os.environ``, and leaves
    both in place after the launch. Both are restored here, so Ctrl-C after training is a
    ``KeyboardInterrupt`` again.
    """
    prefixes = tuple(f"{name}." for name in _ELASTIC_LOGGERS)
    loggers = [logging.getLogger(name) for name in _ELASTIC_LOGGERS]
    loggers += [
        existing
        for name, existing in logging.Logger.manager.loggerDict.items()
        if isinstance(existing, logging.Logger) and name.startswith(prefixes)
    ]
    levels = [(one, one.level) for one in loggers]
    main_thread = threading.current_thread() is threading.main_thread()
    handlers = (
        {sig: signal.getsignal(sig) for name in _ELASTIC_SIGNALS if (sig := _signal(name))}
        if main_thread
        else {}
    )
    env_before = os.environ.get(_SIGNALS_ENV)
    for one, _ in levels:
        one.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for one, level in levels:
            one.setLevel(level)
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)
        if env_before is None:
            os.environ.pop(_SIGNALS_ENV, None)
        else:
            os.environ[_SIGNALS_ENV] = env_before


def _signal(name: str) -> signal.Signals | None:
    return getattr(signal, name, None)


def _failure_summary(error: ChildFailedError) -> str:
    """``rank N (...): ExceptionType: message`` of the launcher's first recorded failure."""
    failed_rank, failure = error.get_first_failure()
    where = f"rank {failed_rank} (local rank {failure.local_rank}, exit code {failure.exitcode})"
    data = failure.message
    if isinstance(data, dict):
        # Written by @record: {"message": "ValueError: boom", "extraInfo": {"py_callstack": ...}}
        return f"{where}: {str(data.get('message', '')).strip()}"
    if failure.exitcode < 0:  # killed by a signal: elastic's message names it
        return f"{where}: {data}"
    # No error file: the process died outside Python's exception handling (e.g. os._exit).
    return f"{where}: the process exited without a traceback"


def _failure_message(error: ChildFailedError) -> str:
    """One readable message from the launcher's failure record: rank, exception, traceback."""
    failed_rank, failure = error.get_first_failure()
    text = f"distributed training failed on {_failure_summary(error)}"
    data = failure.message
    callstack = ""
    if isinstance(data, dict):
        callstack = str(data.get("extraInfo", {}).get("py_callstack", "")).rstrip()
    return f"{text}\n\nTraceback of rank {failed_rank}:\n{callstack}" if callstack else text


def _is_setup_failure(error: ChildFailedError) -> bool:
    """Whether the first failure is a worker that could not join the process group."""
    data = error.get_first_failure()[1].message
    message = str(data.get("message", "")) if isinstance(data, dict) else ""
    return message.startswith(f"{ProcessGroupInitError.__name__}:")


def launch(
    config: DistributedConfig,
    fn: Callable[..., T],
    *args: Any,
    device: str | torch.device | None = None,
) -> T | None:
    """Run ``fn(*args)`` in ``config.nproc_per_node`` processes on this node; return rank 0's value.

    Args:
        config: The processes and their rendezvous.
        fn: A module-level function (workers are spawned, so it is pickled by name).
        *args: Its arguments, picklable.
        device: The device training will use (``"cuda"``, ``"cpu"``); with ``backend: auto`` a
            CPU device selects gloo even when CUDA is available.

    Returns:
        What ``fn`` returned on global rank 0 (pickled back). ``None`` on the nodes of a
        multi-node job that do not run global rank 0: only one node gets rank 0's value.

    Raises:
        ValueError: When the backend cannot work here (NCCL without enough CUDA devices).
        DistributedError: When a worker fails; names the rank and carries its exception and
            traceback. The launcher stops the other workers. Workers that cannot set up the
            process group are launched again, up to :data:`SETUP_ATTEMPTS` times on a single
            node, before ``fn`` starts on any rank: ``fn`` never runs twice (unless
            ``max_restarts`` asks elastic to restart the whole group after any failure).
        KeyboardInterrupt: When the launching process gets SIGINT; the workers are stopped.
    """
    backend = resolve_backend(config, device)
    if backend == "nccl" and torch.cuda.device_count() < config.nproc_per_node:
        raise ValueError(
            f"{_PREFIX}.backend nccl needs one CUDA device per process: nproc_per_node="
            f"{config.nproc_per_node}, CUDA devices available: {torch.cuda.device_count()}"
        )
    package = logging.getLogger(__name__.split(".")[0])
    job = _Job(
        fn=fn,
        args=tuple(args),
        backend=backend,
        local_world_size=config.nproc_per_node,
        root_level=logging.getLogger().getEffectiveLevel(),
        package_level=package.getEffectiveLevel(),
        timeout=config.timeout,
    )
    # Only a single node may launch again: a multi-node rendezvous is closed for its id once
    # one agent ends, and the other nodes would not follow (there, use max_restarts).
    attempts = SETUP_ATTEMPTS if config.nnodes == 1 else 1
    # Error files and (unused, no redirection) log files go to a folder removed afterwards;
    # elastic's default would leave a torchelastic_* folder in /tmp after every launch.
    with (
        tempfile.TemporaryDirectory(prefix="efm_seg_ddp_", ignore_cleanup_errors=True) as logs,
        _quiet_launcher(),
    ):
        for attempt in range(1, attempts + 1):
            try:
                results = _launch_once(config, job, logs, attempt)
                break
            except ChildFailedError as error:
                setup_failed = _is_setup_failure(error)
                if setup_failed and attempt < attempts:
                    logger.warning(
                        "The workers could not set up the process group (%s); launching them "
                        "again (attempt %d of %d)",
                        _failure_summary(error),
                        attempt + 1,
                        attempts,
                    )
                    continue
                message = _failure_message(error)
                if setup_failed and attempts > 1:
                    message += f"\n(the process group could not be set up in {attempts} launches)"
                raise DistributedError(message) from error
            except SignalException as error:
                if error.sigval == signal.SIGINT:
                    raise KeyboardInterrupt from error
                raise
    # Keyed by global rank: only the node that ran rank 0 has its value.
    return results.get(0)


def _launch_once(config: DistributedConfig, job: _Job, logs: str, attempt: int) -> dict[int, Any]:
    """One elastic launch of the job's workers: ``{global rank: return value}`` of this node."""
    host, port = parse_endpoint(config.rdzv_endpoint)
    if port == 0:  # single node (validated): nobody else needs to know the port
        port = _free_port(host)
    endpoint = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    launch_config = LaunchConfig(
        min_nodes=config.nnodes,
        max_nodes=config.nnodes,
        nproc_per_node=config.nproc_per_node,
        # A fresh id for a launch again, in case the last one's store still serves its port.
        run_id=config.rdzv_id if attempt == 1 else f"{config.rdzv_id}-{attempt}",
        rdzv_backend=config.rdzv_backend,
        rdzv_endpoint=endpoint,
        max_restarts=config.max_restarts,
        monitor_interval=config.monitor_interval,
        start_method="spawn",
        # Single node: the workers reach the store at the endpoint's own address, not at this
        # machine's FQDN, which need not resolve (containers, laptops off a network).
        local_addr=host if config.nnodes == 1 else None,
        # No redirection: workers write to the inherited stdout/stderr directly.
        logs_specs=DefaultLogsSpecs(log_dir=logs),
    )
    logger.info(
        "Launching %d worker process(es) on this node (world size %d, backend %s, rendezvous %s)",
        config.nproc_per_node,
        config.world_size,
        job.backend,
        endpoint,
    )
    return elastic_launch(launch_config, _run_worker)(job)


# --- coordination inside a worker -----------------------------------------------------------


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank; 0 without a process group."""
    return dist.get_rank() if _active() else 0


def local_rank() -> int:
    """This process's rank on its node (its CUDA device with NCCL); 0 without a process group."""
    return int(os.environ.get("LOCAL_RANK", "0")) if _active() else 0


def world_size() -> int:
    """Processes in the default group; 1 without a process group."""
    return dist.get_world_size() if _active() else 1


def is_main() -> bool:
    """Whether this is global rank 0: the process that logs, saves and returns results."""
    return rank() == 0


def _comm_device() -> torch.device:
    """Where collective tensors must live: the current CUDA device for NCCL, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks, in place; returns it. Identity without a process group.

    Dtypes the backends do not all support (bool, int16, unsigned types other than uint8) are
    summed as int64 and cast back into ``tensor``: the result keeps ``tensor``'s dtype, so a sum
    that does not fit it wraps (as uint8 or int8 sums do anyway) and bools become a logical OR.
    """
    if not _active():
        return tensor
    device = _comm_device()
    wire_dtype = tensor.dtype if tensor.dtype in _WIRE_NATIVE else torch.int64
    if tensor.device == device and tensor.dtype == wire_dtype and tensor.is_contiguous():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor
    work = tensor.to(device=device, dtype=wire_dtype).contiguous()
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    tensor.copy_(work)
    return tensor


def all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate along dim 0 the tensors of all ranks, in rank order; the same on every rank.

    Ranks may hold different numbers of rows (the last batch of a sharded dataset); all other
    dimensions and the dtype must match. Every rank receives the full result on ``tensor``'s
    device. Identity without a process group.

    Raises:
        ValueError: On every rank, when the ranks' trailing shapes or dtypes differ.
    """
    if not _active():
        return tensor
    if tensor.dim() == 0:
        raise ValueError("all_gather_rows needs a tensor with a row dimension, got a scalar")
    # Shapes and dtypes first: every rank sees all of them, so a mismatch fails everywhere
    # instead of leaving some ranks waiting in the gather.
    meta: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(meta, (tuple(tensor.shape), str(tensor.dtype)))
    rest = {(shape[1:], dtype) for shape, dtype in meta}
    if len(rest) > 1:
        raise ValueError(
            "all_gather_rows needs the same trailing shape and dtype on every rank, got "
            + ", ".join(f"rank {i}: {shape} {dtype}" for i, (shape, dtype) in enumerate(meta))
        )
    counts = [shape[0] for shape, _ in meta]
    most = max(counts)
    if most == 0:
        return tensor
    device = _comm_device()
    # bool travels as uint8, narrow or unsigned integers NCCL/gloo lack as int64, both lossless.
    wire_dtype = tensor.dtype if tensor.dtype in _WIRE_NATIVE else torch.int64
    if tensor.dtype == torch.bool:
        wire_dtype = torch.uint8
    padded = torch.zeros((most, *tensor.shape[1:]), dtype=wire_dtype, device=device)
    padded[: tensor.shape[0]] = tensor.to(device=device, dtype=wire_dtype)
    gathered = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(gathered, padded)
    rows = torch.cat([part[:count] for part, count in zip(gathered, counts, strict=True)])
    return rows.to(device=tensor.device, dtype=tensor.dtype)


def barrier() -> None:
    """Wait until every rank gets here; a no-op without a process group."""
    if _active():
        dist.barrier()


def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` as global rank ``src`` has it, on every rank (pickled); identity without a group."""
    if not _active():
        return obj
    box: list[Any] = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]
