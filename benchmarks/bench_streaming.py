"""Preprocessing memory: peak RSS against the number of samples, streamed into the store (what
the pipeline does) and, for comparison, held in memory first (what it used to do).

Generates ``sources`` noise images of 1024² with integer masks (noise compresses worst, so each
128² tile is ~50 KB of PNG), tiles them to 128² (64 samples per source), and runs each
(count, mode) in its own process, reading that process's peak RSS (``ru_maxrss``; the worker
processes' peaks are reported apart).

    .venv/bin/python benchmarks/bench_streaming.py [--sources 20 40 80]

Target (issue 12): the streamed peak does not grow with the sample count (≥ 5,000 samples).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

try:
    from benchmarks.common import machine, write_json
except ModuleNotFoundError:  # run as a script: benchmarks/ itself is on sys.path
    from common import machine, write_json

SIDE, TILE = 1024, 128
DATASET = {
    "name": "noise",
    "mode": "ids",
    "classes": {1: "a", 2: "b", 3: "c"},
    "ignore_ids": [0],
    "ignore_index": 255,
    "num_classes": 3,
}
LAYOUT = {"images": "images/{id}.png", "masks": "masks/{id}.png", "group_by": None, "workers": 2}


def generate(root: Path, sources: int) -> None:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(sources):
        image = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
        mask = rng.integers(1, 4, (SIDE, SIDE), dtype=np.uint8)
        Image.fromarray(image).save(root / "images" / f"s{i:04d}.png", compress_level=1)
        Image.fromarray(mask).save(root / "masks" / f"s{i:04d}.png")


def child(raw_root: Path, sources: int, mode: str, out: Path) -> dict:
    """One measured run (in its own process)."""
    from efm_seg.data.raw import RawFolder
    from efm_seg.data.samples import write_store
    from efm_seg.pipelines.ingestion.nodes import build_manifest
    from efm_seg.pipelines.preprocessing.nodes import encode_samples

    raw = RawFolder(raw_root)
    manifest = build_manifest(raw, DATASET, LAYOUT).head(sources)
    params = {"mode": "tile", "size": TILE, "stride": None, "image_filter": "lanczos"}
    stream = encode_samples(raw, manifest, DATASET, {**params, "workers": 2})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if mode == "stream":
        store = write_store(out, stream)
    else:  # the old way: every encoded sample in memory, then written
        samples = {sample_id: sample for sample_id, sample, _ in stream}
        store = write_store(out, samples)
    return {
        "samples": len(store.ids),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mb": before / 1024,
        "workers_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, nargs="+", default=[20, 40, 80])
    parser.add_argument("--json", default=None, help="also write the result to this file")
    parser.add_argument("--child", nargs=4, metavar=("RAW", "SOURCES", "MODE", "OUT"))
    args = parser.parse_args(argv)
    if args.child:
        raw, sources, mode, out = args.child
        print(json.dumps(child(Path(raw), int(sources), mode, Path(out))))
        return 0

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_streaming_") as tmp_name:
        tmp = Path(tmp_name)
        generate(tmp / "raw", max(args.sources))
        for sources in args.sources:
            for mode in ("stream", "memory"):
                out = tmp / f"store_{sources}_{mode}"
                result = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        str(tmp / "raw"),
                        str(sources),
                        mode,
                        str(out),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                row = {
                    "sources": sources,
                    "mode": mode,
                    **json.loads(result.stdout.splitlines()[-1]),
                }
                rows.append(row)
                print(
                    f"{row['samples']:6d} samples ({sources} sources), {mode:>6}: peak RSS "
                    f"{row['peak_rss_mb']:7.1f} MB (before writing {row['rss_before_mb']:6.1f}"
                    f" MB; workers' peak {row['workers_peak_rss_mb']:6.1f} MB)"
                )
                shutil.rmtree(out, ignore_errors=True)
    streamed = [r for r in rows if r["mode"] == "stream"]
    growth = streamed[-1]["peak_rss_mb"] - streamed[0]["peak_rss_mb"]
    held = [r for r in rows if r["mode"] == "memory"]
    held_growth = held[-1]["peak_rss_mb"] - held[0]["peak_rss_mb"]
    print(
        f"peak RSS growth from {streamed[0]['samples']} to {streamed[-1]['samples']} samples: "
        f"streamed {growth:+.1f} MB, held in memory {held_growth:+.1f} MB"
    )
    write_json(
        args.json,
        {
            "benchmark": "streaming_preprocessing",
            "tile": TILE,
            "source_side": SIDE,
            "runs": rows,
            "streamed_growth_mb": round(growth, 1),
            "held_growth_mb": round(held_growth, 1),
            "machine": machine(),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
