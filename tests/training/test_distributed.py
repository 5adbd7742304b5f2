"""Launching data-parallel workers and coordinating them: real 2-process gloo runs on the CPU.

The worker functions are module-level because the launcher spawns fresh interpreters, which find
them by importing this module.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from efm_seg.training import distributed as ddp
from efm_seg.training.distributed import DistributedConfig, DistributedError, launch

TWO = DistributedConfig(nproc_per_node=2, backend="gloo")
UNCHANGED = "run-${local_rank}-$$"  # the launcher substitutes such templates in string args


# --- workers (run in the spawned processes) --------------------------------------------------


def _report(tag: str, marker: str) -> list[dict[str, Any]]:
    """Every rank's view of itself and of a few collectives, gathered on every rank."""
    summed = ddp.all_reduce_sum(torch.tensor([ddp.rank() + 1, 10], dtype=torch.int64))
    floats = ddp.all_reduce_sum(torch.full((2,), 0.5 * (ddp.rank() + 1)))
    flags = ddp.all_reduce_sum(torch.tensor([ddp.rank() == 1, False]))
    narrow = ddp.all_reduce_sum(torch.tensor([ddp.rank() + 1], dtype=torch.int16))
    column = ddp.all_reduce_sum(torch.ones(3, 2, dtype=torch.int64)[:, 0])  # not contiguous
    mine = {
        "tag": tag,
        "marker": marker,
        "rank": ddp.rank(),
        "world_size": ddp.world_size(),
        "is_main": ddp.is_main(),
        "local_rank": ddp.local_rank(),
        "env": (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]),
        "backend": dist.get_backend(),
        "summed": summed.tolist(),
        "floats": floats.tolist(),
        "flags": (flags.dtype, flags.tolist()),
        "narrow": (narrow.dtype, narrow.tolist()),
        "column": column.tolist(),
        "broadcast": ddp.broadcast_object({"from": ddp.rank()}, src=1),
    }
    ddp.barrier()
    logging.getLogger("efm_seg.tests.ddp").warning("hello from rank %d", ddp.rank())
    everyone: list[Any] = [None] * ddp.world_size()
    dist.all_gather_object(everyone, mine)
    return everyone


def _gather_rows() -> dict[str, Any]:
    """Rank 0 holds 3 samples, rank 1 one; both gather maps (uint8), ids (int64), flags (bool)."""
    count = 3 if ddp.rank() == 0 else 1
    start = 0 if ddp.rank() == 0 else 3
    ids = torch.arange(start, start + count, dtype=torch.int64) * 7
    maps = torch.stack([torch.full((4, 5), 200 + i, dtype=torch.uint8) for i in range(count)])
    maps[:, 0, 0] = ddp.rank()
    flags = ids % 2 == 0
    nothing = torch.empty((0, 2), dtype=torch.float32)
    result = {
        "maps": ddp.all_gather_rows(maps),
        "ids": ddp.all_gather_rows(ids),
        "flags": ddp.all_gather_rows(flags),
        "nothing": ddp.all_gather_rows(nothing),
        # Only rank 1 has rows: rank 0 sends a zero-row tensor.
        "one_sided": ddp.all_gather_rows(torch.full((2 * ddp.rank(),), 5, dtype=torch.int64)),
    }
    # Different trailing shapes: every rank must raise, none may hang.
    try:
        ddp.all_gather_rows(torch.zeros((1, 2 + ddp.rank()), dtype=torch.uint8))
        result["mismatch"] = "no error"
    except ValueError as error:
        result["mismatch"] = str(error)
    everyone: list[Any] = [None] * ddp.world_size()
    dist.all_gather_object(everyone, result)
    return {"rank0": everyone[0], "rank1": everyone[1]}


def _fail_on_rank_one() -> str:
    if ddp.rank() == 1:
        raise ValueError("boom on rank 1")
    time.sleep(60)  # stopped by the launcher once rank 1 has failed
    return "rank 0 finished"


def _wait_for_interrupt(folder: str) -> None:
    Path(folder, f"started-{ddp.rank()}").touch()
    time.sleep(60)  # the test interrupts the launcher before this ends


# --- launching -------------------------------------------------------------------------------


