"""Models: specs, encoder weights (random, downloaded, local files), input sizes, checkpoints."""

import io
import time

import numpy as np
import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from efm_seg.models import (
    CHECKPOINT_FORMAT,
    ModelSpec,
    build_model,
    check_input_size,
    make_checkpoint,
    model_from_checkpoint,
)

FPN = ModelSpec(arch="FPN", encoder="resnet18", num_classes=3)
PSP = ModelSpec(arch="PSPNet", encoder="resnet18", num_classes=3)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny forward passes: one thread is fastest, and stays fast when other tests run beside."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def reload(checkpoint):
    """A torch.save / torch.load(weights_only=True) round trip through memory."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def outputs(model, x):
    with torch.no_grad():
        return model.eval()(x)


def encoder_state(model):
    return {k: v.clone() for k, v in model.encoder.state_dict().items()}


# -- the spec -------------------------------------------------------------------------------------
def test_spec_round_trips_and_normalises_the_architecture_name():
    spec = ModelSpec(arch="fpn", encoder="resnet18", num_classes=np.int64(4))
    assert spec.arch == "FPN" and spec.num_classes == 4 and spec.name == "FPN-resnet18"
    assert spec.to_dict() == {
        "arch": "FPN",
        "encoder": "resnet18",
        "num_classes": 4,
        "in_channels": 3,
    }
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert ModelSpec() == ModelSpec(arch="FPN", encoder="resnet34", num_classes=7, in_channels=3)
    assert ModelSpec.from_dict(
        {"encoder": "resnet18", "encoder_weights": None}, ignore=["encoder_weights"]
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arch": "FCN"}, r"model\.arch='FCN'.*valid names: .*FPN.*PSPNet"),
        ({"encoder": "resnet19"}, r"model\.encoder='resnet19'.*close matches: .*resnet18"),
        ({"num_classes": 0}, r"model\.num_classes must be an integer ≥ 1"),
        ({"num_classes": 2.0}, r"model\.num_classes"),
        ({"in_channels": 0}, r"model\.in_channels"),
    ],
)
def test_invalid_specs_are_explained(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelSpec(**kwargs)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"model\.encodr"):
        ModelSpec.from_dict({"encodr": "resnet18"})


# -- checkpoints ----------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [FPN, PSP], ids=["FPN", "PSPNet"])
def test_checkpoint_round_trip_gives_identical_outputs(spec):
    torch.manual_seed(0)
    model = build_model(spec)
    x = torch.rand(2, 3, 64, 64)
    model.train()(x)  # move the batch-norm statistics away from their initial values
    metadata = {"classes": ["a", "b", "c"], "epoch": np.int64(3), "metrics": {"iou": 0.5}}
    checkpoint = reload(make_checkpoint(model, spec, stage="baseline", ema=False, **metadata))
    assert checkpoint["format"] == CHECKPOINT_FORMAT
    assert checkpoint["model_spec"] == spec.to_dict()
    assert checkpoint["epoch"] == 3 and type(checkpoint["epoch"]) is int
    assert checkpoint["classes"] == ["a", "b", "c"] and checkpoint["stage"] == "baseline"
    restored = model_from_checkpoint(checkpoint)
    assert not restored.training
    assert torch.equal(outputs(restored, x), outputs(model, x))


def test_checkpoint_is_a_snapshot_of_the_weights():
    model = build_model(FPN)
    checkpoint = make_checkpoint(model, FPN)
    key = "segmentation_head.0.weight"
    before = checkpoint["state_dict"][key].clone()
    with torch.no_grad():
        model.segmentation_head[0].weight.add_(1.0)
    assert torch.equal(checkpoint["state_dict"][key], before)


def test_averaged_model_saves_its_average():
    model = build_model(FPN)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.5), use_buffers=True)
    ema.update_parameters(model)  # the first update copies
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    ema.update_parameters(model)
    checkpoint = reload(make_checkpoint(ema, FPN, ema=True))
    assert set(checkpoint["state_dict"]) == set(model.state_dict())  # no "module." / n_averaged
    key = "segmentation_head.0.weight"
    assert torch.equal(checkpoint["state_dict"][key], ema.module.state_dict()[key])
    assert not torch.equal(checkpoint["state_dict"][key], model.state_dict()[key])
    x = torch.rand(1, 3, 64, 64)
    expected = outputs(ema.module, x)
    assert torch.isfinite(expected).all()
    assert torch.equal(outputs(model_from_checkpoint(checkpoint), x), expected)


def test_checkpoint_errors():
    model = build_model(FPN)
    with pytest.raises(ValueError, match="do not match"):
        make_checkpoint(model, ModelSpec(arch="FPN", encoder="resnet18", num_classes=5))
    with pytest.raises(ValueError, match="reserved"):
        make_checkpoint(model, FPN, state_dict={})
    with pytest.raises(TypeError, match=r"metrics\.bad.*weights_only"):
        make_checkpoint(model, FPN, metrics={"bad": object()})
    with pytest.raises(ValueError, match=r"not an efm-seg checkpoint.*no 'format' key"):
        model_from_checkpoint(model.state_dict())
    checkpoint = make_checkpoint(model, FPN)
    with pytest.raises(ValueError, match="its format is 'other/2'"):
        model_from_checkpoint({**checkpoint, "format": "other/2"})
    wrong = {**checkpoint, "model_spec": {**checkpoint["model_spec"], "num_classes": 5}}
    with pytest.raises(ValueError, match="do not fit its model_spec"):
        model_from_checkpoint(wrong)


# -- input sizes ----------------------------------------------------------------------------------
def test_check_input_size_explains_strides():
    check_input_size(FPN, 64, 96)
    check_input_size(PSP, 72, 72)  # PSPNet's encoder is 3 stages deep: stride 8
    check_input_size(ModelSpec(arch="Unet", encoder="resnet18"), 100, 100)  # Unet resizes
    with pytest.raises(ValueError) as error:
        check_input_size(ModelSpec(), 100, 100)
    assert str(error.value) == (
        "FPN-resnet34 needs image sides divisible by 32, but samples are 100×100; "
        "set preprocessing.size to a multiple of 32 (e.g. 96 or 128)"
    )
    with pytest.raises(ValueError, match=r"divisible by 8.*e\.g\. 96 or 104"):
        check_input_size(PSP, 100, 100)
    with pytest.raises(ValueError, match="positive"):
        check_input_size(FPN, 0, 64)


def test_check_input_size_finds_minimum_sizes():
    with pytest.raises(ValueError, match=r"PAN-resnet18 cannot take 64×64.*at least 128"):
        check_input_size(ModelSpec(arch="PAN", encoder="resnet18"), 64, 64)


# -- encoder weights ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pretrained():
    """A resnet18 encoder's weights as a torchvision-style state dict (with an ``fc`` head)."""
    torch.manual_seed(1)
    state = encoder_state(build_model(FPN))
    state["fc.weight"] = torch.rand(1000, 512)
    state["fc.bias"] = torch.rand(1000)
    return state


