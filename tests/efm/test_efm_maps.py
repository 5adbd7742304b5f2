"""Error, entropy and fingerprint maps (eqs. 2-5)."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
from torchvision.transforms.v2.functional import gaussian_blur

import efm_seg.efm
from efm_seg.efm import entropy_map, error_map, fingerprint_map

IGNORE = 255


def probs_of(*pixels: tuple[float, ...]) -> torch.Tensor:
    """(1, C, 1, N) probabilities from N per-pixel class distributions."""
    return torch.tensor(pixels, dtype=torch.float32).T.reshape(1, len(pixels[0]), 1, len(pixels))


def random_case(
    batch: int = 3, classes: int = 5, size: int = 24, seed: int = 0, ignore: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(batch, classes, size, size, generator=generator)
    target = torch.randint(0, classes, (batch, size, size), generator=generator)
    if ignore:
        target[:, :3] = IGNORE
        target[0, :, -2:] = IGNORE
    return logits.softmax(dim=1), target


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Per-image min-max normalisation, written out for the tests."""
    low = x.amin(dim=(-2, -1), keepdim=True)
    high = x.amax(dim=(-2, -1), keepdim=True)
    return (x - low) / (high - low)


def test_package_does_not_import_kedro() -> None:
    package = Path(efm_seg.efm.__file__).parent
    allowed = {"__future__", "contextlib", "importlib", "math", "typing", "torch", "torchvision"}
    allowed |= {"segmentation_models_pytorch", "efm_seg"}
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{source.name} imports {name}"


# --- eq. 2: error map ---------------------------------------------------------------------------


def test_error_map_hand_computed() -> None:
    probs = probs_of((0.7, 0.2, 0.1), (0.1, 0.3, 0.6), (0.2, 0.5, 0.3), (0.4, 0.4, 0.2))
    target = torch.tensor([[[0, 1, 1, 1]]])
    # argmax = 0, 2, 1, 0 (a tie resolves to the first class, as argmax does)
    assert error_map(probs, target).tolist() == [[[0.0, 1.0, 0.0, 1.0]]]
    target_with_ignore = torch.tensor([[[0, IGNORE, 1, 1]]])
    expected = [[[0.0, 0.0, 0.0, 1.0]]]
    assert error_map(probs, target_with_ignore, ignore_index=IGNORE).tolist() == expected


