"""Training throughput: the baseline stage vs the EFM stage for each EFM source, in one run.

Every variant is a real :class:`~efm_seg.training.trainer.Trainer` built from conf/base (the
``training`` and ``efm_method`` blocks: augmentations, EMA, gradient clipping, AdamW, the loss)
on the same temporary store of synthetic scenes (``generate_scene`` at exactly size×size):

* ``baseline``: EFM disabled, the eq. 6 loss (CE with label smoothing + Dice);
* ``efm/per_sample``: EFMLoss with the per-sample EFM store, refreshed by a no-grad pass over the
  training set every k epochs;
* ``efm/per_sample_step``: the same store filled from each training step's own forward pass
  (``efm.update: step``): no refresh pass;
* ``efm/online``: EFMLoss with the EFM of the detached softmax of each step's own forward;
* ``efm/validation_prior``: EFMLoss with the mean validation EFM, refreshed by a no-grad pass over
  the validation set every k epochs.

The EFM stages run with ``efm.start_epoch=1, every=k``, so the EFM is active in every timed epoch.
What is timed, per variant and repetition: one training epoch (``Trainer._train_epoch``: data
loading and augmentation in the training process, forward, loss, backward, clipping, AdamW, EMA)
and, for the refreshed sources, the refresh pass (``Trainer._refresh_efm``). The amortised epoch is
``train epoch + refresh / k`` (the refresh runs once every k epochs). Validation and the EFM
snapshots are the same for every variant and are left out of the ratio (validation is shown for
information). One untimed warm-up epoch (and refresh) per variant comes first; the variants are
then interleaved within each repetition, in a rotated order, and medians are reported.

Targets (issues): amortised epoch / baseline epoch <= 1.03 for online, <= 1.05 for
per_sample_step, <= 1.20 for per_sample at k=2 (validation_prior: no target, for information);
per-sample EFM store <= 0.3 MB per 512² image.

    .venv/bin/python benchmarks/bench_training.py --quick      # 128² only, ~1 min on 2 CPU cores
    .venv/bin/python benchmarks/bench_training.py              # 128² and 512², ~7 min on 2 cores
    .venv/bin/python benchmarks/bench_training.py --sizes 512 --n-train 8 --repeats 3
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

try:
    from benchmarks.common import machine, write_json
except ModuleNotFoundError:  # run as a script: benchmarks/ itself is on sys.path
    from common import machine, write_json
from efm_seg.basics.devices import resolve_device
from efm_seg.data.parallel import available_cpus
from efm_seg.data.samples import EncodedSample, SampleStore, write_store
from efm_seg.data.synthetic import DEMO_CLASSES, generate_scene
from efm_seg.loading import EFMStore
from efm_seg.training.config import TrainConfig
from efm_seg.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "base"
IGNORE_INDEX = 255
MB = 1e6
MIB = 1024.0**2

VARIANTS: tuple[str, ...] = (
    "baseline",
    "per_sample",
    "per_sample_step",
    "online",
    "validation_prior",
)
REFRESHED = ("per_sample", "validation_prior")
TARGETS: dict[str, float | None] = {
    "baseline": None,
    "per_sample": 1.20,
    "per_sample_step": 1.05,
    "online": 1.03,
    "validation_prior": None,
}
STORE_TARGET_MB = 0.3


@dataclass(frozen=True)
class SizeSetup:
    """What one image size runs: model, sample counts, batch size."""

    size: int
    encoder: str
    n_train: int
    n_val: int
    batch: int


# Demo size: the demo's FPN-resnet18; the paper's 512²: FPN-resnet34 (conf/paper).
SMALL_DEFAULTS = {"encoder": "resnet18", "n_train": 16, "n_val": 4, "batch": 8}
# 512²: 16 images in 4 steps of 4 (with 2 steps an epoch, one stalled step moves a ratio by 10%).
LARGE_DEFAULTS = {"encoder": "resnet34", "n_train": 16, "n_val": 2, "batch": 4}


@dataclass
class Times:
    train: list[float] = field(default_factory=list)
    refresh: list[float] = field(default_factory=list)
    validate: list[float] = field(default_factory=list)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=None, help="image sides (default 128 512)"
    )
    parser.add_argument(
        "--n-train",
        type=int,
        default=None,
        help="training scenes per size (default 16 at <=256², 8 above)",
    )
    parser.add_argument(
        "--n-val", type=int, default=None, help="validation scenes per size (default 4 / 2)"
    )
    parser.add_argument(
        "--batch", type=int, default=None, help="batch size (default 8 at <=256², 4 above)"
    )
    parser.add_argument(
        "--encoder", default=None, help="smp encoder for every size (default resnet18 / resnet34)"
    )
    parser.add_argument("--arch", default="FPN", help="smp architecture (default FPN)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed epochs per variant (default 5)"
    )
    parser.add_argument(
        "-k", "--every", type=int, default=2, help="EFM refresh period in epochs (default 2)"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, auto")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: the usable CPU cores)"
    )
    parser.add_argument(
        "--no-validate", action="store_true", help="do not time the (shared) validation pass"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="128² only (16 train / 4 val scenes, batch 8): ~1 min on 2 cores",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic scenes")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = [128] if args.quick else [128, 512]
    if args.repeats is None:
        args.repeats = 5
    for name in ("repeats", "every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("n_train", "n_val", "batch", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if any(size < 32 for size in args.sizes):
        parser.error("--sizes must be >= 32 (and fit the model's output stride, 32 for FPN)")
    return args


def size_setups(args: argparse.Namespace) -> list[SizeSetup]:
    setups = []
    for size in args.sizes:
        if args.quick:
            defaults = SMALL_DEFAULTS
        else:
            defaults = SMALL_DEFAULTS if size <= 256 else LARGE_DEFAULTS
        setups.append(
            SizeSetup(
                size=size,
                encoder=args.encoder or defaults["encoder"],
                n_train=args.n_train or defaults["n_train"],
                n_val=args.n_val or defaults["n_val"],
                batch=args.batch or defaults["batch"],
            )
        )
    return setups


def make_store(root: Path, setup: SizeSetup, seed: int) -> tuple[SampleStore, list[str], list[str]]:
    """``n_train + n_val`` synthetic scenes at exactly size×size, written as a sample store."""
    samples = {}
    for i in range(setup.n_train + setup.n_val):
        image, labels = generate_scene(seed * 100_003 + i, setup.size, setup.size)
        samples[f"scene{i:04d}"] = EncodedSample.from_arrays(image, labels)
    store = write_store(root / f"encoded_{setup.size}", samples)
    ids = list(store.ids)
    return store, ids[: setup.n_train], ids[setup.n_train :]


def make_config(
    variant: str, setup: SizeSetup, args: argparse.Namespace, epochs: int
) -> TrainConfig:
    training = yaml.safe_load((CONF / "parameters_training.yml").read_text())["training"]
    efm_method = yaml.safe_load((CONF / "parameters_efm.yml").read_text())["efm_method"]
    if variant == "baseline":
        efm = {"enabled": False}
    else:
        efm = {
            "enabled": True,
            "source": "per_sample" if variant == "per_sample_step" else variant,
            "update": "step" if variant == "per_sample_step" else "refresh",
            "start_epoch": 1,
            "every": args.every,
        }
    overrides = {
        "model": {"arch": args.arch, "encoder": setup.encoder, "encoder_weights": None},
        "epochs": epochs,
        "batch_size": setup.batch,
        "device": args.device,
        "num_workers": 0,
        "ema": {"enabled": True},
        "efm": efm,
        "snapshots": {"count": 0},  # the same for every variant; not what is compared here
    }
    return TrainConfig.from_params(f"bench_{variant}", training, overrides, efm_method)


def images_per_epoch(trainer: Trainer) -> int:
    loader = trainer.train_loader
    if loader.drop_last:
        return len(loader) * loader.batch_size
    return len(loader.dataset)


def run_size(
    setup: SizeSetup, args: argparse.Namespace, tmp: Path
) -> tuple[dict[str, Times], int, int]:
    """Time every variant at one size; returns the times, images per epoch and EFM-store bytes."""
    store, train_ids, val_ids = make_store(tmp, setup, args.seed)
    epochs = 1 + args.repeats
    trainers = {
        variant: Trainer(
            make_config(variant, setup, args, epochs),
            store,
            train_ids,
            val_ids,
            DEMO_CLASSES,
            IGNORE_INDEX,
        )
        for variant in VARIANTS
    }
    device = trainers["baseline"].device
    cuda = device.type == "cuda"

    def timed(func: Callable[[], object]) -> tuple[float, object]:
        gc.collect()
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        out = func()
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter() - start, out

    def one_epoch(variant: str, epoch: int, times: Times | None) -> None:
        trainer = trainers[variant]
        if variant in REFRESHED:  # what fit() does at a refresh epoch, before training
            seconds, _ = timed(trainer._refresh_efm)
            if times is not None:
                times.refresh.append(seconds)
        seconds, train = timed(lambda: trainer._train_epoch(epoch))
        if not np.isfinite(train["loss"]):
            raise RuntimeError(f"{variant} at {setup.size}²: non-finite training loss")
        if times is not None:
            times.train.append(seconds)
        if variant == "baseline" and not args.no_validate:
            seconds, _ = timed(trainer._validate)
            if times is not None:
                times.validate.append(seconds)

    start = time.perf_counter()
    for variant in VARIANTS:  # warm-up: allocator, kernels, first refresh (untimed)
        one_epoch(variant, 1, None)
    state = trainers["per_sample"].state
    if state.efm_store is None or not state.efm_store.ready:
        raise RuntimeError("the per-sample EFM store was not filled by the refresh")
    if trainers["validation_prior"].state.efm_prior is None:
        raise RuntimeError("the validation prior was not computed by the refresh")
    print(f"  {setup.size}²: warm-up done in {time.perf_counter() - start:.1f} s", flush=True)

    times = {variant: Times() for variant in VARIANTS}
    for rep in range(args.repeats):
        shift = rep % len(VARIANTS)
        order = VARIANTS[shift:] + VARIANTS[:shift]
        start = time.perf_counter()
        parts = []
        for variant in order:
            t = times[variant]
            one_epoch(variant, 2 + rep, t)
            refresh = f"{t.refresh[-1]:.2f} + " if variant in REFRESHED else ""
            parts.append(f"{variant} {refresh}{t.train[-1]:.2f}")
        print(
            f"  {setup.size}²: repetition {rep + 1}/{args.repeats} in "
            f"{time.perf_counter() - start:.1f} s: {', '.join(parts)}",
            flush=True,
        )
    return times, images_per_epoch(trainers["baseline"]), state.efm_store.nbytes


def size_result(
    setup: SizeSetup, times: dict[str, Times], n_images: int, store_bytes: int, every: int
) -> dict:
    """One size's figures for the JSON result: each variant's amortised epoch and ratio."""
    base = statistics.median(times["baseline"].train)
    variants = {}
    for variant, t in times.items():
        refresh = statistics.median(t.refresh) if t.refresh else 0.0
        amortised = statistics.median(t.train) + refresh / every
        variants[variant] = {
            "train_s": round(statistics.median(t.train), 3),
            "refresh_s": round(refresh, 3),
            "amortised_s": round(amortised, 3),
            "ratio": round(amortised / base, 4),
            "target": TARGETS[variant],
        }
    return {
        "size": setup.size,
        "model": f"FPN-{setup.encoder}",
        "train_images": setup.n_train,
        "batch": setup.batch,
        "images_per_epoch": n_images,
        "every": every,
        "variants": variants,
        "efm_store_mb": round(store_bytes / MB, 4),
    }


def report_size(
    setup: SizeSetup, times: dict[str, Times], n_images: int, store_bytes: int, every: int
) -> bool:
    """Print the table of one size; True if every target of this size is met."""
    base = statistics.median(times["baseline"].train)
    ok = True
    print()
    print(
        f"== {setup.size}×{setup.size} | {setup.encoder} | {setup.n_train} train / {setup.n_val} "
        f"val scenes | batch {setup.batch} | {n_images} images per epoch | k = {every} =="
    )
    header = (
        f"{'variant':<20} {'train s':>8} {'refresh s':>9} {'amort. s':>8} {'images/s':>8} "
        f"{'ratio':>6} {'paired':>6} {'best':>6} {'target':>7}  verdict"
    )
    print(header)
    print("-" * len(header))
    base_best = min(times["baseline"].train)
    for variant in VARIANTS:
        t = times[variant]
        refreshes = t.refresh or [0.0] * len(t.train)
        train = statistics.median(t.train)
        refresh = statistics.median(refreshes)
        amortised = train + refresh / every
        ratio = amortised / base
        # Within one repetition (the variants ran back to back), then the median over them.
        paired = statistics.median(
            (tr + rf / every) / b
            for tr, rf, b in zip(t.train, refreshes, times["baseline"].train, strict=True)
        )
        # Fastest of each: machine noise only ever adds time.
        best = (min(t.train) + min(refreshes) / every) / base_best
        target = TARGETS[variant]
        if variant == "baseline":
            verdict, target_text = "(reference)", "—"
        elif target is None:
            verdict, target_text = "(info, no target)", "—"
        else:
            passed = ratio <= target
            ok &= passed
            verdict, target_text = ("PASS" if passed else "FAIL"), f"≤{target:.2f}"
        name = variant if variant == "baseline" else f"efm/{variant}"
        refresh_text = f"{refresh:9.2f}" if t.refresh else f"{'—':>9}"
        print(
            f"{name:<20} {train:8.2f} {refresh_text} {amortised:8.2f} "
            f"{n_images / amortised:8.{2 if n_images / amortised < 10 else 1}f} "
            f"{ratio:6.3f} {paired:6.3f} {best:6.3f} {target_text:>7}  {verdict}"
        )
    if len(times["baseline"].train) > 1:
        print(
            "train epoch min–max s: "
            + ", ".join(f"{v} {min(t.train):.2f}–{max(t.train):.2f}" for v, t in times.items())
        )
        epochs = [x for t in times.values() for x in t.train]
        slow = sum(x > 1.2 * statistics.median(t.train) for t in times.values() for x in t.train)
        if slow:
            print(
                f"NOTE: {slow} of {len(epochs)} timed epochs took > 1.2× their variant's median "
                "(machine stalls); the medians discard isolated ones, but with few repetitions "
                "a ratio within a few per cent of its target is not conclusive (more --repeats)"
            )
    if times["baseline"].validate:
        print(
            f"validation pass (same for every variant, not in the ratio): "
            f"{statistics.median(times['baseline'].validate):.2f} s for {setup.n_val} images"
        )
    print(
        f"per-sample EFM store for this run: {setup.n_train} × {setup.size}² uint8 = "
        f"{store_bytes / MB:.3f} MB ({store_bytes / MIB:.3f} MiB)"
    )
    return ok


def other_cpu_use(seconds: float = 1.0) -> float | None:
    """Busy fraction of all cores over ``seconds`` while this process sleeps (Linux only)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    try:
        total_0, idle_0 = sample()
        time.sleep(seconds)
        total_1, idle_1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total_1 - total_0
    return None if total <= 0 else 1.0 - (idle_1 - idle_0) / total


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = args.threads or available_cpus()
    torch.set_num_threads(threads)
    setups = size_setups(args)
    device = resolve_device(make_config("baseline", setups[0], args, 1).device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device: {name} | torch {torch.__version__} | {torch.get_num_threads()} threads "
        f"({available_cpus()} CPU core(s) usable) | repetitions: {args.repeats} interleaved, "
        f"1 warm-up | EFM start_epoch 1, every k = {args.every}"
    )
    for s in setups:
        print(
            f"  {s.size}²: {args.arch}-{s.encoder} (random init), {s.n_train} train + {s.n_val} "
            f"val scenes, batch {s.batch}, num_workers 0, EMA on, augment and loss from conf/base"
        )
    busy = other_cpu_use()
    if busy is not None:
        print(f"CPU busy with other work before the run: {busy:.0%} of all cores (1 s sample)")
        if busy > 0.2:
            print(
                "WARNING: other processes are using the CPU; they hit the variants unevenly and "
                "can stall an epoch several-fold. Run on an idle machine for numbers to quote."
            )
    sys.stdout.flush()

    all_ok = True
    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp_name:
        results = [(s, *run_size(s, args, Path(tmp_name))) for s in setups]
    for setup, times, n_images, store_bytes in results:
        all_ok &= report_size(setup, times, n_images, store_bytes, args.every)

    print()
    busy = other_cpu_use()
    if busy is not None:
        print(f"CPU busy with other work after the run: {busy:.0%} of all cores (1 s sample)")

    per_image = EFMStore(1, 512, 512).bytes_per_sample
    store_ok = per_image / MB <= STORE_TARGET_MB
    all_ok &= store_ok
    print(
        f"per-sample EFM store, one 512² image: {per_image} B = {per_image / MB:.3f} MB "
        f"({per_image / MIB:.3f} MiB; float32 would be {4 * per_image / MB:.3f} MB); "
        f"target ≤ {STORE_TARGET_MB} MB: {'PASS' if store_ok else 'FAIL'}"
    )
    print(
        "ratio = (median train epoch + median refresh / k) / median baseline train epoch "
        "(the verdict); paired = median over repetitions of that ratio within one repetition; "
        "best = the same with the fastest epoch and refresh of each variant"
    )
    write_json(
        args.json,
        {
            "benchmark": "training",
            "sizes": [size_result(*r, args.every) for r in results],
            "efm_store_bytes_per_512_image": per_image,
            "efm_store_target_mb": STORE_TARGET_MB,
            "repeats": args.repeats,
            "machine": machine(),
        },
    )
    return 1 if args.check and not all_ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
