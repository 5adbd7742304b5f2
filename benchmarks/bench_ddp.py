"""Data-parallel training: epoch time on 1 process against N processes (DDP), in one run.

The same stage (conf/base's recipe: FPN-resnet18, augmentations, EMA, clipping, AdamW, eq. 6
loss; the EFM off) trains on the same temporary store of synthetic scenes, with the same global
batch, first on one process, then on ``--nproc`` processes launched by torch's elastic launcher
(gloo on the CPU, NCCL on GPUs). What is reported, per setting:

* the median epoch time after the first epoch (the history's ``seconds``: training, the
  validation pass and the per-epoch bookkeeping);
* the whole call, including the launch (spawning the workers, importing torch in each, joining
  the process group) and the first epoch;
* the speed-up ``epoch(1) / epoch(N)``.

On a CPU machine the processes share the cores: one process already uses every core (intra-op
threads), so N processes get ``cores / N`` threads each and the speed-up stays near 1 (or below,
for the gradient all-reduce and the per-process overheads). DDP pays off with one GPU per process;
the numbers here say what it costs where there are none.

    .venv/bin/python benchmarks/bench_ddp.py                     # 128², 2 processes, ~2 min
    .venv/bin/python benchmarks/bench_ddp.py --size 256 --epochs 4 --json out.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

try:
    from benchmarks.common import machine, write_json
except ModuleNotFoundError:  # run as a script: benchmarks/ itself is on sys.path
    from common import machine, write_json
from efm_seg.data.samples import EncodedSample, write_store
from efm_seg.data.synthetic import DEMO_CLASSES, generate_scene
from efm_seg.training.config import TrainConfig
from efm_seg.training.trainer import StageJob, train

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "base"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="sample side (default 128)")
    parser.add_argument("--n-train", type=int, default=32, help="training samples (32)")
    parser.add_argument("--n-val", type=int, default=8, help="validation samples (8)")
    parser.add_argument("--batch", type=int, default=8, help="global batch (8)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per setting (3)")
    parser.add_argument("--nproc", type=int, default=2, help="processes of the DDP run (2)")
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL)")
    parser.add_argument("--json", default=None, help="write the result here")
    return parser.parse_args(argv)


def make_config(args: argparse.Namespace, nproc: int) -> TrainConfig:
    training = yaml.safe_load((CONF / "parameters_training.yml").read_text())["training"]
    efm_method = yaml.safe_load((CONF / "parameters_efm.yml").read_text())["efm_method"]
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch,
        "device": args.device,
        "model": {"encoder": args.encoder},
        "efm": {"enabled": False},
        "resume": {"enabled": False},
        "distributed": {"nproc_per_node": nproc},
    }
    return TrainConfig.from_params("bench", training, overrides, efm_method)


def run(args: argparse.Namespace, store, train_ids, val_ids, nproc: int) -> dict:
    job = StageJob(
        make_config(args, nproc), store, train_ids, val_ids, list(DEMO_CLASSES), ignore_index=255
    )
    started = time.perf_counter()
    result = train(job)
    wall = time.perf_counter() - started
    epochs = [row["seconds"] for row in result.history]
    steady = statistics.median(epochs[1:]) if len(epochs) > 1 else epochs[0]
    return {
        "processes": nproc,
        "threads_per_process": max(1, torch.get_num_threads() // nproc),
        "epoch_s": round(steady, 3),
        "epochs_s": [round(s, 3) for s in epochs],
        "first_epoch_s": round(epochs[0], 3),
        "wall_s": round(wall, 2),
        "overhead_s": round(wall - sum(epochs), 2),
        "steps_per_epoch": result.history[0]["steps"],
        "first_epoch_train_loss": round(result.history[0]["train_loss"], 4),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.batch % args.nproc:
        raise SystemExit(f"--batch {args.batch} must be a multiple of --nproc {args.nproc}")
    with tempfile.TemporaryDirectory(prefix="bench_ddp_") as tmp:
        samples = {}
        for i in range(args.n_train + args.n_val):
            image, labels = generate_scene(i, args.size, args.size)
            samples[f"s{i:04d}"] = EncodedSample.from_arrays(image, labels)
        store = write_store(Path(tmp) / "encoded", samples)
        ids = list(store.ids)
        train_ids, val_ids = ids[: args.n_train], ids[args.n_train :]
        runs = [run(args, store, train_ids, val_ids, n) for n in (1, args.nproc)]
    one, many = runs
    result = {
        "benchmark": "ddp",
        "machine": machine(),
        "size": args.size,
        "model": f"FPN-{args.encoder}",
        "device": args.device,
        "global_batch": args.batch,
        "train_samples": args.n_train,
        "val_samples": args.n_val,
        "runs": runs,
        "speedup": round(one["epoch_s"] / many["epoch_s"], 3),
    }
    print(
        f"DDP {args.size}² FPN-{args.encoder}, global batch {args.batch}, {args.n_train} train / "
        f"{args.n_val} val, {args.device}:"
    )
    for r in runs:
        print(
            f"  {r['processes']} process(es) × {r['threads_per_process']} thread(s): epoch "
            f"{r['epoch_s']:.2f} s (first {r['first_epoch_s']:.2f} s), {r['steps_per_epoch']} "
            f"steps/epoch, whole call {r['wall_s']:.1f} s (launch and set-up {r['overhead_s']:.1f} "
            f"s), first-epoch loss {r['first_epoch_train_loss']}"
        )
    print(f"  speed-up of {args.nproc} processes: {result['speedup']:.2f}×")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
