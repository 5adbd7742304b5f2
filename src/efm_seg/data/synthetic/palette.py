"""The demo's classes, their mask colours, and the colours the scenes are painted with."""

from __future__ import annotations

import numpy as np

DEMO_CLASSES: tuple[str, ...] = (
    "bare_land",
    "building",
    "road",
    "vegetation",
    "water",
    "agriculture",
    "pool",
)
"""Class names; a class's label id is its position here."""

DEMO_PALETTE: dict[str, tuple[int, int, int]] = {
    "bare_land": (210, 180, 140),
    "building": (60, 16, 152),
    "road": (110, 193, 228),
    "vegetation": (34, 139, 34),
    "water": (30, 80, 200),
    "agriculture": (254, 221, 58),
    "pool": (0, 255, 255),
}
"""Mask colour of each class, in label-id order."""

BARE_LAND, BUILDING, ROAD, VEGETATION, WATER, AGRICULTURE, POOL = range(7)

MIN_SIZE = 32
"""Smallest height or width :func:`generate_scene` accepts."""

# Classes a building or its margin may not overlap.
_BLOCKS_BUILDING = np.zeros(256, dtype=bool)
_BLOCKS_BUILDING[[BUILDING, ROAD, WATER, POOL]] = True

# Appearance tables (RGB, 0..255); each scene draws from them and jitters the draw.
_BARE_COLOURS = np.array(
    [
        (182, 162, 130),
        (166, 151, 126),
        (150, 140, 106),
        (196, 178, 144),
        (142, 126, 101),
        (172, 150, 118),
    ],
    dtype=np.float32,
)
_DRY_GRASS = np.array((128, 132, 88), dtype=np.float32)
_FIELD_COLOURS = np.array(
    [  # (row colour, inter-row colour)
        ((84, 134, 60), (112, 114, 76)),
        ((118, 140, 80), (142, 116, 86)),
        ((206, 186, 122), (184, 164, 104)),
        ((126, 96, 70), (100, 78, 60)),
        ((62, 118, 50), (78, 134, 62)),
        ((150, 160, 90), (170, 150, 100)),
    ],
    dtype=np.float32,
)
_WATER_COLOURS = np.array(
    [  # (deep, shallow)
        ((26, 54, 92), (58, 88, 98)),
        ((38, 82, 94), (72, 108, 100)),
        ((58, 78, 64), (96, 106, 82)),
        ((44, 118, 136), (82, 150, 150)),
        ((32, 66, 120), (66, 104, 132)),
    ],
    dtype=np.float32,
)
_GREENS = np.array(
    [(42, 78, 38), (50, 90, 45), (36, 68, 42), (62, 92, 48), (55, 84, 35)], dtype=np.float32
)
_ROOF_COLOURS = np.array(
    [
        (150, 150, 148),  # concrete
        (84, 86, 92),  # dark shingle
        (160, 82, 62),  # terracotta
        (214, 212, 206),  # white membrane
        (118, 128, 142),  # blue-grey metal
        (112, 92, 74),  # brown
        (188, 170, 140),  # sand-coloured (close to bare land)
    ],
    dtype=np.float32,
)
_ROOF_WEIGHTS = np.array([0.22, 0.18, 0.2, 0.12, 0.1, 0.1, 0.08])
_MARKING = np.array((226, 224, 212), dtype=np.float32)
_POOL_RIM = np.array((214, 212, 202), dtype=np.float32)
