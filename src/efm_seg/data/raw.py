"""Reading a raw dataset folder: file layout, image/mask pairing and per-pair inspection.

A layout is described by two path templates relative to the dataset root, e.g.::

    images: "{tile}/images/{id}.jpg"     # Dubai: same stem, grouped by tile folder
    masks:  "{tile}/masks/{id}.png"

    images: "images/{id}_sat.jpg"        # DeepGlobe-style suffixes
    masks:  "masks/{id}_mask.png"

``{name}`` captures one path component (no ``/``), ``*`` matches within a component and ``**/``
any number of folders. ``{id}`` is required; every field of the image template must appear in
the mask template, and an image pairs with the mask whose fields are equal. The sample id joins
all fields, so ``image_part_001`` in two tiles are two samples.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from efm_seg.data.imagery import Bands, open_pillow, read_bands
from efm_seg.data.labels import LabelScheme
from efm_seg.data.scenes import SceneFile

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class DatasetValidationError(ValueError):
    """The raw data or the parameters that describe it are wrong; the message lists what."""


@dataclass(frozen=True)
class PathTemplate:
    """A path template such as ``"{tile}/images/{id}.jpg"`` compiled to a regular expression."""

    template: str
    fields: tuple[str, ...]
    regex: re.Pattern[str]

    @classmethod
    def compile(cls, template: str, where: str) -> PathTemplate:
        if not isinstance(template, str) or not template.strip():
            raise DatasetValidationError(
                f"{where}: give a path template such as 'images/{{id}}.jpg'"
            )
        template = template.strip().lstrip("./")
        fields: list[str] = []
        pattern = ""
        pos = 0
        # Translate piece by piece so that literal text is escaped exactly once.
        tokens = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}|\*\*/|\*")
        for match in tokens.finditer(template):
            pattern += re.escape(template[pos : match.start()])
            token = match.group(0)
            if token == "**/":
                pattern += r"(?:[^/]+/)*"
            elif token == "*":
                pattern += r"[^/]*"
            else:
                name = token[1:-1]
                if name in fields:
                    raise DatasetValidationError(
                        f"{where}: field {{{name}}} appears twice in {template!r}"
                    )
                fields.append(name)
                pattern += rf"(?P<{name}>[^/]+?)"
            pos = match.end()
        pattern += re.escape(template[pos:])
        if "id" not in fields:
            raise DatasetValidationError(f"{where}: {template!r} has no {{id}} field")
        if "{" in _FIELD.sub("", template) or "}" in _FIELD.sub("", template):
            raise DatasetValidationError(f"{where}: {template!r} has a malformed {{field}}")
        return cls(template=template, fields=tuple(fields), regex=re.compile(pattern + r"\Z"))

    def match(self, relpath: str) -> dict[str, str] | None:
        found = self.regex.match(relpath)
        return found.groupdict() if found else None


@dataclass(frozen=True)
class Layout:
    """Where images and masks are, how they pair, and how samples group."""

    images: PathTemplate
    masks: PathTemplate
    group_by: str | None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Layout:
        where = "ingestion"
        known = {"images", "masks", "group_by"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise DatasetValidationError(
                f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}"
            )
        images = PathTemplate.compile(params.get("images"), f"{where}.images")
        masks = PathTemplate.compile(params.get("masks"), f"{where}.masks")
        if set(images.fields) != set(masks.fields):
            raise DatasetValidationError(
                f"{where}: the image template {images.template!r} has fields {list(images.fields)} "
                f"but the mask template {masks.template!r} has {list(masks.fields)}; they must "
                "share the same fields so each image finds its mask"
            )
        group_by = params.get("group_by")
        if group_by is not None and group_by not in images.fields:
            raise DatasetValidationError(
                f"{where}.group_by: {group_by!r} is not a field of {images.template!r} "
                f"(fields: {list(images.fields)}); use one of them or null"
            )
        if group_by == "id":
            group_by = None  # grouping by id is the default: each source image is its own group
        return cls(images=images, masks=masks, group_by=group_by)

    def sample_id(self, fields: Mapping[str, str]) -> str:
        """A file-system-safe id from all fields, ``id`` last (``Tile_1__image_part_001``)."""
        parts = [fields[name] for name in self.images.fields if name != "id"] + [fields["id"]]
        return "__".join(_UNSAFE.sub("_", p).strip("_") or "_" for p in parts)


@dataclass(frozen=True)
class SamplePair:
    sample_id: str
    group: str
    image: str
    mask: str


@dataclass
class PairingResult:
    pairs: list[SamplePair]
    problems: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)


def pair_files(files: Iterable[str], layout: Layout) -> PairingResult:
    """Pair image and mask files by their template fields.

    Reports images without masks, masks without images, and ids claimed by two files.
    Files that match neither template are returned in ``unmatched`` (callers warn about them).
    """
    images: dict[str, list[tuple[str, dict[str, str]]]] = {}
    masks: dict[str, list[str]] = {}
    unmatched: list[str] = []
    for relpath in sorted(files):
        image_fields = layout.images.match(relpath)
        mask_fields = layout.masks.match(relpath)
        if image_fields is not None and mask_fields is not None:
            unmatched.append(relpath)  # ambiguous templates; reported below as a problem
            continue
        if image_fields is not None:
            images.setdefault(layout.sample_id(image_fields), []).append((relpath, image_fields))
        elif mask_fields is not None:
            masks.setdefault(layout.sample_id(mask_fields), []).append(relpath)
        else:
            unmatched.append(relpath)

    problems: list[str] = []
    both = [f for f in unmatched if layout.images.match(f) and layout.masks.match(f)]
    if both:
        problems.append(
            "files match both the image and the mask template (make the templates distinct): "
            + _listing(both)
        )
    duplicates = {k: [p for p, _ in v] for k, v in images.items() if len(v) > 1}
    duplicates.update({k: v for k, v in masks.items() if len(v) > 1})
    for sample_id, paths in sorted(duplicates.items()):
        problems.append(f"duplicate id {sample_id!r}: claimed by {_listing(paths)}")
    lonely_images = sorted(v[0][0] for k, v in images.items() if k not in masks)
    lonely_masks = sorted(v[0] for k, v in masks.items() if k not in images)
    if lonely_images:
        problems.append(
            f"{len(lonely_images)} image(s) with no mask (expected at "
            f"{layout.masks.template!r}): {_listing(lonely_images)}"
        )
    if lonely_masks:
        problems.append(
            f"{len(lonely_masks)} mask(s) with no image (expected at "
            f"{layout.images.template!r}): {_listing(lonely_masks)}"
        )
    pairs = [
        SamplePair(
            sample_id=sample_id,
            group=entries[0][1][layout.group_by] if layout.group_by else sample_id,
            image=entries[0][0],
            mask=masks[sample_id][0],
        )
        for sample_id, entries in sorted(images.items())
        if sample_id in masks and sample_id not in duplicates
    ]
    return PairingResult(
        pairs=pairs, problems=problems, unmatched=[f for f in unmatched if f not in both]
    )


def _listing(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f" … and {len(items) - limit} more" if len(items) > limit else "")


LOSSY_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".webp")
"""Files whose compression changes pixel values: fine for images, wrong for masks."""

LOSSLESS_MASK_HINT = (
    "masks must be stored losslessly (PNG, TIFF, BMP): JPEG compression blends colours at "
    "every class edge into values that belong to no class"
)


@dataclass(frozen=True)
class RawFolder:
    """A read-only raw dataset folder. Cheap to pickle: worker processes reopen files by path.

    Attributes:
        root: The folder.
        max_image_pixels: Pillow's decompression-bomb guard: a file of more than twice this
            many pixels is refused. ``None`` keeps Pillow's default (89 478 485).
    """

    root: Path
    max_image_pixels: int | None = None

    def list_files(self) -> list[str]:
        """Every regular file below the root as a posix path relative to it; hidden ones skipped.

        Symbolic links to folders are followed (a dataset assembled from links is read whole),
        each real folder once, so a link back to an ancestor cannot loop.
        """
        found: list[str] = []
        seen: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            info = os.stat(dirpath)
            if (info.st_dev, info.st_ino) in seen:
                dirnames[:] = []
                continue
            seen.add((info.st_dev, info.st_ino))
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            base = Path(dirpath).relative_to(self.root)
            found.extend(
                (base / name).as_posix()
                for name in sorted(filenames)
                if not name.startswith(".") and os.path.isfile(os.path.join(dirpath, name))
            )
        return found

    def path(self, relpath: str) -> Path:
        return self.root / relpath

    def open(self, relpath: str) -> Image.Image:
        """Open and fully decode an image, so truncated files fail here and not later."""
        return open_pillow(self.path(relpath), self.max_image_pixels)

    def read_image(self, relpath: str, bands: Bands = None) -> np.ndarray:
        """The model's ``(H, W, channels)`` uint8 channels of an image (``dataset.bands``):
        PNG/JPEG through Pillow, GeoTIFF through rasterio."""
        return read_bands(self.path(relpath), bands, self.max_image_pixels)[0]

    def nodata_mask(self, relpath: str, bands: Bands = None) -> np.ndarray | None:
        """The pixels an image's file marks as having no data (a GeoTIFF's nodata value, alpha
        band or internal mask, a PNG's alpha channel), ``(H, W)`` bool; ``None`` when it marks
        none. A band the model reads is data, whatever the file calls it."""
        scene = SceneFile(self.path(relpath))
        info = scene.probe()
        if info.nodata is None and not info.masked and info.alpha_band(bands) is None:
            return None
        with scene.open(bands) as reader:
            _, valid = reader.read(0, reader.height, 0, reader.width)
        return None if valid is None else ~valid


@dataclass
class PairInspection:
    """What reading one image/mask pair found."""

    sample_id: str
    width: int = 0
    height: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    unknown: dict[int, int] = field(default_factory=dict)  # raw key -> pixel count
    errors: list[str] = field(default_factory=list)


def inspect_pair(
    raw: RawFolder, pair: SamplePair, scheme: LabelScheme, bands: Bands = None
) -> PairInspection:
    """Decode one pair fully; check sizes, that the image has the bands ``dataset.bands``
    names, and that every mask value is in the label table."""
    report = PairInspection(sample_id=pair.sample_id)
    try:
        image = raw.read_image(pair.image, bands)
    except ValueError as exc:
        report.errors.append(f"image {pair.image!r} {exc}")
        image = None
    try:
        mask = raw.open(pair.mask)
    except ValueError as exc:
        report.errors.append(f"mask {pair.mask!r} {exc}")
        return report
    if image is None:
        return report
    report.height, report.width = image.shape[:2]
    if mask.size != (report.width, report.height):
        report.errors.append(
            f"mask {pair.mask!r} is {mask.size[0]}×{mask.size[1]} but its image {pair.image!r} "
            f"is {report.width}×{report.height}"
        )
        return report
    try:
        values = scheme.mask_array(mask)
    except ValueError as exc:
        report.errors.append(f"mask {pair.mask!r} {exc}")
        return report
    labels = scheme.encode(values)
    report.counts = scheme.class_pixel_counts(labels)
    unknown = labels == scheme.unknown_value
    if unknown.any():
        keys, counts = np.unique(scheme.raw_keys(values)[unknown], return_counts=True)
        report.unknown = {int(k): int(c) for k, c in zip(keys, counts, strict=True)}
    return report
