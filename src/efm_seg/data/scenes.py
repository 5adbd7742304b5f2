"""Scenes to predict and what a prediction writes: PNG/JPEG through Pillow, GeoTIFF through
rasterio (the ``geo`` extra), which keeps the scene's coordinate reference system and transform.

A prediction of the scene ``<stem>.<ext>`` is written as:

- ``<stem>.png``: the label map, palette-coloured with the dataset's display colours, exactly the
  scene's size (a palette PNG: its pixel values are the class ids);
- ``<stem>_ids.png``: the raw class ids (8-bit grey), or ``<stem>_ids.tif`` for a GeoTIFF scene,
  with the scene's CRS and transform and the palette as its colour map;
- ``<stem>_overlay.jpg``: the colours blended over the scene's first three bands;

and ``areas.csv`` has a row per scene: its size, and per class its pixels, its share and, for a
GeoTIFF, its area in the CRS's units squared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from efm_seg.data.imagery import (
    EIGHT_BIT_MODES,
    GEOTIFF_SUFFIXES,
    is_geotiff,
    not_eight_bit,
    open_raster,
    pixel_limit,
    rasterio_module,
    read_array,
)

PLAIN_SUFFIXES = (".png", ".jpg", ".jpeg")
SCENE_SUFFIXES = PLAIN_SUFFIXES + GEOTIFF_SUFFIXES


@dataclass(frozen=True)
class Scene:
    """An image to predict: ``image`` ``(H, W, bands)`` uint8, and for a GeoTIFF its ``geo``
    (``crs`` as WKT, ``transform`` as the six affine coefficients)."""

    name: str
    path: Path
    image: np.ndarray
    geo: dict[str, Any] | None = None

    @property
    def bands(self) -> int:
        return int(self.image.shape[2])


@dataclass(frozen=True)
class SceneFile:
    """A scene on disk: :meth:`probe` reads only its header, :meth:`load` the pixels."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.stem

    def probe(self) -> tuple[int, int, int]:
        """``(height, width, bands)``; a ``ValueError`` naming the file when unreadable."""
        try:
            if is_geotiff(self.path):
                with open_raster(self.path) as source:
                    shape, eight_bit = (
                        (source.height, source.width, source.count),
                        all(dtype == "uint8" for dtype in source.dtypes),
                    )
                    found = ", ".join(sorted(set(source.dtypes)))
            else:
                with pixel_limit(0), Image.open(self.path) as opened:
                    bands = 3 if opened.mode == "P" else len(opened.getbands())
                    shape = (opened.height, opened.width, bands)
                    eight_bit = opened.mode in EIGHT_BIT_MODES
                    found = f"mode {opened.mode}"
        except ImportError:
            raise
        except Exception as exc:
            raise ValueError(f"{self.path}: cannot be read as an image ({exc})") from None
        if not eight_bit:
            raise ValueError(f"{self.path}: {not_eight_bit(found)}")
        return shape

    def load(self) -> Scene:
        return read_scene(self.path)


@dataclass(frozen=True)
class Prediction:
    """A scene's predicted class ids ``(H, W)`` uint8, with what writing it needs."""

    scene: Scene
    labels: np.ndarray
    classes: tuple[str, ...]
    colours: tuple[tuple[int, int, int], ...]
    overlay_alpha: float = 0.5


def scene_files(folder: Path) -> list[Path]:
    """The scenes in ``folder`` (not recursive), by name; a clear error when there are none."""
    if not folder.is_dir():
        raise ValueError(
            f"predict_root {folder} is not a folder (kedro run --params predict_root=DIR)"
        )
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SCENE_SUFFIXES
    )
    if not files:
        raise ValueError(f"predict_root {folder} holds no images ({', '.join(SCENE_SUFFIXES)})")
    stems = [p.stem for p in files]
    twins = sorted({s for s in stems if stems.count(s) > 1})
    if twins:
        raise ValueError(
            f"predict_root {folder}: several images share the name {twins[0]!r} (e.g. .png and "
            ".tif); outputs are named after the input, so each name must be unique"
        )
    return files


def read_scene(path: Path) -> Scene:
    """The scene at ``path`` with all its bands; a ``ValueError`` naming the file when it cannot
    be read or is not 8 bits per band. No decompression-bomb limit: scenes are large on purpose."""
    try:
        image, geo = read_array(path, max_image_pixels=0)
    except ImportError:
        raise
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    except Exception as exc:
        raise ValueError(f"{path}: cannot be read as an image ({exc})") from None
    return Scene(name=path.stem, path=path, image=image, geo=geo)


def write_prediction(prediction: Prediction, folder: Path) -> list[str]:
    """Write ``prediction``'s files into ``folder``; their names."""
    scene, labels = prediction.scene, prediction.labels
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(prediction.colours)] = prediction.colours
    label_map = Image.fromarray(labels, mode="P")
    label_map.putpalette(palette.reshape(-1).tolist())
    names = [f"{scene.name}.png"]
    label_map.save(folder / names[0], optimize=False)
    if scene.geo is not None:
        names.append(f"{scene.name}_ids.tif")
        _write_geotiff(folder / names[-1], labels, scene.geo, palette[: len(prediction.colours)])
    else:
        names.append(f"{scene.name}_ids.png")
        Image.fromarray(labels, mode="L").save(folder / names[-1])
    names.append(f"{scene.name}_overlay.jpg")
    rgb = scene.image[:, :, :3] if scene.bands >= 3 else np.repeat(scene.image[:, :, :1], 3, 2)
    alpha = prediction.overlay_alpha
    overlay = (1 - alpha) * rgb.astype(np.float32) + alpha * palette[labels].astype(np.float32)
    Image.fromarray(overlay.round().astype(np.uint8)).save(folder / names[-1], quality=90)
    return names


def class_areas(prediction: Prediction) -> dict[str, Any]:
    """One row of the area table: the scene, its size, and per class its pixels and share (and
    its area in the CRS's units², for a GeoTIFF)."""
    classes = prediction.classes
    counts = np.bincount(prediction.labels.reshape(-1), minlength=len(classes))[: len(classes)]
    total = int(prediction.labels.size)
    height, width = prediction.labels.shape
    row: dict[str, Any] = {
        "image": prediction.scene.path.name,
        "height": height,
        "width": width,
    }
    for name, count in zip(classes, counts, strict=True):
        row[f"px_{name}"] = int(count)
    for name, count in zip(classes, counts, strict=True):
        row[f"share_{name}"] = float(count) / total
    if prediction.scene.geo is not None:
        a, b, _, d, e, _ = prediction.scene.geo["transform"]
        pixel_area = abs(a * e - b * d)
        for name, count in zip(classes, counts, strict=True):
            row[f"area_{name}"] = float(count) * pixel_area
    return row


def _write_geotiff(path: Path, labels: np.ndarray, geo: dict[str, Any], colours: np.ndarray):
    rasterio = rasterio_module()
    Affine = rasterio.transform.Affine

    profile = {
        "driver": "GTiff",
        "height": labels.shape[0],
        "width": labels.shape[1],
        "count": 1,
        "dtype": "uint8",
        "crs": geo["crs"],
        "transform": Affine(*geo["transform"]),
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as target:
        target.write(labels, 1)
        target.write_colormap(1, {i: (*map(int, c), 255) for i, c in enumerate(colours)})
