import numpy as np
import pytest
from PIL import Image

from efm_seg.data.labels import LabelConfigError, LabelScheme, parse_colour

PALETTE_PARAMS = {
    "mode": "palette",
    "classes": {"land": "#D2B48C", "building": [60, 16, 152], "water": "#1E50C8"},
    "ignore_colours": ["#9B9B9B"],
}
IDS_PARAMS = {
    "mode": "ids",
    "classes": {1: "background", 2: "building", 7: "farm"},
    "ignore_ids": [0],
}


def test_parse_colour_accepts_hex_lists_and_grey():
    assert parse_colour("#3C1098", "x") == (60, 16, 152)
    assert parse_colour("3c1098", "x") == (60, 16, 152)
    assert parse_colour([1, 2, 3], "x") == (1, 2, 3)
    assert parse_colour(7, "x") == (7, 7, 7)
    for bad in ("#12345", "#GG0000", [1, 2], [1, 2, 300], True):
        with pytest.raises(LabelConfigError, match="x"):
            parse_colour(bad, "x")


def test_palette_scheme_orders_classes_as_listed():
    scheme = LabelScheme.from_params(PALETTE_PARAMS)
    assert scheme.classes == ("land", "building", "water")
    assert scheme.num_classes == 3
    assert scheme.colours[1] == (60, 16, 152)
    assert scheme.display_colours == scheme.colours


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mode": "rgb"}, "dataset.mode"),
        ({"classes": {}}, "dataset.classes"),
        ({"classes": {"a": "#000000", "b": "#000000"}}, "both 'a' and 'b'"),
        ({"num_classes": 7}, "num_classes is 7 but dataset.classes lists 3"),
        ({"ignore_index": 1}, "collides"),
        ({"ignore_colours": ["#1E50C8"]}, "also name a class"),
        ({"palette": {}}, "unknown key"),
    ],
)
def test_invalid_palette_parameters_are_named(change, message):
    with pytest.raises(LabelConfigError, match=message):
        LabelScheme.from_params({**PALETTE_PARAMS, **change})


def test_invalid_ids_parameters_are_named():
    with pytest.raises(LabelConfigError, match="not an integer id"):
        LabelScheme.from_params({"mode": "ids", "classes": {"one": "a"}})
    with pytest.raises(LabelConfigError, match="both"):
        LabelScheme.from_params({"mode": "ids", "classes": {1: "a", "1": "b"}})
    with pytest.raises(LabelConfigError, match="also name a class"):
        LabelScheme.from_params({**IDS_PARAMS, "ignore_ids": [2]})


def test_palette_encoding_maps_known_ignored_and_unknown_colours():
    scheme = LabelScheme.from_params(PALETTE_PARAMS)
    rgb = np.array([[[210, 180, 140], [60, 16, 152]], [[155, 155, 155], [1, 2, 3]]], dtype=np.uint8)
    labels = scheme.encode(scheme.mask_array(Image.fromarray(rgb)))
    assert labels.tolist() == [[0, 1], [255, scheme.unknown_value]]
    assert scheme.unknown_value not in (0, 1, 2, 255)


def test_palette_png_rgba_and_greyscale_masks_are_legitimate():
    scheme = LabelScheme.from_params(
        {"mode": "palette", "classes": {"dark": 0, "light": 200}, "ignore_colours": []}
    )
    grey = np.array([[0, 200], [200, 0]], dtype=np.uint8)
    expected = [[0, 1], [1, 0]]
    as_l = Image.fromarray(grey, mode="L")
    as_rgba = Image.fromarray(np.dstack([grey, grey, grey, np.full_like(grey, 255)]), mode="RGBA")
    as_p = as_l.convert("P")
    for mask in (as_l, as_rgba, as_p):
        assert scheme.encode(scheme.mask_array(mask)).tolist() == expected, mask.mode


def test_ids_encoding_reads_palette_indices_greyscale_and_equal_channel_rgb():
    scheme = LabelScheme.from_params(IDS_PARAMS)
    ids = np.array([[0, 1], [2, 7]], dtype=np.uint8)
    expected = [[255, 0], [1, 2]]
    palette_png = Image.fromarray(ids, mode="P")
    palette_png.putpalette([v for i in range(256) for v in (i * 3 % 256, 0, 255 - i)])
    for mask in (Image.fromarray(ids, mode="L"), palette_png, Image.fromarray(ids).convert("RGB")):
        assert scheme.encode(scheme.mask_array(mask)).tolist() == expected, mask.mode
    out_of_table = scheme.encode(np.array([[3, 9]]))
    assert (out_of_table == scheme.unknown_value).all()


def test_ids_mode_rejects_colour_masks():
    scheme = LabelScheme.from_params(IDS_PARAMS)
    colour = Image.fromarray(np.array([[[1, 2, 3]]], dtype=np.uint8))
    with pytest.raises(ValueError, match="colour"):
        scheme.mask_array(colour)


def test_class_pixel_counts_include_ignore():
    scheme = LabelScheme.from_params(PALETTE_PARAMS)
    counts = scheme.class_pixel_counts(np.array([[0, 0, 2], [255, 1, 0]], dtype=np.uint8))
    assert counts == {"land": 3, "building": 1, "water": 1, "ignore": 1}
    assert scheme.count_columns() == ["px_land", "px_building", "px_water", "px_ignore"]
