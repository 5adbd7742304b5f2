"""The benchmark scripts run (benchmarks/): at a tiny size, on the CPU. Their figures are measured
by hand on a quiet machine (README, "Benchmarks"); this only keeps the scripts working as the
library changes under them."""

from __future__ import annotations

import json

from benchmarks import bench_training


def test_the_training_benchmark_runs_and_writes_its_ratios(tmp_path):
    out = tmp_path / "training.json"
    argv = ["--sizes", "32", "--n-train", "2", "--n-val", "1", "--batch", "2", "--repeats", "1"]
    assert bench_training.main([*argv, "--threads", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    variants = result["sizes"][0]["variants"]
    assert {"baseline", "per_sample", "online"} <= set(variants)
    assert variants["baseline"]["train_s"] > 0
