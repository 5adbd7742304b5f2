"""Scenes to predict, read block by block, and what a prediction writes.

Scenes are PNG/JPEG (Pillow, read whole: such files cannot be read in parts) or GeoTIFF
(rasterio, the ``geo`` extra: read in windows, so that any size fits in memory). A scene's
**nodata** pixels are those its file marks so — a GeoTIFF's nodata value, alpha band or internal
mask, a PNG's alpha channel — or, for files that mark none, the pixels whose every band equals
``predict.nodata``. They get no label.

A prediction of the scene ``<stem>.<ext>`` is written as:

- ``<stem>_ids.tif`` (GeoTIFF scene): the label map as the **dataset's own ids** (see
  :class:`Legend`), with the scene's CRS and transform, the output's nodata value set, the
  classes' colours as its colour table and their names as tags; a cloud-optimised GeoTIFF
  (tiled, compressed, overviews first). Written block by block.
  ``<stem>_ids.png`` (PNG/JPEG scene): the same ids (8 or 16 bit grey).
- ``<stem>_confidence.tif`` (or ``.png``), with ``predict.confidence``: each pixel's confidence,
  the top class's probability after the checkpoint's temperature scaling, in percent (0-100,
  ``uint8``), 255 where there is no data; georeferenced as the ids.
- ``<stem>.png``: the label map in the classes' colours, nodata transparent (a palette PNG whose
  indices are the classes' positions in ``dataset.classes``), and ``<stem>_overlay.jpg``, the
  colours blended over the scene's first three bands. Both at most ``predict.preview_size``
  pixels on their longer side (a larger GeoTIFF scene gets previews; its full-resolution map is
  the GeoTIFF).

``legend.csv`` lists every id with its class name and colour, and the nodata value;
``areas.csv`` has a row per scene: its size, its nodata pixels, and per class its pixels, its
share of the scene's valid pixels and, for a GeoTIFF, its area in the CRS's units squared.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from efm_seg.data.imagery import (
    EIGHT_BIT_MODES,
    GEOTIFF_SUFFIXES,
    is_geotiff,
    not_eight_bit,
    open_pillow,
    open_raster,
    pixel_limit,
    rasterio_module,
)
from efm_seg.data.labels import LabelScheme, colour_hex

PLAIN_SUFFIXES = (".png", ".jpg", ".jpeg")
SCENE_SUFFIXES = PLAIN_SUFFIXES + GEOTIFF_SUFFIXES
TILE = 512  # block side of the written GeoTIFFs


def gdal_cache_bytes(width: int) -> int:
    """GDAL's block cache while a GeoTIFF scene ``width`` pixels wide is predicted: the crop
    being read, and two rows of the written maps' tiles (16-bit ids at most, and room for the
    8-bit confidence map, which a cap only reserves), which are only complete once two rows of
    crops are done. More would only grow
    with the scene, holding tiles no crop needs again; less would write unfinished tiles and read
    them back."""
    return 32 * 2**20 + 2 * TILE * width * (2 + 1)


# -- the legend: what the written ids mean ---------------------------------------------------------
@dataclass(frozen=True)
class Legend:
    """The values written for each class, and for nodata.

    ``mode: ids``: each class's own id of ``dataset.classes`` (what the dataset's masks hold), so
    that a map reads with the dataset's legend; nodata is the first of ``dataset.ignore_ids``
    (else 255, or the first value no class uses). ``mode: palette``: each class's position in
    ``dataset.classes`` (0, 1, ...), nodata 255.
    """

    classes: tuple[str, ...]
    ids: tuple[int, ...]
    colours: tuple[tuple[int, int, int], ...]
    nodata: int

    @classmethod
    def of(cls, scheme: LabelScheme) -> Legend:
        ids = (
            tuple(scheme.source_ids) if scheme.mode == "ids" else tuple(range(len(scheme.classes)))
        )
        used = set(ids)
        if scheme.mode == "ids" and scheme.ignore_ids:
            nodata = int(scheme.ignore_ids[0])
        elif 255 not in used:
            nodata = 255
        else:
            nodata = next(value for value in range(65536) if value not in used)
        colours = tuple(tuple(int(v) for v in c) for c in scheme.display_colours)
        return cls(tuple(scheme.classes), ids, colours, nodata)

    @property
    def dtype(self) -> str:
        return "uint8" if max(*self.ids, self.nodata) <= 255 else "uint16"

    def ids_of(self, labels: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Labels (class positions) as the written ids, nodata where not ``valid``."""
        values = np.asarray(self.ids, dtype=self.dtype)[labels]
        values[~valid] = self.nodata
        return values

    def table(self) -> pd.DataFrame:
        """``legend.csv``: id, class, colour, then the nodata value."""
        rows = [
            {"id": i, "class": name, "colour": colour_hex(colour)}
            for i, name, colour in zip(self.ids, self.classes, self.colours, strict=True)
        ]
        return pd.DataFrame([*rows, {"id": self.nodata, "class": "nodata", "colour": ""}])


