"""Building smp models with random, downloaded or local encoder weights, and the input sizes a
model takes (checked on the meta device, in milliseconds)."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import segmentation_models_pytorch as smp
import torch
from safetensors.torch import load_file
from torch import nn

from efm_seg.models.spec import ModelSpec

logger = logging.getLogger(__name__)


RANDOM_WEIGHTS = frozenset({"none", "random", ""})
"""``encoder_weights`` values (besides ``None``) that mean random initialisation."""

WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
"""File endings that make an ``encoder_weights`` value a path rather than a weights name."""

# Classifier heads of ImageNet models that smp encoders do not have (torchvision ``fc``, ...).
_HEAD_PREFIXES = ("fc.", "_fc.", "classifier.", "last_linear.", "head.", "linear.")
# Top-level modules of an smp segmentation model besides its encoder.
_MODEL_PREFIXES = ("decoder.", "segmentation_head.", "classification_head.")


# -- building -------------------------------------------------------------------------------------
def build_model(
    spec: ModelSpec, encoder_weights: str | os.PathLike[str] | None = None
) -> nn.Module:
    """The smp model for ``spec``, in training mode.

    Args:
        spec: What to build.
        encoder_weights: ``None``, ``"none"`` or ``"random"``: random initialisation.
            A weights name smp knows for the encoder (``"imagenet"``, for resnets also ``"ssl"``
            and ``"swsl"``): downloaded by smp from the Hugging Face hub (or taken from its
            cache); a failed download raises :class:`RuntimeError` explaining the local-file
            option. A path (ending in .pth/.pt/.bin/.safetensors/.ckpt, or an existing file):
            an encoder state dict read with ``weights_only=True``; keys may carry an
            ``encoder.`` prefix (a whole smp model's state dict also works: its encoder part is
            used), and ImageNet classifier keys (torchvision's ``fc.*``) are dropped.

    Raises:
        ValueError: unknown weights name, a file whose weights do not fit the encoder, or an
            architecture/encoder pair smp cannot build.
        FileNotFoundError: a weights path that does not exist.
        RuntimeError: pretrained weights could not be downloaded.
    """
    if encoder_weights is None or (
        isinstance(encoder_weights, str) and encoder_weights.strip().lower() in RANDOM_WEIGHTS
    ):
        return _create(spec)
    if isinstance(encoder_weights, os.PathLike):
        return _with_local_weights(spec, Path(encoder_weights))
    if not isinstance(encoder_weights, str):
        raise ValueError(
            "model.encoder_weights must be null, a weights name such as 'imagenet', or the path "
            f"of a local weights file; got {encoder_weights!r}"
        )
    value = encoder_weights.strip()
    known = _weights_names(spec.encoder)
    if value in known:
        _meta_model(spec)  # a pair smp cannot build is a ValueError, not a failed download
        return _downloaded(spec, value)
    if _looks_like_path(value):
        return _with_local_weights(spec, Path(value).expanduser())
    raise ValueError(
        f"model.encoder_weights={value!r} is neither a weights name smp knows for "
        f"{spec.encoder} ({', '.join(known) or 'none'}) nor an existing weights file "
        f"({'/'.join(WEIGHT_FILE_SUFFIXES)}); use null for random initialisation"
    )


def _create(spec: ModelSpec, weights: str | None = None, in_channels: int | None = None):
    args = {
        "encoder_name": spec.encoder,
        "encoder_weights": weights,
        "in_channels": spec.in_channels if in_channels is None else in_channels,
        "classes": spec.num_classes,
    }
    if weights is not None:
        return smp.create_model(spec.arch, **args)  # errors handled by _downloaded
    try:
        return smp.create_model(spec.arch, **args)
    except Exception as exc:
        raise ValueError(
            f"segmentation-models-pytorch cannot build {spec}: {type(exc).__name__}: {exc}"
        ) from exc


def _weights_names(encoder: str) -> list[str]:
    settings = smp.encoders.encoders.get(encoder, {}).get("pretrained_settings", {})
    return list(settings)


def _looks_like_path(value: str) -> bool:
    return (
        value.lower().endswith(WEIGHT_FILE_SUFFIXES)
        or "/" in value
        or os.sep in value
        or Path(value).expanduser().exists()
    )


def _downloaded(spec: ModelSpec, weights: str) -> nn.Module:
    logger.info(
        "Building %s with %s encoder weights (downloaded by smp from the Hugging Face hub "
        "unless cached; set HF_HUB_OFFLINE=1 to fail at once on a machine without internet)",
        spec.name,
        weights,
    )
    try:
        return _create(spec, weights)
    except Exception as exc:
        raise RuntimeError(
            f"the {weights!r} weights of encoder {spec.encoder} could not be downloaded "
            f"({type(exc).__name__}: {exc}). On a machine without internet, download the "
            "weights elsewhere and point the parameter model.encoder_weights at the local "
            "file instead (e.g. `model.encoder_weights: /models/resnet34-imagenet.pth`; a "
            "torchvision ImageNet checkpoint or an encoder state dict, .pth/.pt/.bin/"
            ".safetensors), or use null for random initialisation"
        ) from exc


def _with_local_weights(spec: ModelSpec, path: Path) -> nn.Module:
    if not path.is_file():
        raise FileNotFoundError(
            f"model.encoder_weights: the weights file {path} does not exist"
            + (f" (resolved: {path.resolve()})" if not path.is_absolute() else "")
        )
    state = _encoder_state(_read_weights(path), path)
    model = _create(spec)
    try:
        _load_encoder(model.encoder, state, path)
    except ValueError as direct:
        if spec.in_channels == 3:
            raise
        # Like smp with downloaded weights: load RGB weights, then adapt the first convolution.
        model = _create(spec, in_channels=3)
        try:
            _load_encoder(model.encoder, state, path)
        except ValueError:
            raise direct from None
        model.encoder.set_in_channels(spec.in_channels, pretrained=True)
    logger.info("Loaded the %s encoder weights from %s", spec.encoder, path)
    return model


def _read_weights(path: Path) -> Any:
    try:
        if path.suffix.lower() == ".safetensors":
            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"model.encoder_weights: cannot read {path} as a weights file "
            f"({type(exc).__name__}: {exc}); expected a state dict saved with torch.save "
            "(loaded with weights_only=True) or a .safetensors file"
        ) from exc


def _is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def _encoder_state(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The encoder part of what a weights file holds, keys without an ``encoder.`` prefix."""
    if not _is_state_dict(obj) and isinstance(obj, Mapping):
        # A wrapped state dict: efm-seg / Lightning checkpoints, {"model": ...} files.
        for key in ("state_dict", "model_state_dict", "model"):
            if _is_state_dict(obj.get(key)):
                obj = obj[key]
                break
    if not _is_state_dict(obj):
        raise ValueError(
            f"model.encoder_weights: {path} does not hold a state dict (a mapping of parameter "
            f"names to tensors); it holds a {type(obj).__name__}"
        )
    keys = list(obj)
    encoder_keys = [k for k in keys if k.startswith("encoder.")]
    if encoder_keys and all(k.startswith(("encoder.", *_MODEL_PREFIXES)) for k in keys):
        if len(encoder_keys) < len(keys):
            logger.info("%s is a whole model's state dict; using its encoder part", path)
        return {k.removeprefix("encoder."): obj[k] for k in encoder_keys}
    return dict(obj)


def _load_encoder(encoder: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    expected = set(encoder.state_dict())
    state = dict(state)
    for prefix in _HEAD_PREFIXES:
        if not any(k.startswith(prefix) for k in expected):
            for key in [k for k in state if k.startswith(prefix)]:
                del state[key]
    try:
        # The encoders' own load_state_dict (strict) also maps some legacy key names.
        encoder.load_state_dict(dict(state))
    except RuntimeError as exc:
        missing = sorted(k for k in expected - set(state) if not k.endswith("num_batches_tracked"))
        unexpected = sorted(set(state) - expected)
        details = []
        if missing:
            details.append(f"{len(missing)} missing key(s), e.g. {', '.join(missing[:4])}")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(unexpected[:4])}")
        if not details:
            details.append(str(exc).strip().splitlines()[-1].strip())
        raise ValueError(
            f"model.encoder_weights: the weights in {path} do not fit the "
            f"{type(encoder).__name__} encoder: {'; '.join(details)}. Expected an encoder "
            "state dict for this encoder (keys may carry an 'encoder.' prefix)"
        ) from exc


# -- input sizes ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def _meta_model(spec: ModelSpec) -> nn.Module:
    """The model on the meta device: shapes only, no memory, built in milliseconds."""
    with torch.device("meta"):
        model = _create(spec)
    return model.eval()


def _accepts(model: nn.Module, in_channels: int, height: int, width: int) -> str | None:
    """None when the model takes a ``height``×``width`` input, else the error text."""
    x = torch.empty(1, in_channels, height, width, device="meta")
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if tuple(out.shape[-2:]) != (height, width):
        return f"its output is {tuple(out.shape[-2:])}"
    return None


def check_input_size(
    spec: ModelSpec, height: int, width: int, *, setting: str = "preprocessing.size"
) -> None:
    """Raise a ValueError explaining why the model cannot take ``height``×``width`` samples.

    smp encoders downsample by their output stride (32 for resnets in most architectures; 8
    for PSPNet and DeepLabV3, 16 for DeepLabV3Plus and PAN, whose encoders are shallower or
    dilated), and smp refuses sides that are not multiples of it (Unet resizes and takes any
    size). A few decoders also need a minimum size (PAN: 128). We check and explain rather
    than pad: padding would change what the model sees at the borders and what the EFM maps
    cover, and the preprocessing pipeline already resizes or tiles every sample to one size.

    The stride comes from the model itself (``model.encoder.output_stride`` and smp's
    ``requires_divisible_input_shape``), and the size is then tried on a copy of the model on
    PyTorch's meta device (shapes only, no computation), which catches the other constraints.

    Args:
        spec: The model.
        height: Sample height in pixels.
        width: Sample width in pixels.
        setting: The parameter to name in the advice.
    """
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"image {name} must be a positive integer, got {value!r}")
    height, width = int(height), int(width)
    model = _meta_model(spec)
    stride = int(getattr(model.encoder, "output_stride", 32))
    divisible = getattr(model, "requires_divisible_input_shape", True)
    if divisible and (height % stride or width % stride):
        side = max(height, width)
        lower, upper = side // stride * stride, (side // stride + 1) * stride
        examples = f"{lower} or {upper}" if lower else f"{upper}"
        raise ValueError(
            f"{spec.name} needs image sides divisible by {stride}, but samples are "
            f"{height}×{width}; set {setting} to a multiple of {stride} (e.g. {examples})"
        )
    problem = _accepts(model, spec.in_channels, height, width)
    if problem is None:
        return
    # Look for the smallest square side (a multiple of the stride) that works, a few dozen
    # meta-device tries at most.
    start = stride * max(1, max(height, width) // stride)
    minimum = next(
        (
            side
            for side in range(start, start + 64 * stride, stride)
            if _accepts(model, spec.in_channels, side, side) is None
        ),
        None,
    )
    advice = (
        f"set {setting} to at least {minimum}" if minimum else f"use another model or {setting}"
    )
    raise ValueError(
        f"{spec.name} cannot take {height}×{width} samples ({problem}); {advice}"
        + (f" (a multiple of {stride})" if minimum and divisible else "")
    )
