"""Reading images of any band count: PNG/JPEG through Pillow, GeoTIFF through rasterio.

``dataset.bands`` chooses what the model sees:

* ``null`` (the default): RGB. Pillow images are converted to RGB as they always were (a grey
  or palette image becomes three bands); a GeoTIFF must have exactly three bands.
* a list of 1-based band numbers in the order the model takes them, e.g. ``[4, 1, 2]`` for
  near-infrared, red, green from an RGBN GeoTIFF (band numbers as GDAL and rasterio count them;
  for a PNG, the bands of its mode: ``RGBA`` is 1..4, ``L`` is 1).

Pixels must be 8 bits per band: the models are trained on 0..255 values.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

GEOTIFF_SUFFIXES = (".tif", ".tiff")
# Pillow modes of 8 bits per band ("P": a palette image, read as its RGB colours).
EIGHT_BIT_MODES = ("L", "LA", "RGB", "RGBA", "CMYK", "P")

Bands = tuple[int, ...] | None


def parse_bands(value: Any, where: str = "dataset.bands") -> Bands:
    """``dataset.bands`` checked: ``None`` (RGB) or a tuple of distinct 1-based band numbers."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ValueError(
            f"{where}: {value!r} is not a list of band numbers; give e.g. [4, 1, 2] (1-based, "
            "in the order the model takes them) or null for RGB"
        )
    bands = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | np.integer) or item < 1:
            raise ValueError(f"{where}: {item!r} is not a band number (1, 2, ...)")
        bands.append(int(item))
    if len(set(bands)) != len(bands):
        raise ValueError(f"{where}: {list(bands)} names a band twice")
    return tuple(bands)


def channels_of(bands: Bands) -> int:
    """How many channels the model takes for ``bands``."""
    return 3 if bands is None else len(bands)


def describe_bands(bands: Bands) -> str:
    return "RGB" if bands is None else f"bands {list(bands)}"


def is_geotiff(path: str | Path) -> bool:
    return Path(path).suffix.lower() in GEOTIFF_SUFFIXES


def rasterio_module():
    """rasterio, or an ImportError saying which extra installs it."""
    try:
        import rasterio
        import rasterio.shutil  # the COG copy of written maps (efm_seg.data.scenes)
    except ImportError:
        raise ImportError("GeoTIFF images need rasterio: pip install 'efm-seg[geo]'") from None
    return rasterio


@contextlib.contextmanager
def open_raster(path: Path) -> Iterator[Any]:
    """``rasterio.open(path)``; a plain TIFF without coordinates is fine (read as an image), so
    rasterio's warning about it is not shown."""
    rasterio = rasterio_module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as source:
            yield source


def read_array(path: Path, max_image_pixels: int | None = None) -> tuple[np.ndarray, dict | None]:
    """Every band of the image at ``path`` as ``(H, W, bands)``, and for a georeferenced TIFF
    its georeference (``crs`` as WKT, ``transform`` as six affine coefficients).

    A palette PNG is read as its RGB colours. ``ValueError`` (without the path: callers name
    the file) when the file cannot be decoded or is not 8 bits per band.
    """
    if is_geotiff(path):
        rasterio = rasterio_module()
        try:
            with open_raster(path) as source:
                image = source.read()  # (bands, H, W)
                georeferenced = source.crs is not None or not source.transform.is_identity
                geo = {
                    "crs": source.crs.to_wkt() if source.crs else None,
                    "transform": tuple(source.transform)[:6],
                }
        except rasterio.errors.RasterioError as exc:
            raise ValueError(f"cannot be read as a GeoTIFF ({exc})") from None
        geo = geo if georeferenced else None
        image = np.moveaxis(image, 0, -1)
    else:
        opened = open_pillow(path, max_image_pixels)
        mode, geo = opened.mode, None
        if mode not in EIGHT_BIT_MODES:
            raise ValueError(not_eight_bit(f"mode {mode}"))
        image = np.asarray(opened.convert("RGB") if mode == "P" else opened)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.dtype != np.uint8:
        raise ValueError(not_eight_bit(str(image.dtype)))
    return image, geo


