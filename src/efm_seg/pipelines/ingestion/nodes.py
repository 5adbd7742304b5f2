"""Ingestion nodes: pair every image with its mask, check both, and tabulate the dataset."""

from __future__ import annotations

import logging
from collections import defaultdict
from functools import partial

import pandas as pd

from efm_seg.basics.mappings import as_mapping
from efm_seg.data.imagery import parse_bands
from efm_seg.data.labels import LabelScheme, colour_hex
from efm_seg.data.parallel import parallel_map, resolve_workers
from efm_seg.data.raw import (
    LOSSLESS_MASK_HINT,
    LOSSY_SUFFIXES,
    DatasetValidationError,
    Layout,
    PairInspection,
    RawFolder,
    SamplePair,
    inspect_pair,
    pair_files,
)
from efm_seg.parameters import DatasetParams, IngestionParams

logger = logging.getLogger(__name__)

MAX_LISTED = 12


def build_manifest(
    raw: RawFolder, dataset: DatasetParams, ingestion: IngestionParams
) -> pd.DataFrame:
    """Find, pair and validate every sample of a raw folder; one manifest row per sample.

    Every image and mask is decoded in full (in parallel), so truncated files, size mismatches
    and mask values outside the label table are all found here, reported together, and nothing
    is written when any is found.

    Args:
        raw: The raw dataset folder (``raw_dataset`` in the catalog).
        dataset: ``params:dataset``, the label scheme (see :class:`LabelScheme`).
        ingestion: ``params:ingestion``: ``images`` and ``masks`` path templates, optional
            ``group_by`` (a template field) and ``workers``.

    Returns:
        Columns ``sample_id, group, image, mask, width, height`` and ``px_<class>`` pixel
        counts per class plus ``px_ignore``; paths are relative to the raw folder.
    """
    scheme = LabelScheme.from_params(as_mapping(dataset))
    bands = parse_bands(as_mapping(dataset).get("bands"))
    ingestion = as_mapping(ingestion)
    layout_params = {k: v for k, v in ingestion.items() if k != "workers"}
    layout = Layout.from_params(layout_params)

    files = raw.list_files()
    if not files:
        raise DatasetValidationError(f"raw dataset folder {raw.root} is empty")
    pairing = pair_files(files, layout)
    if not pairing.pairs and not pairing.problems:
        raise DatasetValidationError(
            f"no file in {raw.root} matches the image template {layout.images.template!r} "
            f"({len(files)} files there, e.g. {files[:3]}); check ingestion.images"
        )
    if pairing.unmatched:
        logger.warning(
            "%d file(s) in %s match neither template and are ignored: %s",
            len(pairing.unmatched),
            raw.root,
            pairing.unmatched[:MAX_LISTED],
        )

    workers = resolve_workers(
        ingestion.get("workers", "auto"), len(pairing.pairs), "ingestion.workers"
    )
    inspections = list(
        parallel_map(partial(inspect_pair, raw, scheme=scheme, bands=bands), pairing.pairs, workers)
    )
    problems = (
        pairing.problems
        + _file_problems(inspections)
        + _unknown_value_problems(inspections, pairing.pairs, scheme)
    )
    lossy = [pair.mask for pair in pairing.pairs if pair.mask.lower().endswith(LOSSY_SUFFIXES)]
    if lossy:
        note = f"{len(lossy)} mask(s) are lossy files (e.g. {lossy[:3]}): {LOSSLESS_MASK_HINT}"
        if problems:
            problems.append(note)
        else:
            logger.warning("%s; check that no label was changed", note)
    if problems:
        raise DatasetValidationError(
            f"{len(problems)} problem(s) in raw dataset {raw.root}; nothing was written:\n- "
            + "\n- ".join(problems)
        )

    columns = scheme.count_columns()
    rows = []
    for pair, found in zip(pairing.pairs, inspections, strict=True):
        row = {
            "sample_id": pair.sample_id,
            "group": pair.group,
            "image": pair.image,
            "mask": pair.mask,
            "width": found.width,
            "height": found.height,
        }
        row.update(dict(zip(columns, found.counts.values(), strict=True)))
        rows.append(row)
    manifest = pd.DataFrame(rows)
    totals = manifest[columns].sum()
    logger.info(
        "Manifest: %d samples in %d group(s); class pixel shares: %s",
        len(manifest),
        manifest["group"].nunique(),
        ", ".join(f"{c[3:]} {v / max(totals.sum(), 1):.1%}" for c, v in totals.items()),
    )
    return manifest


def _file_problems(inspections: list[PairInspection]) -> list[str]:
    errors = [e for found in inspections for e in found.errors]
    shown = errors[:MAX_LISTED]
    if len(errors) > MAX_LISTED:
        shown.append(f"… and {len(errors) - MAX_LISTED} more file problems")
    return shown


def _unknown_value_problems(
    inspections: list[PairInspection], pairs: list[SamplePair], scheme: LabelScheme
) -> list[str]:
    """One problem per unknown colour/id: its share of all mask pixels and where it occurs."""
    pixels: dict[int, int] = defaultdict(int)
    files: dict[int, list[str]] = defaultdict(list)
    total = 0
    for pair, found in zip(pairs, inspections, strict=True):
        total += found.width * found.height
        for key, count in found.unknown.items():
            pixels[key] += count
            files[key].append(pair.mask)
    if not pixels:
        return []
    what = "colour" if scheme.mode == "palette" else "id"
    fix = "ignore_colours" if scheme.mode == "palette" else "ignore_ids"
    problems = []
    for key in sorted(pixels, key=pixels.get, reverse=True)[:MAX_LISTED]:
        where = ", ".join(repr(f) for f in files[key][:5])
        more = f" … and {len(files[key]) - 5} more" if len(files[key]) > 5 else ""
        problems.append(
            f"mask {what} {scheme.describe_value(key)} is not in dataset.classes: "
            f"{pixels[key] / max(total, 1):.4%} of all mask pixels, in {len(files[key])} "
            f"file(s): {where}{more}"
        )
    problems.append(
        f"known {what}s: "
        + (
            ", ".join(f"{n}={_show(scheme, i)}" for i, n in enumerate(scheme.classes))
            + f"; add unknown {what}s to dataset.classes, or to dataset.{fix} to ignore them"
        )
    )
    return problems


def _show(scheme: LabelScheme, index: int) -> str:
    if scheme.mode == "palette":
        return colour_hex(scheme.colours[index])
    return str(scheme.source_ids[index])
