"""Predicting real scenes: the dataset's own ids and a legend, nodata kept out of the labels and
the areas, bands of rows streamed into a tiled GeoTIFF with overviews, progress, and unreadable
scenes refused before anything is predicted.

A random-weights 4-band model stands in for a trained one (what it predicts is not the point;
what is written for it is), on generated 4-band GeoTIFFs with a CRS and nodata.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from PIL import Image
from rasterio.transform import from_origin

from efm_seg.data.labels import LabelScheme
from efm_seg.data.scenes import SceneFile
from efm_seg.framework.datasets.scene_folders import PredictionFolderDataset
from efm_seg.inference import predict as predict_module
from efm_seg.inference.predict import predict_scenes
from efm_seg.inference.sliding import sliding_window_probs
from efm_seg.models import ModelSpec, build_model, make_checkpoint

CRS = "EPSG:32640"
TRANSFORM = from_origin(55.0, 25.0, 0.5, 0.5)
# Ids as a remote-sensing dataset numbers its classes: 0 is its own nodata.
IDS_DATASET = {
    "mode": "ids",
    "classes": {1: "building", 2: "land", 3: "road"},
    "ignore_ids": [0],
    "bands": [4, 1, 2, 3],
}
SETTINGS = {"stage": "finetune", "window": 64, "overlap": 16, "batch_size": 3, "device": "cpu"}


@pytest.fixture(scope="module")
def checkpoint() -> dict:
    torch.manual_seed(0)
    spec = ModelSpec("FPN", "mobilenet_v2", num_classes=3, in_channels=4)
    model = build_model(spec).eval()
    return make_checkpoint(
        model,
        spec,
        classes=["building", "land", "road"],
        stage="finetune",
        lineage={"stage": "finetune", "run_id": "run-a"},
        bands=[4, 1, 2, 3],
        normalization={"mean": [0.5] * 4, "std": [0.25] * 4, "source": "dataset"},
    )


def write_scene(path, height, width, *, nodata=None, alpha=False, mask_columns=0, seed=0):
    """A 4-band GeoTIFF (a 5th alpha band when ``alpha``) whose first ``mask_columns`` columns
    hold no data: 0 in every band, marked by ``nodata``, the alpha band, or nothing."""
    rng = np.random.default_rng(seed)
    bands = rng.integers(1, 255, (4, height, width), dtype=np.uint8)
    bands[:, :, :mask_columns] = 0
    count = 5 if alpha else 4
    with rasterio.open(
        path, "w", driver="GTiff", height=height, width=width, count=count, dtype="uint8",
        crs=CRS, transform=TRANSFORM, nodata=nodata, **({"photometric": "RGB"} if alpha else {}),
    ) as target:  # fmt: skip
        target.write(bands, [1, 2, 3, 4])
        if alpha:
            band = np.full((height, width), 255, np.uint8)
            band[:, :mask_columns] = 0
            target.write(band, 5)
            target.colorinterp = [*target.colorinterp[:4], rasterio.enums.ColorInterp.alpha]
    return path


def predict_folder(tmp_path, scenes, dataset=IDS_DATASET, **settings):
    found = {path.stem: SceneFile(path) for path in scenes}
    predictions = predict_scenes(found, CHECKPOINT[0], dataset, {**SETTINGS, **settings})
    out = tmp_path / "out"
    PredictionFolderDataset(str(out)).save(predictions)
    return out


CHECKPOINT: list[dict] = []


@pytest.fixture(autouse=True)
def _checkpoint(checkpoint):
    CHECKPOINT[:] = [checkpoint]


def test_ids_are_the_datasets_own_and_nodata_is_kept_out(tmp_path):
    scene = write_scene(tmp_path / "area.tif", 150, 200, nodata=0, mask_columns=60)
    out = predict_folder(tmp_path, [scene])
    with rasterio.open(out / "area_ids.tif") as written:
        ids = written.read(1)
        assert written.crs.to_string() == CRS and written.transform == TRANSFORM
        assert written.nodata == 0  # the dataset's own nodata id (ignore_ids)
        assert written.block_shapes[0] == (512, 512) and written.compression is not None
        assert written.colormap(1)[1][:3] != written.colormap(1)[2][:3]
        assert written.tags(1)["CLASS_1"] == "building" and written.tags(1)["CLASS_3"] == "road"
    assert (ids[:, :60] == 0).all()  # nodata stays nodata, never "land"
    assert set(np.unique(ids[:, 60:])) <= {1, 2, 3}
    legend = pd.read_csv(out / "legend.csv", keep_default_na=False)
    assert legend["id"].tolist() == [1, 2, 3, 0]
    assert legend["class"].tolist() == ["building", "land", "road", "nodata"]
    areas = pd.read_csv(out / "areas.csv").set_index("image").loc["area.tif"]
    assert areas["px_nodata"] == 150 * 60
    for i, name in ((1, "building"), (2, "land"), (3, "road")):
        assert areas[f"px_{name}"] == (ids == i).sum()
        assert areas[f"area_{name}"] == pytest.approx((ids == i).sum() * 0.25)
    shares = [areas[f"share_{n}"] for n in ("building", "land", "road")]
    assert sum(shares) == pytest.approx(1.0)  # shares of the valid pixels
    # The preview: nodata transparent in the palette PNG, the classes at their positions.
    preview = Image.open(out / "area.png")
    assert preview.mode == "P" and preview.info.get("transparency") == 255
    assert (np.asarray(preview)[:, :60] == 255).all()


def test_an_alpha_band_marks_nodata_and_is_not_a_model_band(tmp_path):
    scene = write_scene(tmp_path / "alpha.tif", 96, 100, alpha=True, mask_columns=30)
    out = predict_folder(tmp_path, [scene])
    with rasterio.open(out / "alpha_ids.tif") as written:
        ids = written.read(1)
    assert (ids[:, :30] == 0).all() and set(np.unique(ids[:, 30:])) <= {1, 2, 3}


def test_predict_nodata_marks_scenes_whose_files_mark_none(tmp_path):
    scene = write_scene(tmp_path / "plain.tif", 96, 100, mask_columns=20)  # no nodata value
    out = predict_folder(tmp_path, [scene], nodata=0)
    with rasterio.open(out / "plain_ids.tif") as written:
        ids = written.read(1)
    assert (ids[:, :20] == 0).all() and (ids[:, 20:] != 0).all()
    out = predict_folder(tmp_path / "all", [scene])  # without it, every pixel is labelled
    with rasterio.open(out / "plain_ids.tif") as written:
        assert (written.read(1) != 0).all()


def test_palette_datasets_write_class_positions(tmp_path):
    palette = {
        "mode": "palette",
        "classes": {"building": "#3C1098", "land": "#8429F6", "road": "#6EC1E4"},
        "bands": [4, 1, 2, 3],
    }
    scene = write_scene(tmp_path / "area.tif", 96, 100, nodata=0, mask_columns=10)
    out = predict_folder(tmp_path, [scene], dataset=palette)
    with rasterio.open(out / "area_ids.tif") as written:
        ids, nodata = written.read(1), written.nodata
    assert nodata == 255 and (ids[:, :10] == 255).all()
    assert set(np.unique(ids[:, 10:])) <= {0, 1, 2}
    assert pd.read_csv(out / "legend.csv")["id"].tolist() == [0, 1, 2, 255]


def test_streamed_labels_equal_whole_scene_inference(tmp_path, checkpoint, monkeypatch):
    """The band-by-band prediction is the whole-image sliding window's, pixel for pixel."""
    scene = write_scene(tmp_path / "area.tif", 170, 130)
    out = predict_folder(tmp_path, [scene])
    with rasterio.open(scene) as source:
        bands = source.read([4, 1, 2, 3]).astype(np.float32) / 255
    model = predict_module.model_from_checkpoint(checkpoint).eval()
    probs = sliding_window_probs(
        model, (torch.tensor(bands) - 0.5) / 0.25, window=64, overlap=16, batch_size=3
    )
    expected = np.array([1, 2, 3])[probs.argmax(0).numpy()]
    with rasterio.open(out / "area_ids.tif") as written:
        np.testing.assert_array_equal(written.read(1), expected)