# -- reading -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SceneInfo:
    """What a scene's header says: its size, bands, georeference and how it marks nodata."""

    height: int
    width: int
    count: int  # every band of the file
    geo: dict[str, Any] | None = None  # crs (WKT or None), transform (six coefficients)
    alpha: tuple[int, ...] = ()  # the bands the file says are alpha (1-based)
    nodata: float | None = None  # the file's nodata value
    masked: bool = False  # an internal mask or mask file (or a PNG's alpha)

    def data_bands(self, bands: tuple[int, ...] | None) -> list[int]:
        """The bands a model reads: ``bands`` (dataset.bands when it was trained), else every
        band but the alpha ones. A band the model takes is data even if the file calls it
        alpha (GDAL calls the 4th band of an RGBN GeoTIFF written without PHOTOMETRIC so)."""
        if bands is not None:
            return list(bands)
        return [band for band in range(1, self.count + 1) if band not in self.alpha]

    def alpha_band(self, bands: tuple[int, ...] | None) -> int | None:
        """The alpha band that marks nodata, unless the model reads it as data."""
        return next((b for b in self.alpha if bands is None or b not in bands), None)


@dataclass(frozen=True)
class SceneFile:
    """A scene on disk: :meth:`probe` reads its header, :meth:`check` every block of it,
    :meth:`open` a reader of its rows."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.stem

    def probe(self) -> SceneInfo:
        """The header; a ``ValueError`` naming the file when unreadable or not 8 bits per band."""
        try:
            if is_geotiff(self.path):
                with open_raster(self.path) as source:
                    info, found, eight_bit = _raster_info(source)
            else:
                with pixel_limit(0), Image.open(self.path) as opened:
                    info, found, eight_bit = _pillow_info(opened)
        except ImportError:
            raise
        except Exception as exc:
            raise ValueError(f"{self.path}: cannot be read as an image ({_reason(exc)})") from None
        if not eight_bit:
            raise ValueError(f"{self.path}: {not_eight_bit(found)}")
        return info

    def check(self) -> SceneInfo:
        """:meth:`probe`, then every block of the file decoded (a GeoTIFF one internal tile or
        strip at a time): a truncated or corrupt file is found before anything is predicted,
        with the library's own message."""
        info = self.probe()
        try:
            if is_geotiff(self.path):
                # Each block is decoded once: GDAL's default cache (5 % of the machine's
                # memory) would keep them all, the scene's whole area.
                with (
                    rasterio_module().Env(GDAL_CACHEMAX=gdal_cache_bytes(info.width)),
                    open_raster(self.path) as source,
                ):
                    for _, window in source.block_windows(1):
                        source.read(window=window)
            else:
                open_pillow(self.path, max_image_pixels=0)
        except ImportError:
            raise
        except Exception as exc:
            raise ValueError(f"{self.path}: cannot be read to its end ({_reason(exc)})") from None
        return info

    @contextlib.contextmanager
    def open(self, bands: tuple[int, ...] | None, nodata: float | None = None) -> Iterator[Any]:
        """A reader of the scene's rows (:class:`RasterRows` or :class:`PictureRows`)."""
        if is_geotiff(self.path):
            # GDAL's block cache would otherwise grow to 5 % of the machine's memory while a
            # large scene is read and its map written: bounded, as what the crops hold is.
            cache = gdal_cache_bytes(self.probe().width)
            with rasterio_module().Env(GDAL_CACHEMAX=cache), open_raster(self.path) as source:
                yield RasterRows(self.path, source, bands, nodata)
        else:
            yield PictureRows(self.path, bands, nodata)


