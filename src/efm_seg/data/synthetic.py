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

from __future__ import annotations

import argparse
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

__all__ = [
    "DEMO_CLASSES",
    "DEMO_PALETTE",
    "colourise",
    "generate_scene",
    "main",
    "write_demo_dataset",
]

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


@dataclass
class _Canvas:
    """Mutable state of one scene while it is being painted."""

    rng: np.random.Generator
    h: int
    w: int
    f: float  # feature-size scale (1.0 at 320 x 320)
    density: float  # object-count scale, so class fractions do not depend on the size
    img: np.ndarray  # (h, w, 3) float32, 0..255
    lab: np.ndarray  # (h, w) uint8 label ids
    reserved: np.ndarray  # (h, w) bool: keep vegetation off (building margins, pool decks)
    shadow: np.ndarray  # (h, w) uint8: building shadows
    sun: np.ndarray  # unit vector (x, y): the direction shadows fall
    xx: np.ndarray  # (1, w) float32 column coordinates
    yy: np.ndarray  # (h, 1) float32 row coordinates


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth zero-mean, unit-variance noise with features about ``cell`` pixels across."""
    gh = max(2, math.ceil(h / max(cell, 1.0)) + 1)
    gw = max(2, math.ceil(w / max(cell, 1.0)) + 1)
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    field -= field.mean()
    field /= field.std() + 1e-6
    return field


def _fbm(rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 3) -> np.ndarray:
    """Fractal noise: octaves of :func:`_noise` at halving sizes and amplitudes, normalised."""
    total = np.zeros((h, w), dtype=np.float32)
    amp = 1.0
    for k in range(octaves):
        total += amp * _noise(rng, h, w, cell / 2**k)
        amp *= 0.5
    total -= total.mean()
    total /= total.std() + 1e-6
    return total


def _shift(a: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``a`` moved by (dx, dy) pixels, zero-filled (no wrap-around)."""
    out = np.zeros_like(a)
    h, w = a.shape[:2]
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)] = a[
        max(0, -dy) : h + min(0, -dy), max(0, -dx) : w + min(0, -dx)
    ]
    return out


def _rect(centre: np.ndarray, length: float, depth: float, angle: float) -> np.ndarray:
    """Corners (4, 2) of a rectangle: ``length`` along ``angle`` (radians), ``depth`` across."""
    a = np.array((math.cos(angle), math.sin(angle)))
    b = np.array((-a[1], a[0]))
    hl, hd = length / 2, depth / 2
    return np.stack(
        [
            centre + a * hl + b * hd,
            centre - a * hl + b * hd,
            centre - a * hl - b * hd,
            centre + a * hl - b * hd,
        ]
    )


def _fixed(pts: np.ndarray) -> np.ndarray:
    """Points as int32 with 3 fractional bits, for OpenCV drawing with ``shift=3``."""
    return np.round(np.asarray(pts) * 8.0).astype(np.int32)


def _window(pts: np.ndarray, h: int, w: int) -> tuple[int, int, int, int] | None:
    """Bounding box (y0, y1, x0, x1) of ``pts`` clipped to the image, or None if outside."""
    x0 = max(0, math.floor(pts[:, 0].min()) - 1)
    x1 = min(w, math.ceil(pts[:, 0].max()) + 2)
    y0 = max(0, math.floor(pts[:, 1].min()) - 1)
    y1 = min(h, math.ceil(pts[:, 1].max()) + 2)
    if x0 >= x1 or y0 >= y1:
        return None
    return y0, y1, x0, x1


