"""Reading images of any band count (``dataset.bands``): PNG through Pillow, GeoTIFF through
rasterio; what is refused and how the messages read."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from efm_seg.data.imagery import display_rgb, parse_bands, read_bands, select_bands
from efm_seg.data.labels import LabelConfigError, LabelScheme
from tests.conftest import DATASET_PARAMS


def write_tif(path, bands: np.ndarray, dtype: str = "uint8", georeferenced: bool = True):
    where = {"crs": "EPSG:32640", "transform": from_origin(55.0, 25.0, 0.5, 0.5)}
    with rasterio.open(
        path, "w", driver="GTiff", height=bands.shape[1], width=bands.shape[2],
        count=bands.shape[0], dtype=dtype, **(where if georeferenced else {}),
    ) as target:  # fmt: skip
        target.write(bands.astype(dtype))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("rgb", r"not a list of band numbers"),
        ([], r"not a list of band numbers"),
        ([0, 1], r"0 is not a band number"),
        ([1, 1.5], r"1.5 is not a band number"),
        ([2, 1, 2], r"names a band twice"),
    ],
)
def test_bad_bands_are_refused_naming_the_parameter(value, message):
    with pytest.raises(ValueError, match=rf"dataset\.bands: .*{message}"):
        parse_bands(value)
    # ... and so is the dataset block at session start (the label scheme checks it).
    with pytest.raises(LabelConfigError, match=message):
        LabelScheme.from_params({**DATASET_PARAMS, "bands": value})


def test_bands_are_chosen_and_ordered_from_a_geotiff(tmp_path):
    bands = np.stack([np.full((5, 6), 10 * (b + 1)) for b in range(5)])  # band k holds 10·k
    write_tif(tmp_path / "five.tif", bands)
    image, geo = read_bands(tmp_path / "five.tif", (5, 1, 3))
    assert image.shape == (5, 6, 3) and geo is not None
    assert image[0, 0].tolist() == [50, 10, 30]
    with pytest.raises(ValueError, match=r"has 5 band\(s\), but dataset.bands \[6, 1\] names band"):
        read_bands(tmp_path / "five.tif", (6, 1))
    # RGB (bands unset) expects three bands from a GeoTIFF, and says how to choose.
    with pytest.raises(ValueError, match=r"has 5 bands; choose the model's bands with dataset"):
        read_bands(tmp_path / "five.tif", None)


def test_a_tiff_without_coordinates_reads_as_a_plain_image(tmp_path, recwarn):
    write_tif(tmp_path / "plain.tif", np.ones((2, 4, 5)), georeferenced=False)
    recwarn.clear()
    image, geo = read_bands(tmp_path / "plain.tif", (2, 1))
    assert image.shape == (4, 5, 2) and geo is None
    assert not [w for w in recwarn if "geotransform" in str(w.message)]


def test_pngs_number_their_bands_by_mode(tmp_path):
    rgba = np.dstack([np.full((4, 4), v, np.uint8) for v in (1, 2, 3, 4)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    assert read_bands(tmp_path / "rgba.png", (4, 2))[0][0, 0].tolist() == [4, 2]
    # Unset bands read RGB as before: the alpha band dropped.
    assert read_bands(tmp_path / "rgba.png", None)[0].shape == (4, 4, 3)
    Image.fromarray(np.full((4, 4), 7, np.uint8)).save(tmp_path / "grey.png")
    assert read_bands(tmp_path / "grey.png", (1,))[0].shape == (4, 4, 1)


def test_images_deeper_than_eight_bits_are_refused(tmp_path):
    write_tif(tmp_path / "deep.tif", np.full((4, 3, 3), 1000), dtype="uint16")
    with pytest.raises(ValueError, match=r"is not 8 bits per band \(uint16\).*gdal_translate"):
        read_bands(tmp_path / "deep.tif", (1, 2, 3))


def test_select_and_display_keep_the_pixels():
    image = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(select_bands(image, (4, 1)), image[:, :, [3, 0]])
    np.testing.assert_array_equal(display_rgb(image), image[:, :, :3])
    grey = display_rgb(image[:, :, :1])
    assert grey.shape == (2, 3, 3) and (grey == image[:, :, :1]).all()


@pytest.mark.parametrize(
    ("crs", "transform", "expected"),
    [
        ("EPSG:32640", (0.5, 0, 300000, 0, -0.5, 2800000), 50.0),  # UTM, 0.5 m pixels
        ("EPSG:2263", (2.0, 0, 0, 0, -2.0, 0), 2.0 * 30.480061),  # US survey feet
        ("EPSG:32640", (0.3, 0, 0, 0, -0.75, 0), 100 * (0.3 * 0.75) ** 0.5),  # not square
        ("EPSG:4326", (0.0001, 0, 55, 0, -0.0001, 25), None),  # degrees: no ground size
        ("EPSG:32640", (0.5, 0.1, 0, 0.1, -0.5, 0), None),  # a rotated grid
        (None, (0.5, 0, 0, 0, -0.5, 0), None),  # no CRS
    ],
)
def test_a_pixels_ground_size_comes_from_a_projected_crs(crs, transform, expected):
    from rasterio.crs import CRS

    from efm_seg.data.imagery import pixel_size_cm

    geo = {"crs": CRS.from_string(crs).to_wkt() if crs else None, "transform": transform}
    found = pixel_size_cm(geo)
    assert found == (None if expected is None else pytest.approx(expected, rel=1e-6))
    assert pixel_size_cm(None) is None


def test_the_stores_resolution_is_the_samples_median_when_all_are_known():
    from efm_seg.data.samples import store_resolution

    assert store_resolution([{"resolution_cm": v} for v in (50.0, 25.0, 50.0)]) == 50.0
    assert store_resolution([{"resolution_cm": 50.0}, {"resolution_cm": None}]) is None
    assert store_resolution([{"resolution_cm": 50.0}, {}]) is None
    assert store_resolution([]) is None
