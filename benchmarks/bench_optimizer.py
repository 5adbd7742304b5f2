"""What AdamW's step costs a training step on the CPU, per torch implementation.

The trainer builds ``torch.optim.AdamW(params, lr, weight_decay)``, which on the CPU takes
torch's default implementation: one Python-level update per parameter tensor
(``foreach=False``). torch also has a multi-tensor one (``foreach=True``) and a fused kernel
(``fused=True``). This times, in one run, on the evidence study's model and batch (FPN-ResNet-18
from random weights, batch 8 at 128², 5 classes):

* ``train_step_s``: forward, CE loss and backward, median of ``--repeats``;
* ``step_s``: ``optimizer.step()`` for each implementation, interleaved, median of
  ``--repeats``, and its ratio to the default;
* ``max_abs_diff``: after ``--steps`` identical steps from the same weights and gradients, the
  largest difference between each implementation's weights and the default's (the
  implementations round differently; a switch changes a run in its last digits).

    .venv/bin/python benchmarks/bench_optimizer.py              # ~1 min on 2 CPU cores
    .venv/bin/python benchmarks/bench_optimizer.py --size 256 --json out.json
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import segmentation_models_pytorch as smp
import torch

try:
    from benchmarks.common import machine, write_json
except ModuleNotFoundError:  # run as a script: benchmarks/ itself is on sys.path
    from common import machine, write_json

IMPLEMENTATIONS = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="image side (default 128)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--encoder", default="resnet18", help="smp encoder (default resnet18)")
    parser.add_argument("--repeats", type=int, default=10, help="timed repetitions (default 10)")
    parser.add_argument("--steps", type=int, default=5, help="steps compared for max_abs_diff")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args(argv)
    for name in ("size", "batch", "repeats", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    return args


def optimizer(model: torch.nn.Module, implementation: str) -> torch.optim.Optimizer:
    # conf/base's learning rate and weight decay (parameters_training.yml).
    return torch.optim.AdamW(
        model.parameters(), lr=5e-4, weight_decay=1e-4, **IMPLEMENTATIONS[implementation]
    )


def run(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    model = smp.FPN(args.encoder, encoder_weights=None, classes=5)
    images = torch.randn(args.batch, 3, args.size, args.size)
    masks = torch.randint(0, 5, (args.batch, args.size, args.size))

    def train_step() -> None:
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(images), masks).backward()

    train_step()  # warm-up; its gradients are the ones every optimiser step below uses
    gradients = {name: p.grad.clone() for name, p in model.named_parameters()}
    step_times: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    models = {name: copy.deepcopy(model) for name in IMPLEMENTATIONS}
    optimizers = {name: optimizer(models[name], name) for name in IMPLEMENTATIONS}
    for name, copy_ in models.items():
        for pname, p in copy_.named_parameters():
            p.grad = gradients[pname].clone()
        optimizers[name].step()  # warm-up: creates the moment buffers
    train_times = []
    for repeat in range(args.repeats):
        start = time.perf_counter()
        train_step()
        train_times.append(time.perf_counter() - start)
        order = list(IMPLEMENTATIONS)
        order = order[repeat % len(order) :] + order[: repeat % len(order)]  # rotated
        for name in order:
            start = time.perf_counter()
            optimizers[name].step()
            step_times[name].append(time.perf_counter() - start)

    # The same steps from the same weights: how far the implementations drift apart.
    fresh = {name: copy.deepcopy(model) for name in IMPLEMENTATIONS}
    fresh_opt = {name: optimizer(fresh[name], name) for name in IMPLEMENTATIONS}
    for _ in range(args.steps):
        for name, copy_ in fresh.items():
            for pname, p in copy_.named_parameters():
                p.grad = gradients[pname].clone()
            fresh_opt[name].step()
    reference = dict(fresh["default"].named_parameters())
    max_abs_diff = {
        name: max(
            float((p.detach() - reference[pname].detach()).abs().max())
            for pname, p in fresh[name].named_parameters()
        )
        for name in IMPLEMENTATIONS
    }
    step_s = {name: statistics.median(times) for name, times in step_times.items()}
    train_step_s = statistics.median(train_times)
    return {
        "machine": machine(),
        "setup": {
            "encoder": args.encoder,
            "size": args.size,
            "batch": args.batch,
            "repeats": args.repeats,
            "steps": args.steps,
            "parameters": sum(p.numel() for p in model.parameters()),
            "tensors": sum(1 for _ in model.parameters()),
        },
        "train_step_s": round(train_step_s, 4),
        "step_s": {name: round(value, 4) for name, value in step_s.items()},
        "ratio_to_default": {name: round(v / step_s["default"], 3) for name, v in step_s.items()},
        "default_share_of_step": round(step_s["default"] / (train_step_s + step_s["default"]), 3),
        "max_abs_diff": max_abs_diff,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(
        f"{result['machine']['cpu']}, {result['machine']['torch_threads']} threads | "
        f"FPN-{args.encoder} {args.size}², batch {args.batch}: forward+backward "
        f"{result['train_step_s']:.3f} s"
    )
    for name, seconds in result["step_s"].items():
        print(
            f"  AdamW {name:8s} step {seconds:.4f} s  ratio {result['ratio_to_default'][name]:.3f}"
            f"  max |Δw| after {args.steps} steps {result['max_abs_diff'][name]:.2e}"
        )
    print(f"  the default step is {result['default_share_of_step']:.1%} of a training step")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
