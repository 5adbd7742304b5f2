"""Boundary IoU on shapes whose contour bands can be counted by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from efm_seg.evaluation.boundary import (
    BoundaryConfig,
    BoundaryIoU,
    _bin_sums,
    band_width,
    boundary_band,
    label_boundary,
)

IGNORE = 255
SIZE, SIDE, TOP, LEFT = 12, 4, 3, 3  # a 4×4 square at rows 3..6, cols 3..6 of a 12×12 image
BORDER = 2 * SIZE + 2 * SIZE - 4  # 44 pixels on the image border (a band pixel for d = 1)


def square(shift: int = 0) -> torch.Tensor:
    """(1, 12, 12) labels: class 1 on the square moved ``shift`` columns right, class 0 around."""
    labels = torch.zeros(1, SIZE, SIZE, dtype=torch.long)
    labels[0, TOP : TOP + SIDE, LEFT + shift : LEFT + shift + SIDE] = 1
    return labels


def reference_band(mask: np.ndarray, d: int) -> np.ndarray:
    """The reference's ``mask_to_boundary``: pad with one row/column of zeros, erode d times
    with a 3×3 square (cv2's default border: outside the padded image counts as 1)."""
    height, width = mask.shape
    eroded = np.pad(mask.astype(bool), 1, constant_values=False)
    for _ in range(d):
        padded = np.pad(eroded, 1, constant_values=True)
        eroded = np.ones_like(eroded)
        for dy in range(3):
            for dx in range(3):
                eroded &= padded[dy : dy + height + 2, dx : dx + width + 2]
    return mask.astype(bool) & ~eroded[1 : height + 1, 1 : width + 1]


def test_band_of_a_full_image_is_its_border_like_the_reference():
    full = torch.ones(1, 5, 5, dtype=torch.bool)
    assert int(boundary_band(full, 1).sum()) == 16  # 5·5 − 3·3: the image border is contour
    assert int(boundary_band(full, 2).sum()) == 24  # everything but the centre
    assert int(boundary_band(full, 3).sum()) == 25


def test_band_of_an_interior_square():
    mask = square()[0] == 1
    assert int(boundary_band(mask[None], 1).sum()) == 4 * (SIDE - 1)  # 16 − 2·2 = 12
    assert int(boundary_band(mask[None], 2).sum()) == SIDE * SIDE  # nothing survives erosion
    assert not boundary_band(torch.zeros(2, 6, 6, dtype=torch.bool), 1).any()


@pytest.mark.parametrize("d", [1, 2, 3])
def test_band_equals_the_reference_iterated_3x3_erosion(d):
    generator = torch.Generator().manual_seed(d)
    masks = torch.rand(4, 13, 17, generator=generator) > 0.35
    ours = boundary_band(masks, d).numpy()
    for mask, band in zip(masks.numpy(), ours, strict=True):
        np.testing.assert_array_equal(band, reference_band(mask, d))


def test_band_width_from_ratio_or_pixels():
    assert band_width(300, 400) == 10  # 0.02 × 500
    assert band_width(30, 40, dilation_ratio=0.1) == 5  # 0.1 × 50
    assert band_width(10, 10) == 1  # 0.02 × 14.1 = 0.28 rounds to 0, and d is at least 1
    assert band_width(300, 400, pixels=3) == 3
    assert BoundaryIoU(2, pixels=3).band_width(300, 400) == 3
    with pytest.raises(ValueError, match="pixels"):
        BoundaryConfig(pixels=0)


def test_identical_masks_give_one_and_absent_class_is_not_counted():
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (2, 20, 24), generator=generator)  # class 3 never occurs
    metric = BoundaryIoU(4)
    metric.update(target.clone(), target)
    macro, per_class = metric.compute()
    assert macro == 1.0
    np.testing.assert_array_equal(per_class[:3], [1.0, 1.0, 1.0])
    assert math.isnan(per_class[3])