def _reason(exc: BaseException) -> str:
    """An exception's message with the messages of what caused it (rasterio's "Read failed.
    See previous exception for details." carries GDAL's own message in its cause)."""
    messages: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).strip()
        if text and text not in messages:
            messages.append(text)
        current = current.__cause__ or current.__context__
    return ": ".join(messages) or type(exc).__name__


def _alpha_bands(source) -> list[int]:
    rasterio = rasterio_module()
    alpha = rasterio.enums.ColorInterp.alpha
    return [i + 1 for i, interp in enumerate(source.colorinterp) if interp == alpha]


def _raster_info(source) -> tuple[SceneInfo, str, bool]:
    rasterio = rasterio_module()
    georeferenced = source.crs is not None or not source.transform.is_identity
    geo = (
        {
            "crs": source.crs.to_wkt() if source.crs else None,
            "transform": tuple(source.transform)[:6],
        }
        if georeferenced
        else None
    )
    flags = source.mask_flag_enums[0] if source.count else []
    masked = (
        rasterio.enums.MaskFlags.per_dataset in flags
        and rasterio.enums.MaskFlags.alpha not in flags
    )
    info = SceneInfo(
        source.height, source.width, source.count, geo, tuple(_alpha_bands(source)),
        source.nodata, masked,
    )  # fmt: skip
    found = ", ".join(sorted(set(source.dtypes)))
    return info, found, all(dtype == "uint8" for dtype in source.dtypes)


def _pillow_info(opened: Image.Image) -> tuple[SceneInfo, str, bool]:
    mode = opened.mode
    alpha = mode in ("RGBA", "LA") or (mode == "P" and "transparency" in opened.info)
    count = 3 if mode == "P" else len(opened.getbands()) - (1 if alpha else 0)
    info = SceneInfo(opened.height, opened.width, count, None, (), None, alpha)
    return info, f"mode {mode}", mode in EIGHT_BIT_MODES


