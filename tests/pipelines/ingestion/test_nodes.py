"""Ingestion: a manifest for good data, one clear error per kind of bad input."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from efm_seg.data.raw import DatasetValidationError, RawFolder
from efm_seg.pipelines.ingestion.nodes import build_manifest
from tests.conftest import DATASET_PARAMS, LAYOUT_PARAMS, colour_mask, scene_labels, write_pair


def manifest_of(root: Path, dataset=DATASET_PARAMS, ingestion=LAYOUT_PARAMS):
    return build_manifest(RawFolder(root), dataset, ingestion)


def test_manifest_has_one_row_per_pair_with_sizes_and_class_counts(raw_root):
    manifest = manifest_of(raw_root)
    assert list(manifest["sample_id"]) == [f"s{i}" for i in range(6)]
    assert list(manifest.columns) == [
        "sample_id", "group", "image", "mask", "width", "height",
        "px_land", "px_building", "px_water", "px_ignore",
    ]  # fmt: skip
    row = manifest.iloc[2]
    assert (row["height"], row["width"]) == (48, 44)
    expected = np.bincount(scene_labels(48, 44, seed=2).ravel(), minlength=3)
    assert [row["px_land"], row["px_building"], row["px_water"]] == expected.tolist()
    assert row["px_ignore"] == 0
    assert row["image"] == "images/s2.jpg" and row["mask"] == "masks/s2.png"
    assert list(manifest["group"]) == list(manifest["sample_id"])


def test_parallel_inspection_gives_the_same_manifest(raw_root):
    sequential = manifest_of(raw_root)
    parallel = manifest_of(raw_root, ingestion={**LAYOUT_PARAMS, "workers": 2})
    assert sequential.equals(parallel)


def test_group_by_a_parent_folder(tmp_path):
    for tile in ("Tile 1", "Tile 2"):
        for i in range(2):
            write_pair(
                tmp_path,
                f"part_{i}",
                seed=i,
                image_template=f"{tile}/images/{{id}}.jpg",
                mask_template=f"{tile}/masks/{{id}}.png",
            )
    manifest = manifest_of(
        tmp_path,
        ingestion={"images": "{tile}/images/{id}.jpg", "masks": "{tile}/masks/{id}.png",
                   "group_by": "tile", "workers": 1},
    )  # fmt: skip
    assert list(manifest["group"]) == ["Tile 1", "Tile 1", "Tile 2", "Tile 2"]
    assert manifest["sample_id"].is_unique


def test_palette_rgba_and_greyscale_masks_are_accepted(raw_root):
    mask_path = raw_root / "masks" / "s0.png"
    Image.open(mask_path).convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(mask_path)
    rgb = np.asarray(Image.open(raw_root / "masks" / "s1.png"))
    alpha = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    Image.fromarray(alpha, mode="RGBA").save(raw_root / "masks" / "s1.png")
    assert Image.open(mask_path).mode == "P"
    manifest = manifest_of(raw_root)
    assert manifest.loc[0, "px_building"] > 0 and manifest.loc[1, "px_water"] > 0

    grey_root = raw_root.parent / "grey"
    labels = scene_labels(30, 30, seed=0)
    (grey_root / "images").mkdir(parents=True)
    (grey_root / "masks").mkdir()
    Image.fromarray(colour_mask(labels)).save(grey_root / "images" / "g.jpg")
    Image.fromarray((labels * 100).astype(np.uint8), mode="L").save(grey_root / "masks" / "g.png")
    grey = manifest_of(
        grey_root, dataset={"mode": "palette", "classes": {"a": 0, "b": 100, "c": 200}}
    )
    assert grey.loc[0, ["px_a", "px_b", "px_c"]].tolist() == np.bincount(labels.ravel()).tolist()


def test_integer_masks_with_an_id_table(tmp_path):
    labels = scene_labels(32, 32, seed=1)
    ids = np.array([0, 3, 5], dtype=np.uint8)[labels]  # 0 is no-data
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(colour_mask(labels)).save(tmp_path / "images" / "t.png")
    Image.fromarray(ids, mode="L").save(tmp_path / "masks" / "t.png")
    dataset = {"mode": "ids", "classes": {3: "building", 5: "water"}, "ignore_ids": [0]}
    manifest = manifest_of(
        tmp_path, dataset, {"images": "images/{id}.png", "masks": "masks/{id}.png", "workers": 1}
    )
    assert manifest.loc[0, "px_ignore"] == (labels == 0).sum()
    assert manifest.loc[0, "px_water"] == (labels == 2).sum()


# -- bad input: each raises before anything is written and names the file and the problem --


def expect_problem(root, *fragments, dataset=DATASET_PARAMS, ingestion=LAYOUT_PARAMS):
    with pytest.raises(DatasetValidationError) as error:
        manifest_of(root, dataset, ingestion)
    for fragment in fragments:
        assert fragment in str(error.value), str(error.value)
    return str(error.value)


def test_truncated_image(raw_root):
    path = raw_root / "images" / "s3.jpg"
    path.write_bytes(path.read_bytes()[:300])
    expect_problem(raw_root, "'images/s3.jpg'", "truncated")


def test_unreadable_image(raw_root):
    (raw_root / "images" / "s3.jpg").write_text("not an image at all")
    expect_problem(raw_root, "'images/s3.jpg'", "not an image")


def test_non_image_file_where_images_are_expected(raw_root):
    (raw_root / "images" / "readme.txt").write_text("hello")
    (raw_root / "masks" / "readme.png").write_bytes(b"\x89PNG")
    expect_problem(
        raw_root,
        "'images/readme.txt'",
        ingestion={**LAYOUT_PARAMS, "images": "images/{id}.*"},
    )


def test_mask_size_differs_from_image(raw_root):
    Image.fromarray(colour_mask(scene_labels(10, 12, 0))).save(raw_root / "masks" / "s1.png")
    expect_problem(raw_root, "'masks/s1.png' is 12×10", "'images/s1.jpg' is 46×44")


def test_unknown_mask_colours_are_listed_with_fractions_and_files(raw_root):
    for name in ("s1", "s4"):
        path = raw_root / "masks" / f"{name}.png"
        rgb = np.asarray(Image.open(path)).copy()
        rgb[:2, :2] = (1, 2, 3)
        Image.fromarray(rgb).save(path)
    message = expect_problem(raw_root, "#010203", "'masks/s1.png'", "'masks/s4.png'", "2 file(s)")
    assert "%" in message and "ignore_colours" in message
    # Mapped to ignore by configuration, the same data is fine.
    manifest = manifest_of(raw_root, dataset={**DATASET_PARAMS, "ignore_colours": ["#010203"]})
    assert manifest.loc[manifest["sample_id"] == "s1", "px_ignore"].item() == 4


def test_integer_ids_outside_the_table(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    Image.fromarray(np.full((8, 8), 9, np.uint8), mode="L").save(tmp_path / "masks" / "a.png")
    expect_problem(
        tmp_path,
        "mask id 9 is not in dataset.classes",
        "'masks/a.png'",
        dataset={"mode": "ids", "classes": {1: "x", 2: "y"}},
        ingestion={"images": "images/{id}.png", "masks": "masks/{id}.png", "workers": 1},
    )


def test_image_without_mask_and_mask_without_image(raw_root):
    (raw_root / "masks" / "s2.png").unlink()
    (raw_root / "images" / "s5.jpg").unlink()
    expect_problem(raw_root, "image(s) with no mask", "'images/s2.jpg'", "'masks/s5.png'")


def test_duplicate_ids(raw_root):
    Image.open(raw_root / "images" / "s0.jpg").save(raw_root / "images" / "s0.png")
    expect_problem(
        raw_root, "duplicate id 's0'", ingestion={**LAYOUT_PARAMS, "images": "images/{id}.*"}
    )


def test_empty_folder(tmp_path):
    expect_problem(tmp_path, "is empty")


def test_folder_without_matching_images(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    expect_problem(tmp_path, "no file", "ingestion.images")


def test_invalid_label_parameters_fail_before_reading(raw_root):
    duplicate = {**DATASET_PARAMS, "classes": {"a": "#000000", "b": "#000000"}}
    with pytest.raises(ValueError, match="both 'a' and 'b'"):
        manifest_of(raw_root, dataset=duplicate)
    with pytest.raises(ValueError, match="num_classes"):
        manifest_of(raw_root, dataset={**DATASET_PARAMS, "num_classes": 7})


def test_images_without_the_configured_bands_are_named(tmp_path):
    labels = scene_labels(12, 10, seed=0)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name, channels in (("four", 4), ("three", 3)):
        image = np.dstack([np.full(labels.shape, 50 * c, np.uint8) for c in range(channels)])
        Image.fromarray(image).save(tmp_path / "images" / f"{name}.png")
        Image.fromarray(colour_mask(labels)).save(tmp_path / "masks" / f"{name}.png")
    layout = {"images": "images/{id}.png", "masks": "masks/{id}.png", "workers": 1}
    with pytest.raises(
        DatasetValidationError,
        match=r"image 'images/three.png' has 3 band\(s\), but dataset.bands \[4, 1\] names",
    ):
        build_manifest(RawFolder(tmp_path), {**DATASET_PARAMS, "bands": [4, 1]}, layout)
    manifest = build_manifest(RawFolder(tmp_path), {**DATASET_PARAMS, "bands": [3, 1]}, layout)
    assert sorted(manifest["sample_id"]) == ["four", "three"]
