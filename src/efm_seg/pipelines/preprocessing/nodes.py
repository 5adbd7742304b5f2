"""Preprocessing nodes: resize (or tile) images and masks, and encode labels
(:mod:`efm_seg.data.tiling`), into the sample store."""

from __future__ import annotations

import logging

import pandas as pd

from efm_seg.basics.mappings import as_mapping
from efm_seg.data.imagery import parse_bands
from efm_seg.data.labels import LabelScheme
from efm_seg.data.raw import RawFolder
from efm_seg.data.samples import SampleStore
from efm_seg.data.tiling import EncodedStream, PreprocessingConfig, encode_stream
from efm_seg.parameters import DatasetParams, PreprocessingParams

logger = logging.getLogger(__name__)


def encode_samples(
    raw: RawFolder,
    manifest: pd.DataFrame,
    dataset: DatasetParams,
    preprocessing: PreprocessingParams,
) -> EncodedStream:
    """Check the manifest and settings, and return the resized (or tiled) and encoded samples
    as a stream that the sample store consumes (see :class:`~efm_seg.data.tiling.EncodedStream`).

    Args:
        raw: The raw dataset folder the manifest's paths are relative to.
        manifest: The ingestion pipeline's manifest.
        dataset: ``params:dataset`` (label scheme, bands).
        preprocessing: ``params:preprocessing``: ``mode`` (``resize`` | ``tile``), ``size``,
            ``stride`` (tile mode; default ``size``), ``image_filter``, ``workers``.
    """
    return encode_stream(
        raw,
        manifest,
        LabelScheme.from_params(as_mapping(dataset)),
        PreprocessingConfig.from_params(as_mapping(preprocessing)),
        parse_bands(as_mapping(dataset).get("bands")),
    )


def index_samples(encoded_samples: SampleStore) -> pd.DataFrame:
    """The index of the store just written: one row per sample, in store order (its source,
    group, position in the source and per-class pixel counts)."""
    index = encoded_samples.index_table()
    if list(index["sample_id"]) != list(encoded_samples.ids):
        raise ValueError(
            f"the index of the sample store at {encoded_samples.root} does not list its samples "
            "in order: run the preprocessing pipeline again"
        )
    logger.info(
        "Encoded %d sample(s) from %d source image(s)", len(index), index["source_id"].nunique()
    )
    return index