def test_launch_runs_two_ranks_and_returns_rank_zeros_value(
    capfd: pytest.CaptureFixture[str],
) -> None:
    everyone = launch(TWO, _report, "t1", UNCHANGED)

    assert isinstance(everyone, list)
    assert [one["rank"] for one in everyone] == [0, 1]
    assert everyone[0]["is_main"] and not everyone[1]["is_main"]
    for one in everyone:
        rank_ = one["rank"]
        assert one["world_size"] == 2
        assert one["local_rank"] == rank_
        assert one["env"] == (str(rank_), "2", str(rank_))
        assert one["backend"] == "gloo"
        assert one["tag"] == "t1"
        assert one["marker"] == UNCHANGED
        assert one["summed"] == [1 + 2, 10 + 10]
        assert one["floats"] == [1.5, 1.5]
        assert one["flags"] == (torch.bool, [True, False])
        assert one["narrow"] == (torch.int16, [3])
        assert one["column"] == [2, 2, 2]
        assert one["broadcast"] == {"from": 1}
    # Both workers' log records reach the parent's stderr, each marked with its rank.
    err = capfd.readouterr().err
    for rank_ in (0, 1):
        assert f"[rank {rank_}] WARNING efm_seg.tests.ddp: hello from rank {rank_}" in err


def test_all_gather_rows_concatenates_uneven_ranks_and_refuses_mismatches() -> None:
    result = launch(TWO, _gather_rows)

    assert result is not None
    expected_ids = torch.tensor([0, 7, 14, 21])
    expected_maps = torch.stack(
        [torch.full((4, 5), value, dtype=torch.uint8) for value in (200, 201, 202, 200)]
    )
    expected_maps[:, 0, 0] = torch.tensor([0, 0, 0, 1], dtype=torch.uint8)
    for rank_ in ("rank0", "rank1"):
        got = result[rank_]
        assert got["maps"].dtype == torch.uint8
        assert got["maps"].shape == (4, 4, 5)
        assert torch.equal(got["maps"], expected_maps)
        assert got["ids"].dtype == torch.int64
        assert torch.equal(got["ids"], expected_ids)
        assert got["flags"].dtype == torch.bool
        assert got["flags"].tolist() == [True, False, True, False]
        assert got["nothing"].shape == (0, 2)
        assert got["one_sided"].tolist() == [5, 5]
        assert "same trailing shape" in got["mismatch"]
        assert "rank 0: (1, 2)" in got["mismatch"] and "rank 1: (1, 3)" in got["mismatch"]


def test_a_failing_worker_raises_distributed_error_naming_rank_and_exception() -> None:
    with pytest.raises(DistributedError) as caught:
        launch(TWO, _fail_on_rank_one)

    message = str(caught.value)
    assert "rank 1" in message
    assert "ValueError: boom on rank 1" in message
    assert "_fail_on_rank_one" in message  # the worker's traceback comes along
    assert isinstance(caught.value, RuntimeError)
    assert isinstance(caught.value.__cause__, ChildFailedError)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_launcher_logs_are_kept_at_warning_and_process_state_is_restored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=ddp.__name__)
    # As verbose as LOGLEVEL=DEBUG would make the launcher. torch's loggers do not propagate
    # to the root (torch has its own stderr handler), so collect at the launcher's logger.
    elastic = [
        logging.getLogger(name)
        for name in ["torch.distributed.elastic", *logging.Logger.manager.loggerDict]
        if name.startswith("torch.distributed.elastic")
    ]
    before = {one: one.level for one in elastic}
    for one in elastic:
        one.setLevel(logging.DEBUG)
    collect = _Collect()
    elastic[0].addHandler(collect)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    env_before = os.environ.get("TORCHELASTIC_SIGNALS_TO_HANDLE")
    try:
        launch(TWO, _report, "t2", "")
        levels_after = {one.level for one in elastic}
    finally:
        elastic[0].removeHandler(collect)
        for one, level in before.items():
            one.setLevel(level)

    assert [r.getMessage() for r in collect.records if r.levelno < logging.WARNING] == []
    assert levels_after == {logging.DEBUG}
    assert any("Launching 2 worker process(es)" in r.getMessage() for r in caplog.records)
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    assert os.environ.get("TORCHELASTIC_SIGNALS_TO_HANDLE") == env_before


