"""Scenes and the demo dataset: one scene from a seed, its colour mask, a folder of scenes with
their masks, and the command line."""

from __future__ import annotations

import argparse
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from efm_seg.data.synthetic.canvas import _Canvas
from efm_seg.data.synthetic.layers import (
    _apply_shadows,
    _lake,
    _paint_bare_land,
    _paint_fields,
    _paint_vegetation,
    _paint_water,
    _place_buildings,
    _river,
    _road_layers,
    _sensor,
)
from efm_seg.data.synthetic.palette import DEMO_PALETTE, MIN_SIZE

# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def generate_scene(seed: int, height: int = 320, width: int = 320) -> tuple[np.ndarray, np.ndarray]:
    """Generate one synthetic aerial scene and its label map.

    Feature sizes (buildings, roads, field rows, tree crowns) grow gently with the image size,
    and object counts grow with the area, so class fractions stay similar from 64 to 1024
    pixels. Not every class is present in every scene.

    Args:
        seed: Non-negative seed; the same seed and size always give bit-identical output.
        height: Image height in pixels (at least :data:`MIN_SIZE`).
        width: Image width in pixels (at least :data:`MIN_SIZE`).

    Returns:
        ``(image, labels)``: an ``(height, width, 3)`` uint8 RGB image and an
        ``(height, width)`` uint8 map of label ids ``0..6`` (positions in :data:`DEMO_CLASSES`).

    Raises:
        ValueError: If ``height`` or ``width`` is below :data:`MIN_SIZE`, or ``seed`` is negative.
    """
    for name, value in (("height", height), ("width", width)):
        if int(value) != value or value < MIN_SIZE:
            raise ValueError(f"{name} must be an integer >= {MIN_SIZE}, got {value!r}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed!r}")
    h, w = int(height), int(width)
    rng = np.random.default_rng(seed)
    ratio = math.sqrt(h * w) / 320.0
    f = float(np.clip(math.sqrt(ratio), 0.6, 1.8))
    sun_angle = rng.uniform(0, 2 * math.pi)
    cv = _Canvas(
        rng=rng,
        h=h,
        w=w,
        f=f,
        density=ratio**2 / f**2,
        img=np.zeros((h, w, 3), dtype=np.float32),
        lab=np.zeros((h, w), dtype=np.uint8),
        reserved=np.zeros((h, w), dtype=bool),
        shadow=np.zeros((h, w), dtype=np.uint8),
        sun=np.array((math.cos(sun_angle), math.sin(sun_angle))),
        xx=np.arange(w, dtype=np.float32)[None, :],
        yy=np.arange(h, dtype=np.float32)[:, None],
    )
    urban = float(rng.beta(1.3, 1.4))

    _paint_bare_land(cv)
    if rng.random() < 0.8 - 0.5 * urban:
        _paint_fields(cv, rng.uniform(0.2, 0.6) * (1.0 - 0.5 * urban))
    water_kind = rng.random()
    if water_kind < 0.3:
        _paint_water(cv, _lake(cv))
    elif water_kind < 0.55:
        _paint_water(cv, _river(cv))
    roads = _road_layers(cv, urban)
    _place_buildings(cv, roads, urban)
    veg = _paint_vegetation(cv, urban)
    _apply_shadows(cv, veg)
    return _sensor(cv), cv.lab


