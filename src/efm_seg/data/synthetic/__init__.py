"""Deterministic synthetic aerial scenes with colour-coded masks, for demos, tests and benchmarks.

Each scene is a top-down RGB tile (like a UAV or satellite image) built from structured layers
rather than noise: a bare-land background with low-frequency texture, striped agriculture
fields, lakes or a river, roads (straight and curved, with lane markings), buildings (rotated
rectangles, gable or flat roofs) lining the roads, small swimming pools in back yards, tree
clumps and single trees, then cast shadows on one consistent side and sensor effects (colour
cast, slight blur, Gaussian noise; JPEG compression when written to disk).

Shadows are appearance only: a shadowed pixel keeps the class of whatever lies underneath.
Class frequencies are deliberately imbalanced: bare land and vegetation dominate, buildings and
roads take a few per cent, and pools stay well under one per cent.

Masks are written as RGB PNGs in the palette of :data:`DEMO_PALETTE`, so that a project reading
them exercises the same colour → label encoding as with real colour-coded datasets.

Example:
    ``python -m efm_seg.data.synthetic data/local/01_raw/demo --n-scenes 40 --seed 0``
"""

# The modules share their underscored helpers inside this package; the names below are its API.
from efm_seg.data.synthetic.palette import DEMO_CLASSES, DEMO_PALETTE, MIN_SIZE
from efm_seg.data.synthetic.scenes import generate_scene, main, paint_mask, write_demo_dataset

__all__ = [
    "DEMO_CLASSES",
    "DEMO_PALETTE",
    "MIN_SIZE",
    "generate_scene",
    "main",
    "paint_mask",
    "write_demo_dataset",
]
