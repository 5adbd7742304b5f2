"""The canvas a scene is painted on, and the geometry the layers share (noise, shapes, paths)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


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