def test_square_shifted_by_one_pixel():
    metric = BoundaryIoU(3, pixels=1)  # class 2 absent from both: not counted
    metric.update(square(shift=1), square())
    macro, per_class = metric.compute()
    # Class 1 (d = 1): each 4×4 band is the square's perimeter, 4·(4 − 1) = 12 pixels. With the
    # prediction one column to the right the bands share the top and bottom rows minus one pixel
    # each: 2·(4 − 1) = 6; the side columns never coincide. I = 6, U = 12 + 12 − 6 = 18 → 1/3.
    # Class 0 (the rest): band = image border (44) + the 8-connected ring around the square,
    # (4 + 2)² − 4² = 20 pixels. The two rings share their top and bottom rows minus one pixel:
    # 2·(6 − 1) = 10. I = 44 + 10 = 54, U = 44 + 20 + 20 − 10 = 74.
    assert per_class[1] == pytest.approx(6 / 18, abs=1e-12)
    assert per_class[0] == pytest.approx(54 / 74, abs=1e-12)
    assert math.isnan(per_class[2])
    assert macro == pytest.approx((54 / 74 + 1 / 3) / 2, abs=1e-12)


def test_counts_are_summed_over_images_not_averaged():
    metric = BoundaryIoU(2, pixels=1)
    metric.update(square(), square())  # class 1: I = U = 12
    metric.update(square(shift=1), square())  # class 1: I = 6, U = 18
    _, per_class = metric.compute()
    assert per_class[1] == pytest.approx(18 / 30, abs=1e-12)  # not (1 + 1/3) / 2


def test_ignore_pixels_count_in_neither_intersection_nor_union():
    target, pred = square(), square(shift=1)
    target[0, 9, 9] = IGNORE  # far from the square and from the image border
    pred[0, 9, 9] = 1
    metric = BoundaryIoU(2, ignore_index=IGNORE, pixels=1)
    metric.update(pred, target)
    _, per_class = metric.compute()
    # (9, 9) is a hole in both class-0 masks (ignored in the target, class 1 in the prediction):
    # both bands gain its 8-pixel ring, so I = 54 + 8, U = 74 + 8. The ignored pixel itself is
    # in the prediction's class-1 band (a lone pixel is all contour) but is not counted: class 1
    # stays at 6 / 18.
    assert per_class[0] == pytest.approx(62 / 82, abs=1e-12)
    assert per_class[1] == pytest.approx(6 / 18, abs=1e-12)

    unlabelled = BoundaryIoU(2, pixels=1)  # the same prediction against a labelled (9, 9)
    unlabelled.update(pred, square())
    assert unlabelled.compute()[1][1] == pytest.approx(6 / 19, abs=1e-12)


def test_predictions_inside_an_ignored_region_do_not_matter():
    target = torch.zeros(1, 10, 10, dtype=torch.long)
    target[0, 3:7, 3:7] = IGNORE
    pred = torch.zeros_like(target)
    pred[0, 3:7, 3:7] = 1  # class 1 only where the target is ignored
    metric = BoundaryIoU(2, ignore_index=IGNORE, dilation_ratio=0.02)
    metric.update(pred, target)
    macro, per_class = metric.compute()
    assert macro == 1.0  # class 0 has the same hole in both masks
    assert math.isnan(per_class[1])  # its band lies wholly in the ignored region


def test_empty_metric_is_nan_and_bad_shapes_raise():
    metric = BoundaryIoU(2)
    macro, per_class = metric.compute()
    assert math.isnan(macro)
    assert np.isnan(per_class).all()
    with pytest.raises(ValueError, match="B, H, W"):
        metric.update(
            torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2, 4, 5, dtype=torch.long)
        )


@pytest.mark.parametrize("d", [1, 2])
def test_label_map_bands_equal_per_class_bands(d):
    labels = torch.randint(0, 4, (3, 11, 9), generator=torch.Generator().manual_seed(d))
    labels[0, 2:5, 2:5] = IGNORE
    bands = label_boundary(labels, d)
    for c in (0, 1, 2, 3, IGNORE):
        mask = labels == c
        torch.testing.assert_close(bands & mask, boundary_band(mask, d), rtol=0, atol=0)


def test_bin_sums_fallback_equals_bincount():
    index = torch.tensor([0, 2, 2, 5, 1, 2])  # 5 is past the 4 bins: dropped
    weights = torch.tensor([0.5, 1.0, 2.0, 9.0, 0.25, 4.0], dtype=torch.float64)
    for native in (True, False):
        assert _bin_sums(index, 4, native=native).tolist() == [1, 1, 3, 0]
        assert _bin_sums(index, 4, weights, native=native).tolist() == [0.5, 0.25, 7.0, 0.0]
