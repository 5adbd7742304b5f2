"""Encoded samples: a resized (or tiled) image with its ``0..C-1`` label map, and their store.

On disk a store is a folder::

    images/<sample_id>.png   RGB, lossless
    masks/<sample_id>.png    single channel, training labels (ignore pixels = ignore_index)
    samples.json             the ids, in order: the store is complete only if this exists

so a person can open any sample with an image viewer, and training reads one sample at a time.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

INDEX_FILE = "samples.json"


@dataclass(frozen=True)
class EncodedSample:
    """One training sample: ``image`` (H, W, 3) uint8 and ``labels`` (H, W) uint8."""

    image: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class SampleStore:
    """A complete store on disk; reads samples lazily by id."""

    root: Path
    ids: tuple[str, ...]

    def image_path(self, sample_id: str) -> Path:
        return self.root / "images" / f"{sample_id}.png"

    def mask_path(self, sample_id: str) -> Path:
        return self.root / "masks" / f"{sample_id}.png"

    def read(self, sample_id: str) -> EncodedSample:
        with Image.open(self.image_path(sample_id)) as image:
            rgb = np.asarray(image.convert("RGB"))
        with Image.open(self.mask_path(sample_id)) as mask:
            labels = np.asarray(mask)
        return EncodedSample(image=rgb, labels=labels)

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
    ids = tuple(json.loads(index.read_text())["ids"])
    return SampleStore(root=root, ids=ids)


def write_store(
    root: str | Path,
    samples: Mapping[str, EncodedSample],
    *,
    compress_level: int = 1,
    threads: int = 4,
) -> SampleStore:
    """Write ``samples`` as a store at ``root``, replacing any previous store atomically.

    Everything is written into a hidden sibling folder that is renamed into place at the end,
    so an interrupted write never leaves a store that a later run would load. PNG encoding runs
    on a few threads (Pillow releases the GIL while compressing).
    """
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.parent / f".{root.name}.tmp-{uuid.uuid4().hex[:8]}"
    (staging / "images").mkdir(parents=True)
    (staging / "masks").mkdir()

    def write_one(item: tuple[str, EncodedSample]) -> None:
        sample_id, sample = item
        Image.fromarray(sample.image, mode="RGB").save(
            staging / "images" / f"{sample_id}.png", compress_level=compress_level
        )
        Image.fromarray(sample.labels, mode="L").save(
            staging / "masks" / f"{sample_id}.png", compress_level=compress_level
        )

    try:
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            list(pool.map(write_one, samples.items()))
        (staging / INDEX_FILE).write_text(json.dumps({"ids": list(samples)}, indent=0))
        _swap_into_place(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return SampleStore(root=root, ids=tuple(samples))


def _swap_into_place(staging: Path, root: Path) -> None:
    if root.exists():
        retired = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(root, retired)
        os.replace(staging, root)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, root)