def test_error_map_properties() -> None:
    probs, target = random_case(ignore=True)
    errors = error_map(probs, target, ignore_index=IGNORE)
    assert errors.shape == target.shape
    assert errors.dtype == torch.float32
    assert set(errors.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(errors.bool(), (probs.argmax(1) != target) & (target != IGNORE))
    assert error_map(probs.double(), target).dtype == torch.float64


@pytest.mark.parametrize("num_classes", [1, 2, 7, 20])
def test_error_map_settles_every_tie_as_argmax(num_classes: int) -> None:
    """Coarse probabilities tie often (and uniform ones everywhere): the first maximal class
    is the prediction, and labels outside 0..C-1 are always wrong."""
    generator = torch.Generator().manual_seed(num_classes)
    coarse = torch.randint(0, 3, (3, num_classes, 8, 8), generator=generator).float() / 2
    uniform = torch.full((1, num_classes, 8, 8), 1.0 / num_classes)
    for probs in (coarse, uniform):
        target = torch.randint(0, num_classes + 2, (probs.shape[0], 8, 8), generator=generator)
        expected = probs.max(dim=1).indices != target
        assert torch.equal(error_map(probs, target).bool(), expected)


def test_error_map_accepts_uint8_labels() -> None:
    probs, target = random_case()
    assert torch.equal(error_map(probs, target.to(torch.uint8)), error_map(probs, target))


# --- eq. 3: entropy map -------------------------------------------------------------------------


def test_entropy_map_hand_computed() -> None:
    probs = probs_of((1.0, 0.0, 0.0, 0.0), (0.5, 0.5, 0.0, 0.0), (0.25, 0.25, 0.25, 0.25))
    entropy = entropy_map(probs)
    assert entropy.shape == (1, 1, 3)
    torch.testing.assert_close(entropy[0, 0], torch.tensor([0.0, math.log(2), math.log(4)]))
    torch.testing.assert_close(entropy_map(probs, eps=0.0), entropy)


def test_entropy_map_range_and_gradient() -> None:
    probs, _ = random_case(classes=6)
    probs.requires_grad_(True)
    entropy = entropy_map(probs)
    assert entropy.shape == (3, 24, 24)
    assert bool((entropy >= 0).all()) and bool((entropy <= math.log(6) + 1e-6).all())
    entropy.sum().backward()  # eq. 3 itself is differentiable; only fingerprint_map detaches
    assert probs.grad is not None and bool(torch.isfinite(probs.grad).all())


# --- eqs. 4-5: fingerprint map -------------------------------------------------------------------


def test_fingerprint_hand_computed() -> None:
    # target 0 everywhere: E = [0, 0 (tie → class 0), 1], H = [0, ln 2, 0]
    probs = probs_of((1.0, 0.0), (0.5, 0.5), (0.0, 1.0))
    target = torch.zeros(1, 1, 3, dtype=torch.long)
    efm = fingerprint_map(probs, target, alpha=0.6, sigma=0)
    # Ē = [0, 0, 1], H̄ = [0, 1, 0] → 0.6·Ē + 0.4·H̄ = [0, 0.4, 0.6] → re-normalised
    torch.testing.assert_close(efm[0, 0], torch.tensor([0.0, 2 / 3, 1.0]))


def test_fingerprint_alpha_one_is_the_error_map() -> None:
    probs, target = random_case()
    errors = error_map(probs, target)
    assert bool((errors.amax(dim=(1, 2)) == 1).all()) and bool((errors.amin(dim=(1, 2)) == 0).all())
    assert torch.equal(fingerprint_map(probs, target, alpha=1.0, sigma=0), errors)


def test_fingerprint_alpha_zero_is_the_normalised_entropy() -> None:
    probs, target = random_case()
    efm = fingerprint_map(probs, target, alpha=0.0, sigma=0)
    torch.testing.assert_close(efm, minmax(entropy_map(probs)))


def test_fingerprint_smoothing_is_the_gaussian_of_eq5() -> None:
    probs, target = random_case(batch=2, size=20)
    sigma = 1.5
    errors = error_map(probs, target)
    # torchvision's 2-D (non-separable) blur, kernel to ±3σ, then min-max
    expected = minmax(gaussian_blur(errors.unsqueeze(1), [11, 11], [sigma, sigma]).squeeze(1))
    efm = fingerprint_map(probs, target, alpha=1.0, sigma=sigma)
    torch.testing.assert_close(efm, expected)


def test_fingerprint_smooths_then_normalises_each_component_then_combines() -> None:
    probs, target = random_case(batch=2, size=20)
    sigma, alpha = 1.0, 0.6
    planes = torch.stack((error_map(probs, target), entropy_map(probs)), dim=1)
    smoothed = minmax(gaussian_blur(planes, [7, 7], [sigma, sigma]))  # eq. 5, then Ē and H̄
    expected = minmax(alpha * smoothed[:, 0] + (1 - alpha) * smoothed[:, 1])  # eq. 4, renormalised
    efm = fingerprint_map(probs, target, alpha=alpha, sigma=sigma)
    torch.testing.assert_close(efm, expected)


def test_fingerprint_smoothing_spreads_an_isolated_error() -> None:
    probs = torch.zeros(1, 2, 9, 9)
    probs[:, 0] = 1.0
    target = torch.zeros(1, 9, 9, dtype=torch.long)
    target[0, 4, 4] = 1  # a single wrong pixel
    efm = fingerprint_map(probs, target, alpha=1.0, sigma=1.0)[0]
    assert efm[4, 4] == 1.0
    assert 0 < efm[4, 5] < 1 and efm[4, 5] > efm[4, 6] > efm[4, 7]
    torch.testing.assert_close(efm, efm.T)
    torch.testing.assert_close(efm, efm.flip(0))


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
@pytest.mark.parametrize("sigma", [0.0, 2.0])
def test_fingerprint_properties(alpha: float, sigma: float) -> None:
    probs, target = random_case(ignore=True)
    efm = fingerprint_map(probs, target, alpha=alpha, sigma=sigma, ignore_index=IGNORE)
    assert efm.shape == target.shape and efm.dtype == torch.float32
    assert bool(torch.isfinite(efm).all())
    assert bool((efm >= 0).all()) and bool((efm <= 1).all())
    assert bool((efm[target == IGNORE] == 0).all())
    valid = target != IGNORE
    for image in range(target.shape[0]):  # re-normalised to [0, 1] over each image's valid pixels
        assert efm[image][valid[image]].max() == 1.0
        assert efm[image][valid[image]].min() == 0.0


def test_fingerprint_is_per_image() -> None:
    probs, target = random_case(batch=3)
    batch = fingerprint_map(probs, target)
    singles = [fingerprint_map(probs[i : i + 1], target[i : i + 1]) for i in range(3)]
    torch.testing.assert_close(batch, torch.cat(singles))


@pytest.mark.parametrize("case", ["all_correct", "all_wrong", "uniform"])
@pytest.mark.parametrize("sigma", [0.0, 2.0])
def test_fingerprint_constant_components_give_zero_not_nan(case: str, sigma: float) -> None:
    classes = 4
    target = torch.randint(0, classes, (2, 16, 16), generator=torch.Generator().manual_seed(1))
    if case == "uniform":
        probs = torch.full((2, classes, 16, 16), 1.0 / classes)
        target = torch.zeros_like(target)  # argmax of a uniform row is 0: no errors either
    else:
        shift = 0 if case == "all_correct" else 1
        probs = torch.nn.functional.one_hot((target + shift) % classes, classes)
        probs = probs.permute(0, 3, 1, 2).float()
    efm = fingerprint_map(probs, target, sigma=sigma)
    assert torch.equal(efm, torch.zeros_like(efm))


def test_fingerprint_ignore_pixels_do_not_set_the_scale() -> None:
    probs, target = random_case(batch=1, size=12)
    probs[:, :, :2] = 1.0 / probs.shape[1]  # maximal entropy in the no-data rows...
    target[:, :2] = IGNORE
    efm = fingerprint_map(probs, target, alpha=0.0, sigma=0, ignore_index=IGNORE)
    entropy = entropy_map(probs)[:, 2:]
    torch.testing.assert_close(efm[:, 2:], minmax(entropy))  # ...but only valid rows count
    assert bool((efm[:, :2] == 0).all())


def test_fingerprint_carries_no_gradient() -> None:
    probs, target = random_case()
    probs.requires_grad_(True)
    efm = fingerprint_map(probs, target)
    assert not efm.requires_grad and efm.grad_fn is None


def test_fingerprint_image_smaller_than_kernel() -> None:
    probs, target = random_case(batch=2, size=3)
    efm = fingerprint_map(probs, target, sigma=5.0)
    assert efm.shape == (2, 3, 3) and bool(torch.isfinite(efm).all())


def test_fingerprint_float64() -> None:
    probs, target = random_case()
    efm = fingerprint_map(probs.double(), target)
    assert efm.dtype == torch.float64
    torch.testing.assert_close(efm.float(), fingerprint_map(probs, target), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"sigma": -1.0}, "sigma"),
        ({"ignore_index": 1.5}, "ignore_index"),
    ],
)
def test_fingerprint_rejects_bad_arguments(kwargs: dict[str, float], match: str) -> None:
    probs, target = random_case()
    with pytest.raises(ValueError, match=match):
        fingerprint_map(probs, target, **kwargs)


def test_maps_reject_bad_shapes_and_dtypes() -> None:
    probs, target = random_case(batch=2, size=8)
    with pytest.raises(ValueError, match="shape mismatch"):
        fingerprint_map(probs, target[:, :4])
    with pytest.raises(ValueError, match="shape mismatch"):
        error_map(probs, target[:1])
    with pytest.raises(ValueError, match="target"):
        error_map(probs, target.float())
    with pytest.raises(ValueError, match="probs"):
        entropy_map(probs[0])
    with pytest.raises(ValueError, match="eps"):
        entropy_map(probs, eps=-1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fingerprint_on_cuda_matches_cpu() -> None:
    probs, target = random_case(ignore=True)
    on_cpu = fingerprint_map(probs, target, ignore_index=IGNORE)
    on_gpu = fingerprint_map(probs.cuda(), target.cuda(), ignore_index=IGNORE)
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-5, rtol=0)
