"""What every benchmark shares: the machine's description, peak memory, JSON results."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any

import torch

from efm_seg.basics.provenance import processor_name

MIB = 1024.0**2


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """The machine a result was measured on: CPU, usable cores, memory, GPU, versions."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": processor_name(),
        "cores": cores,
        "memory_gib": _memory_gib(),
        "gpu": gpu,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (Linux: ru_maxrss is in KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 1024 if sys.platform != "darwin" else peak / MIB, 1)


def write_json(path: str | None, result: dict[str, Any]) -> None:
    """Write ``result`` (plus the peak RSS) to ``path`` when one was given (``--json``)."""
    if path:
        result = {**result, "peak_rss_mib": peak_rss_mib()}
        Path(path).write_text(json.dumps(result, indent=2, default=float))
