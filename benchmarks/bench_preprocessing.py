"""Preprocessing throughput: the parallel pipeline node vs a plain single-process loop.

Both sides do the same work on the same files — decode image and mask, resize to size²
(antialiased image, nearest mask), encode labels, write the PNG store — and are timed
alternately in one run, so machine noise hits both alike. Reads the Dubai tiles from
../shared/data when present, else generates the demo data into a temporary folder.

    .venv/bin/python benchmarks/bench_preprocessing.py [--size 512] [--repeats 3]

Target (issue 2): ratio >= 1.7 on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

try:
    from benchmarks.common import machine, write_json
except ModuleNotFoundError:  # run as a script: benchmarks/ itself is on sys.path
    from common import machine, write_json
from efm_seg.data.labels import LabelScheme
from efm_seg.data.parallel import available_cpus
from efm_seg.data.raw import RawFolder
from efm_seg.data.samples import write_store
from efm_seg.data.tiling import PreprocessingConfig, _encode_one, _Task
from efm_seg.pipelines.ingestion.nodes import build_manifest
from efm_seg.pipelines.preprocessing.nodes import encode_samples, index_samples

ROOT = Path(__file__).resolve().parents[1]
DUBAI = ROOT.parent / "shared" / "data" / "dubai_aerial"


def load_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def dataset_source(tmp: Path) -> tuple[str, RawFolder, dict, dict]:
    if DUBAI.is_dir():
        conf = load_yaml(ROOT / "conf" / "dubai" / "parameters.yml")
        return "Dubai tiles (../shared/data)", RawFolder(DUBAI), conf["dataset"], conf["ingestion"]
    from efm_seg.data.synthetic import write_demo_dataset

    write_demo_dataset(tmp / "demo", n_scenes=40, seed=0, min_size=600, max_size=900)
    dataset = load_yaml(ROOT / "conf" / "base" / "parameters.yml")["dataset"]
    ingestion = load_yaml(ROOT / "conf" / "base" / "parameters_ingestion.yml")["ingestion"]
    return "synthetic demo scenes (Dubai data absent)", RawFolder(tmp / "demo"), dataset, ingestion


def plain_loop(raw, manifest, dataset, params, out: Path) -> None:
    """What one would write without the pipeline: one file after another, one process."""
    scheme = LabelScheme.from_params(dataset)
    config = PreprocessingConfig.from_params({**params, "workers": 1})
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    for r in manifest.itertuples():
        task = _Task(r.sample_id, str(r.group), r.image, r.mask)
        for row, sample in _encode_one(task, raw, scheme, config):
            (out / "images" / f"{row['sample_id']}.png").write_bytes(sample.image_png)
            (out / "masks" / f"{row['sample_id']}.png").write_bytes(sample.labels_png)


def pipeline_node(raw, manifest, dataset, params, out: Path) -> None:
    # The two nodes as Kedro runs them: the stream written into the store, then its index.
    index_samples(write_store(out, encode_samples(raw, manifest, dataset, params)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        source, raw, dataset, ingestion = dataset_source(tmp)
        manifest = build_manifest(raw, dataset, ingestion)
        params = {
            "mode": "resize",
            "size": args.size,
            "stride": None,
            "image_filter": "lanczos",
            "workers": "auto",
        }
        times: dict[str, list[float]] = {"plain loop": [], "pipeline node": []}
        for rep in range(args.repeats):
            for name, func in (("plain loop", plain_loop), ("pipeline node", pipeline_node)):
                out = tmp / f"{name.replace(' ', '_')}_{rep}"
                start = time.perf_counter()
                func(raw, manifest, dataset, params, out)
                times[name].append(time.perf_counter() - start)

    n = len(manifest)
    print(f"source: {source}: {n} images → {args.size}×{args.size}; {available_cpus()} CPU core(s)")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:>14}: {median:6.2f} s median of {len(values)}  ({n / median:6.1f} images/s)")
    ratio = statistics.median(times["plain loop"]) / statistics.median(times["pipeline node"])
    print(f"speed-up (pipeline node vs plain loop): {ratio:.2f}×  (target ≥ 1.70× on 2 cores)")
    write_json(
        args.json,
        {
            "benchmark": "preprocessing",
            "source": source,
            "images": n,
            "size": args.size,
            "plain_loop_s": round(statistics.median(times["plain loop"]), 3),
            "pipeline_node_s": round(statistics.median(times["pipeline node"]), 3),
            "speedup": round(ratio, 3),
            "target": 1.7,
            "machine": machine(),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
