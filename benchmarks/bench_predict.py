"""Predict on large scenes: peak memory and throughput against the scene's side.

Generates 4-band GeoTIFFs (written in windows, so that generating a 20,000² scene needs little
memory; a nodata strip on the left) and predicts each with a random-weights 4-band, 5-class
model through the predict pipeline's code (``predict_scenes`` and the predictions dataset), in a
fresh process per scene so that its peak RSS is its own. Target: peak RSS flat beyond 5k (no
larger scene over 10 % above the 5k scene's peak) and under 3 GB at 20k² on the 2-core machine.

With ``--confidence``, each scene is also predicted with ``predict.confidence`` (the
temperature-scaled confidence map written beside the ids), in its own process, and the time and
peak ratios of that run to the plain one are reported.

Throughput (scene MPix/s) is reported against the model's own forward-pass rate (crop MPix/s,
measured in the same run): with ``overlap`` the crops cover each pixel ``(window / stride)²``
times, so the ideal ratio is ``(stride / window)²`` (0.77 for 512 / 64).

    .venv/bin/python -m benchmarks.bench_predict --sizes 2000 5000 10000 20000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["building", "land", "road", "vegetation", "water"]
DATASET = {
    "mode": "ids",
    "classes": {i + 1: name for i, name in enumerate(CLASSES)},
    "ignore_ids": [0],
    "bands": [4, 1, 2, 3],
}


def write_scene(path: Path, side: int) -> None:
    """A ``side²`` 4-band GeoTIFF (tiled, nodata 0), written a band of rows at a time."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(side)
    profile = {
        "driver": "GTiff", "height": side, "width": side, "count": 4, "dtype": "uint8",
        "crs": "EPSG:32640", "transform": from_origin(55.0, 25.0, 0.5, 0.5), "nodata": 0,
        "tiled": True, "blockxsize": 512, "blockysize": 512, "BIGTIFF": "IF_SAFER",
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as target:
        for first in range(0, side, 512):
            rows = min(512, side - first)
            band = rng.integers(1, 255, (4, rows, side), dtype=np.uint8)
            band[:, :, : side // 10] = 0  # nodata: the left tenth
            target.write(band, window=Window(0, first, side, rows))


def make_checkpoint(path: Path) -> None:
    import torch

    from efm_seg.models import ModelSpec, build_model, make_checkpoint

    torch.manual_seed(0)
    spec = ModelSpec("FPN", "mobilenet_v2", num_classes=len(CLASSES), in_channels=4)
    checkpoint = make_checkpoint(
        build_model(spec).eval(), spec, classes=CLASSES, stage="finetune",
        lineage={"stage": "finetune", "run_id": "bench"}, bands=DATASET["bands"],
        normalization={"mean": [0.5] * 4, "std": [0.25] * 4, "source": "dataset"},
    )  # fmt: skip
    torch.save(checkpoint, path)


def child_predict(scene: Path, checkpoint: Path, out: Path, settings: dict) -> None:
    """In its own process: predict ``scene`` into ``out`` (what the pipeline does)."""
    import torch

    from efm_seg.data.scenes import SceneFile
    from efm_seg.framework.datasets.scene_folders import PredictionFolderDataset
    from efm_seg.inference.predict import predict_scenes

    loaded = torch.load(checkpoint, weights_only=True)
    started = time.perf_counter()
    predictions = predict_scenes({scene.stem: SceneFile(scene)}, loaded, DATASET, settings)
    PredictionFolderDataset(str(out)).save(predictions)
    print(json.dumps({"seconds": time.perf_counter() - started}))


def child_forward(checkpoint: Path, settings: dict) -> None:
    """In its own process: the model's forward-pass rate on batches of crops (crop MPix/s)."""
    import torch

    from efm_seg.evaluation.tta import predict_probs
    from efm_seg.models import model_from_checkpoint

    model = model_from_checkpoint(torch.load(checkpoint, weights_only=True)).eval()
    window, batch = settings["window"], settings["batch_size"]
    crops = torch.randn(batch, 4, window, window)
    with torch.inference_mode():
        predict_probs(model, crops, tta=False)  # warm-up
        started, repeats = time.perf_counter(), 5
        for _ in range(repeats):
            predict_probs(model, crops, tta=False)
    seconds = time.perf_counter() - started
    print(json.dumps({"crop_mpix_per_s": repeats * batch * window * window / seconds / 1e6}))


def run_child(args: list[str]) -> tuple[dict, float]:
    """The child's last output line (JSON) and its peak RSS (MiB). The parent imports nothing
    heavy, since a child's peak RSS on Linux starts from its parent's (the fork before exec)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_predict", *args],
            cwd=ROOT, stdout=out, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if child.returncode:
            raise SystemExit(f"child {args} failed:\n{err.read()[-3000:]}")
        lines = out.read().strip().splitlines()
    return (json.loads(lines[-1]) if lines else {}), usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000])
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--confidence", action="store_true", help="also time predict.confidence")
    parser.add_argument("--json")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = {
        "stage": "finetune", "window": args.window, "overlap": args.overlap,
        "batch_size": args.batch, "device": "cpu", "preview_size": 2048,
    }  # fmt: skip
    if args.child:
        kind, *paths = args.child
        if kind == "predict":
            confidence = {"confidence": paths[3:] == ["confidence"]}
            child_predict(Path(paths[0]), Path(paths[1]), Path(paths[2]), settings | confidence)
        elif kind == "forward":
            child_forward(Path(paths[0]), settings)
        elif kind == "checkpoint":
            make_checkpoint(Path(paths[0]))
        elif kind == "scene":
            write_scene(Path(paths[0]), int(paths[1]))
        return
    common = [f"--window={args.window}", f"--overlap={args.overlap}", f"--batch={args.batch}"]
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        folder = Path(tmp)
        checkpoint = folder / "checkpoint.pt"
        run_child([*common, "--child", "checkpoint", str(checkpoint)])
        forward, _ = run_child([*common, "--child", "forward", str(checkpoint)])
        for side in args.sizes:
            scene = folder / f"scene_{side}.tif"
            run_child([*common, "--child", "scene", str(scene), str(side)])
            result, peak = run_child(
                [
                    *common,
                    "--child",
                    "predict",
                    str(scene),
                    str(checkpoint),
                    str(folder / f"out{side}"),
                ]
            )
            mpix = side * side / 1e6
            run = {
                "side": side,
                "seconds": round(result["seconds"], 1),
                "scene_mpix_per_s": round(mpix / result["seconds"], 3),
                "peak_rss_mib": round(peak, 1),
            }
            run["ratio_to_forward"] = round(run["scene_mpix_per_s"] / forward["crop_mpix_per_s"], 3)
            if args.confidence:
                with_map, with_peak = run_child(
                    [*common, "--child", "predict", str(scene), str(checkpoint),
                     str(folder / f"conf{side}"), "confidence"]
                )  # fmt: skip
                run["confidence_seconds"] = round(with_map["seconds"], 1)
                run["confidence_peak_rss_mib"] = round(with_peak, 1)
                run["confidence_time_ratio"] = round(with_map["seconds"] / result["seconds"], 3)
                run["confidence_peak_ratio"] = round(with_peak / peak, 3)
                print(
                    f"        with the confidence map: {run['confidence_time_ratio']:.3f}× the "
                    f"time, {run['confidence_peak_ratio']:.3f}× the peak",
                    flush=True,
                )
            runs.append(run)
            print(
                f"{side:>6}²  {run['seconds']:8.1f} s  {run['scene_mpix_per_s']:6.3f} MPix/s "
                f"({run['ratio_to_forward']:.2f}× the forward rate)  peak {peak:7.1f} MiB",
                flush=True,
            )
            scene.unlink()
    stride = args.window - args.overlap
    result = {
        "model": "FPN-mobilenet_v2, 4 bands, 5 classes (random weights)",
        "window": args.window,
        "overlap": args.overlap,
        "batch": args.batch,
        "forward_crop_mpix_per_s": round(forward["crop_mpix_per_s"], 3),
        "ideal_ratio": round((stride / args.window) ** 2, 3),
        "runs": runs,
    }
    peaks = {run["side"]: run["peak_rss_mib"] for run in runs}
    if 5000 in peaks and len([side for side in peaks if side >= 5000]) > 1:
        # Flat: no scene of 5k or more peaks over 10 % above the 5k scene's peak.
        growth = max(peak for side, peak in peaks.items() if side >= 5000) / peaks[5000]
        result["peak_growth_beyond_5k"] = round(growth, 3)
        print(f"peak RSS beyond 5k: {growth:.3f}× the 5k scene's (flat: ≤ 1.10)")
    print(f"model forward: {result['forward_crop_mpix_per_s']} crop MPix/s; ideal ratio "
          f"{result['ideal_ratio']}")  # fmt: skip
    if args.json:
        from benchmarks.common import machine

        Path(args.json).write_text(json.dumps({"machine": machine(), **result}, indent=2))


if __name__ == "__main__":
    main()
