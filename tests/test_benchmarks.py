"""The benchmark scripts run (benchmarks/): each at a tiny size on the CPU. Their figures are
measured by hand on a quiet machine (README, "Benchmarks"); this only keeps the scripts working
as the library changes under them (a benchmark that no longer runs measures nothing)."""

from __future__ import annotations

import importlib
import json

import pytest

TINY = {
    "bench_training": ["--sizes", "32", "--n-train", "2", "--n-val", "1", "--batch", "2",
                       "--repeats", "1", "--threads", "1"],
    "bench_tta": ["--size", "64", "--batch", "1", "--encoder", "resnet18", "--quick"],
    "bench_resume": ["--size", "32", "--n-train", "2", "--n-val", "1", "--batch", "2",
                     "--every", "2", "--epochs", "2", "--repeats", "1"],
    "bench_optimizer": ["--size", "32", "--batch", "2", "--repeats", "1", "--steps", "1"],
    "bench_loader": ["--size", "64", "--batch", "2", "--quick"],
    "bench_efm_step": ["--size", "64", "--batch", "2", "--steps", "1", "--warmup", "1",
                       "--loss-reps", "1", "--encoder", "resnet18", "--device", "cpu"],
    "bench_preprocessing": ["--size", "64", "--repeats", "1"],
    "bench_streaming": ["--sources", "2"],
    "bench_ddp": ["--size", "64", "--n-train", "4", "--n-val", "2", "--batch", "4",
                  "--epochs", "1", "--nproc", "2"],
}  # fmt: skip


@pytest.mark.parametrize("name", list(TINY))
def test_the_benchmark_runs_and_writes_its_figures(name, tmp_path):
    bench = importlib.import_module(f"benchmarks.{name}")
    out = tmp_path / f"{name}.json"
    result = bench.main([*TINY[name], "--json", str(out)])
    assert result in (0, None) or isinstance(result, dict)
    assert json.loads(out.read_text())  # something measured