def test_the_geotiff_has_overviews_and_previews_are_bounded(tmp_path):
    scene = write_scene(tmp_path / "wide.tif", 300, 1100, nodata=0)
    out = predict_folder(tmp_path, [scene], preview_size=256, window=128, overlap=32)
    with rasterio.open(out / "wide_ids.tif") as written:
        assert written.overviews(1)  # a pyramid for GIS viewers
        assert written.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert written.block_shapes[0] == (512, 512)
    assert max(Image.open(out / "wide.png").size) == 256
    assert max(Image.open(out / "wide_overlay.jpg").size) == 256


def test_a_confidence_map_is_the_temperature_scaled_top_probability(tmp_path, checkpoint, caplog):
    """``predict.confidence``: a georeferenced percent map beside the ids, nodata where they
    have none, from the checkpoint's temperature."""
    scene = write_scene(tmp_path / "area.tif", 150, 130, nodata=0, mask_columns=40)
    CHECKPOINT[:] = [{**checkpoint, "temperature": 2.0}]
    out = predict_folder(tmp_path, [scene], confidence=True)
    with rasterio.open(out / "area_confidence.tif") as written:
        percent = written.read(1)
        assert written.crs.to_string() == CRS and written.transform == TRANSFORM
        assert written.dtypes[0] == "uint8" and written.nodata == 255
        assert written.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert written.tags(1)["UNITS"] == "percent"
    with rasterio.open(out / "area_ids.tif") as written:
        ids = written.read(1)
    np.testing.assert_array_equal(percent == 255, ids == 0)  # nodata where the ids have none
    with rasterio.open(scene) as source:
        bands = source.read([4, 1, 2, 3]).astype(np.float32) / 255
    model = predict_module.model_from_checkpoint(checkpoint).eval()
    probs = sliding_window_probs(
        model, (torch.tensor(bands) - 0.5) / 0.25, window=64, overlap=16, batch_size=3
    ).double()  # no crop is all nodata here (40 of 130 columns), so the blend is the same
    expected = np.rint((probs.log() / 2.0).softmax(0).amax(0).numpy() * 100)
    valid = ids != 0
    assert np.abs(percent[valid].astype(int) - expected[valid]).max() <= 1  # rounding only
    assert (percent[valid] >= 100 / 3 - 1).all() and (percent[valid] <= 100).all()
    CHECKPOINT[:] = [checkpoint]  # temperature 1.0: sharper, so more confident
    sharp = predict_folder(tmp_path / "t1", [scene], confidence=True)
    with rasterio.open(sharp / "area_confidence.tif") as written:
        assert written.read(1)[valid].mean() > percent[valid].mean()
    assert not (predict_folder(tmp_path / "off", [scene]) / "area_confidence.tif").exists()
    CHECKPOINT[:] = [{k: v for k, v in checkpoint.items() if k != "temperature"}]
    with caplog.at_level(logging.WARNING, logger="efm_seg.inference.predict"):
        predict_folder(tmp_path / "old", [scene], confidence=True)
    assert "has no temperature" in caplog.text


