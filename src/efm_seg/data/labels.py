"""Label schemes: how a dataset's masks encode classes, and encoding them to ``0..C-1``.

A mask encodes classes either by **colour** (a palette of class name → RGB, as in the Dubai
dataset) or by **integer id** (an id → class table, as in LoveDA). Both are turned into the same
training labels: ``0..C-1`` in the order the classes are listed, plus one ``ignore_index`` for
pixels that must not count (no-data, "unlabelled").
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from PIL import Image

from efm_seg.data.imagery import parse_bands

Colour = tuple[int, int, int]


class LabelConfigError(ValueError):
    """The ``dataset`` parameters describe an impossible label scheme."""


def parse_colour(value: Any, where: str) -> Colour:
    """Read ``"#RRGGBB"``, ``[r, g, b]`` or a grey level ``g`` as an RGB triple.

    Args:
        value: The colour as written in the parameters.
        where: The parameter path, named in the error message.
    """
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if len(text) == 6:
            try:
                return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
            except ValueError:
                pass
        raise LabelConfigError(f"{where}: {value!r} is not a colour; write '#RRGGBB' or [r, g, b]")
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255:
        return (value, value, value)
    if (
        isinstance(value, Sequence)
        and len(value) == 3
        and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)
    ):
        return (int(value[0]), int(value[1]), int(value[2]))
    raise LabelConfigError(f"{where}: {value!r} is not a colour; write '#RRGGBB' or [r, g, b]")


def colour_hex(colour: Colour) -> str:
    """``(60, 16, 152)`` → ``"#3C1098"``."""
    return "#{:02X}{:02X}{:02X}".format(*colour)


def _pack(rgb: np.ndarray) -> np.ndarray:
    """Pack an ``(..., 3)`` uint8 array into one int32 key per pixel."""
    rgb = rgb.astype(np.int32, copy=False)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


@dataclass(frozen=True)
class LabelScheme:
    """How masks encode classes, and the training labels they become.

    Attributes:
        mode: ``"palette"`` (colour masks) or ``"ids"`` (integer masks).
        classes: Class names; a class's training label is its position here.
        colours: In palette mode, the mask colour of each class (same order as ``classes``).
        source_ids: In ids mode, the mask value of each class (same order as ``classes``).
        ignore_colours: Palette mode: mask colours that become ``ignore_index``.
        ignore_ids: Ids mode: mask values that become ``ignore_index``.
        ignore_index: The training label of ignored pixels (outside ``0..C-1``, at most 255).
        display_colours: A colour per class for figures (the palette itself in palette mode).
    """

    mode: Literal["palette", "ids"]
    classes: tuple[str, ...]
    colours: tuple[Colour, ...] = ()
    source_ids: tuple[int, ...] = ()
    ignore_colours: tuple[Colour, ...] = ()
    ignore_ids: tuple[int, ...] = ()
    ignore_index: int = 255
    display_colours: tuple[Colour, ...] = field(default=())

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> LabelScheme:
        """Build and validate a scheme from the ``dataset`` parameters.

        Palette mode::

            mode: palette
            classes: {building: "#3C1098", road: "#6EC1E4", ...}
            ignore_colours: ["#9B9B9B"]

        Ids mode::

            mode: ids
            classes: {1: background, 2: building, ...}
            ignore_ids: [0]

        Both accept ``ignore_index`` (default 255) and an optional ``num_classes`` that must
        agree with the table — a cheap guard against a palette edited in one place only.
        """
        where = "dataset"
        known = {
            "name", "mode", "classes", "ignore_colours", "ignore_ids", "ignore_index",
            "num_classes", "display_colours", "bands",
        }  # fmt: skip
        unknown = sorted(set(params) - known)
        if unknown:
            raise LabelConfigError(
                f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}"
            )
        # Not part of the labels, but of the same block: checked here so that every pipeline
        # refuses bad bands at session start (efm_seg.data.imagery reads them).
        try:
            parse_bands(params.get("bands"))
        except ValueError as exc:
            raise LabelConfigError(str(exc)) from None
        mode = params.get("mode")
        if mode not in ("palette", "ids"):
            raise LabelConfigError(
                f"{where}.mode: {mode!r} is not a label mode; use 'palette' (colour masks) "
                "or 'ids' (integer masks)"
            )
        table = params.get("classes")
        if not isinstance(table, Mapping) or not table:
            raise LabelConfigError(f"{where}.classes: give at least one class as a mapping")
        ignore_index = params.get("ignore_index", 255)
        if not isinstance(ignore_index, int) or not 0 <= ignore_index <= 255:
            raise LabelConfigError(f"{where}.ignore_index: {ignore_index!r} must be in 0..255")
        if ignore_index < len(table):
            raise LabelConfigError(
                f"{where}.ignore_index: {ignore_index} collides with a class label "
                f"(classes are 0..{len(table) - 1}); use a value >= {len(table)}, e.g. 255"
            )
        expected = params.get("num_classes")
        if expected is not None and expected != len(table):
            raise LabelConfigError(
                f"{where}.num_classes is {expected} but {where}.classes lists {len(table)} "
                f"classes ({', '.join(map(str, table))})"
            )

        if mode == "palette":
            names = tuple(str(n) for n in table)
            colours = tuple(parse_colour(c, f"{where}.classes.{n}") for n, c in table.items())
            _reject_duplicates(colours, names, f"{where}.classes")
            ignore = tuple(
                parse_colour(c, f"{where}.ignore_colours[{i}]")
                for i, c in enumerate(params.get("ignore_colours") or ())
            )
            clash = sorted(set(ignore) & set(colours))
            if clash:
                raise LabelConfigError(
                    f"{where}.ignore_colours: {[colour_hex(c) for c in clash]} also name a class"
                )
            display = colours
            scheme = cls(
                mode="palette",
                classes=names,
                colours=colours,
                ignore_colours=ignore,
                ignore_index=ignore_index,
                display_colours=display,
            )
        else:
            ids: list[int] = []
            for key in table:
                try:
                    ids.append(int(key))
                except (TypeError, ValueError):
                    raise LabelConfigError(
                        f"{where}.classes: key {key!r} is not an integer id; in ids mode write "
                        "{mask_value: class_name}"
                    ) from None
            names = tuple(str(v) for v in table.values())
            _reject_duplicates(tuple(ids), names, f"{where}.classes")
            if any(not 0 <= i <= 65535 for i in ids):
                raise LabelConfigError(f"{where}.classes: ids must be in 0..65535, got {ids}")
            ignore_ids = tuple(int(i) for i in params.get("ignore_ids") or ())
            clash = sorted(set(ignore_ids) & set(ids))
            if clash:
                raise LabelConfigError(f"{where}.ignore_ids: {clash} also name a class")
            scheme = cls(
                mode="ids",
                classes=names,
                source_ids=tuple(ids),
                ignore_ids=ignore_ids,
                ignore_index=ignore_index,
                display_colours=_default_display_colours(len(names)),
            )
        if len(set(scheme.classes)) != len(scheme.classes):
            raise LabelConfigError(f"{where}.classes: class names repeat: {list(scheme.classes)}")
        display = params.get("display_colours")
        if display is not None:
            parsed = tuple(
                parse_colour(c, f"{where}.display_colours[{i}]") for i, c in enumerate(display)
            )
            if len(parsed) != scheme.num_classes:
                raise LabelConfigError(
                    f"{where}.display_colours: {len(parsed)} colours for "
                    f"{scheme.num_classes} classes"
                )
            scheme = _replace(scheme, display_colours=parsed)
        return scheme

    # -- encoding -------------------------------------------------------------------------------
    @property
    def unknown_value(self) -> int:
        """A uint8 value used internally to mark pixels the table does not know."""
        used = set(range(self.num_classes)) | {self.ignore_index}
        return next(v for v in range(255, -1, -1) if v not in used)

    def mask_array(self, mask: Image.Image) -> np.ndarray:
        """The raw mask values this scheme reads: RGB triples (palette) or integer ids.

        Palette-mode PNGs, RGBA and greyscale masks are legitimate: in palette mode every mask
        is read as RGB (a grey level g is the colour (g, g, g); alpha is dropped); in ids mode
        a palette PNG's indices and a greyscale image's levels are the ids, and an RGB mask is
        accepted only when its three channels are equal.
        """
        if self.mode == "palette":
            return np.asarray(mask.convert("RGB"))
        if mask.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L"):
            return np.asarray(mask).astype(np.int32, copy=False)
        rgb = np.asarray(mask.convert("RGB"))
        if not (
            np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
        ):
            raise ValueError(
                f"is a colour ({mask.mode}) mask, but dataset.mode is 'ids' (integer masks); "
                "use mode: palette with a colour table for colour-coded masks"
            )
        return rgb[..., 0].astype(np.int32)

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Map raw mask values (from :meth:`mask_array`) to uint8 labels.

        Known classes become ``0..C-1``, ignored colours/ids become ``ignore_index`` and
        anything else becomes :attr:`unknown_value` (the caller reports those).
        """
        if self.mode == "palette":
            keys = _pack(values)
            table_keys = np.array(
                [_pack(np.array(c, dtype=np.uint8)) for c in self.colours + self.ignore_colours],
                dtype=np.int32,
            )
            labels = list(range(self.num_classes)) + [self.ignore_index] * len(self.ignore_colours)
        else:
            keys = values
            table_keys = np.array(self.source_ids + self.ignore_ids, dtype=np.int32)
            labels = list(range(self.num_classes)) + [self.ignore_index] * len(self.ignore_ids)
        order = np.argsort(table_keys)
        sorted_keys = table_keys[order]
        sorted_labels = np.asarray(labels, dtype=np.uint8)[order]
        pos = np.searchsorted(sorted_keys, keys)
        pos = np.clip(pos, 0, len(sorted_keys) - 1)
        found = sorted_keys[pos] == keys
        return np.where(found, sorted_labels[pos], np.uint8(self.unknown_value)).astype(np.uint8)

    def describe_value(self, value: int | np.integer) -> str:
        """Human-readable form of a raw mask value (a packed colour or an id)."""
        value = int(value)
        if self.mode == "palette":
            return colour_hex(((value >> 16) & 255, (value >> 8) & 255, value & 255))
        return str(value)

    def raw_keys(self, values: np.ndarray) -> np.ndarray:
        """One integer key per pixel for raw values (packed colours, or the ids themselves)."""
        return _pack(values) if self.mode == "palette" else values

    def class_pixel_counts(self, labels: np.ndarray) -> dict[str, int]:
        """Pixels per class (and ``ignore``) in an encoded label map."""
        counts = np.bincount(labels.ravel(), minlength=256)
        result = {name: int(counts[i]) for i, name in enumerate(self.classes)}
        result["ignore"] = int(counts[self.ignore_index])
        return result

    def count_columns(self) -> list[str]:
        """The manifest's per-class pixel-count columns, in class order, then ``ignore``."""
        return [f"px_{name}" for name in self.classes] + ["px_ignore"]


def _replace(scheme: LabelScheme, **changes: Any) -> LabelScheme:
    return replace(scheme, **changes)


def _reject_duplicates(keys: tuple, names: tuple[str, ...], where: str) -> None:
    seen: dict[Any, str] = {}
    for key, name in zip(keys, names, strict=True):
        if key in seen:
            shown = colour_hex(key) if isinstance(key, tuple) else key
            raise LabelConfigError(
                f"{where}: {shown} is given to both '{seen[key]}' and '{name}'; "
                "each class needs its own colour/id"
            )
        seen[key] = name


def _default_display_colours(n: int) -> tuple[Colour, ...]:
    """Distinct colours for figures of id-coded datasets (tab10, then a hue wheel)."""
    tab10 = [
        (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
        (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    ]  # fmt: skip
    if n <= len(tab10):
        return tuple(tab10[:n])
    return tuple(
        tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / n, 0.65, 0.9))  # type: ignore[misc]
        for i in range(n)
    )
