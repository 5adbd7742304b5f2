"""The benchmark suite: every figure of the project's performance targets, in one command.

    .venv/bin/python -m benchmarks.suite --quick    # a few minutes on 2 CPU cores
    .venv/bin/python -m benchmarks.suite            # the full sizes (about 20 minutes on 2 cores)

Each benchmark runs in its own process (so peak memory is its own) and measures its ratios
within that one run, interleaving the variants: the machines are shared and noisy, so only
ratios measured side by side are compared. Writes ``benchmarks/results/<machine>-<date>.json``
(every figure, the machine, the commands) and the same name ``.md`` (the summary table).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def plan(quick: bool) -> list[tuple[str, list[str]]]:
    """(name, module and arguments) of each benchmark run."""
    steps = ["--steps", "4", "--warmup", "1", "--loss-reps", "8"] if quick else []
    runs = [
        ("preprocessing", ["bench_preprocessing", "--size", "256" if quick else "512"]
         + (["--repeats", "2"] if quick else [])),
        ("loader", ["bench_loader", "--size", "256"] + (["--quick"] if quick else [])),
    ]  # fmt: skip
    for size in (128, 256, 512):
        batch = ["--batch", "4"]
        runs.append((f"efm_step_{size}", ["bench_efm_step", "--size", str(size), *batch, *steps]))
    training = ["bench_training", "--repeats", "2" if quick else "5"]
    runs.append(("training", training + (["--quick"] if quick else [])))
    runs.append(("tta", ["bench_tta"] + (["--quick"] if quick else [])))
    # Peak memory of preprocessing at 1,280 and 5,120 samples (80 sources: >= 5,000).
    runs.append(("streaming", ["bench_streaming", "--sources", "20", "80"]))
    # One process against two (DDP, gloo on the CPU), the same global batch.
    runs.append(("ddp", ["bench_ddp", "--epochs", "3" if quick else "4"]))
    # Saving the resumable state every epoch against every 10, at the evidence study's size.
    runs.append(("resume", ["bench_resume", "--repeats", "1" if quick else "3"]))
    # AdamW's step on the CPU: torch's default (per tensor) against foreach and fused.
    runs.append(("optimizer", ["bench_optimizer", "--repeats", "3" if quick else "10"]))
    # How long `kedro --help` and `kedro registry list` take to start (no torch).
    runs.append(("cli", ["bench_cli", "--repeats", "3" if quick else "7"]))
    return runs


def run_one(module: list[str], out: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", f"benchmarks.{module[0]}", *module[1:], "--json", str(out)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    print(done.stdout, end="", flush=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result = json.loads(out.read_text())
    result.pop("machine", None)  # one description for the suite
    return result | {"command": " ".join(command[1:-2]), "wall_s": round(seconds, 1)}


def _row(figure: str, value: str, target: str, note: str = "") -> str:
    return f"| {figure} | {value} | {target} | {note} |"


def markdown(results: dict[str, Any]) -> str:
    """The summary table: one line per figure, with its target."""
    m = results["machine"]
    lines = [
        f"# Benchmarks: {results['name']}",
        "",
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; GPU: {m['gpu'] or 'none'}; "
        f"torch {m['torch']}, Python {m['python']}. Mode: {results['mode']}; "
        f"{results['date']}; {results['wall_s']:.0f} s in all.",
        "",
        "| figure | measured | target | note |",
        "|---|---|---|---|",
    ]
    b = results["benchmarks"]
    pre = b["preprocessing"]
    lines.append(_row(
        f"preprocessing node vs plain loop ({pre['images']} images → {pre['size']}²)",
        f"{pre['speedup']:.2f}×", "≥ 1.70×",
        f"{pre['pipeline_node_s']} s vs {pre['plain_loop_s']} s",
    ))  # fmt: skip
    loader = b["loader"]
    lines.append(_row(
        f"loader / training images/s ({loader['size']}², batch {loader['batch']})",
        f"{loader['ratio_workers0']}× (0 workers), {loader['ratio_workers2']}× (2 workers)",
        "≥ 1×",
        f"loader {loader['loader_images_per_s_workers0']} images/s, training "
        f"{loader['training_images_per_s']} images/s",
    ))  # fmt: skip
    for size in (128, 256, 512):
        step = b[f"efm_step_{size}"]
        loss = step.get("loss_path", {})
        lines.append(_row(
            f"EFM step / baseline step, {step['model']} {size}², batch {step['batch']}",
            f"{step['ratio']:.3f} (paired {step['paired_ratio']:.3f})", "≤ 1.03",
            f"{step['efm_step_ms']:.0f} vs {step['baseline_step_ms']:.0f} ms; peak "
            f"{step.get('peak_mib_efm', '–')} vs {step.get('peak_mib_baseline', '–')} MiB",
        ))  # fmt: skip
        if loss:
            lines.append(_row(
                f"EFM loss path (EFM given) / eq. 6 loss path, {size}²",
                f"{loss['ratio']:.2f}", f"≤ {loss['target']}",
                f"+{loss['extra_ms']:.1f} ms over {loss['baseline_ms']:.1f} ms; implied step "
                f"ratio {loss['implied_step_ratio']:.3f}",
            ))  # fmt: skip
        if "online_ratio" in loss:
            lines.append(_row(
                f"online maps + EFM loss / eq. 6 loss path, {size}²",
                f"{loss['online_ratio']:.2f}", "–",
                f"+{loss['online_extra_ms']:.1f} ms; the project's eq. 6 criterion: "
                f"{loss['project_baseline_ratio']:.2f}",
            ))  # fmt: skip
    for entry in b["training"]["sizes"]:
        for variant, v in entry["variants"].items():
            if variant == "baseline":
                continue
            lines.append(_row(
                f"{variant} amortised epoch / baseline epoch, {entry['model']} {entry['size']}²",
                f"{v['ratio']:.3f}", "–" if v["target"] is None else f"≤ {v['target']}",
                f"train {v['train_s']} s + refresh {v['refresh_s']} s / k={entry['every']}",
            ))  # fmt: skip
    store = b["training"]["efm_store_bytes_per_512_image"] / 1e6
    lines.append(_row(
        "per-sample EFM store, one 512² image", f"{store:.3f} MB",
        f"≤ {b['training']['efm_store_target_mb']} MB", "uint8",
    ))  # fmt: skip
    tta = b["tta"]
    lines.append(_row(
        f"TTA: 4 passes / one 4B batch ({tta['model']} {tta['size']}², batch {tta['batch']})",
        f"{tta['speedup']:.2f}×", "> 1×",
        f"{tta['batched_s']} s vs {tta['separate_s']} s; max |Δp| {tta['max_abs_difference']:.1e}",
    ))  # fmt: skip
    streaming = b["streaming"]
    runs = {(r["mode"], r["samples"]): r["peak_rss_mb"] for r in streaming["runs"]}
    counts = sorted({samples for _, samples in runs})
    lines.append(_row(
        f"preprocessing peak RSS, {counts[0]} → {counts[-1]} samples (streamed into the store)",
        f"{streaming['streamed_growth_mb']:+.1f} MB", "flat",
        f"{runs[('stream', counts[-1])]:.0f} MB at {counts[-1]}; held in memory first: "
        f"{streaming['held_growth_mb']:+.1f} MB",
    ))  # fmt: skip
    ddp = b["ddp"]
    one, many = ddp["runs"]
    lines.append(_row(
        f"DDP epoch, 1 process / {many['processes']} processes ({ddp['model']} "
        f"{ddp['size']}², global batch {ddp['global_batch']}, {ddp['device']})",
        f"{ddp['speedup']:.2f}×", "reported",
        f"{one['epoch_s']} s vs {many['epoch_s']} s per epoch; launch and set-up "
        f"{many['overhead_s']} s; the processes share the cores",
    ))  # fmt: skip
    if "resume" in b:
        resume = b["resume"]
        every = resume["setup"]["every"]
        lines.append(_row(
            f"epoch, resume state saved every {every} epochs / every epoch "
            f"({resume['setup']['n_train']} images at {resume['setup']['size']}²)",
            f"{resume['ratio']:.3f}", "reported",
            f"one save of {resume['state_mb']:.0f} MB: {resume['save_s']} s; "
            f"{resume[f'epoch_s_every_{every}']} s vs {resume['epoch_s_every_1']} s per epoch",
        ))  # fmt: skip
    if "optimizer" in b:
        opt = b["optimizer"]
        steps = ", ".join(f"{name} {seconds} s" for name, seconds in opt["step_s"].items())
        lines.append(_row(
            f"AdamW step, fused / default (FPN-{opt['setup']['encoder']} "
            f"{opt['setup']['size']}², batch {opt['setup']['batch']})",
            f"{opt['ratio_to_default']['fused']:.3f}", "reported",
            f"{steps}; the default step is {opt['default_share_of_step']:.0%} of a training "
            f"step ({opt['train_step_s']} s forward and backward)",
        ))  # fmt: skip
    if "cli" in b:
        cli = b["cli"]["commands"]
        torch_s = cli["python -c 'import torch'"]["seconds_median"]
        for command in ("kedro --help", "kedro registry list"):
            c = cli[command]
            lines.append(_row(
                f"`{command}` start-up (no torch)",
                f"{c['seconds_median']:.2f} s, {c['peak_rss_mib_median']:.0f} MiB",
                "< 2 s, < 300 MiB",
                f"{c['ratio_to_torch_import']:.2f}× an `import torch` ({torch_s:.2f} s) measured "
                "beside it",
            ))  # fmt: skip
    peaks = ", ".join(f"{name} {r['peak_rss_mib']:.0f}" for name, r in b.items())
    lines += ["", f"Peak resident memory per benchmark process (MiB): {peaks}.", ""]
    return "\n".join(lines)


def machine_name(description: dict[str, Any]) -> str:
    gpu = description["gpu"]
    base = gpu or f"{description['cpu']}-{description['cores']}cores"
    return re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and repetitions")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    description = machine()
    date = dt.date.today().isoformat()
    name = f"{machine_name(description)}-{date}" + ("-quick" if args.quick else "")
    start = time.perf_counter()
    benchmarks = {}
    with tempfile.TemporaryDirectory(prefix="bench_suite_") as tmp:
        for label, module in plan(args.quick):
            print(f"== {label}: {' '.join(module)}", flush=True)
            benchmarks[label] = run_one(module, Path(tmp) / f"{label}.json")
    results = {
        "name": name,
        "date": date,
        "mode": "quick" if args.quick else "full",
        "machine": description,
        "wall_s": round(time.perf_counter() - start, 1),
        "benchmarks": benchmarks,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (args.out / f"{name}.md").write_text(table)
    print(table)
    print(f"written: {args.out / name}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