def _poly_mask(pts: np.ndarray, win: tuple[int, int, int, int]) -> np.ndarray:
    """Boolean mask of polygon ``pts`` (image coordinates) inside window ``win``."""
    y0, y1, x0, x1 = win
    mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    cv2.fillPoly(mask, [_fixed(pts - (x0, y0))], 1, lineType=cv2.LINE_8, shift=3)
    return mask.view(bool)


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray, n: int) -> np.ndarray:
    """``n`` points (n, 2) along the cubic Bezier curve with control points p0..p3."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    u = 1.0 - t
    return u**3 * p0 + 3 * u**2 * t * p1 + 3 * u * t**2 * p2 + t**3 * p3


def _arc_length(path: np.ndarray) -> np.ndarray:
    """Cumulative arc length at each point of a polyline."""
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(seg)])


def _tangents(path: np.ndarray) -> np.ndarray:
    """Unit tangent at each point of a polyline."""
    t = np.gradient(path, axis=0)
    return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)


def _through_path(rng: np.random.Generator, h: int, w: int, curved: bool) -> np.ndarray:
    """A straight or gently curved polyline crossing the whole image."""
    diag = math.hypot(h, w)
    p = np.array((rng.uniform(0.12, 0.88) * w, rng.uniform(0.12, 0.88) * h))
    theta = rng.uniform(0.0, math.pi)
    d = np.array((math.cos(theta), math.sin(theta)))
    n = np.array((-d[1], d[0]))
    a, b = p - d * 0.75 * diag, p + d * 0.75 * diag
    bend = rng.uniform(-0.35, 0.35, size=2) * diag if curved else np.zeros(2)
    c1 = a + (b - a) / 3 + n * bend[0]
    c2 = a + 2 * (b - a) / 3 + n * bend[1]
    return _bezier(a, c1, c2, b, max(48, int(1.5 * diag / 2.5)))


def _inside(p: np.ndarray, h: int, w: int, margin: float = 0.0) -> bool:
    return bool(-margin <= p[0] < w + margin and -margin <= p[1] < h + margin)


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


def _paint_bare_land(cv: _Canvas) -> None:
    """Background: a soil/sand colour with low-frequency texture and patches of dry grass."""
    rng, h, w, f = cv.rng, cv.h, cv.w, cv.f
    base = _BARE_COLOURS[rng.integers(len(_BARE_COLOURS))] + rng.normal(0, 6, 3)
    low = _fbm(rng, h, w, rng.uniform(80, 160) * f, octaves=3)
    mid = _noise(rng, h, w, rng.uniform(6, 14) * f)
    grain = _noise(rng, h, w, 1.6)
    grass = np.clip(_fbm(rng, h, w, 50 * f, octaves=3) * 0.35 - rng.uniform(0.0, 0.3), 0, 0.7)
    shade = 1.0 + 0.09 * low + 0.035 * mid + 0.025 * grain
    colour = base + grass[..., None] * (_DRY_GRASS - base)
    cv.img[:] = colour * shade[..., None]


def _paint_fields(cv: _Canvas, fraction: float) -> None:
    """Agriculture: a patchwork of rotated rectangular fields with crop rows.

    The image is cut into a rotated grid of cells; cells inside a smooth "farmland zone" become
    fields, each with its own row orientation (along or across the grid), period and colours.
    Narrow strips at the cell borders stay bare (tracks, field margins).
    """
    rng, h, w, f = cv.rng, cv.h, cv.w, cv.f
    alpha = rng.uniform(0.0, math.pi)
    ca, sa = math.cos(alpha), math.sin(alpha)
    cw, ch = rng.uniform(45, 120, size=2) * f
    u = cv.xx * ca + cv.yy * sa
    v = cv.yy * ca - cv.xx * sa
    fu, fv = u / cw, v / ch
    iu = np.floor(fu).astype(np.int32)
    iv = np.floor(fv).astype(np.int32)
    iu -= iu.min()
    iv -= iv.min()
    nv = int(iv.max()) + 1
    cid = iu * nv + iv
    ncell = int(cid.max()) + 1

    zone = _fbm(rng, h, w, rng.uniform(120, 220) * f, octaves=2)
    counts = np.bincount(cid.ravel(), minlength=ncell)
    zone_cell = np.bincount(cid.ravel(), weights=zone.ravel(), minlength=ncell)
    zone_cell /= np.maximum(counts, 1)
    threshold = np.quantile(zone_cell[cid], 1.0 - fraction)
    is_field = (zone_cell > threshold) & (rng.random(ncell) < 0.9)

    gap = rng.uniform(1.2, 3.0) * f
    margin = ((fu - np.floor(fu)) * cw < gap) | ((fv - np.floor(fv)) * ch < gap)
    mask = is_field[cid] & ~margin
    if not mask.any():
        return

    theta = alpha + (rng.random(ncell) < 0.5) * (math.pi / 2) + rng.normal(0, 0.04, ncell)
    period = rng.uniform(3.0, 8.0, ncell) * f
    phase = rng.uniform(0, 2 * math.pi, ncell)
    contrast = np.where(rng.random(ncell) < 0.15, 0.15, rng.uniform(0.6, 1.0, ncell))
    kind = rng.integers(len(_FIELD_COLOURS), size=ncell)
    jitter = rng.normal(0, 7, (ncell, 1, 3))
    col = _FIELD_COLOURS[kind] + jitter  # (ncell, 2, 3)

    ys, xs = np.nonzero(mask)
    c = cid[ys, xs]
    t = xs * np.cos(theta[c]) + ys * np.sin(theta[c])
    s = 0.5 + 0.5 * np.sin(2 * math.pi * t / period[c] + phase[c])
    s = np.clip((s - 0.5) * 2.5 + 0.5, 0.0, 1.0) * contrast[c]
    colour = col[c, 0] + (col[c, 1] - col[c, 0]) * s[:, None]
    patch = 1.0 + 0.05 * _noise(rng, h, w, 25 * f)[ys, xs]
    cv.img[ys, xs] = colour * patch[:, None]
    cv.lab[ys, xs] = AGRICULTURE


def _paint_water(cv: _Canvas, water: np.ndarray) -> None:
    """Water texture (deep centre, lighter shallow margins, faint ripples) inside ``water``."""
    rng, h, w, f = cv.rng, cv.h, cv.w, cv.f
    if not water.any():
        return
    deep, shallow = _WATER_COLOURS[rng.integers(len(_WATER_COLOURS))] + rng.normal(0, 5, (2, 3))
    depth = cv2.GaussianBlur(water.astype(np.float32), (0, 0), 3.0 * f)
    depth = np.clip((depth - 0.5) * 2.2, 0.0, 1.0)
    ripple = 0.04 * _noise(rng, h, w, 3.0 * f) + 0.05 * _noise(rng, h, w, 40 * f)
    colour = shallow + depth[..., None] * (deep - shallow)
    colour *= 1.0 + ripple[..., None]
    cv.img[water] = colour[water]
    cv.lab[water] = WATER


def _lake(cv: _Canvas) -> np.ndarray:
    """Irregular water blobs: thresholded smooth fractal noise."""
    rng = cv.rng
    field = _fbm(rng, cv.h, cv.w, rng.uniform(70, 130) * cv.f, octaves=3)
    return field > np.quantile(field, 1.0 - rng.uniform(0.04, 0.16))


def _river(cv: _Canvas) -> np.ndarray:
    """A meandering river of varying width crossing the image, with ragged banks."""
    rng, h, w, f = cv.rng, cv.h, cv.w, cv.f
    path = _through_path(rng, h, w, curved=True)
    s = _arc_length(path)
    normal = _tangents(path)[:, ::-1] * (-1.0, 1.0)
    wavelength = rng.uniform(90, 220) * f
    amplitude = rng.uniform(6, 26) * f
    phase = rng.uniform(0, 2 * math.pi)
    path = path + normal * (amplitude * np.sin(2 * math.pi * s / wavelength + phase))[:, None]
    base = rng.uniform(7, 24) * f
    wobble = cv2.resize(rng.standard_normal((1, 8)).astype(np.float32), (len(path), 1))[0]
    radius = np.clip(base / 2 * (1.0 + 0.3 * wobble), 1.5, None)
    mask = np.zeros((h, w), dtype=np.uint8)
    for (x, y), r in zip(_fixed(path), radius, strict=True):
        cv2.circle(mask, (int(x), int(y)), round(r * 8), 1, thickness=-1, shift=3)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.5 * f)
    return soft + 0.12 * _noise(rng, h, w, 5 * f) > 0.5


def _road_layers(cv: _Canvas, urban: float) -> list[tuple[np.ndarray, float]]:
    """Lay out and paint roads; returns the paved (path, width) pairs buildings line up on."""
    rng, h, w, f = cv.rng, cv.h, cv.w, cv.f
    scale = math.sqrt(cv.density)
    roads: list[tuple[np.ndarray, float, bool]] = []  # (path, width, paved)
    for _ in range(rng.poisson((0.45 + 2.2 * urban) * scale)):
        main = _through_path(rng, h, w, curved=rng.random() < 0.45)
        roads.append((main, rng.uniform(6.0, 12.0) * f, True))
        tang = _tangents(main)
        inside = np.nonzero((main[:, 0] >= 0) & (main[:, 0] < w) & (main[:, 1] >= 0))[0]
        inside = inside[main[inside, 1] < h]
        if len(inside) == 0:
            continue
        for _ in range(rng.poisson(2.6 * urban * scale)):
            i = int(inside[rng.integers(len(inside))])
            side = 1.0 if rng.random() < 0.5 else -1.0
            ang = math.atan2(tang[i, 1], tang[i, 0]) + side * math.pi / 2 + rng.normal(0, 0.08)
            d = np.array((math.cos(ang), math.sin(ang)))
            length = rng.uniform(60, 180) * f
            end = main[i] + d * length
            bend = np.array((-d[1], d[0])) * rng.normal(0, 0.07) * length
            mid1 = main[i] + d * length / 3 + bend
            mid2 = main[i] + d * 2 * length / 3 + bend
            path = _bezier(main[i], mid1, mid2, end, max(16, int(length / 2.5)))
            roads.append((path, rng.uniform(3.5, 7.0) * f, True))
    for _ in range(rng.poisson(0.8 * (1.0 - urban) * scale)):
        track = _through_path(rng, h, w, curved=rng.random() < 0.7)
        roads.append((track, rng.uniform(2.5, 5.0) * f, False))

    # Narrow roads first, so wider ones (and their markings) run through the junctions.
    for path, width, paved in sorted(roads, key=lambda r: r[1]):
        _paint_road(cv, path, width, paved)
    return [(p, wd) for p, wd, paved in roads if paved]


def _paint_road(cv: _Canvas, path: np.ndarray, width: float, paved: bool) -> None:
    """One road: asphalt (or dirt) band with texture, dashed centre line and edge lines."""
    rng, h, w, f = cv.rng, cv.h, cv.w, cv.f
    mask = np.zeros((h, w), dtype=np.uint8)
    thick = max(1, round(width))
    cv2.polylines(mask, [_fixed(path)], False, 1, thickness=thick, lineType=cv2.LINE_8, shift=3)
    band = mask.view(bool)
    if not paved:  # tracks stop at the water's edge; paved roads cross it on bridges
        band &= cv.lab != WATER
    if not band.any():
        return
    if paved:
        g = rng.uniform(72, 128)
        base = np.array((g, g + 2, g + 6), dtype=np.float32)
    else:  # dirt track: a lighter or darker shade of the surrounding soil
        shade = rng.uniform(0.74, 0.86) if rng.random() < 0.5 else rng.uniform(1.1, 1.2)
        base = cv.img[band].mean(axis=0) * shade
    tex = 1.0 + 0.05 * _noise(rng, h, w, 10 * f) + 0.03 * _noise(rng, h, w, 1.5)
    cv.img[band] = base * tex[band][:, None]
    cv.lab[band] = ROAD
    if not paved or thick < 6:
        return

    marks = np.zeros((h, w), dtype=np.uint8)
    s = _arc_length(path)
    dash = rng.uniform(4, 8) * f
    on = (s[:-1] // dash) % 2 == 0
    segs = [_fixed(path[i : i + 2]) for i in np.nonzero(on)[0]]
    if segs:
        cv2.polylines(marks, segs, False, 1, thickness=1, lineType=cv2.LINE_8, shift=3)
    if thick >= 9:
        normal = _tangents(path)[:, ::-1] * (-1.0, 1.0)
        off = width / 2 - max(1.5, 1.2 * f)
        for sign in (-1.0, 1.0):
            edge = _fixed(path + sign * off * normal)
            cv2.polylines(marks, [edge], False, 1, thickness=1, lineType=cv2.LINE_8, shift=3)
    paint = marks.view(bool) & band
    cv.img[paint] = _MARKING * rng.uniform(0.85, 1.0)


def _try_building(
    cv: _Canvas, centre: np.ndarray, length: float, depth: float, angle: float
) -> bool:
    """Paint a building footprint if the spot (plus a margin) is free; record its shadow."""
    rng, f = cv.rng, cv.f
    margin = max(1.5, 2.0 * f)
    check = _rect(centre, length + 2 * margin, depth + 2 * margin, angle)
    win = _window(check, cv.h, cv.w)
    if win is None:
        return False
    y0, y1, x0, x1 = win
    lab = cv.lab[y0:y1, x0:x1]
    near = _poly_mask(check, win)
    under = lab[near]
    if _BLOCKS_BUILDING[under].any() or (under == AGRICULTURE).mean() > 0.3:
        return False

    corners = _rect(centre, length, depth, angle)
    a = corners[0] - corners[1]
    b = corners[0] - corners[3]
    colour = _ROOF_COLOURS[rng.choice(len(_ROOF_COLOURS), p=_ROOF_WEIGHTS)] + rng.normal(0, 6, 3)
    img = cv.img[y0:y1, x0:x1]
    if rng.random() < 0.6:  # gable roof: two halves split along the ridge, lit differently
        ridge_a = (corners[0] + corners[3]) / 2
        ridge_b = (corners[1] + corners[2]) / 2
        half_p = _poly_mask(np.stack([corners[0], corners[1], ridge_b, ridge_a]), win)
        half_n = _poly_mask(np.stack([ridge_a, ridge_b, corners[2], corners[3]]), win) & ~half_p
        foot = half_p | half_n
        if foot.sum() < 0.3 * length * depth:
            return False
        lit = float(np.dot(b / (np.linalg.norm(b) + 1e-9), -cv.sun))
        k = 0.15 * (1.0 if lit >= 0 else -1.0)
        img[half_p] = colour * (1.0 + k)
        img[half_n] = colour * (1.0 - k)
    else:  # flat roof with a darker parapet and sometimes a rooftop unit
        foot = _poly_mask(corners, win)
        if foot.sum() < 0.3 * length * depth:
            return False
        inner = cv2.erode(foot.view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)
        img[foot] = colour * 0.78
        img[inner] = colour
        if length > 10 and depth > 8 and rng.random() < 0.5:
            unit = _rect(centre + a * rng.uniform(-0.2, 0.2), 3 * f, 2.5 * f, angle)
            img[_poly_mask(unit, win) & inner] = np.minimum(colour * 1.25 + 20, 250)
    lab[foot] = BUILDING
    cv.reserved[y0:y1, x0:x1] |= near

    height = rng.uniform(3.0, 8.0) * f * (1.0 + 0.02 * (length + depth) / max(f, 1e-6))
    hull = cv2.convexHull(np.concatenate([corners, corners + cv.sun * height]).astype(np.float32))
    cv2.fillPoly(cv.shadow, [_fixed(hull[:, 0])], 1, lineType=cv2.LINE_8, shift=3)
    return True


def _try_pool(
    cv: _Canvas, centre: np.ndarray, length: float, depth: float, angle: float, *, back: np.ndarray
) -> None:
    """A small turquoise pool with a light deck, in the yard behind a building."""
    rng, f = cv.rng, cv.f
    pl = max(3.0, rng.uniform(4.0, 9.0) * f)
    pw = max(2.0, rng.uniform(3.0, 5.5) * f)
    rim = max(1.0, 1.2 * f)
    along = np.array((math.cos(angle), math.sin(angle))) * rng.uniform(-0.3, 0.3) * length
    pc = centre + back * (depth / 2 + rng.uniform(2.0, 5.0) * f + rim + pw / 2) + along
    outer = _rect(pc, pl + 2 * rim, pw + 2 * rim, angle)
    if outer.min() < 0 or outer[:, 0].max() > cv.w - 1 or outer[:, 1].max() > cv.h - 1:
        return
    win = _window(outer, cv.h, cv.w)
    if win is None:
        return
    y0, y1, x0, x1 = win
    lab = cv.lab[y0:y1, x0:x1]
    deck = _poly_mask(outer, win)
    if (lab[deck] != BARE_LAND).any():
        return
    water = _poly_mask(_rect(pc, pl, pw, angle), win)
    colour = np.array(
        (rng.uniform(60, 120), rng.uniform(186, 224), rng.uniform(204, 238)), dtype=np.float32
    )
    img = cv.img[y0:y1, x0:x1]
    img[deck] = _POOL_RIM
    img[water] = colour
    lab[water] = POOL
    cv.reserved[y0:y1, x0:x1] |= deck


def _place_buildings(cv: _Canvas, roads: Sequence[tuple[np.ndarray, float]], urban: float) -> None:
    """Buildings lining the roads (one or two rows), infill, and farmsteads; pools behind some."""
    rng, h, w, f = cv.rng, cv.h, cv.w, cv.f
    p_front = float(np.clip(0.15 + 0.8 * urban + rng.normal(0, 0.1), 0.05, 0.95))
    p_second = p_front * rng.uniform(0.0, 0.7)
    p_pool = rng.uniform(0.08, 0.45) if urban > 0.3 else rng.uniform(0.0, 0.08)
    size = rng.uniform(0.85, 1.5) if rng.random() < 0.25 else 1.0

    def building(centre: np.ndarray, angle: float, back: np.ndarray, big: float = 1.0) -> float:
        length = rng.uniform(9.0, 18.0) * f * size * big
        depth = rng.uniform(7.0, 12.0) * f * size * big
        c = centre + back * depth / 2
        if _inside(c, h, w, margin=4 * f) and _try_building(cv, c, length, depth, angle):
            if rng.random() < p_pool:
                _try_pool(cv, c, length, depth, angle, back=back)
            return depth
        return 0.0

    angles: list[float] = []
    for path, width in roads:
        s = _arc_length(path)
        tang = _tangents(path)
        for side in (-1.0, 1.0):
            pos = rng.uniform(0, 10) * f
            while pos < s[-1]:
                i = min(int(np.searchsorted(s, pos)), len(path) - 1)
                t = tang[i]
                angle = math.atan2(t[1], t[0]) + rng.normal(0, 0.03)
                back = side * np.array((-t[1], t[0]))
                setback = width / 2 + rng.uniform(2.0, 6.0) * f
                step = rng.uniform(11.0, 22.0) * f * size
                if _inside(path[i], h, w, margin=20 * f) and rng.random() < p_front:
                    d = building(path[i] + back * setback, angle, back)
                    if d and rng.random() < p_second:
                        far = setback + d + rng.uniform(8.0, 16.0) * f
                        building(path[i] + back * far, angle, back)
                pos += step
        angles.append(math.atan2(tang[len(path) // 2, 1], tang[len(path) // 2, 0]))

    for _ in range(rng.poisson(8.0 * urban**2 * cv.density)):  # infill between streets
        angle = (angles[rng.integers(len(angles))] if angles else rng.uniform(0, math.pi)) + (
            rng.normal(0, 0.05)
        )
        centre = np.array((rng.uniform(0, w), rng.uniform(0, h)))
        back = np.array((-math.sin(angle), math.cos(angle)))
        building(centre, angle, back)

    for _ in range(rng.poisson(1.0 * (1.0 - urban) * cv.density)):  # farmsteads
        centre = np.array((rng.uniform(0, w), rng.uniform(0, h)))
        angle = rng.uniform(0, math.pi)
        for _ in range(int(rng.integers(1, 5))):
            offset = rng.normal(0, 14 * f, 2)
            back = np.array((-math.sin(angle), math.cos(angle)))
            quarter = angle + (math.pi / 2 if rng.random() < 0.3 else 0.0)
            building(centre + offset, quarter, back, big=rng.uniform(1.0, 1.8))


def _paint_vegetation(cv: _Canvas, urban: float) -> np.ndarray:
    """Tree clumps and single trees on free bare land, with a canopy texture; returns the mask."""
    rng, h, w, f = cv.rng, cv.h, cv.w, cv.f
    fraction = rng.uniform(0.12, 0.55) * (1.0 - 0.45 * urban)
    field = _fbm(rng, h, w, rng.uniform(50, 110) * f, octaves=4)
    clumps = field > np.quantile(field, 1.0 - fraction)
    trees = np.zeros((h, w), dtype=np.uint8)
    n_trees = rng.poisson((12 + 90 * urban) * cv.density)
    xs = rng.uniform(0, w, n_trees)
    ys = rng.uniform(0, h, n_trees)
    rs = rng.uniform(1.8, 4.5, n_trees) * f
    for x, y, r in zip(xs, ys, rs, strict=True):
        cv2.circle(trees, (round(x * 8), round(y * 8)), round(r * 8), 1, thickness=-1, shift=3)
    free = (cv.lab == BARE_LAND) & ~cv.reserved
    clumps = cv2.morphologyEx(
        (clumps & free).view(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)
    )
    veg = clumps.view(bool) | (trees.view(bool) & free)
    if not veg.any():
        return veg

    crowns = _noise(rng, h, w, 2.2 * f) + 0.5 * _noise(rng, h, w, 4.5 * f)
    dx, dy = (int(v) for v in np.round(cv.sun * max(1.0, 1.2 * f)))
    relief = crowns - _shift(crowns, dx, dy)
    tone = _noise(rng, h, w, 30 * f)
    bright = np.clip(0.85 + 0.1 * crowns - 0.12 * relief + 0.06 * tone, 0.45, 1.4)
    g1, g2 = _GREENS[rng.choice(len(_GREENS), size=2, replace=False)] + rng.normal(0, 4, (2, 3))
    mix = np.clip(0.5 + 0.35 * tone, 0.0, 1.0)[..., None]
    colour = (g1 + mix * (g2 - g1)) * bright[..., None]
    cv.img[veg] = colour[veg]
    cv.lab[veg] = VEGETATION
    return veg


def _apply_shadows(cv: _Canvas, veg: np.ndarray) -> None:
    """Darken ground on the shadow side of buildings and trees (labels are left unchanged)."""
    rng, f = cv.rng, cv.f
    roofs = cv.lab == BUILDING
    built = cv.shadow.view(bool) & ~roofs
    length = rng.uniform(2.0, 4.5) * f
    dx, dy = (int(v) for v in np.round(cv.sun * length))
    cast = _shift(veg, dx, dy) & ~veg & ~roofs & ~built
    darkness = rng.uniform(0.42, 0.6)
    tint = np.array((0.95, 0.98, 1.08), dtype=np.float32)
    cv.img[built] *= darkness * tint
    cv.img[cast] *= min(1.0, darkness + 0.2) * tint


def _sensor(cv: _Canvas) -> np.ndarray:
    """Colour cast, haze, slight blur and Gaussian noise; returns the uint8 image."""
    rng = cv.rng
    img = cv.img
    img *= (rng.normal(1.0, 0.035, 3) * rng.uniform(0.88, 1.1)).astype(np.float32)
    haze = rng.uniform(0.0, 0.1)
    img += haze * (np.float32(200.0) - img)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.45, 0.85))
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(1.5, 3.5))
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


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


def colourise(
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
            Image.fromarray(colourise(labels)).save(tmp / "masks" / f"{scene_id}_mask.png")
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


if __name__ == "__main__":
    main()