def test_a_picture_gets_a_confidence_png_with_its_alpha_as_nodata(tmp_path):
    torch.manual_seed(0)
    spec = ModelSpec("FPN", "mobilenet_v2", num_classes=3, in_channels=3)
    rgb_checkpoint = make_checkpoint(
        build_model(spec).eval(), spec, classes=["building", "land", "road"], stage="finetune",
        lineage={"stage": "finetune", "run_id": "run-c"},
    )  # fmt: skip
    pixels = np.random.default_rng(4).integers(0, 255, (70, 90, 4), dtype=np.uint8)
    pixels[:, :, 3] = 255
    pixels[:, :25, 3] = 0  # transparent: nodata
    Image.fromarray(pixels, mode="RGBA").save(tmp_path / "pic.png")
    settings = {**SETTINGS, "confidence": True}
    dataset = {**IDS_DATASET, "bands": None}
    predictions = predict_scenes(
        {"pic": SceneFile(tmp_path / "pic.png")}, rgb_checkpoint, dataset, settings
    )
    PredictionFolderDataset(str(tmp_path / "out")).save(predictions)
    percent = np.asarray(Image.open(tmp_path / "out/pic_confidence.png"))
    assert percent.shape == (70, 90) and percent.dtype == np.uint8
    assert (percent[:, :25] == 255).all() and (percent[:, 25:] <= 100).all()


def test_progress_is_logged_every_ten_percent(tmp_path, caplog):
    scene = write_scene(tmp_path / "area.tif", 200, 200)
    with caplog.at_level(logging.INFO, logger="efm_seg.inference.predict"):
        predict_folder(tmp_path, [scene], window=32, overlap=0)  # 49 windows
    lines = [r.getMessage() for r in caplog.records if "windows" in r.getMessage()]
    assert [line.split(": ")[1].split("%")[0] for line in lines] == [
        str(p) for p in range(10, 101, 10)
    ]
    assert "MPix/s" in lines[0] and "left" in lines[0]


def test_skipped_nodata_windows_give_one_progress_line_for_the_tenth_they_reach(tmp_path, caplog):
    # 6 of each band's 7 windows are nodata, skipped at once: windows 29 -> 35 of 49 passes
    # both 60 % and 70 %, which is one line (70 %), not two saying the same.
    scene = write_scene(tmp_path / "area.tif", 200, 200, nodata=0, mask_columns=192)
    with caplog.at_level(logging.INFO, logger="efm_seg.inference.predict"):
        predict_folder(tmp_path, [scene], window=32, overlap=0)
    lines = [r.getMessage() for r in caplog.records if "windows" in r.getMessage()]
    done = [int(line.split("(")[1].split(" of")[0]) for line in lines]
    assert done == sorted(set(done)) and done[-1] == 49
    percents = [int(line.split(": ")[1].split("%")[0]) for line in lines]
    assert "60" not in [str(p) for p in percents] and 70 in percents and percents[-1] == 100


