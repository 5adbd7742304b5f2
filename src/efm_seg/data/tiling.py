"""Resizing (or tiling) images and masks, and encoding their labels, into a sample stream.

Images are resized with an antialiasing filter; masks only ever with nearest neighbour, so a
label id is never interpolated into another class. ``tile`` mode cuts size×size patches with a
stride instead, keeping the source's scale and aspect ratio; the last row and column of patches
are aligned to the image's far edge so every pixel is covered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import pandas as pd
from PIL import Image

from efm_seg.data.imagery import Bands, describe_bands, pixel_size_cm, read_bands
from efm_seg.data.labels import LabelScheme
from efm_seg.data.parallel import parallel_map, resolve_workers
from efm_seg.data.raw import DatasetValidationError, RawFolder
from efm_seg.data.samples import EncodedSample

logger = logging.getLogger(__name__)

# Results of sources handed to the workers but not yet written to the store, per worker: bounds
# preprocessing's memory by a few sources' samples, not the dataset's size.
MAX_AHEAD_PER_WORKER = 4

RESAMPLING = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class PreprocessingConfig:
    """Validated ``params:preprocessing``."""

    mode: Literal["resize", "tile"]
    size: int
    stride: int
    image_filter: str
    workers: Any

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> PreprocessingConfig:
        where = "preprocessing"
        known = {"mode", "size", "stride", "image_filter", "workers"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}")
        mode = params.get("mode", "resize")
        if mode not in ("resize", "tile"):
            raise ValueError(f"{where}.mode: {mode!r} is not a mode; use 'resize' or 'tile'")
        size = params.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 8:
            raise ValueError(f"{where}.size: {size!r} must be an integer >= 8 (paper: 512)")
        stride = params.get("stride") or size
        if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
            raise ValueError(f"{where}.stride: {stride!r} must be a positive integer or null")
        image_filter = params.get("image_filter", "lanczos")
        if image_filter not in RESAMPLING:
            raise ValueError(
                f"{where}.image_filter: {image_filter!r} is not one of {sorted(RESAMPLING)}"
            )
        return cls(mode, size, stride, image_filter, params.get("workers", "auto"))


def tile_origins(length: int, size: int, stride: int) -> list[int]:
    """Patch start positions along one axis: every ``stride``, the last one flush with the end."""
    if length < size:
        raise ValueError(f"length {length} is smaller than the tile size {size}")
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def resize_pair(
    image: np.ndarray, labels: np.ndarray, size: int, image_filter: str = "lanczos"
) -> tuple[np.ndarray, np.ndarray]:
    """Resize an image of any channel count (antialiased) and its label map (nearest neighbour)
    to size×size."""

    def resize(plane: np.ndarray) -> np.ndarray:
        resized = Image.fromarray(np.ascontiguousarray(plane)).resize(
            (size, size), RESAMPLING[image_filter]
        )
        return np.asarray(resized)

    if image.shape[2] == 3:
        resized = resize(image)
    else:  # Pillow has no mode for N channels: one band at a time
        resized = np.stack([resize(image[:, :, c]) for c in range(image.shape[2])], axis=-1)
    resized_labels = Image.fromarray(labels).resize((size, size), Image.Resampling.NEAREST)
    return resized, np.asarray(resized_labels)


@dataclass(frozen=True)
class _Task:
    sample_id: str
    group: str
    image: str
    mask: str


def _encode_one(
    task: _Task,
    raw: RawFolder,
    scheme: LabelScheme,
    config: PreprocessingConfig,
    bands: Bands = None,
) -> list[tuple[dict[str, Any], EncodedSample]]:
    """Read one source pair and return its encoded sample(s) with their index rows."""
    image, geo = read_bands(raw.path(task.image), bands, raw.max_image_pixels)
    source_cm = pixel_size_cm(geo)
    labels = scheme.encode(scheme.mask_array(raw.open(task.mask)))
    nodata = raw.nodata_mask(task.image, bands)
    if nodata is not None:  # no data in the image: nothing to learn there, whatever the mask says
        labels[nodata] = scheme.ignore_index
    unknown = labels == scheme.unknown_value
    if unknown.any():
        raise DatasetValidationError(
            f"mask {task.mask!r} has {int(unknown.sum())} pixels outside dataset.classes; "
            "the dataset changed since ingestion: run the ingestion pipeline again"
        )
    height, width = labels.shape
    if config.mode == "resize":
        pieces = [
            (
                task.sample_id,
                0,
                0,
                height,
                width,
                *resize_pair(image, labels, config.size, config.image_filter),
            )
        ]
    else:
        pieces = [
            (
                f"{task.sample_id}__y{y:05d}_x{x:05d}",
                y,
                x,
                config.size,
                config.size,
                image[y : y + config.size, x : x + config.size],
                labels[y : y + config.size, x : x + config.size],
            )
            for y in tile_origins(height, config.size, config.stride)
            for x in tile_origins(width, config.size, config.stride)
        ]
    results = []
    for sample_id, y, x, h, w, patch, patch_labels in pieces:
        # A resized sample's pixels are larger than the source's by the resize factor.
        scale = (h * w / (patch.shape[0] * patch.shape[1])) ** 0.5
        resolution = None if source_cm is None else source_cm * scale
        row = {
            "sample_id": sample_id,
            "source_id": task.sample_id,
            "group": task.group,
            "y": y,
            "x": x,
            "source_height": h,
            "source_width": w,
        }
        if resolution is not None:  # the ground size of a pixel, when georeferenced
            row["resolution_cm"] = resolution
        row.update({f"px_{k}": v for k, v in scheme.class_pixel_counts(patch_labels).items()})
        results.append((row, EncodedSample.from_arrays(patch, patch_labels)))
    return results


@dataclass(frozen=True)
class EncodedStream:
    """The encoded samples of one preprocessing run, made while the sample store is written.

    Iterating runs the parallel encoding and yields ``(sample_id, sample, index row)`` in
    manifest order; the store writes each as it comes (``efm_seg.data.samples.write_store``), so
    memory holds a bounded number of sources' samples (``max_ahead`` results not yet written),
    whatever the dataset's size. An error (an unreadable mask) stops the write, and the staged
    store is removed.
    """

    tasks: tuple[_Task, ...]
    encode: Any  # picklable: _encode_one bound to the raw folder, scheme, config and bands
    workers: int
    max_ahead: int
    bands: Bands = None  # dataset.bands, recorded in the store

    def __iter__(self) -> Iterator[tuple[str, EncodedSample, dict[str, Any]]]:
        results = parallel_map(self.encode, self.tasks, self.workers, max_ahead=self.max_ahead)
        for pieces in results:
            for row, sample in pieces:
                yield row["sample_id"], sample, row

    def __len__(self) -> int:
        return len(self.tasks)


def encode_stream(
    raw: RawFolder,
    manifest: pd.DataFrame,
    scheme: LabelScheme,
    config: PreprocessingConfig,
    bands: Bands = None,
) -> EncodedStream:
    """Check the manifest and settings, and return the resized (or tiled) and encoded samples
    as a stream that the sample store consumes (see :class:`EncodedStream`).

    Args:
        raw: The raw dataset folder the manifest's paths are relative to.
        manifest: The ingestion pipeline's manifest.
        scheme: The dataset's label scheme.
        config: ``mode`` (``resize`` | ``tile``), ``size``, ``stride`` (tile mode; default
            ``size``), ``image_filter``, ``workers``.
        bands: The bands to read (``dataset.bands``; ``None``: RGB).

    Returns:
        The samples, made while ``encoded_samples`` is written, with one index row each (its
        source, group, position in the source in tile mode, per-class pixel counts), kept in
        the store for :func:`index_samples`.
    """
    expected = {"sample_id", "group", "image", "mask", "width", "height"}
    missing = sorted(expected - set(manifest.columns))
    if missing:
        raise DatasetValidationError(f"manifest lacks column(s) {missing}; run ingestion again")
    if manifest.empty:
        raise DatasetValidationError("the manifest has no samples; run ingestion on a dataset")
    if config.mode == "tile":
        small = manifest[(manifest["width"] < config.size) | (manifest["height"] < config.size)]
        if not small.empty:
            listed = ", ".join(
                f"{r.image!r} ({r.width}×{r.height})" for r in small.head(10).itertuples()
            )
            raise DatasetValidationError(
                f"{len(small)} image(s) are smaller than the tile size {config.size}×{config.size}"
                f" (preprocessing.size, tile mode): {listed}; use mode: resize or a smaller size"
            )
    tasks = tuple(
        _Task(r.sample_id, str(r.group), r.image, r.mask)
        for r in manifest[["sample_id", "group", "image", "mask"]].itertuples(index=False)
    )
    workers = resolve_workers(config.workers, len(tasks), "preprocessing.workers")
    logger.info(
        "Encoding %d source image(s) to %d×%d samples of %s (%s mode, %d worker(s)) into the store",
        len(tasks),
        config.size,
        config.size,
        describe_bands(bands),
        config.mode,
        workers,
    )
    return EncodedStream(
        tasks=tasks,
        encode=partial(_encode_one, raw=raw, scheme=scheme, config=config, bands=bands),
        workers=workers,
        max_ahead=MAX_AHEAD_PER_WORKER * workers,
        bands=bands,
    )
