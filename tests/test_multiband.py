"""Multi-band imagery end to end: a generated 4-band (RGB + near-infrared) GeoTIFF dataset with
``dataset.bands: [4, 1, 2, 3]`` goes through ingestion, preprocessing, the three stages, evaluation
and the report, then predict on a 4-band scene. The bands reach the model in the configured
order, the model takes four channels, and the training split's per-band statistics are stored in
the checkpoint and used wherever the model is fed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
import yaml
from PIL import Image
from rasterio.transform import from_origin

from efm_seg.data.samples import open_store
from efm_seg.inference import predict as predict_nodes
from tests.conftest import (
    DATASET_PARAMS,
    colour_mask,
    image_for,
    kedro_run,
    latest_version,
    make_project,
    scene_labels,
)

BANDS = [4, 1, 2, 3]  # near-infrared first, then red, green, blue
SIZE = 64
TILE = 32


def four_bands(labels: np.ndarray, seed: int) -> np.ndarray:
    """``(4, H, W)``: RGB from the labels' colours, and a near-infrared band that is bright on
    class 0 and dark elsewhere (like vegetation), so the bands are told apart."""
    rgb = np.moveaxis(image_for(labels, seed), -1, 0)
    noise = np.random.default_rng(seed + 100).integers(0, 20, labels.shape)
    nir = np.where(labels == 0, 220, 40) + noise
    return np.concatenate([rgb, nir[None].astype(np.uint8)])


def write_geotiff(path, bands: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=bands.shape[1],
        width=bands.shape[2],
        count=bands.shape[0],
        dtype="uint8",
        crs="EPSG:32640",
        transform=from_origin(55.0, 25.0, 0.5, 0.5),
    ) as target:
        target.write(bands)


@pytest.fixture(scope="module")
def multiband_run(tmp_path_factory: pytest.TempPathFactory):
    """One default ``kedro run`` of a tiny project on a 4-band GeoTIFF dataset."""
    parent = tmp_path_factory.mktemp("multiband")
    raw = parent / "raw"
    sources = {}
    for i in range(8):
        labels = scene_labels(SIZE, SIZE, seed=i)
        sources[f"s{i}"] = four_bands(labels, seed=i)
        write_geotiff(raw / "images" / f"s{i}.tif", sources[f"s{i}"])
        (raw / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(colour_mask(labels)).save(raw / "masks" / f"s{i}.png")
    project = make_project(parent)
    local = project / "conf" / "local"
    (local / "catalog.yml").write_text(
        f"raw_dataset:\n  type: efm_seg.framework.datasets.ImageFolderDataset\n  path: {raw}\n"
    )
    (local / "parameters.yml").write_text(
        yaml.safe_dump(
            {
                "dataset": {**DATASET_PARAMS, "bands": BANDS},
                "ingestion": {"images": "images/{id}.tif", "masks": "masks/{id}.png"},
            }
        )
    )
    (local / "parameters_preprocessing.yml").write_text(
        yaml.safe_dump(
            {"preprocessing": {"mode": "tile", "size": TILE, "stride": TILE, "workers": 1}}
        )
    )
    # The one augmentation that needs RGB is configured: it must be skipped, not crash.
    training = yaml.safe_load((local / "parameters_training.yml").read_text())
    training["training"]["augment"]["hue_saturation"] = {"hue_shift_limit": 10, "p": 0.5}
    (local / "parameters_training.yml").write_text(yaml.safe_dump(training))
    (local / "parameters_reporting.yml").write_text(
        yaml.safe_dump({"reporting": {"title": "4 bands", "dpi": 40}})
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(project)
        monkeypatch.setenv("DO_NOT_TRACK", "1")
        kedro_run(project)
    return project, sources


def test_the_store_holds_the_configured_bands_in_order(multiband_run):
    project, sources = multiband_run
    store = open_store(project / "data/local/05_model_input/encoded")
    assert (store.channels, store.bands) == (len(BANDS), tuple(BANDS))
    # 0.5 m pixels in UTM, kept by tile mode.
    assert store.resolution_cm == 50.0
    index = store.index_table().set_index("sample_id")
    for sample_id in store.ids[:5]:
        image, _ = store.read(sample_id)
        row = index.loc[sample_id]
        y, x = int(row["y"]), int(row["x"])
        source = sources[row["source_id"]]  # (4, H, W): tile mode keeps the pixels exactly
        expected = np.moveaxis(source[[b - 1 for b in BANDS], y : y + TILE, x : x + TILE], 0, -1)
        np.testing.assert_array_equal(image, expected)


def test_checkpoints_take_the_bands_with_the_training_splits_statistics(multiband_run):
    project, _ = multiband_run
    store = open_store(project / "data/local/05_model_input/encoded")
    split = pd.read_csv(latest_version(project, "data/local/05_model_input/split.csv"))
    train = split.loc[split["split"] == "train", "sample_id"]
    pixels = np.concatenate([store.read(i)[0].reshape(-1, len(BANDS)) / 255.0 for i in train])
    checkpoints = {}
    for stage in ("baseline", "efm", "finetune"):
        path = latest_version(project, f"data/local/06_models/{stage}/best_checkpoint.pt")
        checkpoint = torch.load(path, weights_only=True)
        checkpoints[stage] = checkpoint
        assert checkpoint["model_spec"]["in_channels"] == len(BANDS)
        assert checkpoint["bands"] == BANDS
        assert checkpoint["resolution_cm"] == 50.0
        normalization = checkpoint["normalization"]
        assert normalization["source"] == "dataset"
        np.testing.assert_allclose(normalization["mean"], pixels.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(normalization["std"], pixels.std(axis=0), rtol=1e-5)
        first_conv = next(v for v in checkpoint["state_dict"].values() if v.ndim == 4)
        assert first_conv.shape[1] == len(BANDS)
    # The near-infrared band (bright on class 0) is not an RGB band: its mean differs.
    assert checkpoints["baseline"]["normalization"]["mean"][0] > 0.3
    record = latest_version(project, "data/local/07_model_output/finetune/training_record.json")
    assert json.loads(record.read_text())["bands"] == BANDS


def test_evaluation_and_report_ran_on_the_four_band_model(multiband_run):
    project, _ = multiband_run
    metrics = pd.read_csv(latest_version(project, "data/local/08_reporting/evaluation_metrics.csv"))
    assert set(metrics["stage"]) == {"baseline", "efm", "finetune", "baseline_equal"}
    assert metrics["miou"].between(0, 1).all()
    figures = latest_version(project, "data/local/08_reporting/figures")
    report = figures / "qualitative.png"
    assert Image.open(report).mode in ("RGB", "RGBA")


def test_predict_feeds_the_model_the_chosen_bands_normalised_as_trained(multiband_run, tmp_path):
    project, _ = multiband_run
    checkpoint = torch.load(
        latest_version(project, "data/local/06_models/finetune/best_checkpoint.pt"),
        weights_only=True,
    )
    mean, std = (
        torch.tensor(checkpoint["normalization"][key])[:, None, None] for key in ("mean", "std")
    )
    scenes = tmp_path / "scenes"
    labels = scene_labels(90, 120, seed=42)
    area = four_bands(labels, seed=42)
    write_geotiff(scenes / "area.tif", area)
    # Three bands cannot give band 4.
    write_geotiff(tmp_path / "rgb" / "rgb.tif", four_bands(labels, seed=1)[:3])
    window = {"predict.window": 32, "predict.overlap": 8}
    fed = []

    real = predict_nodes.label_blocks

    def recording(read, height, width, *args, **kwargs):
        fed.append(read(0, height, 0, width)[0].clone())  # the whole scene, as the model is fed it
        return real(read, height, width, *args, **kwargs)

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(project)
        monkeypatch.setattr(predict_nodes, "label_blocks", recording)
        with pytest.raises(
            ValueError, match=r"rgb.tif: 3 band\(s\), but the finetune model takes bands \[4, 1"
        ):
            kedro_run(project, ["predict"], predict_root=str(tmp_path / "rgb"), **window)
        kedro_run(project, ["predict"], predict_root=str(scenes), **window)
    chosen = torch.tensor(area[[b - 1 for b in BANDS]], dtype=torch.float32) / 255
    assert len(fed) == 1
    torch.testing.assert_close(fed[0], (chosen - mean) / std)
    out = latest_version(project, "data/local/07_model_output/predict/predictions")
    with rasterio.open(out / "area_ids.tif") as geo:
        assert (geo.height, geo.width) == (90, 120)
    assert Image.open(out / "area.png").size == (120, 90)


def test_the_exported_model_states_the_training_resolution(multiband_run, tmp_path):
    """Deepness rescales scenes to the model's resolution: the training samples' own (0.5 m
    pixels) unless export.resolution says otherwise."""
    from efm_seg.inference.onnx_export import read_metadata

    project, _ = multiband_run
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(project)
        kedro_run(project, ["export"], **{"export.tiles_size": 32, "export.tiles_overlap": 8})
        model = latest_version(project, "data/local/06_models/export/model.onnx")
        assert read_metadata(model.read_bytes())["resolution"] == 50.0
        kedro_run(
            project,
            ["export"],
            **{"export.tiles_size": 32, "export.tiles_overlap": 8, "export.resolution": 30},
        )
        model = latest_version(project, "data/local/06_models/export/model.onnx")
        assert read_metadata(model.read_bytes())["resolution"] == 30.0


def test_resized_samples_have_larger_pixels(tmp_path):
    """Resize mode: 64-pixel sources (0.5 m) made 32-pixel samples have 1 m pixels."""
    from efm_seg.data.labels import LabelScheme
    from efm_seg.data.raw import RawFolder
    from efm_seg.data.samples import store_resolution
    from efm_seg.data.tiling import PreprocessingConfig, encode_stream

    labels = scene_labels(SIZE, SIZE, seed=0)
    write_geotiff(tmp_path / "s0.tif", four_bands(labels, seed=0))
    Image.fromarray(colour_mask(labels)).save(tmp_path / "s0.png")
    manifest = pd.DataFrame(
        [{"sample_id": "s0", "group": "s0", "image": "s0.tif", "mask": "s0.png",
          "width": SIZE, "height": SIZE}]
    )  # fmt: skip
    config = PreprocessingConfig.from_params({"mode": "resize", "size": 32, "workers": 1})
    scheme = LabelScheme.from_params({**DATASET_PARAMS, "bands": BANDS})
    rows = [
        row for _, _, row in encode_stream(RawFolder(tmp_path), manifest, scheme, config, BANDS)
    ]
    assert [row["resolution_cm"] for row in rows] == [pytest.approx(100.0)]
    assert store_resolution(rows) == pytest.approx(100.0)