def test_a_truncated_scene_is_refused_before_any_is_predicted(tmp_path, monkeypatch):
    good = write_scene(tmp_path / "a_first.tif", 300, 300)
    broken = write_scene(tmp_path / "b_broken.tif", 600, 600, seed=1)
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # the header survives, the pixels do not
    predicted = []
    monkeypatch.setattr(
        predict_module, "label_blocks", lambda *a, **k: predicted.append(1) or iter(())
    )
    with pytest.raises(ValueError, match=r"b_broken.tif: cannot be read to its end \(.+\)"):
        predict_scenes(
            {p.stem: SceneFile(p) for p in (good, broken)}, CHECKPOINT[0], IDS_DATASET, SETTINGS
        )
    assert predicted == []


def test_scenes_are_checked_for_bands(tmp_path):
    rgb = tmp_path / "rgb.tif"
    with rasterio.open(
        rgb, "w", driver="GTiff", height=64, width=64, count=3, dtype="uint8", crs=CRS,
        transform=TRANSFORM,
    ) as target:  # fmt: skip
        target.write(np.zeros((3, 64, 64), np.uint8))
    with pytest.raises(ValueError, match=r"rgb.tif: 3 band\(s\), but the finetune model takes"):
        predict_folder(tmp_path, [rgb])


def test_the_legend_follows_the_scheme():
    scheme = LabelScheme.from_params(IDS_DATASET)
    from efm_seg.data.scenes import Legend

    legend = Legend.of(scheme)
    assert (legend.ids, legend.nodata, legend.dtype) == ((1, 2, 3), 0, "uint8")
    wide = Legend.of(LabelScheme.from_params({"mode": "ids", "classes": {7: "a", 300: "b"}}))
    assert (wide.nodata, wide.dtype) == (255, "uint16")


def test_an_rgb_model_trained_with_dataset_statistics_is_fed_with_them(tmp_path, monkeypatch):
    """``normalization: dataset`` on RGB: the checkpoint's statistics, never ImageNet's."""
    torch.manual_seed(0)
    spec = ModelSpec("FPN", "mobilenet_v2", num_classes=3, in_channels=3)
    stats = {"mean": [0.2, 0.4, 0.6], "std": [0.1, 0.2, 0.3], "source": "dataset"}
    rgb_checkpoint = make_checkpoint(
        build_model(spec).eval(), spec, classes=["building", "land", "road"], stage="finetune",
        lineage={"stage": "finetune", "run_id": "run-b"}, normalization=stats,
    )  # fmt: skip
    path = tmp_path / "rgb.png"
    pixels = np.random.default_rng(3).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    fed = []
    real = predict_module.label_blocks

    def recording(read, height, width, *args, **kwargs):
        fed.append(read(0, height, 0, width)[0])
        return real(read, height, width, *args, **kwargs)

    monkeypatch.setattr(predict_module, "label_blocks", recording)
    dataset = {**IDS_DATASET, "bands": None}
    predictions = predict_scenes({"rgb": SceneFile(path)}, rgb_checkpoint, dataset, SETTINGS)
    PredictionFolderDataset(str(tmp_path / "out")).save(predictions)
    expected = (torch.tensor(pixels).permute(2, 0, 1).float() / 255 - torch.tensor(
        stats["mean"])[:, None, None]) / torch.tensor(stats["std"])[:, None, None]  # fmt: skip
    torch.testing.assert_close(fed[0], expected)


def test_gdals_block_cache_is_bounded_while_a_scene_is_checked_and_predicted(tmp_path, monkeypatch):
    """GDAL's default cache (5 % of the machine's memory) keeps every block read: checking a
    20,000² 4-band scene's blocks filled 1.2 GB of it, and predicting it fills it with the map's
    tiles. Wherever a scene's pixels are read, the cache is capped to what the crops need, which
    follows the width alone."""
    import inspect

    from efm_seg.data import scenes

    caps: dict[str, set] = {}
    real = scenes.open_raster

    def recording(path, *args, **kwargs):
        cap = rasterio.env.getenv().get("GDAL_CACHEMAX") if rasterio.env.hasenv() else None
        caps.setdefault(inspect.stack()[1].function, set()).add(cap)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(scenes, "open_raster", recording)
    predict_folder(tmp_path, [write_scene(tmp_path / "area.tif", 96, 300)])
    cap = scenes.gdal_cache_bytes(300)
    assert caps["check"] == caps["open"] == {cap}  # every block decoded; the crops read
    assert scenes.gdal_cache_bytes(20_000) < 100 * 2**20  # a 20,000-pixel-wide scene: < 100 MB
