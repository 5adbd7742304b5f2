"""The predict pipeline on a trained demo project: label maps exactly the scenes' size, named
after them; GeoTIFF in, GeoTIFF out with its CRS and transform; bad input named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from tests.conftest import kedro_run, latest_version

WINDOW = {"predict.window": 64, "predict.overlap": 16}
TRANSFORM = from_origin(55.27, 25.20, 0.5, 0.5)  # 0.5 m pixels
CRS = "EPSG:32640"


def write_scenes(folder, rng):
    folder.mkdir()
    Image.fromarray(rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)).save(folder / "big.png")
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / "small.jpg")
    with rasterio.open(
        folder / "area.tif",
        "w",
        driver="GTiff",
        height=96,
        width=130,
        count=3,
        dtype="uint8",
        crs=CRS,
        transform=TRANSFORM,
    ) as target:
        target.write(rng.integers(0, 255, (3, 96, 130), dtype=np.uint8))
    return folder


def test_every_scene_gets_its_label_map_ids_overlay_and_areas(demo_copy):
    scenes = write_scenes(demo_copy / "scenes", np.random.default_rng(0))
    kedro_run(demo_copy, ["predict"], predict_root=str(scenes), **WINDOW)
    out = latest_version(demo_copy, "data/local/07_model_output/predict/predictions")
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["areas.csv", "legend.csv"]
        + [f"{s}.png" for s in ("area", "big", "small")]
        + ["area_ids.tif", "big_ids.png", "small_ids.png"]
        + [f"{s}_overlay.jpg" for s in ("area", "big", "small")]
    )
    for stem, size in (("big", (200, 150)), ("small", (50, 40)), ("area", (130, 96))):
        label_map = Image.open(out / f"{stem}.png")
        assert label_map.mode == "P" and label_map.size == size
        assert Image.open(out / f"{stem}_overlay.jpg").size == size
    # The palette PNG's values are the classes' positions, which a palette dataset's ids are.
    ids = np.asarray(Image.open(out / "big_ids.png"))
    assert np.array_equal(np.asarray(Image.open(out / "big.png")), ids)
    with rasterio.open(out / "area_ids.tif") as geo:
        assert geo.crs.to_string() == CRS and geo.transform == TRANSFORM
        assert (geo.height, geo.width, geo.count) == (96, 130, 1)
        geo_ids = geo.read(1)
    assert np.array_equal(np.asarray(Image.open(out / "area.png")), geo_ids)
    areas = pd.read_csv(out / "areas.csv").set_index("image")
    assert (areas["px_nodata"] == 0).all()  # these scenes have data everywhere
    px = areas.filter(like="px_").drop(columns="px_nodata")
    assert px.sum(axis=1).to_dict() == {"area.tif": 96 * 130, "big.png": 30000, "small.jpg": 2000}
    assert (
        px.loc["big.png"].to_numpy().tolist()
        == np.bincount(ids.reshape(-1), minlength=px.shape[1]).tolist()
    )
    # Areas in the CRS's units for the GeoTIFF: 0.25 m² per pixel.
    classes = areas.filter(like="area_").drop(columns="area_nodata")
    assert classes.loc["area.tif"].sum() == pytest.approx(96 * 130 * 0.25)


def test_confidence_maps_are_written_when_asked_for(demo_copy):
    """``--params predict.confidence=true``: beside each scene's ids, its confidence in percent
    (the trained checkpoint's temperature applied), georeferenced for the GeoTIFF."""
    scenes = write_scenes(demo_copy / "scenes", np.random.default_rng(1))
    kedro_run(
        demo_copy, ["predict"], predict_root=str(scenes), **WINDOW,
        **{"predict.confidence": "true"},
    )  # fmt: skip
    out = latest_version(demo_copy, "data/local/07_model_output/predict/predictions")
    names = {p.name for p in out.iterdir()}
    assert {"area_confidence.tif", "big_confidence.png", "small_confidence.png"} <= names
    with rasterio.open(out / "area_confidence.tif") as geo:
        assert geo.crs.to_string() == CRS and geo.transform == TRANSFORM
        percent = geo.read(1)
    # Every pixel has data: somewhere between a uniform guess over the classes and certainty.
    classes = len(pd.read_csv(out / "legend.csv")) - 1
    assert percent.min() >= np.floor(100 / classes) and percent.max() <= 100
    assert np.asarray(Image.open(out / "big_confidence.png")).shape == (150, 200)


@pytest.mark.parametrize(
    ("make_bad", "message"),
    [
        (lambda f: (f / "broken.png").write_bytes(b"not an image"), r"broken.png: cannot be read"),
        (
            lambda f: Image.fromarray(np.zeros((70, 70), np.uint8)).save(f / "grey.png"),
            r"grey.png: 1 band\(s\), but the finetune model takes 3",
        ),
    ],
)
def test_bad_scenes_are_named_before_anything_is_written(demo_copy, make_bad, message):
    scenes = write_scenes(demo_copy / "scenes", np.random.default_rng(1))
    make_bad(scenes)
    with pytest.raises(ValueError, match=message):
        kedro_run(demo_copy, ["predict"], predict_root=str(scenes), **WINDOW)
    assert not (demo_copy / "data/local/07_model_output/predict").exists()


def test_the_stage_and_classes_must_match_the_checkpoint(demo_copy):
    scenes = write_scenes(demo_copy / "scenes", np.random.default_rng(2))
    # The efm stage's checkpoint, chosen on the command line: the catalog entry follows.
    kedro_run(
        demo_copy, ["predict"], predict_root=str(scenes), **WINDOW, **{"predict.stage": "efm"}
    )
    # A stage set in a parameters file only: the catalog still reads finetune's, which is refused.
    (demo_copy / "conf/local/parameters_predict.yml").write_text(
        "predict:\n  stage: baseline\n  window: 64\n  overlap: 16\n"
    )
    with pytest.raises(
        ValueError, match=r"finetune stage's checkpoint but predict\.stage is baseline"
    ):
        kedro_run(demo_copy, ["predict"], predict_root=str(scenes))


def test_a_missing_scene_folder_is_named(demo_copy, tmp_path):
    with pytest.raises(Exception, match=r"nowhere is not a folder"):
        kedro_run(demo_copy, ["predict"], predict_root=str(tmp_path / "nowhere"), **WINDOW)