def test_ctrl_c_in_the_launcher_stops_the_workers_and_raises_keyboard_interrupt(
    tmp_path: Path,
) -> None:
    def interrupt_once_started() -> None:
        deadline = time.monotonic() + 30
        while len(list(tmp_path.glob("started-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    handler_before = signal.getsignal(signal.SIGINT)
    interrupter = threading.Thread(target=interrupt_once_started, daemon=True)
    interrupter.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt) as caught:
        launch(TWO, _wait_for_interrupt, str(tmp_path))
    interrupter.join()

    # Raised from elastic's handler while the workers ran, not by Python's default one.
    assert isinstance(caught.value.__cause__, SignalException)
    assert time.monotonic() - started < 30  # the sleeping workers did not run to the end
    assert signal.getsignal(signal.SIGINT) == handler_before


def test_port_zero_gets_a_fresh_free_port_each_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoints: list[str] = []

    class Recording:
        def __init__(self, config: Any, entrypoint: Any) -> None:
            endpoints.append(config.rdzv_endpoint)

        def __call__(self, *args: Any) -> dict[int, Any]:
            return {0: "value of rank 0", 1: "value of rank 1"}

    monkeypatch.setattr(ddp, "elastic_launch", Recording)
    assert launch(TWO, _report) == "value of rank 0"
    hosts_ports = [ddp.parse_endpoint(endpoint) for endpoint in endpoints]
    assert all(host == "127.0.0.1" and port > 0 for host, port in hosts_ports)

    # A node that did not run global rank 0 gets None.
    monkeypatch.setattr(Recording, "__call__", lambda self, *args: {2: "x", 3: "y"})
    other_node = DistributedConfig(
        nproc_per_node=2, nnodes=2, rdzv_endpoint="h:29500", backend="gloo"
    )
    assert launch(other_node, _report) is None
    assert endpoints[-1] == "h:29500"


def _child_failure(tmp_path: Path, message: str) -> ChildFailedError:
    """The launcher's exception for rank 1 failing with ``message``, as @record writes it."""
    error_file = tmp_path / f"error-{len(list(tmp_path.iterdir()))}.json"
    record = {"message": message, "extraInfo": {"py_callstack": "Traceback: ...", "timestamp": "1"}}
    error_file.write_text(json.dumps({"message": record}))
    failure = ProcessFailure(local_rank=1, pid=4242, exitcode=1, error_file=str(error_file))
    return ChildFailedError(name="_run_worker", failures={1: failure})


class _FlakyLauncher:
    """Stands in for elastic_launch: the first ``fails`` launches fail with ``message``."""

    def __init__(self, tmp_path: Path, fails: int, message: str) -> None:
        self.tmp_path, self.fails, self.message = tmp_path, fails, message
        self.run_ids: list[str] = []

    def __call__(self, config: Any, entrypoint: Any) -> Callable[..., dict[int, Any]]:
        self.run_ids.append(config.run_id)

        def run(*args: Any) -> dict[int, Any]:
            if len(self.run_ids) <= self.fails:
                raise _child_failure(self.tmp_path, self.message)
            return {0: "trained", 1: "also trained"}

        return run


SETUP_FAILURE = "ProcessGroupInitError: rank 1 could not join the gloo process group: boom"


def test_a_failed_process_group_setup_is_launched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    launcher = _FlakyLauncher(tmp_path, fails=2, message=SETUP_FAILURE)
    monkeypatch.setattr(ddp, "elastic_launch", launcher)

    assert launch(TWO, _report) == "trained"
    assert launcher.run_ids == ["efm-seg", "efm-seg-2", "efm-seg-3"]
    retries = [r.getMessage() for r in caplog.records if "launching them again" in r.getMessage()]
    assert len(retries) == 2 and "rank 1" in retries[0] and "boom" in retries[0]


def test_a_setup_failing_every_time_gives_up_after_the_last_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launcher = _FlakyLauncher(tmp_path, fails=99, message=SETUP_FAILURE)
    monkeypatch.setattr(ddp, "elastic_launch", launcher)

    with pytest.raises(DistributedError, match=r"could not be set up in 3 launches"):
        launch(TWO, _report)
    assert len(launcher.run_ids) == ddp.SETUP_ATTEMPTS == 3


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (TWO, "ValueError: boom in the training function"),  # the function's own failure
        (  # multi-node: other nodes would not follow a relaunch
            DistributedConfig(nproc_per_node=2, nnodes=2, rdzv_endpoint="h:1", backend="gloo"),
            SETUP_FAILURE,
        ),
    ],
)
def test_other_failures_are_never_launched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: DistributedConfig, message: str
) -> None:
    launcher = _FlakyLauncher(tmp_path, fails=1, message=message)
    monkeypatch.setattr(ddp, "elastic_launch", launcher)

    with pytest.raises(DistributedError, match=r"failed on rank 1 \(local rank 1, exit code 1\)"):
        launch(config, _report)
    assert len(launcher.run_ids) == 1