def paint_mask(
    labels: np.ndarray, palette: Mapping[str, tuple[int, int, int]] = DEMO_PALETTE
) -> np.ndarray:
    """Turn a label-id map into a colour-coded RGB mask.

    Args:
        labels: ``(H, W)`` integer label ids; id ``i`` is the ``i``-th entry of ``palette``.
        palette: Class name → RGB colour, in label-id order.

    Returns:
        ``(H, W, 3)`` uint8 RGB mask.

    Raises:
        ValueError: If a label id has no palette entry or ``labels`` is not 2-D.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D array, got shape {labels.shape}")
    lut = np.array(list(palette.values()), dtype=np.uint8).reshape(-1, 3)
    if labels.size and (labels.min() < 0 or labels.max() >= len(lut)):
        raise ValueError(
            f"labels must lie in 0..{len(lut) - 1} (one per palette entry), "
            f"got {labels.min()}..{labels.max()}"
        )
    return lut[labels.astype(np.intp, copy=False)]


def _scene_plan(seed: int, index: int, min_size: int, max_size: int) -> tuple[int, int, int]:
    """(scene seed, height, width) of scene ``index``; independent of how many scenes there are."""
    rng = np.random.default_rng([seed, index])
    height, width = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
    return int(rng.integers(0, 2**63 - 1)), height, width


def write_demo_dataset(
    root: str | Path,
    *,
    n_scenes: int = 40,
    seed: int = 0,
    min_size: int = 256,
    max_size: int = 384,
    jpeg_quality: int = 92,
) -> list[str]:
    """Write a synthetic dataset of JPEG images and colour-coded PNG masks.

    Layout: ``root/images/{id}_sat.jpg`` and ``root/masks/{id}_mask.png`` with ids
    ``scene_000``, ``scene_001``, … Each scene has its own height and width, drawn uniformly
    from ``[min_size, max_size]``, and its own seed derived from ``(seed, index)``, so scene
    ``i`` is the same whatever ``n_scenes`` is.

    The dataset is built in a hidden temporary sibling of ``root`` and renamed into place at
    the end, so an interrupted run never leaves a partial dataset at ``root``.

    Args:
        root: Output directory; it must not exist or be empty.
        n_scenes: Number of scenes (at least 1).
        seed: Non-negative base seed.
        min_size: Smallest height/width (at least 64).
        max_size: Largest height/width (at least ``min_size``).
        jpeg_quality: JPEG quality of the images, 1..100.

    Returns:
        The scene ids, in order.

    Raises:
        FileExistsError: If ``root`` exists and is not an empty directory.
        ValueError: If an argument is out of range.
    """
    if n_scenes < 1:
        raise ValueError(f"n_scenes must be >= 1, got {n_scenes!r}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed!r}")
    if min_size < 64:
        raise ValueError(f"min_size must be >= 64, got {min_size!r}")
    if max_size < min_size:
        raise ValueError(f"max_size must be >= min_size ({min_size}), got {max_size!r}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality!r}")

    root = Path(root)
    _refuse_existing(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    ids = [f"scene_{i:03d}" for i in range(n_scenes)]
    try:
        (tmp / "images").mkdir(parents=True)
        (tmp / "masks").mkdir()
        for i, scene_id in enumerate(ids):
            scene_seed, height, width = _scene_plan(seed, i, min_size, max_size)
            image, labels = generate_scene(scene_seed, height, width)
            Image.fromarray(image).save(
                tmp / "images" / f"{scene_id}_sat.jpg", quality=jpeg_quality
            )
            Image.fromarray(paint_mask(labels)).save(tmp / "masks" / f"{scene_id}_mask.png")
        _refuse_existing(root)
        if root.is_dir():  # empty directory: replace it (os.replace cannot on every OS)
            root.rmdir()
        os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ids


def _refuse_existing(root: Path) -> None:
    if root.is_dir():
        if any(root.iterdir()):
            raise FileExistsError(f"{root} already exists and is not empty")
    elif root.exists():
        raise FileExistsError(f"{root} already exists and is not a directory")


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m efm_seg.data.synthetic OUT_DIR [--n-scenes N] [--seed S] …``."""
    parser = argparse.ArgumentParser(
        prog="python -m efm_seg.data.synthetic",
        description="Write a synthetic aerial segmentation dataset (JPEG images, colour masks).",
    )
    parser.add_argument("out_dir", type=Path, help="output directory (must not exist or be empty)")
    parser.add_argument("--n-scenes", type=int, default=40, help="number of scenes (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--min-size", type=int, default=256, help="smallest side (default 256)")
    parser.add_argument("--max-size", type=int, default=384, help="largest side (default 384)")
    parser.add_argument("--jpeg-quality", type=int, default=92, help="JPEG quality (default 92)")
    args = parser.parse_args(argv)
    try:
        ids = write_demo_dataset(
            args.out_dir,
            n_scenes=args.n_scenes,
            seed=args.seed,
            min_size=args.min_size,
            max_size=args.max_size,
            jpeg_quality=args.jpeg_quality,
        )
    except (FileExistsError, ValueError) as exc:
        parser.error(str(exc))
    print(f"wrote {len(ids)} scenes to {args.out_dir}")
