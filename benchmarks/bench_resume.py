"""What saving the resumable training state costs a short epoch: ``training.resume.every``.

The state (model, optimiser, EMA, best weights, random states: ~260 MB for FPN-ResNet-18) is
written atomically at the end of every ``every``-th epoch. On a small dataset an epoch takes
seconds, so writing the state every epoch is a large part of it. This times, in one run:

* ``save_s``: one save of a real trainer's state (``StateFile.save(trainer.resume_state())``),
  median of ``--repeats``;
* the wall time of whole stages (``Trainer.fit``: training, validation, EMA, history) with the
  state saved every epoch and every ``--every`` epochs, interleaved, median per epoch, and their
  ratio, and from them what one save costs within training (``save_s_in_training``).

The default size is the evidence study's (``conf/evidence``): 36 training and 9 validation
images at 128², FPN-ResNet-18 from random weights, batch 8, EMA.

    .venv/bin/python benchmarks/bench_resume.py                 # ~3 min on 2 CPU cores
    .venv/bin/python benchmarks/bench_resume.py --every 5 --epochs 10 --json out.json
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    from benchmarks.bench_training import IGNORE_INDEX, SizeSetup, make_config, make_store
    from benchmarks.common import machine, write_json
except ModuleNotFoundError:  # run as a script: benchmarks/ itself is on sys.path
    from bench_training import IGNORE_INDEX, SizeSetup, make_config, make_store
    from common import machine, write_json
from efm_seg.data.synthetic import DEMO_CLASSES
from efm_seg.training.resume import StateFile
from efm_seg.training.trainer import Trainer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="image side (default 128)")
    parser.add_argument("--n-train", type=int, default=36, help="training images (default 36)")
    parser.add_argument("--n-val", type=int, default=9, help="validation images (default 9)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--encoder", default="resnet18", help="smp encoder (default resnet18)")
    parser.add_argument(
        "--every", type=int, default=10, help="the save interval compared with 1 (default 10)"
    )
    parser.add_argument(
        "--epochs", type=int, default=10, help="epochs per timed stage (default 10)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed stages per interval (default 3)"
    )
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args(argv)
    for name in ("n_train", "n_val", "batch", "every", "epochs", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    setup = SizeSetup(args.size, args.encoder, args.n_train, args.n_val, args.batch)
    config_args = argparse.Namespace(arch="FPN", device="cpu", every=2)
    with tempfile.TemporaryDirectory(prefix="bench_resume_") as tmp:
        root = Path(tmp)
        store, train_ids, val_ids = make_store(root, setup, seed=0)

        def trainer(every: int, epochs: int, name: str) -> Trainer:
            config = make_config("baseline", setup, config_args, epochs)
            config = type(config).from_params(
                config.stage,
                config.recipe.model_dump(),
                {"resume": {"enabled": True, "every": every}},
                config.method.model_dump(),
            )
            state = StateFile(root / name / "training_state.pt")
            return Trainer(
                config, store, train_ids, val_ids, DEMO_CLASSES, IGNORE_INDEX, state_file=state
            )

        warm = trainer(1, 1, "warm")  # allocator, kernels (untimed)
        warm.fit()
        saves = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            warm.state_file.save(warm.resume_state())
            saves.append(time.perf_counter() - start)
        per_epoch: dict[int, list[float]] = {1: [], args.every: []}
        for rep in range(args.repeats):
            order = [1, args.every] if rep % 2 == 0 else [args.every, 1]
            for every in order:
                stage = trainer(every, args.epochs, f"every{every}_{rep}")
                start = time.perf_counter()
                stage.fit()
                per_epoch[every].append((time.perf_counter() - start) / args.epochs)
                print(
                    f"  repetition {rep + 1}/{args.repeats}, every {every}: "
                    f"{per_epoch[every][-1]:.3f} s per epoch",
                    flush=True,
                )
        size_mb = (root / "warm" / "training_state.pt").stat().st_size / 1e6
    every_epoch = statistics.median(per_epoch[1])
    sparse = statistics.median(per_epoch[args.every])
    result = {
        "benchmark": "resume",
        "machine": machine(),
        "setup": vars(args),
        "state_mb": round(size_mb, 1),
        "save_s": round(statistics.median(saves), 3),
        "epoch_s_every_1": round(every_epoch, 3),
        f"epoch_s_every_{args.every}": round(sparse, 3),
        "ratio": round(sparse / every_epoch, 4),
        # What one save costs within training: the time saved over the saves left out.
        "save_s_in_training": round(
            (every_epoch - sparse) / (1 - math.ceil(args.epochs / args.every) / args.epochs), 3
        ),
    }
    print(
        f"state {result['state_mb']} MB, one save {result['save_s']} s; an epoch "
        f"{every_epoch:.3f} s saving every epoch, {sparse:.3f} s every {args.every}: "
        f"ratio {result['ratio']}"
    )
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
