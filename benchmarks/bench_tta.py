"""TTA (eq. 13): the four flips as one batch of 4B against four separate forward passes.

Both give the same probabilities (checked); the batched form is what the evaluation uses.

    .venv/bin/python benchmarks/bench_tta.py [--size 512] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

try:
    from benchmarks.common import machine, write_json
except ModuleNotFoundError:  # run as a script: benchmarks/ itself is on sys.path
    from common import machine, write_json
from efm_seg.evaluation.tta import FLIPS, predict_probs
from efm_seg.models import ModelSpec, build_model


def separate_passes(model, images: torch.Tensor) -> torch.Tensor:
    total = None
    for dims in FLIPS:
        flipped = images.flip(dims) if dims else images
        probs = model(flipped).float().softmax(dim=1)
        probs = probs.flip(dims) if dims else probs
        total = probs if total is None else total + probs
    return total / len(FLIPS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--encoder", default="resnet34")
    parser.add_argument("--quick", action="store_true", help="256², fewer repetitions")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args(argv)
    size, reps = (256, 3) if args.quick else (args.size, 5)
    torch.manual_seed(0)
    model = build_model(ModelSpec("FPN", args.encoder, 7), None).eval()
    images = torch.randn(args.batch, 3, size, size)
    times: dict[str, list[float]] = {"batched": [], "separate": []}
    with torch.inference_mode():
        batched = predict_probs(model, images, tta=True)
        separate = separate_passes(model, images)
        difference = float((batched - separate).abs().max())
        for rep in range(reps):
            order = ("batched", "separate") if rep % 2 == 0 else ("separate", "batched")
            for name in order:
                start = time.perf_counter()
                if name == "batched":
                    predict_probs(model, images, tta=True)
                else:
                    separate_passes(model, images)
                times[name].append(time.perf_counter() - start)
    batched_s = statistics.median(times["batched"])
    separate_s = statistics.median(times["separate"])
    result = {
        "benchmark": "tta",
        "size": size,
        "batch": args.batch,
        "model": f"FPN-{args.encoder}",
        "batched_s": round(batched_s, 4),
        "separate_s": round(separate_s, 4),
        "speedup": round(separate_s / batched_s, 3),
        "max_abs_difference": difference,
        "machine": machine(),
    }
    print(
        f"TTA at {size}², batch {args.batch}: one 4B batch {batched_s * 1e3:.0f} ms, four passes "
        f"{separate_s * 1e3:.0f} ms → {result['speedup']}× (max |Δp| {difference:.1e})"
    )
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