def assert_encoder_has(model, state):
    loaded = model.encoder.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith("fc."))


@pytest.mark.parametrize("form", ["torchvision", "plain", "prefixed", "whole model", "safetensors"])
def test_local_encoder_weights_are_loaded(tmp_path, pretrained, form):
    state = dict(pretrained)
    path = tmp_path / "resnet18.pth"
    if form == "plain":
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    elif form == "prefixed":
        state = {f"encoder.{k}": v for k, v in state.items() if not k.startswith("fc.")}
    elif form == "whole model":
        donor = build_model(FPN)
        donor.encoder.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
        state = make_checkpoint(donor, FPN)  # an efm-seg checkpoint: its encoder part is used
    if form == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "resnet18.safetensors"
        save_file(state, str(path))
    else:
        torch.save(state, path)
    model = build_model(FPN, str(path))
    assert_encoder_has(model, pretrained)
    assert model.training


def test_local_weights_with_other_input_channels_adapt_the_first_convolution(tmp_path, pretrained):
    path = tmp_path / "resnet18.pth"
    torch.save(pretrained, path)
    spec = ModelSpec(arch="FPN", encoder="resnet18", num_classes=3, in_channels=4)
    model = build_model(spec, path)
    assert model.encoder.conv1.weight.shape[1] == 4
    assert torch.equal(model.encoder.layer4[1].conv2.weight, pretrained["layer4.1.conv2.weight"])
    model_from_checkpoint(make_checkpoint(model, spec))  # same layout as a random 4-channel model


def test_wrong_weights_files_are_explained(tmp_path, pretrained):
    path = tmp_path / "resnet34.pth"
    torch.save(encoder_state(build_model(ModelSpec(encoder="resnet34"))), path)
    with pytest.raises(
        ValueError, match=r"resnet34\.pth do not fit.*unexpected key\(s\), e\.g\. layer1\.2"
    ):
        build_model(FPN, str(path))
    other = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.rand(2, 2)}, other)
    with pytest.raises(ValueError, match=r"other\.pt do not fit.*missing key\(s\), e\.g\. bn1"):
        build_model(FPN, str(other))
    shapes = tmp_path / "shapes.pt"
    torch.save({**pretrained, "conv1.weight": torch.rand(64, 3, 3, 3)}, shapes)
    with pytest.raises(ValueError, match=r"shapes\.pt do not fit.*size mismatch"):
        build_model(FPN, str(shapes))
    not_weights = tmp_path / "notes.bin"
    not_weights.write_text("hello")
    with pytest.raises(ValueError, match=r"cannot read .*notes\.bin"):
        build_model(FPN, str(not_weights))
    pickled = tmp_path / "pickled.pth"
    torch.save({"layer": torch.nn.Linear(2, 2)}, pickled)  # a module: needs full unpickling
    with pytest.raises(ValueError, match="cannot read"):
        build_model(FPN, str(pickled))


def test_missing_weights_file_and_unknown_names():
    with pytest.raises(FileNotFoundError, match=r"model\.encoder_weights.*/nowhere/resnet18\.pth"):
        build_model(FPN, "/nowhere/resnet18.pth")
    with pytest.raises(ValueError, match=r"'imagenett' is neither.*imagenet, ssl, swsl"):
        build_model(FPN, "imagenett")
    for random in (None, "none", "random", "None"):
        assert build_model(FPN, random).training


def test_unbuildable_combinations_are_explained():
    with pytest.raises(ValueError, match=r"cannot build.*DPT.*tu-"):
        build_model(ModelSpec(arch="DPT", encoder="resnet18"))


def test_imagenet_offline_fails_fast_and_explains_the_local_file_option(tmp_path, monkeypatch):
    import huggingface_hub.constants

    # Offline, with an empty cache (whatever ~/.cache holds); huggingface_hub reads these at
    # import time, so the module constants are patched as well as the environment.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    start = time.monotonic()
    with pytest.raises(RuntimeError) as error:
        build_model(FPN, "imagenet")
    assert time.monotonic() - start < 5
    message = str(error.value)
    assert "could not be downloaded" in message and "LocalEntryNotFoundError" in message
    assert "model.encoder_weights: /models/resnet34-imagenet.pth" in message