def _no_value_mask(image: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """Valid pixels of ``(h, W, C)`` where the file marks nothing: not every band ``nodata``."""
    if nodata is None:
        return None
    return ~np.all(image == nodata, axis=2)


class RasterRows:
    """A GeoTIFF's rows, read in windows, with the pixels its file marks as nodata."""

    def __init__(self, path: Path, source, bands: tuple[int, ...] | None, nodata: float | None):
        self.path, self.source = path, source
        self.info, _, _ = _raster_info(source)
        self.indexes = self.info.data_bands(bands)
        missing = [band for band in self.indexes if band > source.count]
        if missing or (bands is None and len(self.indexes) != 3):
            raise ValueError(
                f"{path}: {source.count} band(s), but the model takes "
                f"{'RGB' if bands is None else f'bands {list(bands)}'} of its images"
            )
        self.alpha = self.info.alpha_band(bands)
        # How the pixels without data are known, in order: an alpha band the model does not
        # read, the file's nodata value, its internal mask, else predict.nodata.
        self.nodata = self.info.nodata if self.info.nodata is not None else nodata
        self.marks_nodata = self.alpha is not None or self.nodata is not None or self.info.masked

    @property
    def height(self) -> int:
        return self.source.height

    @property
    def width(self) -> int:
        return self.source.width

    def read(
        self, top: int, bottom: int, left: int, right: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows ``top..bottom-1`` and columns ``left..right-1``: the model's bands ``(h, w, C)``
        uint8 and the valid pixels."""
        window = rasterio_module().windows.Window(left, top, right - left, bottom - top)
        try:
            image = np.moveaxis(self.source.read(self.indexes, window=window), 0, -1)
            if self.alpha is not None:
                return image, self.source.read(self.alpha, window=window) > 0
            if self.nodata is None and self.info.masked:
                return image, self.source.dataset_mask(window=window) > 0
        except Exception as exc:
            raise ValueError(f"{self.path}: cannot be read ({_reason(exc)})") from None
        return image, _no_value_mask(image, self.nodata)

    def preview(self, height: int, width: int) -> np.ndarray:
        """The scene's first three bands (or its first, in grey) at ``height × width``."""
        rasterio = rasterio_module()
        indexes = self.indexes[:3] if len(self.indexes) >= 3 else self.indexes[:1] * 3
        image = self.source.read(
            indexes, out_shape=(len(indexes), height, width),
            resampling=rasterio.enums.Resampling.average,
        )  # fmt: skip
        return np.moveaxis(image, 0, -1)


class PictureRows:
    """A PNG or JPEG scene, decoded whole (the formats cannot be read in parts)."""

    def __init__(self, path: Path, bands: tuple[int, ...] | None, nodata: float | None):
        self.path = path
        opened = open_pillow(path, max_image_pixels=0)
        self.info, found, eight_bit = _pillow_info(opened)
        if not eight_bit:
            raise ValueError(f"{path}: {not_eight_bit(found)}")
        alpha = None
        if self.info.masked:
            rgba = opened.convert("RGBA" if opened.mode != "LA" else "LA")
            alpha = np.asarray(rgba)[:, :, -1]
            opened = rgba.convert("RGB" if opened.mode != "LA" else "L")
        if bands is None:
            image = np.asarray(opened.convert("RGB"))
        else:
            image = np.asarray(opened)
            image = image[:, :, None] if image.ndim == 2 else image
            missing = [band for band in bands if band > image.shape[2]]
            if missing:
                raise ValueError(
                    f"{path}: {image.shape[2]} band(s), but the model takes bands {list(bands)} "
                    f"of its images (dataset.bands when it was trained); band(s) {missing} missing"
                )
            image = np.ascontiguousarray(image[:, :, [band - 1 for band in bands]])
        self.image = image
        self.valid = alpha > 0 if alpha is not None else _no_value_mask(image, nodata)
        self.marks_nodata = self.valid is not None

    @property
    def height(self) -> int:
        return self.image.shape[0]

    @property
    def width(self) -> int:
        return self.image.shape[1]

    def read(
        self, top: int, bottom: int, left: int, right: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows ``top..bottom-1`` and columns ``left..right-1`` (see :meth:`RasterRows.read`)."""
        block = np.s_[top:bottom, left:right]
        return self.image[block], None if self.valid is None else self.valid[block]

    def preview(self, height: int, width: int) -> np.ndarray:
        rgb = self.image[:, :, :3] if self.image.shape[2] >= 3 else self.image[:, :, :1]
        rgb = np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb
        if (height, width) == rgb.shape[:2]:
            return rgb
        return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BOX))


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


# -- writing -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Predictions:
    """What the predict node hands the predictions folder: the legend, and per scene a writer
    that predicts the scene while it writes its files into a folder and returns its row of
    ``areas.csv`` (one scene in memory at a time)."""

    legend: Legend
    scenes: Mapping[str, Callable[[Path], dict[str, Any]]]


@dataclass
class AreaCounts:
    """Pixels per class and nodata pixels, counted as the rows are written."""

    classes: int
    pixels: np.ndarray = field(init=False)
    nodata: int = 0

    def __post_init__(self) -> None:
        self.pixels = np.zeros(self.classes, dtype=np.int64)

    def add(self, labels: np.ndarray, valid: np.ndarray) -> None:
        self.pixels += np.bincount(labels[valid].reshape(-1), minlength=self.classes)[
            : self.classes
        ]
        self.nodata += int((~valid).sum())

    def row(self, image: str, info: SceneInfo, legend: Legend) -> dict[str, Any]:
        """The scene's row of ``areas.csv``."""
        valid = int(self.pixels.sum())
        row: dict[str, Any] = {
            "image": image,
            "height": info.height,
            "width": info.width,
            "px_nodata": self.nodata,
        }
        for name, count in zip(legend.classes, self.pixels, strict=True):
            row[f"px_{name}"] = int(count)
        for name, count in zip(legend.classes, self.pixels, strict=True):
            row[f"share_{name}"] = float(count) / valid if valid else math.nan
        if info.geo is not None:
            a, b, _, d, e, _ = info.geo["transform"]
            pixel_area = abs(a * e - b * d)
            row["area_nodata"] = self.nodata * pixel_area
            for name, count in zip(legend.classes, self.pixels, strict=True):
                row[f"area_{name}"] = float(count) * pixel_area
        return row


def preview_shape(height: int, width: int, limit: int) -> tuple[int, int]:
    """The size of a scene's previews: the scene's own, or scaled to ``limit`` on its longer
    side (0: no limit)."""
    if not limit or max(height, width) <= limit:
        return height, width
    scale = limit / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def write_label_map(
    folder: Path,
    reader,
    blocks: Iterable[Any],
    legend: Legend,
    preview_size: int,
    overlay_alpha: float,
    confidence: bool = False,
) -> tuple[list[str], AreaCounts]:
    """Write one scene's prediction into ``folder`` as its ``blocks`` come (each with its
    ``top`` row, ``left`` column, ``labels`` (h, w) as class positions, ``valid`` (h, w) and,
    with ``confidence``, its ``confidence`` (h, w) in [0, 1]). Returns the files written and
    the counts."""
    name = reader.path.stem
    counts = AreaCounts(len(legend.classes))
    height, width = reader.height, reader.width
    small = preview_shape(height, width, preview_size)
    written = []
    if isinstance(reader, RasterRows):
        ids_name = f"{name}_ids.tif"
        confidence_path = folder / f"{name}_confidence.tif" if confidence else None
        preview_ids = _write_geotiff(
            folder / ids_name, reader, blocks, legend, counts, small, confidence_path
        )
    else:  # a picture: held whole anyway
        ids = np.full((height, width), legend.nodata, dtype=legend.dtype)
        percent = np.full((height, width), CONFIDENCE_NODATA, np.uint8) if confidence else None
        for block in blocks:
            counts.add(block.labels, block.valid)
            rows, columns = block.labels.shape
            where = np.s_[block.top : block.top + rows, block.left : block.left + columns]
            ids[where] = legend.ids_of(block.labels, block.valid)
            if percent is not None:
                percent[where] = confidence_percent(block.confidence, block.valid)
        ids_name = f"{name}_ids.png"
        Image.fromarray(ids).save(folder / ids_name)
        if percent is not None:
            Image.fromarray(percent, mode="L").save(folder / f"{name}_confidence.png")
        preview_ids = ids if small == (height, width) else _nearest(ids, small)
    if confidence:
        written.append(f"{name}_confidence.{'tif' if isinstance(reader, RasterRows) else 'png'}")
    positions = _positions(preview_ids, legend)
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(legend.colours)] = legend.colours
    label_map = Image.fromarray(positions, mode="P")
    label_map.putpalette(palette.reshape(-1).tolist())
    label_map.save(folder / f"{name}.png", transparency=255)
    scene = reader.preview(*small).astype(np.float32)
    valid = positions != 255
    colours = palette[positions].astype(np.float32)
    blended = np.where(
        valid[:, :, None], (1 - overlay_alpha) * scene + overlay_alpha * colours, scene
    )
    Image.fromarray(blended.round().astype(np.uint8)).save(
        folder / f"{name}_overlay.jpg", quality=90
    )
    return [f"{name}.png", ids_name, *written, f"{name}_overlay.jpg"], counts


CONFIDENCE_NODATA = 255
"""The confidence maps' value where there is no data (confidence itself is 0-100)."""


def confidence_percent(confidence: np.ndarray | None, valid: np.ndarray) -> np.ndarray:
    """A block's confidence in [0, 1] as whole percent (``uint8``), nodata where not valid."""
    if confidence is None:
        raise ValueError("a confidence map was asked for, but the blocks carry no confidence")
    percent = np.rint(np.clip(confidence, 0.0, 1.0) * 100).astype(np.uint8)
    return np.where(valid, percent, np.uint8(CONFIDENCE_NODATA))


def _positions(ids: np.ndarray, legend: Legend) -> np.ndarray:
    """Written ids back to class positions (uint8), nodata 255: the palette PNG's indices."""
    lookup = np.full(max(*legend.ids, legend.nodata) + 1, 255, dtype=np.uint8)
    lookup[list(legend.ids)] = np.arange(len(legend.ids), dtype=np.uint8)
    return lookup[ids]


def _nearest(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    rows = (np.arange(shape[0]) * values.shape[0] // shape[0]).clip(0, values.shape[0] - 1)
    cols = (np.arange(shape[1]) * values.shape[1] // shape[1]).clip(0, values.shape[1] - 1)
    return values[rows][:, cols]


def _write_geotiff(
    path: Path,
    reader,
    blocks: Iterable[Any],
    legend: Legend,
    counts: AreaCounts,
    small: tuple[int, int],
    confidence_path: Path | None = None,
) -> np.ndarray:
    """The ids GeoTIFF, written block by block into a tiled file beside ``path``,
    then copied into a cloud-optimised GeoTIFF (GDAL's COG driver: overviews, with nearest
    resampling, before the full-resolution tiles) at ``path``; the confidence GeoTIFF the same
    way at ``confidence_path`` when given (overviews averaged). Returns the ids' preview."""
    rasterio = rasterio_module()
    geo = reader.info.geo or {}
    profile = {
        "driver": "GTiff",
        "height": reader.height,
        "width": reader.width,
        "count": 1,
        "dtype": legend.dtype,
        "nodata": legend.nodata,
        "crs": geo.get("crs"),
        "transform": rasterio.transform.Affine(*geo["transform"]) if geo else None,
        "compress": "deflate",
        "tiled": True,
        "blockxsize": TILE,
        "blockysize": TILE,
        "BIGTIFF": "IF_SAFER",
    }
    rows_file = path.with_name(f".{path.stem}.rows.tif")
    confidence_rows = (
        None if confidence_path is None else path.with_name(f".{confidence_path.stem}.rows.tif")
    )
    try:
        with contextlib.ExitStack() as files:
            options = {k: v for k, v in profile.items() if v is not None}
            target = files.enter_context(rasterio.open(rows_file, "w", **options))
            confidence = None
            if confidence_rows is not None:
                options |= {"dtype": "uint8", "nodata": CONFIDENCE_NODATA}
                confidence = files.enter_context(rasterio.open(confidence_rows, "w", **options))
            for block in blocks:
                counts.add(block.labels, block.valid)
                rows, columns = block.labels.shape
                window = rasterio.windows.Window(block.left, block.top, columns, rows)
                target.write(legend.ids_of(block.labels, block.valid), 1, window=window)
                if confidence is not None:
                    percent = confidence_percent(block.confidence, block.valid)
                    confidence.write(percent, 1, window=window)
            colours = {i: (*c, 255) for i, c in zip(legend.ids, legend.colours, strict=True)}
            colours[legend.nodata] = (0, 0, 0, 0)
            target.write_colormap(1, colours)
            target.set_band_description(1, "class ids (legend.csv)")
            names = {f"CLASS_{i}": n for i, n in zip(legend.ids, legend.classes, strict=True)}
            target.update_tags(1, NODATA=str(legend.nodata), **names)
            if confidence is not None:
                confidence.set_band_description(
                    1, "confidence: top class probability after temperature scaling, percent"
                )
                confidence.update_tags(1, UNITS="percent", NODATA=str(CONFIDENCE_NODATA))
        rasterio.shutil.copy(
            rows_file, path, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=TILE,
            OVERVIEW_RESAMPLING="NEAREST", BIGTIFF="IF_SAFER",
        )  # fmt: skip
        if confidence_rows is not None:
            rasterio.shutil.copy(
                confidence_rows, confidence_path, driver="COG", COMPRESS="DEFLATE",
                BLOCKSIZE=TILE, OVERVIEW_RESAMPLING="AVERAGE", BIGTIFF="IF_SAFER",
            )  # fmt: skip
    finally:
        rows_file.unlink(missing_ok=True)
        if confidence_rows is not None:
            confidence_rows.unlink(missing_ok=True)
    with open_raster(path) as written:
        return written.read(1, out_shape=small, resampling=rasterio.enums.Resampling.nearest)
