"""Tests for the synthetic aerial scene generator."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from efm_seg.data import synthetic
from efm_seg.data.synthetic import (
    DEMO_CLASSES,
    DEMO_PALETTE,
    generate_scene,
    paint_mask,
    write_demo_dataset,
)

BARE, BUILDING, ROAD, VEGETATION, WATER, AGRICULTURE, POOL = range(7)


def _decode(mask: np.ndarray) -> np.ndarray:
    """Colour mask → label ids by exact colour match (-1 where no palette colour matches)."""
    out = np.full(mask.shape[:2], -1, dtype=np.int16)
    for i, colour in enumerate(DEMO_PALETTE.values()):
        out[np.all(mask == np.array(colour, dtype=np.uint8), axis=-1)] = i
    return out


@pytest.fixture(scope="module")
def scenes() -> list[tuple[np.ndarray, np.ndarray]]:
    return [generate_scene(seed) for seed in range(12)]


# ---------------------------------------------------------------------------------- classes


def test_class_table_is_fixed() -> None:
    assert DEMO_CLASSES == (
        "bare_land",
        "building",
        "road",
        "vegetation",
        "water",
        "agriculture",
        "pool",
    )
    assert tuple(DEMO_PALETTE) == DEMO_CLASSES
    assert list(DEMO_PALETTE.values()) == [
        (210, 180, 140),
        (60, 16, 152),
        (110, 193, 228),
        (34, 139, 34),
        (30, 80, 200),
        (254, 221, 58),
        (0, 255, 255),
    ]


# ------------------------------------------------------------------------- generate_scene


def test_same_seed_is_bit_identical_and_seeds_differ() -> None:
    img_a, lab_a = generate_scene(7, 96, 128)
    img_b, lab_b = generate_scene(7, 96, 128)
    np.testing.assert_array_equal(img_a, img_b)
    np.testing.assert_array_equal(lab_a, lab_b)
    img_c, lab_c = generate_scene(8, 96, 128)
    assert not np.array_equal(img_a, img_c)
    assert not np.array_equal(lab_a, lab_c)


@pytest.mark.parametrize(("height", "width"), [(64, 64), (64, 200), (150, 97), (320, 256)])
def test_shapes_dtypes_and_ranges(height: int, width: int) -> None:
    img, lab = generate_scene(3, height, width)
    assert img.shape == (height, width, 3)
    assert lab.shape == (height, width)
    assert img.dtype == np.uint8
    assert lab.dtype == np.uint8
    assert lab.max() < len(DEMO_CLASSES)
    assert img.std() > 5  # not a flat image


def test_large_scene() -> None:
    img, lab = generate_scene(1, 1024, 1024)
    assert img.shape == (1024, 1024, 3)
    assert lab.shape == (1024, 1024)
    assert lab.max() < len(DEMO_CLASSES)
    assert (lab[:, 1:] == lab[:, :-1]).mean() > 0.95


@pytest.mark.parametrize("size", [(31, 64), (64, 0), (64.5, 64)])
def test_rejects_bad_sizes(size: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match=r"height|width"):
        generate_scene(0, *size)  # type: ignore[arg-type]


def test_every_class_appears_with_realistic_imbalance(
    scenes: list[tuple[np.ndarray, np.ndarray]],
) -> None:
    counts = sum(np.bincount(lab.ravel(), minlength=7) for _, lab in scenes)
    freq = counts / counts.sum()
    assert (counts > 0).all(), dict(zip(DEMO_CLASSES, counts, strict=True))
    assert 0 < freq[POOL] < 0.01
    assert freq[BARE] + freq[VEGETATION] > 0.5
    assert freq[BARE] == freq.max()
    for cls in (BUILDING, ROAD):
        assert 0.005 < freq[cls] < 0.15
    # Not every class in every scene.
    present = np.array([np.bincount(lab.ravel(), minlength=7) > 0 for _, lab in scenes])
    assert not present.all(axis=0).all()


def test_label_maps_are_spatially_coherent(scenes: list[tuple[np.ndarray, np.ndarray]]) -> None:
    for _, lab in scenes:
        assert (lab[:, 1:] == lab[:, :-1]).mean() > 0.9
        assert (lab[1:] == lab[:-1]).mean() > 0.9


def test_buildings_are_mostly_rectangles(scenes: list[tuple[np.ndarray, np.ndarray]]) -> None:
    fills = []
    for _, lab in scenes:
        comps, n = ndimage.label(lab == BUILDING, structure=np.ones((3, 3)))
        for i, box in enumerate(ndimage.find_objects(comps), start=1):
            ys, xs = np.nonzero(comps[box] == i)
            touches_border = (
                box[0].start == 0
                or box[1].start == 0
                or box[0].stop == lab.shape[0]
                or box[1].stop == lab.shape[1]
            )
            if len(ys) < 25 or touches_border:
                continue
            pts = np.stack([xs, ys], axis=1).astype(np.float32)
            (_, _), (rw, rh), _ = cv2.minAreaRect(pts)
            fills.append(len(ys) / ((rw + 1) * (rh + 1)))
        assert n < lab.size / 25  # a few objects, not speckle
    fills_arr = np.array(fills)
    assert len(fills_arr) > 50
    assert np.mean((fills_arr > 0.8) & (fills_arr < 1.2)) > 0.9


def test_image_correlates_with_labels(scenes: list[tuple[np.ndarray, np.ndarray]]) -> None:
    sums = np.zeros((7, 3))
    counts = np.zeros(7)
    for img, lab in scenes:
        for cls in range(7):
            sel = lab == cls
            sums[cls] += img[sel].sum(axis=0)
            counts[cls] += sel.sum()
    means = sums / counts[:, None]
    veg, water, building, pool = means[VEGETATION], means[WATER], means[BUILDING], means[POOL]
    assert veg[1] > veg[0] and veg[1] > veg[2]  # vegetation is green
    assert water[2] > water[0]  # water is bluish
    assert pool[2] > pool[0] + 60 and pool[1] > pool[0] + 60  # pools are bright turquoise
    for a, b in [(BUILDING, VEGETATION), (BUILDING, WATER), (VEGETATION, WATER), (ROAD, BARE)]:
        assert np.linalg.norm(means[a] - means[b]) > 20, (DEMO_CLASSES[a], DEMO_CLASSES[b])
    assert np.linalg.norm(building - veg) > 40


def test_shadows_fall_on_one_side_of_buildings(
    scenes: list[tuple[np.ndarray, np.ndarray]],
) -> None:
    """Bare land just beside buildings is clearly darker on one side than on the opposite one."""
    checked = 0
    for img, lab in scenes:
        roofs = lab == BUILDING
        if roofs.sum() < 500:
            continue
        grey = img.astype(np.float32).mean(axis=-1)
        ring = []
        for angle in np.linspace(0, 2 * np.pi, 8, endpoint=False):
            dx, dy = round(3 * np.cos(angle)), round(3 * np.sin(angle))
            moved = ndimage.shift(roofs, (dy, dx), order=0, cval=False)
            beside = moved & ~roofs & (lab == BARE)
            ring.append(grey[beside].mean())
        ring_arr = np.array(ring)
        # The darkest side is much darker than the opposite side (a consistent sun direction).
        darkest = int(ring_arr.argmin())
        opposite = ring_arr[[(darkest + k) % 8 for k in (3, 4, 5)]].mean()
        assert ring_arr[darkest] < 0.85 * opposite
        checked += 1
    assert checked >= 3


# ------------------------------------------------------------------------------- paint_mask


def test_colourise_round_trips() -> None:
    labels = np.tile(np.arange(7, dtype=np.uint8), (5, 3))
    mask = paint_mask(labels)
    assert mask.shape == (*labels.shape, 3)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(_decode(mask), labels)
    for i, colour in enumerate(DEMO_PALETTE.values()):
        assert tuple(int(c) for c in mask[0, i]) == colour


def test_colourise_custom_palette_and_bad_labels() -> None:
    palette = {"a": (1, 2, 3), "b": (4, 5, 6)}
    np.testing.assert_array_equal(paint_mask(np.array([[1, 0]]), palette), [[[4, 5, 6], [1, 2, 3]]])
    with pytest.raises(ValueError, match="labels"):
        paint_mask(np.array([[2]]), palette)
    with pytest.raises(ValueError, match="2-D"):
        paint_mask(np.zeros((2, 2, 3), dtype=np.uint8))


# ---------------------------------------------------------------------- write_demo_dataset


def _read_pair(root: Path, scene_id: str) -> tuple[np.ndarray, np.ndarray]:
    with Image.open(root / "images" / f"{scene_id}_sat.jpg") as im:
        assert im.format == "JPEG"
        assert im.mode == "RGB"
        img = np.asarray(im)
    with Image.open(root / "masks" / f"{scene_id}_mask.png") as m:
        assert m.format == "PNG"
        assert m.mode == "RGB"
        mask = np.asarray(m)
    return img, mask


def test_write_demo_dataset(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    ids = write_demo_dataset(root, n_scenes=4, seed=3, min_size=64, max_size=120)
    assert ids == ["scene_000", "scene_001", "scene_002", "scene_003"]
    assert sorted(p.name for p in (root / "images").iterdir()) == [f"{i}_sat.jpg" for i in ids]
    assert sorted(p.name for p in (root / "masks").iterdir()) == [f"{i}_mask.png" for i in ids]
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no temporary directory left

    sizes = set()
    for scene_id in ids:
        img, mask = _read_pair(root, scene_id)
        assert img.shape == mask.shape
        assert 64 <= img.shape[0] <= 120 and 64 <= img.shape[1] <= 120
        sizes.add(img.shape[:2])
        assert (_decode(mask) >= 0).all()  # only palette colours
    assert len(sizes) > 1


def test_scenes_do_not_depend_on_n_scenes(tmp_path: Path) -> None:
    write_demo_dataset(tmp_path / "a", n_scenes=3, seed=5, min_size=64, max_size=96)
    write_demo_dataset(tmp_path / "b", n_scenes=1, seed=5, min_size=64, max_size=96)
    write_demo_dataset(tmp_path / "c", n_scenes=1, seed=6, min_size=64, max_size=96)
    img_a, mask_a = _read_pair(tmp_path / "a", "scene_000")
    img_b, mask_b = _read_pair(tmp_path / "b", "scene_000")
    _, mask_c = _read_pair(tmp_path / "c", "scene_000")
    np.testing.assert_array_equal(mask_a, mask_b)
    np.testing.assert_array_equal(img_a, img_b)
    assert mask_a.shape != mask_c.shape or not np.array_equal(mask_a, mask_c)


def test_existing_non_empty_root_is_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    root.mkdir()
    (root / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="demo"):
        write_demo_dataset(root, n_scenes=1, min_size=64, max_size=64)
    assert [p.name for p in root.iterdir()] == ["keep.txt"]
    assert (root / "keep.txt").read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]


def test_existing_empty_root_is_filled(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    root.mkdir()
    assert write_demo_dataset(root, n_scenes=1, min_size=64, max_size=64) == ["scene_000"]
    assert (root / "masks" / "scene_000_mask.png").is_file()


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = synthetic.generate_scene

    def failing(seed: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        calls.append(seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(seed, height, width)

    monkeypatch.setattr(synthetic.scenes, "generate_scene", failing)  # where the writer finds it
    root = tmp_path / "demo"
    with pytest.raises(KeyboardInterrupt):
        write_demo_dataset(root, n_scenes=3, min_size=64, max_size=64)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_scenes": 0}, "n_scenes"),
        ({"min_size": 63}, "min_size"),
        ({"min_size": 128, "max_size": 100}, "max_size"),
        ({"jpeg_quality": 0}, "jpeg_quality"),
        ({"jpeg_quality": 101}, "jpeg_quality"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict[str, int], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        write_demo_dataset(tmp_path / "demo", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    args = [str(out), "--n-scenes", "2", "--seed", "1", "--min-size", "64", "--max-size", "80"]
    synthetic.main(args)
    assert "2 scenes" in capsys.readouterr().out
    assert len(list((out / "images").glob("*_sat.jpg"))) == 2
    with pytest.raises(SystemExit) as exc:
        synthetic.main(args)
    assert exc.value.code == 2
    assert "not empty" in capsys.readouterr().err
