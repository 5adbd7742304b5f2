"""Data-loader throughput against what training consumes, at one size.

The loader is the training one (``SegmentationSamples`` from the PNG sample store with the
conf/base augmentations: flips, 90° rotations, brightness/contrast, noise), iterated alone for
``num_workers`` 0 and 2. Training consumption is the images/s of full training steps of
FPN-ResNet18 (forward, eq. 6 loss, backward, AdamW) on a batch already in memory. The loader
keeps up when its images/s exceed the training's (ratio ≥ 1); with ``num_workers: 0`` the two
add up instead of overlapping.

    .venv/bin/python benchmarks/bench_loader.py [--size 256] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader

try:
    from benchmarks.common import machine, write_json
except ModuleNotFoundError:  # run as a script: benchmarks/ itself is on sys.path
    from common import machine, write_json
from efm_seg.data.samples import EncodedSample, write_store
from efm_seg.data.synthetic import DEMO_CLASSES, generate_scene
from efm_seg.efm import EFMLoss
from efm_seg.loading import SegmentationSamples, build_transforms
from efm_seg.models import ModelSpec, build_model

ROOT = Path(__file__).resolve().parents[1]


def make_store(root: Path, size: int, count: int):
    samples = {
        f"scene{i:04d}": EncodedSample.from_arrays(*generate_scene(i, size, size))
        for i in range(count)
    }
    return write_store(root / "store", samples)


def loader_rate(store, ids, augment, batch: int, workers: int, batches: int) -> float:
    dataset = SegmentationSamples(store, ids, build_transforms(augment, seed=0))
    loader = DataLoader(
        dataset, batch_size=batch, shuffle=True, num_workers=workers,
        persistent_workers=workers > 0,
    )  # fmt: skip
    seen, start = 0, None
    while seen < batches * batch:
        for number, item in enumerate(loader):
            if number == 0 and start is None:  # worker start-up is not throughput
                start = time.perf_counter()
                continue
            seen += item["image"].shape[0]
            if seen >= batches * batch:
                break
    return seen / (time.perf_counter() - start)


def training_rate(size: int, batch: int, steps: int, encoder: str) -> float:
    model = build_model(ModelSpec("FPN", encoder, len(DEMO_CLASSES)), None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    criterion = EFMLoss(len(DEMO_CLASSES), ignore_index=255, gamma=0.0, topk_ratio=1.0)
    images = torch.randn(batch, 3, size, size)
    masks = torch.randint(0, len(DEMO_CLASSES), (batch, size, size))
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        criterion(model(images), masks).backward()
        optimizer.step()
        if step:
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--quick", action="store_true", help="fewer batches and steps")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args(argv)
    batches, steps = (6, 3) if args.quick else (20, 6)
    augment = yaml.safe_load((ROOT / "conf/base/parameters_training.yml").read_text())["training"][
        "augment"
    ]
    result = {"benchmark": "loader", "size": args.size, "batch": args.batch, "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        store = make_store(Path(tmp), args.size, 4 * args.batch)
        ids = list(store.ids)
        for workers in (0, 2):
            rate = loader_rate(store, ids, augment, args.batch, workers, batches)
            result[f"loader_images_per_s_workers{workers}"] = round(rate, 1)
    train = training_rate(args.size, args.batch, steps, args.encoder)
    result["training_images_per_s"] = round(train, 2)
    for workers in (0, 2):
        result[f"ratio_workers{workers}"] = round(
            result[f"loader_images_per_s_workers{workers}"] / train, 2
        )
    print(
        f"{args.size}², batch {args.batch}: loader {result['loader_images_per_s_workers0']} "
        f"images/s (0 workers), {result['loader_images_per_s_workers2']} (2 workers); training "
        f"FPN-{args.encoder} consumes {train:.2f} images/s → loader / training "
        f"{result['ratio_workers0']}× and {result['ratio_workers2']}×"
    )
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