def pixel_size_cm(geo: dict | None) -> float | None:
    """The ground size of a pixel in centimetres, from a georeference (:func:`read_array`):
    the geometric mean of its width and height, in a projected CRS's linear unit converted to
    metres. ``None`` without a CRS, in a geographic CRS (degrees), or for a rotated grid."""
    if not geo or not geo.get("crs"):
        return None
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        crs = CRS.from_wkt(geo["crs"])
        _, metres = crs.linear_units_factor if crs.is_projected else (None, None)
    except CRSError:
        return None
    a, b, _, d, e, _ = geo["transform"]
    if metres is None or b or d:
        return None
    return float((abs(a) * abs(e)) ** 0.5 * metres * 100)


def open_pillow(path: Path, max_image_pixels: int | None = None) -> Image.Image:
    """Open and fully decode an image with Pillow, so truncated files fail here and not later;
    ``ValueError`` (without the path) when it cannot be."""
    with pixel_limit(max_image_pixels):
        try:
            image = Image.open(path)
            image.load()
        except Image.DecompressionBombError as exc:
            raise ValueError(
                f"is larger than Pillow's decompression-bomb guard allows ({exc}). If the file "
                "is genuine, raise max_image_pixels of the raw_dataset entry in catalog.yml "
                "(e.g. max_image_pixels: 400000000)"
            ) from None
        except Image.UnidentifiedImageError:
            raise ValueError("is not an image file PIL can read") from None
        except (OSError, SyntaxError) as exc:
            raise ValueError(
                f"cannot be decoded ({exc}); the file is truncated or corrupt"
            ) from None
    return image


def select_bands(image: np.ndarray, bands: Bands) -> np.ndarray:
    """The model's channels of an ``(H, W, bands)`` uint8 image (see the module docstring).

    ``ValueError`` (without the path) when the image lacks a band that ``bands`` names, or has
    not three bands where RGB is expected and cannot be converted.
    """
    count = image.shape[2]
    if bands is None:
        if count == 3:
            return image
        if count in (1, 2, 4):  # grey, grey + alpha, RGBA: what Pillow's RGB conversion does
            mode = {1: "L", 2: "LA", 4: "RGBA"}[count]
            pil = Image.fromarray(image[:, :, 0] if count == 1 else image, mode=mode)
            return np.asarray(pil.convert("RGB"))
        raise ValueError(
            f"has {count} bands; choose the model's bands with dataset.bands (e.g. [1, 2, 3])"
        )
    missing = [band for band in bands if band > count]
    if missing:
        raise ValueError(
            f"has {count} band(s), but dataset.bands {list(bands)} names band(s) {missing}"
        )
    return np.ascontiguousarray(image[:, :, [band - 1 for band in bands]])


def read_bands(
    path: Path, bands: Bands, max_image_pixels: int | None = None
) -> tuple[np.ndarray, dict | None]:
    """The image at ``path`` as the model's ``(H, W, channels_of(bands))`` uint8 channels,
    with its georeference (GeoTIFF) or ``None``."""
    if bands is None and not is_geotiff(path):
        # As Pillow converts: grey, palette, RGBA and CMYK images all become RGB.
        opened = open_pillow(path, max_image_pixels)
        if opened.mode not in EIGHT_BIT_MODES:
            raise ValueError(not_eight_bit(f"mode {opened.mode}"))
        return np.asarray(opened.convert("RGB")), None
    image, geo = read_array(path, max_image_pixels)
    return select_bands(image, bands), geo


def display_rgb(image: np.ndarray) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 picture of a sample for figures: its first three channels, or its
    first channel in grey when it has fewer."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] >= 3:
        return np.ascontiguousarray(image[:, :, :3])
    return np.repeat(image[:, :, :1], 3, axis=2)


def not_eight_bit(found: str) -> str:
    return (
        f"is not 8 bits per band ({found}); the models are trained on 8-bit images (0-255), so "
        "convert it first (e.g. gdal_translate -ot Byte -scale)"
    )


@contextlib.contextmanager
def pixel_limit(limit: int | None) -> Iterator[None]:
    """Pillow's decompression-bomb guard set to ``limit`` pixels (``0``: none) for a block."""
    # Pillow reads its guard from a module global: set it for the one call only, so no other
    # folder (or test) in the process inherits it. 0 lifts the guard (scenes to predict).
    previous = Image.MAX_IMAGE_PIXELS
    if limit is not None:
        Image.MAX_IMAGE_PIXELS = limit or None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous
