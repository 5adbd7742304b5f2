"""Encoded samples: a resized (or tiled) image with its ``0..C-1`` label map, and their store.

On disk a store is a folder::

    images/<sample_id>.png   lossless: RGB for three channels; otherwise grey with the N
                             channels stacked top to bottom (an (N·H, W) picture)
    masks/<sample_id>.png    single channel, training labels (ignore pixels = ignore_index)
    samples.json             the ids, in order, the store's content fingerprint, the channel
                             count and the bands they were read as (dataset.bands): the store
                             is complete only if this exists
    index.csv                (from preprocessing) each sample's source, group and class counts

so a person can open any sample with an image viewer, and training reads one sample at a time.
The fingerprint (:func:`store_fingerprint`) identifies the content: checkpoints record it, and
training and evaluation refuse a store that is not the one they started from
(``efm_seg.basics.lineage``).
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from efm_seg.basics.lineage import digest

INDEX_FILE = "samples.json"
TABLE_FILE = "index.csv"  # one row per sample, written by preprocessing (source, group, counts)


class StoreChangedError(RuntimeError):
    """The store was replaced while it was being read (another run preprocessed again)."""


def store_fingerprint(samples: Iterable[tuple[str, bytes, bytes]]) -> str:
    """The content fingerprint of ``(sample_id, image PNG, labels PNG)`` in store order."""
    return digest(part for sample in samples for part in sample)


def _png(array: np.ndarray, mode: str, compress_level: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def _image_png(image: np.ndarray, compress_level: int) -> bytes:
    """Three channels as an RGB PNG (any viewer shows it); any other count as a grey PNG of the
    channels stacked top to bottom, still lossless and viewable band by band."""
    if image.shape[2] == 3:
        return _png(np.ascontiguousarray(image), "RGB", compress_level)
    stacked = np.ascontiguousarray(np.moveaxis(image, -1, 0)).reshape(-1, image.shape[1])
    return _png(stacked, "L", compress_level)


def _decode_image(image: Image.Image, height: int) -> np.ndarray:
    """``(H, W, channels)`` from what :func:`_image_png` wrote, given the sample's height."""
    if image.mode != "L":
        return np.asarray(image.convert("RGB"))
    stacked = np.asarray(image)
    if stacked.shape[0] % height:
        raise ValueError(f"a stacked image of {stacked.shape[0]} rows is not N × {height} rows")
    return np.moveaxis(stacked.reshape(-1, height, stacked.shape[1]), 0, -1)


@dataclass(frozen=True)
class EncodedSample:
    """One training sample, held PNG-compressed: an image of any channel count (RGB for three)
    and its uint8 label map.

    Compression happens where the sample is made (in the preprocessing worker processes), so
    it runs in parallel, a sample takes a fraction of its raw size in memory, and writing the
    store is a plain copy of bytes. ``image`` and ``labels`` decode on access.
    """

    image_png: bytes
    labels_png: bytes

    @classmethod
    def from_arrays(
        cls, image: np.ndarray, labels: np.ndarray, compress_level: int = 1
    ) -> EncodedSample:
        """Compress an (H, W, channels) uint8 image and an (H, W) uint8 label map."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] < 1:
            raise ValueError(f"image must be (H, W, C) uint8, got {image.shape} {image.dtype}")
        if labels.dtype != np.uint8 or labels.shape != image.shape[:2]:
            raise ValueError(
                f"labels must be {image.shape[:2]} uint8, got {labels.shape} {labels.dtype}"
            )
        return cls(
            _image_png(image, compress_level),
            _png(np.ascontiguousarray(labels), "L", compress_level),
        )

    @property
    def image(self) -> np.ndarray:
        with Image.open(io.BytesIO(self.image_png)) as image:
            return _decode_image(image, self.labels.shape[0])

    @property
    def channels(self) -> int:
        """The image's channel count, from the PNG headers (no decoding)."""
        with Image.open(io.BytesIO(self.image_png)) as image:
            if image.mode != "L":
                return 3
            with Image.open(io.BytesIO(self.labels_png)) as labels:
                return image.height // labels.height

    @property
    def labels(self) -> np.ndarray:
        with Image.open(io.BytesIO(self.labels_png)) as labels:
            return np.asarray(labels)


@dataclass(frozen=True)
class SampleStore:
    """A complete store on disk; reads samples lazily by id.

    ``fingerprint`` identifies its content; :meth:`check_unchanged` tells whether the store on
    disk is still this one.
    """

    root: Path
    ids: tuple[str, ...]
    fingerprint: str
    channels: int = 3
    bands: tuple[int, ...] | None = None  # dataset.bands when it was written (None: RGB)
    resolution_cm: float | None = None  # a pixel's ground size, from georeferenced sources

    def image_path(self, sample_id: str) -> Path:
        return self.root / "images" / f"{sample_id}.png"

    def mask_path(self, sample_id: str) -> Path:
        return self.root / "masks" / f"{sample_id}.png"

    def read(self, sample_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The (H, W, channels) uint8 image and (H, W) uint8 labels of one sample."""
        with Image.open(self.mask_path(sample_id)) as mask:
            labels = np.asarray(mask)
        with Image.open(self.image_path(sample_id)) as image:
            pixels = _decode_image(image, labels.shape[0])
        return pixels, labels

    def check_unchanged(self, during: str) -> None:
        """Raise :class:`StoreChangedError` if the store at ``root`` is no longer this one.

        Args:
            during: What was reading the store, for the message (e.g. ``"baseline, epoch 3"``).
        """
        try:
            now = _read_index(self.root).get("fingerprint")
        except (OSError, ValueError):
            now = None
        if now != self.fingerprint:
            raise StoreChangedError(
                f"the sample store at {self.root} changed during {during} (fingerprint "
                f"{self.fingerprint} when it started, {now or 'no complete store'} now): another "
                "run preprocessed the data again, so what was read is a mix of two stores. "
                "Nothing was saved; run again once the store is settled"
            )

    def index_table(self) -> pd.DataFrame:
        """The index rows preprocessing wrote with the samples (``index.csv``), in store order."""
        path = self.root / TABLE_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"the sample store at {self.root} has no {TABLE_FILE}: run the preprocessing "
                "pipeline again: kedro run --pipelines preprocessing"
            )
        return pd.read_csv(path, dtype={"sample_id": str, "source_id": str, "group": str})

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, sample_id: object) -> bool:
        return sample_id in set(self.ids)


def open_store(root: str | Path) -> SampleStore:
    """Open a store written by :func:`write_store`; a missing or partial store is an error."""
    root = Path(root)
    index = root / INDEX_FILE
    if not index.is_file():
        raise FileNotFoundError(
            f"no complete sample store at {root} (missing {INDEX_FILE}); run the preprocessing "
            "pipeline first: kedro run --pipelines preprocessing"
        )
    content = _read_index(root)
    if "fingerprint" not in content:
        raise FileNotFoundError(
            f"the sample store at {root} was written by an earlier efm-seg and has no content "
            "fingerprint, so what is trained on it cannot be traced; run the preprocessing "
            "pipeline again: kedro run --pipelines preprocessing"
        )
    bands = content.get("bands")
    return SampleStore(
        root=root,
        ids=tuple(content["ids"]),
        fingerprint=content["fingerprint"],
        channels=int(content.get("channels", 3)),  # stores written before multi-band: RGB
        bands=None if bands is None else tuple(bands),
        resolution_cm=content.get("resolution_cm"),
    )


def _read_index(root: Path) -> dict:
    return json.loads((root / INDEX_FILE).read_text())


def write_store(
    root: str | Path,
    samples: Mapping[str, EncodedSample] | Iterable[tuple[str, EncodedSample, dict[str, Any]]],
    bands: tuple[int, ...] | None = None,
) -> SampleStore:
    """Write ``samples`` as a store at ``root``, replacing any previous store atomically.

    ``samples`` is a mapping of id to sample, or an iterable of ``(id, sample, index row)``
    consumed one sample at a time (preprocessing streams them: memory holds one at a time,
    whatever the dataset's size). Index rows are kept in the store's ``index.csv``
    (:meth:`SampleStore.index_table`). ``bands`` is the ``dataset.bands`` the images were read
    with (recorded, so training and predict use the same); every sample must have as many
    channels as the first.

    Everything is written into a hidden sibling folder that is renamed into place at the end,
    so an interrupted write never leaves a store that a later run would load.
    """
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.parent / f".{root.name}.tmp-{uuid.uuid4().hex[:8]}"
    (staging / "images").mkdir(parents=True)
    (staging / "masks").mkdir()
    items = (
        ((sample_id, sample, None) for sample_id, sample in samples.items())
        if isinstance(samples, Mapping)
        else samples
    )
    ids: list[str] = []
    rows: list[dict[str, Any]] = []
    channels: set[int] = set()

    def written() -> Iterator[bytes | str]:
        # Writes each sample as the fingerprint reads it: one pass, one sample in memory.
        for sample_id, sample, row in items:
            (staging / "images" / f"{sample_id}.png").write_bytes(sample.image_png)
            (staging / "masks" / f"{sample_id}.png").write_bytes(sample.labels_png)
            ids.append(sample_id)
            channels.add(sample.channels)
            if len(channels) > 1:
                raise ValueError(
                    f"samples differ in channel count ({sorted(channels)}, at {sample_id!r}) in "
                    f"the store written to {root}"
                )
            if row is not None:
                rows.append(row)
            yield sample_id
            yield sample.image_png
            yield sample.labels_png

    try:
        fingerprint = digest(written())
        if len(set(ids)) != len(ids):
            raise ValueError(f"sample ids repeat in the store written to {root}")
        if rows:
            pd.DataFrame(rows).to_csv(staging / TABLE_FILE, index=False)
        resolution = store_resolution(rows)
        content = {
            "ids": ids,
            "fingerprint": fingerprint,
            "channels": next(iter(channels), 3),
            "bands": None if bands is None else list(bands),
            "resolution_cm": resolution,
        }
        (staging / INDEX_FILE).write_text(json.dumps(content, indent=0))
        _swap_into_place(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return SampleStore(
        root=root,
        ids=tuple(ids),
        fingerprint=fingerprint,
        channels=next(iter(channels), 3),
        bands=None if bands is None else tuple(bands),
        resolution_cm=resolution,
    )


def store_resolution(rows: list[dict[str, Any]]) -> float | None:
    """The ground size of a sample's pixel in cm (the median of the samples'), when every
    sample's source image was georeferenced in a projected CRS; else ``None``."""
    values = [row.get("resolution_cm") for row in rows]
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return None
    return round(float(np.median(values)), 4)


def _swap_into_place(staging: Path, root: Path) -> None:
    if root.exists():
        retired = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(root, retired)
        os.replace(staging, root)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, root)
