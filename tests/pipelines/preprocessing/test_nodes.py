"""Preprocessing: resize/tile geometry, label safety, parallel = sequential, bad parameters."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from efm_seg.data.raw import DatasetValidationError, RawFolder
from efm_seg.data.tiling import resize_pair, tile_origins
from efm_seg.pipelines.ingestion.nodes import build_manifest
from efm_seg.pipelines.preprocessing.nodes import encode_samples
from tests.conftest import DATASET_PARAMS, LAYOUT_PARAMS

PARAMS = {"mode": "resize", "size": 32, "stride": None, "image_filter": "lanczos", "workers": 1}


@pytest.fixture
def manifest(raw_root):
    return build_manifest(RawFolder(raw_root), DATASET_PARAMS, LAYOUT_PARAMS)


def run(raw_root, manifest, **changes):
    """The samples by id and the index rows, as the stream hands them to the store."""
    stream = encode_samples(RawFolder(raw_root), manifest, DATASET_PARAMS, {**PARAMS, **changes})
    items = list(stream)
    return {sample_id: sample for sample_id, sample, _ in items}, pd.DataFrame(
        [row for *_, row in items]
    )


def test_resize_gives_size_squared_samples_with_valid_labels(raw_root, manifest):
    samples, index = run(raw_root, manifest)
    assert list(samples) == list(manifest["sample_id"]) == list(index["sample_id"])
    for sample in samples.values():
        assert sample.image.shape == (32, 32, 3) and sample.image.dtype == np.uint8
        assert sample.labels.shape == (32, 32) and sample.labels.dtype == np.uint8
        assert set(np.unique(sample.labels)) <= {0, 1, 2}
    counts = index[["px_land", "px_building", "px_water", "px_ignore"]].sum(axis=1)
    assert (counts == 32 * 32).all()
    assert (index["source_id"] == index["sample_id"]).all()


def test_masks_use_nearest_neighbour_and_images_are_antialiased():
    # A one-pixel checkerboard: an antialiasing filter averages it to grey, nearest would not.
    checker = ((np.indices((64, 64)).sum(axis=0) % 2) * 255).astype(np.uint8)
    image = np.dstack([checker] * 3)
    labels = np.where(np.indices((64, 64)).sum(axis=0) % 2 == 0, 0, 6).astype(np.uint8)
    small_image, small_labels = resize_pair(image, labels, 16)
    assert abs(float(small_image.mean()) - 127.5) < 10
    assert small_image.std() < 20
    assert set(np.unique(small_labels)) <= {0, 6}  # never an interpolated id such as 3


def test_tile_origins_cover_the_whole_axis():
    assert tile_origins(100, 32, 32) == [0, 32, 64, 68]
    assert tile_origins(96, 32, 32) == [0, 32, 64]
    assert tile_origins(32, 32, 8) == [0]
    assert tile_origins(50, 32, 16) == [0, 16, 18]
    with pytest.raises(ValueError, match="smaller than the tile size"):
        tile_origins(20, 32, 32)


def test_tile_mode_cuts_native_resolution_patches(raw_root, manifest):
    samples, index = run(raw_root, manifest, mode="tile", size=20, stride=20)
    first = manifest.iloc[0]  # 40 × 48 → 2 × 3 patches
    patches = index[index["source_id"] == first["sample_id"]]
    assert len(patches) == len(tile_origins(40, 20, 20)) * len(tile_origins(48, 20, 20)) == 6
    assert set(patches["y"]) == {0, 20} and set(patches["x"]) == {0, 20, 28}
    assert all(s.image.shape == (20, 20, 3) for s in samples.values())
    assert index["sample_id"].is_unique
    assert (index["group"] == index["source_id"]).all()


def test_parallel_equals_sequential(raw_root, manifest):
    one, index_one = run(raw_root, manifest, workers=1)
    two, index_two = run(raw_root, manifest, workers=2)
    assert index_one.equals(index_two)
    for key in one:
        assert np.array_equal(one[key].image, two[key].image)
        assert np.array_equal(one[key].labels, two[key].labels)


def test_image_smaller_than_the_tile_is_named(raw_root, manifest):
    with pytest.raises(
        DatasetValidationError, match=r"smaller than the tile size.*'images/s0.jpg'"
    ):
        run(raw_root, manifest, mode="tile", size=45)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mode": "crop"}, "preprocessing.mode"),
        ({"size": 0}, "preprocessing.size"),
        ({"size": "512"}, "preprocessing.size"),
        ({"stride": -1}, "preprocessing.stride"),
        ({"image_filter": "nearest"}, "preprocessing.image_filter"),
        ({"workers": -2}, "preprocessing.workers"),
        ({"sise": 3}, "unknown key"),
    ],
)
def test_invalid_parameters_are_named(raw_root, manifest, change, message):
    with pytest.raises(ValueError, match=message):
        run(raw_root, manifest, **change)


def test_a_mask_changed_since_ingestion_is_caught(raw_root, manifest):
    from PIL import Image

    path = raw_root / "masks" / "s0.png"
    rgb = np.asarray(Image.open(path)).copy()
    rgb[0, 0] = (9, 9, 9)
    Image.fromarray(rgb).save(path)
    with pytest.raises(DatasetValidationError, match=r"'masks/s0\.png'.*run the ingestion"):
        run(raw_root, manifest)


def test_the_store_is_written_from_the_stream_with_its_index(raw_root, manifest, tmp_path):
    from efm_seg.data.samples import open_store, write_store
    from efm_seg.pipelines.preprocessing.nodes import index_samples

    samples, rows = run(raw_root, manifest, workers=2)
    stream = encode_samples(RawFolder(raw_root), manifest, DATASET_PARAMS, {**PARAMS, "workers": 2})
    store = write_store(tmp_path / "encoded", stream)
    # The same store as from the samples held in memory: ids, order, content fingerprint.
    assert store.fingerprint == write_store(tmp_path / "in_memory", samples).fingerprint
    assert list(store.ids) == list(manifest["sample_id"])
    index = index_samples(open_store(tmp_path / "encoded"))
    pd.testing.assert_frame_equal(index, rows, check_dtype=False)


def test_a_stream_that_fails_leaves_no_store(raw_root, manifest, tmp_path):
    from efm_seg.data.samples import write_store

    (raw_root / manifest["mask"].iloc[-1]).write_bytes(b"broken")
    stream = encode_samples(RawFolder(raw_root), manifest, DATASET_PARAMS, {**PARAMS, "workers": 2})
    with pytest.raises(Exception):  # noqa: B017 - PIL's error for the broken file
        write_store(tmp_path / "encoded", stream)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # no store, no staging


def _encode_and_mark(task, encode, folder):
    (folder / task.sample_id).touch()  # this source was read (the result is on its way)
    return encode(task)


def test_the_sample_stream_reads_only_a_few_sources_ahead_of_the_store(tmp_path):
    """The store writes samples as the stream yields them: a slow writer must hold back the
    workers, so that memory holds a few sources' samples whatever the dataset's size."""
    import dataclasses
    import functools
    import time

    from tests.conftest import write_pair

    raw = tmp_path / "raw"
    for i in range(40):
        write_pair(raw, f"s{i:02d}", size=(16, 16), seed=i)
    manifest = build_manifest(RawFolder(raw), DATASET_PARAMS, LAYOUT_PARAMS)
    stream = encode_samples(RawFolder(raw), manifest, DATASET_PARAMS, {**PARAMS, "workers": 2})
    assert stream.workers == 2 and stream.max_ahead == 8  # 4 sources per worker
    read = tmp_path / "read"
    read.mkdir()
    marked = dataclasses.replace(
        stream, encode=functools.partial(_encode_and_mark, encode=stream.encode, folder=read)
    )
    written, most_ahead = 0, 0
    for _ in marked:
        written += 1
        time.sleep(0.02)  # a slow store: time for the workers to run ahead, if they could
        most_ahead = max(most_ahead, len(list(read.iterdir())) - written)
    assert written == 40
    assert most_ahead <= stream.max_ahead


def test_pixels_without_data_in_the_image_are_ignored(tmp_path):
    """A GeoTIFF whose left columns hold no data (its nodata value): whatever the mask says
    there, the encoded labels are the ignore index, so nothing is learnt from them."""
    import rasterio
    from rasterio.transform import from_origin

    from tests.conftest import colour_mask, scene_labels

    raw = tmp_path / "raw"
    (raw / "images").mkdir(parents=True)
    (raw / "masks").mkdir()
    for i in range(2):
        labels = scene_labels(40, 48, seed=i)
        bands = np.random.default_rng(i).integers(1, 255, (3, 40, 48), dtype=np.uint8)
        bands[:, :, :10] = 0
        with rasterio.open(
            raw / "images" / f"s{i}.tif", "w", driver="GTiff", height=40, width=48, count=3,
            dtype="uint8", nodata=0, crs="EPSG:32640", transform=from_origin(55, 25, 0.5, 0.5),
        ) as target:  # fmt: skip
            target.write(bands)
        Image.fromarray(colour_mask(labels)).save(raw / "masks" / f"s{i}.png")
    layout = {**LAYOUT_PARAMS, "images": "images/{id}.tif"}
    manifest = build_manifest(RawFolder(raw), DATASET_PARAMS, layout)
    samples, index = run(raw, manifest, mode="tile", size=16, stride=16)
    ignore = DATASET_PARAMS["ignore_index"]
    for sample_id, sample in samples.items():
        row = index.set_index("sample_id").loc[sample_id]
        x = int(row["x"])
        no_data = max(0, min(16, 10 - x))  # the tile's columns left of column 10
        assert (sample.labels[:, :no_data] == ignore).all()
        assert (sample.labels[:, no_data:] != ignore).all()
    assert index["px_ignore"].sum() == 16 * 10 * (index["x"] == 0).sum()  # counted too
