"""Cost of EFM-guided training: one full training step, baseline loss vs EFMLoss + online EFM.

Both variants run forward, backward and an AdamW step of the same smp model on the same batch:

* baseline: ``λ1·CE(label_smoothing=0.05) + λ2·Dice`` written directly with torch and smp (eq. 6);
* EFM: ``fingerprint_map`` of the detached softmax of the *same* forward's logits (what an
  "online" EFM source does), then ``EFMLoss`` with its defaults (boundary weight, EFM weight,
  top-k).

Repetitions are interleaved (A B, B A, ...) so that drift on a shared machine hits both alike, and
medians are reported. Peak memory: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the
process's peak resident set size (VmHWM, reset before every step through /proc/self/clear_refs).
The paper claims no added computational cost; the target here is EFM step <= 1.03 x baseline.

    python benchmarks/bench_efm_step.py --quick        # 256², CPU-friendly, ~1-2 min
    python benchmarks/bench_efm_step.py                # 512², batch 8 on CUDA / 4 on CPU
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F

try:
    from benchmarks.common import machine, write_json
except ModuleNotFoundError:  # run as a script: benchmarks/ itself is on sys.path
    from common import machine, write_json
from efm_seg.efm import DEFAULT_LABEL_SMOOTHING, EFMLoss, fingerprint_map

TARGET_RATIO = 1.03
LOSS_PATH_TARGET = 1.3  # EFMLoss (EFM given) / eq. 6 loss path, forward + backward
MIB = 1024.0**2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=None, help="image side (default 512)")
    parser.add_argument(
        "--batch", type=int, default=None, help="batch size (default 8 on CUDA, 4 on CPU)"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps per variant (default 20 CUDA, 5 CPU)"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed steps per variant (default 3 CUDA, 1 CPU)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--arch", default="FPN", help="smp architecture (FPN, PSPNet, Unet, ...)")
    parser.add_argument("--encoder", default="resnet34", help="smp encoder (no weights loaded)")
    parser.add_argument("--classes", type=int, default=7, help="number of classes (paper: 7)")
    parser.add_argument(
        "--ignore-index",
        type=int,
        default=255,
        help="label of no-data pixels; a 1/16 strip of each mask gets it (-1: no ignore pixels)",
    )
    parser.add_argument("--amp", action="store_true", help="bf16 autocast for the forward pass")
    parser.add_argument(
        "--quick", action="store_true", help="CPU-friendly: 256², batch 2, 10 steps, 2 warm-up"
    )
    parser.add_argument(
        "--loss-reps",
        type=int,
        default=20,
        help="repetitions of the loss-path-only measurement on fixed logits (0: skip)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 if the ratio exceeds {TARGET_RATIO}"
    )
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = torch.device(args.device).type == "cuda"
    quick = args.quick
    defaults = {
        "size": 256 if quick else 512,
        "batch": 2 if quick else (8 if cuda else 4),
        "steps": 10 if quick else (20 if cuda else 5),
        "warmup": 2 if quick else (3 if cuda else 1),
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("size", "batch", "steps", "classes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return args


def synthetic_batch(
    args: argparse.Namespace, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images and blocky masks (32-px cells: realistic edge density), plus no-data strip."""
    generator = torch.Generator().manual_seed(args.seed)
    cells = max(1, args.size // 32)
    coarse = torch.randint(0, args.classes, (args.batch, cells, cells), generator=generator)
    masks = F.interpolate(coarse[:, None].float(), size=(args.size, args.size), mode="nearest")
    masks = masks[:, 0].long()
    if args.ignore_index >= 0:
        masks[:, : max(1, args.size // 16)] = args.ignore_index
    images = torch.randn(args.batch, 3, args.size, args.size, generator=generator)
    return images.to(device), masks.to(device)


class PeakMemory:
    """Peak memory of one step: CUDA allocator peak, or CPU peak RSS (VmHWM) reset per step."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.can_reset_rss = False
        if not self.cuda:
            try:
                Path("/proc/self/clear_refs").write_text("5")
                self.can_reset_rss = self._status_kib("VmHWM") is not None
            except OSError:
                self.can_reset_rss = False

    @property
    def label(self) -> str:
        if self.cuda:
            return "CUDA max_memory_allocated during the step"
        if self.can_reset_rss:
            return "CPU peak RSS of the process during the step (VmHWM reset before each step)"
        return "unavailable (cannot reset /proc/self VmHWM)"

    @staticmethod
    def _status_kib(key: str) -> int | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def start(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.can_reset_rss:
            Path("/proc/self/clear_refs").write_text("5")

    def peak_mib(self) -> float | None:
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) / MIB
        if self.can_reset_rss:
            kib = self._status_kib("VmHWM")
            return None if kib is None else kib / 1024.0
        return None


@dataclass
class Record:
    seconds: list[float] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True

    model = smp.create_model(
        args.arch, encoder_name=args.encoder, encoder_weights=None, classes=args.classes
    ).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=1e-4)
    images, masks = synthetic_batch(args, device)
    ignore_index = args.ignore_index if args.ignore_index >= 0 else None

    dice = smp.losses.DiceLoss(mode="multiclass", from_logits=True, ignore_index=ignore_index)
    efm_loss = EFMLoss(args.classes, ignore_index=ignore_index)

    def forward() -> torch.Tensor:
        autocast = (
            torch.autocast(device_type=device.type, dtype=torch.bfloat16)
            if args.amp
            else contextlib.nullcontext()
        )
        with autocast:
            return model(images)

    def baseline_step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        logits = forward().float()
        ce = F.cross_entropy(
            logits,
            masks,
            label_smoothing=DEFAULT_LABEL_SMOOTHING,
            ignore_index=-100 if ignore_index is None else ignore_index,
        )
        loss = ce + dice(logits, masks)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def efm_step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        logits = forward()
        with torch.no_grad():
            efm = fingerprint_map(
                logits.detach().float().softmax(dim=1), masks, ignore_index=ignore_index
            )
        loss = efm_loss(logits, masks, efm)
        loss.backward()
        optimizer.step()
        return loss.detach()

    memory = PeakMemory(device)
    records = {"baseline": Record(), "efm": Record()}
    steps: dict[str, Callable[[], torch.Tensor]] = {"baseline": baseline_step, "efm": efm_step}

    def timed(name: str, keep: bool) -> None:
        if cuda:
            torch.cuda.synchronize(device)
        memory.start()
        start = time.perf_counter()
        loss = steps[name]()
        if cuda:
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        if not torch.isfinite(loss):
            raise RuntimeError(f"{name} step produced a non-finite loss")
        if keep:
            records[name].seconds.append(elapsed)
            peak = memory.peak_mib()
            if peak is not None:
                records[name].peaks.append(peak)

    threads = "" if cuda else f" ({torch.get_num_threads()} threads)"
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    print(
        f"device: {name}{threads} | {args.arch}-{args.encoder} | {args.size}x{args.size} | "
        f"batch {args.batch} | classes {args.classes} | ignore_index {ignore_index} | "
        f"amp {'bf16' if args.amp else 'off'} | {args.steps} timed + {args.warmup} warm-up "
        f"steps per variant, interleaved"
    )
    sys.stdout.flush()
    for rep in range(args.warmup + args.steps):
        order = ("baseline", "efm") if rep % 2 == 0 else ("efm", "baseline")
        for variant in order:
            timed(variant, keep=rep >= args.warmup)

    base = records["baseline"].seconds
    efm = records["efm"].seconds
    base_median = statistics.median(base)
    efm_median = statistics.median(efm)
    ratio = efm_median / base_median
    paired = statistics.median(e / b for e, b in zip(efm, base, strict=True))

    def line(label: str, values: list[float]) -> str:
        return (
            f"{label:<40s}: median {statistics.median(values) * 1e3:9.1f} ms "
            f"(min {min(values) * 1e3:.1f}, max {max(values) * 1e3:.1f})"
        )

    print(line("baseline step (CE + Dice)", base))
    print(line("EFM step (fingerprint_map + EFMLoss)", efm))
    print(f"{'EFM overhead per step':<40s}: {(efm_median - base_median) * 1e3:+.1f} ms")
    verdict = "PASS" if ratio <= TARGET_RATIO else "ABOVE TARGET"
    print(
        f"{'ratio EFM / baseline':<40s}: {ratio:.3f} (median of paired ratios {paired:.3f}); "
        f"target <= {TARGET_RATIO}: {verdict}"
    )
    result = {
        "benchmark": "efm_step",
        "size": args.size,
        "batch": args.batch,
        "model": f"{args.arch}-{args.encoder}",
        "device": name,
        "baseline_step_ms": round(base_median * 1e3, 2),
        "efm_step_ms": round(efm_median * 1e3, 2),
        "ratio": round(ratio, 4),
        "paired_ratio": round(paired, 4),
        "target": TARGET_RATIO,
        "machine": machine(),
    }
    if records["baseline"].peaks and records["efm"].peaks:
        base_peak = max(records["baseline"].peaks)
        efm_peak = max(records["efm"].peaks)
        result |= {"peak_mib_baseline": round(base_peak), "peak_mib_efm": round(efm_peak)}
        print(
            f"{'peak memory':<40s}: baseline {base_peak:.0f} MiB, EFM {efm_peak:.0f} MiB "
            f"({efm_peak - base_peak:+.0f} MiB, x{efm_peak / base_peak:.3f}) [{memory.label}]"
        )
    else:
        print(f"{'peak memory':<40s}: {memory.label}")
    if args.loss_reps > 0:
        result["loss_path"] = loss_path_only(
            args, model, images, masks, dice, efm_loss, base_median
        )
    write_json(args.json, result)
    return 1 if args.check and ratio > TARGET_RATIO else 0


def loss_path_only(
    args: argparse.Namespace,
    model: torch.nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    dice: torch.nn.Module,
    efm_loss: EFMLoss,
    base_step: float,
) -> dict[str, float]:
    """The part that differs between the variants, timed alone on fixed logits (less noise).

    Forward and backward to the logits, interleaved, each against the eq. 6 reference
    (``F.cross_entropy`` + smp's ``DiceLoss``, as a plain training loop writes it):

    * ``loss``: ``EFMLoss`` with a given EFM — the per-step cost of the ``per_sample`` and
      ``validation_prior`` sources, whose maps come from the store (the target's loss path);
    * ``online``: softmax + ``fingerprint_map`` + ``EFMLoss`` — the ``online`` source, which
      makes the maps from every step's own logits;
    * ``project_baseline``: the project's own eq. 6 criterion (``EFMLoss`` with γ = 0 and
      top-k 1.0, no EFM), which the baseline stages train with.

    The median paired extra over the reference, added to the median baseline step, gives the
    step ratio the full step would have without measurement noise.
    """
    device = images.device
    cuda = device.type == "cuda"
    ignore_index = efm_loss.ignore_index
    with torch.no_grad():
        fixed = model(images).float()
        stored = fingerprint_map(fixed.softmax(dim=1), masks, ignore_index=ignore_index)
    project_criterion = EFMLoss(
        efm_loss.num_classes, ignore_index=ignore_index, gamma=0.0, topk_ratio=1.0
    )

    def reference() -> None:
        logits = fixed.detach().requires_grad_(True)
        ce = F.cross_entropy(
            logits,
            masks,
            label_smoothing=DEFAULT_LABEL_SMOOTHING,
            ignore_index=-100 if ignore_index is None else ignore_index,
        )
        (ce + dice(logits, masks)).backward()

    def loss() -> None:
        logits = fixed.detach().requires_grad_(True)
        efm_loss(logits, masks, stored).backward()

    def online() -> None:
        logits = fixed.detach().requires_grad_(True)
        with torch.no_grad():
            efm_map = fingerprint_map(
                logits.detach().softmax(dim=1), masks, ignore_index=ignore_index
            )
        efm_loss(logits, masks, efm_map).backward()

    def project_baseline() -> None:
        logits = fixed.detach().requires_grad_(True)
        project_criterion(logits, masks).backward()

    functions = {
        "reference": reference,
        "loss": loss,
        "online": online,
        "project_baseline": project_baseline,
    }
    times: dict[str, list[float]] = {name: [] for name in functions}
    for rep in range(args.loss_reps + 2):
        order = list(functions) if rep % 2 == 0 else list(functions)[::-1]
        for variant in order:
            if cuda:
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            functions[variant]()
            if cuda:
                torch.cuda.synchronize(device)
            if rep >= 2:
                times[variant].append(time.perf_counter() - start)
    base = statistics.median(times["reference"])
    result: dict[str, float] = {
        "baseline_ms": round(base * 1e3, 2),
        "target": LOSS_PATH_TARGET,
    }
    for variant in ("loss", "online", "project_baseline"):
        extra = statistics.median(
            v - b for v, b in zip(times[variant], times["reference"], strict=True)
        )
        median = statistics.median(times[variant])
        print(
            f"{variant + ' path (fixed logits)':<40s}: {median * 1e3:.1f} ms vs eq. 6 "
            f"{base * 1e3:.1f} ms, ratio {(base + extra) / base:.3f}, median paired extra "
            f"{extra * 1e3:+.1f} ms, implied step ratio {(base_step + extra) / base_step:.3f}"
        )
        prefix = "" if variant == "loss" else f"{variant}_"
        result |= {
            f"{prefix}ms": round(median * 1e3, 2),
            f"{prefix}extra_ms": round(extra * 1e3, 2),
            f"{prefix}ratio": round((base + extra) / base, 4),
            f"{prefix}implied_step_ratio": round((base_step + extra) / base_step, 4),
        }
    return result


if __name__ == "__main__":
    raise SystemExit(main())