def test_a_worker_that_cannot_join_the_process_group_is_reported_as_setup_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # gloo cannot create its device on an interface that does not exist: a real setup failure.
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "no-such-if0")
    monkeypatch.setattr(ddp, "SETUP_ATTEMPTS", 1)  # one real launch keeps the test short
    with pytest.raises(DistributedError) as caught:
        launch(TWO, _report)

    message = str(caught.value)
    assert "ProcessGroupInitError: rank" in message
    assert "could not join the gloo process group" in message
    assert "no-such-if0" in message
    assert ddp._is_setup_failure(caught.value.__cause__)


def test_nccl_without_enough_cuda_devices_is_refused_before_launching(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(
        ValueError, match=r"training\.distributed\.backend nccl.*devices available: 1"
    ):
        launch(DistributedConfig(nproc_per_node=2, backend="nccl"), _report)


# --- helpers without a process group ---------------------------------------------------------


def test_helpers_are_identities_without_a_process_group() -> None:
    assert not dist.is_initialized()
    assert (ddp.rank(), ddp.local_rank(), ddp.world_size(), ddp.is_main()) == (0, 0, 1, True)
    values = torch.tensor([1, 2, 3], dtype=torch.uint8)
    assert ddp.all_reduce_sum(values) is values
    assert values.tolist() == [1, 2, 3]
    rows = torch.zeros((2, 4, 5), dtype=torch.uint8)
    assert ddp.all_gather_rows(rows) is rows
    ddp.barrier()
    payload = {"a": [1, 2]}
    assert ddp.broadcast_object(payload) is payload
    assert ddp.broadcast_object(payload, src=3) is payload


# --- configuration ---------------------------------------------------------------------------


def test_config_defaults_are_single_process() -> None:
    config = DistributedConfig()
    assert config.world_size == 1 and not config.enabled
    assert DistributedConfig(nproc_per_node=2, nnodes=3, rdzv_endpoint="h:1").world_size == 6
    assert TWO.enabled


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"nproc_per_node": 0}, r"nproc_per_node\n +Input should be greater than or equal to 1"),
        ({"nproc_per_node": 1.5}, r"nproc_per_node\n +Input should be a valid integer"),
        ({"nproc_per_node": True}, r"nproc_per_node\n +Input should be a valid integer"),
        ({"nnodes": 0}, r"nnodes\n +Input should be greater than or equal to 1"),
        ({"rdzv_endpoint": "localhost"}, r"rdzv_endpoint must be 'host:port'"),
        ({"rdzv_endpoint": ":29500"}, r"rdzv_endpoint must be 'host:port'"),
        ({"rdzv_endpoint": "h:port"}, r"rdzv_endpoint must be 'host:port'"),
        ({"rdzv_endpoint": "h:70000"}, r"rdzv_endpoint must be 'host:port'"),
        ({"nnodes": 2}, r"rdzv_endpoint needs a fixed port when nnodes > 1"),
        ({"rdzv_backend": "static"}, r"rdzv_backend\n +Input should be 'c10d', 'etcd' or"),
        ({"rdzv_id": " "}, r"rdzv_id\n +String should match pattern"),
        ({"backend": "mpi"}, r"backend\n +Input should be 'auto', 'nccl' or 'gloo'"),
        ({"max_restarts": -1}, r"max_restarts\n +Input should be greater than or equal to 0"),
        ({"monitor_interval": 0}, r"monitor_interval\n +Input should be greater than 0"),
    ],
)
def test_config_validation_names_the_parameter(kwargs: dict[str, Any], pattern: str) -> None:
    # One schema (efm_seg.parameters.DistributedParams): in a Kedro session the same problems
    # read training.distributed.<key>: ... (tests/test_parameters.py).
    with pytest.raises(ValueError, match=pattern):
        DistributedConfig(**kwargs)


def test_multi_node_with_a_fixed_port_is_accepted() -> None:
    config = DistributedConfig(nproc_per_node=4, nnodes=2, rdzv_endpoint="[fd00::1]:29500")
    assert config.world_size == 8
    assert ddp.parse_endpoint(config.rdzv_endpoint) == ("fd00::1", 29500)


def test_auto_backend_is_gloo_on_cpu_and_nccl_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    config = DistributedConfig()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ddp.resolve_backend(config) == "gloo"
    assert ddp.resolve_backend(config, "cuda") == "gloo"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert ddp.resolve_backend(config) == "nccl"
    assert ddp.resolve_backend(config, "cuda:0") == "nccl"
    assert ddp.resolve_backend(config, torch.device("cpu")) == "gloo"
    assert ddp.resolve_backend(DistributedConfig(backend="gloo"), "cuda") == "gloo"
