"""How long a ``kedro`` command takes to start, and how much memory it takes.

Every ``kedro`` command imports the project's settings (hooks, config loader) and most build the
pipeline registry (every pipeline and its nodes); none of it may import torch. Target on the
2-core machine: ``kedro --help`` and ``kedro registry list`` under 2 s and 300 MB peak RSS.

Each command runs ``--repeats`` times in a fresh process, interleaved with the references
(an empty Python, and one that imports torch, which the commands used to pay for), so that the
ratios compare runs made side by side::

    .venv/bin/python -m benchmarks.bench_cli --repeats 5 --json out.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))
COMMANDS = {
    "kedro --help": [KEDRO, "--help"],
    "kedro registry list": [KEDRO, "registry", "list"],
    "python (empty)": [sys.executable, "-c", "pass"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def measure(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one run of ``command`` in the project's root."""
    env = {**os.environ, "DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "true"}
    start = time.perf_counter()
    child = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode})")
    return seconds, usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
    measure(COMMANDS["kedro --help"])  # warm the file cache once
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            runs[name].append(measure(command))
    results = {
        name: {
            "seconds_median": round(statistics.median(s for s, _ in done), 3),
            "seconds_runs": [round(s, 3) for s, _ in done],
            "peak_rss_mib_median": round(statistics.median(m for _, m in done), 1),
        }
        for name, done in runs.items()
    }
    torch_import = results["python -c 'import torch'"]["seconds_median"]
    for name in ("kedro --help", "kedro registry list"):
        results[name]["ratio_to_torch_import"] = round(
            results[name]["seconds_median"] / torch_import, 2
        )
    for name, result in results.items():
        print(
            f"{name:28s} {result['seconds_median']:6.2f} s  "
            f"{result['peak_rss_mib_median']:7.1f} MiB peak RSS",
            flush=True,
        )
    # Imported last: it imports torch, and a child's peak RSS on Linux starts from its parent's
    # (the fork before exec), so the parent stays small while the commands are measured.
    from benchmarks.common import machine, write_json

    write_json(args.json, {"machine": machine(), "repeats": args.repeats, "commands": results})


if __name__ == "__main__":
    main()
