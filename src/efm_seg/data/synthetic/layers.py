"""The layers of a scene, painted in order: bare land, fields, water, roads, buildings and
pools, vegetation, shadows, then the sensor."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from efm_seg.data.synthetic.canvas import (
    _arc_length,
    _bezier,
    _Canvas,
    _fbm,
    _fixed,
    _inside,
    _noise,
    _poly_mask,
    _rect,
    _shift,
    _tangents,
    _through_path,
    _window,
)
from efm_seg.data.synthetic.palette import (
    _BARE_COLOURS,
    _BLOCKS_BUILDING,
    _DRY_GRASS,
    _FIELD_COLOURS,
    _GREENS,
    _MARKING,
    _POOL_RIM,
    _ROOF_COLOURS,
    _ROOF_WEIGHTS,
    _WATER_COLOURS,
    AGRICULTURE,
    BARE_LAND,
    BUILDING,
    POOL,
    ROAD,
    VEGETATION,
    WATER,
)

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
