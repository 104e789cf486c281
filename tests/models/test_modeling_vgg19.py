"""VGG-19: architecture facts, torchvision-format conversion, layer-by-layer correctness and the perceptual loss."""

import argparse
import zlib

import pytest
import torch
import torch.nn.functional as F

from talkface.errors import ModelLoadError
from talkface.models.vgg19 import VGG19Config, VGG19Model, VGGPerceptualLoss
from talkface.models.vgg19.convert_vgg19_torchvision_checkpoint import convert_checkpoint, convert_vgg19_state_dict
from tests.models.model_tester import ModelTesterMixin

# torchvision vgg19: the 16 convolutions sit at these indices of `features`
TORCHVISION_CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
TORCHVISION_CONV_OUT_CHANNELS = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]

TINY_BLOCK_CHANNELS = (4, 6, 8, 8, 8)


def tiny_config(**kwargs):
    return VGG19Config(**{"block_channels": TINY_BLOCK_CHANNELS, **kwargs})


def keyed_tensor(key, shape):
    """A tensor whose values depend on its key, so a misplaced tensor is noticed."""
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    return torch.randn(shape, generator=generator) * 0.3


def synthetic_torchvision_state_dict(block_channels=TINY_BLOCK_CHANNELS, hidden=16, num_classes=10):
    """A torchvision-format vgg19 state dict (real key names, tiny widths, keyed values)."""
    out_channels = [c for c, n in zip(block_channels, (2, 2, 4, 4, 4)) for _ in range(n)]
    state_dict, in_channels = {}, 3
    for index, channels in zip(TORCHVISION_CONV_INDICES, out_channels):
        weight_key = f"features.{index}.weight"
        state_dict[weight_key] = keyed_tensor(weight_key, (channels, in_channels, 3, 3))
        state_dict[f"features.{index}.bias"] = keyed_tensor(f"features.{index}.bias", (channels,))
        in_channels = channels
    shapes = {0: (hidden, in_channels * 49), 3: (hidden, hidden), 6: (num_classes, hidden)}
    for index, shape in shapes.items():
        state_dict[f"classifier.{index}.weight"] = keyed_tensor(f"classifier.{index}.weight", shape)
        state_dict[f"classifier.{index}.bias"] = keyed_tensor(f"classifier.{index}.bias", shape[:1])
    return state_dict


@pytest.fixture(scope="module")
def tiny_converted():
    """The synthetic torchvision state dict and the tiny model it converts into (features only)."""
    original = synthetic_torchvision_state_dict()
    config = tiny_config()
    model = VGG19Model(config).eval()
    model.load_state_dict(convert_vgg19_state_dict(original, config), strict=True)
    return original, model


# --- architecture facts -------------------------------------------------------------------------------------


def test_default_config_is_torchvision_vgg19():
    with torch.device("meta"):
        features_only = VGG19Model(VGG19Config())
        with_head = VGG19Model(VGG19Config(use_classifier=True))
    assert sum(p.numel() for p in features_only.parameters()) == 20_024_384
    assert sum(p.numel() for p in with_head.parameters()) == 143_667_240  # torchvision's vgg19 num_params

    expected = {}
    in_channels = 3
    for index, channels in zip(TORCHVISION_CONV_INDICES, TORCHVISION_CONV_OUT_CHANNELS):
        expected[f"features.{index}.weight"] = (channels, in_channels, 3, 3)
        expected[f"features.{index}.bias"] = (channels,)
        in_channels = channels
    assert {k: tuple(v.shape) for k, v in features_only.state_dict().items()} == expected
    head = {k: tuple(v.shape) for k, v in with_head.state_dict().items() if k.startswith("classifier")}
    assert head == {
        "classifier.0.weight": (4096, 25088), "classifier.0.bias": (4096,),
        "classifier.3.weight": (4096, 4096), "classifier.3.bias": (4096,),
        "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,),
    }


def test_layer_names_and_indices():
    config = VGG19Config()
    assert config.conv_layer_indices == TORCHVISION_CONV_INDICES
    relus = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert [config.layer_index(name) for name in relus] == [1, 6, 11, 20, 29]
    assert config.layer_index("conv5_4") == 34 and config.layer_index("pool5") == 36 and config.layer_index(11) == 11
    assert config.feature_layers == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    for bad in ("relu6_1", "conv1_3", 37, -1, True):
        with pytest.raises(ValueError, match="unknown VGG-19 layer"):
            config.layer_index(bad)


# --- forward --------------------------------------------------------------------------------------------------


class TestVGG19Model(ModelTesterMixin):
    model_class = VGG19Model
    output_names = ("feature_maps", "logits")
    bad_configs = (
        ({"block_channels": (64, 128, 256, 512)}, "block_channels"),
        ({"convs_per_block": (2, 2, 0, 4, 4)}, "convs_per_block"),
        ({"image_std": (0.2, 0.0, 0.2)}, "image_std"),
        ({"image_mean": (0.5, 0.5)}, "image_mean"),
        ({"feature_layers": ["relu1_1", "relu9_9"]}, "relu9_9"),
        ({"perceptual_layer_weights": (1.0, 1.0)}, "perceptual_layer_weights"),
        ({"perceptual_layer_weights": (1.0, 1.0, -1.0, 1.0, 1.0)}, "perceptual_layer_weights"),
        ({"classifier_dropout": 1.0}, "classifier_dropout"),
    )

    def get_config(self, **overrides):
        return tiny_config(**{"use_classifier": True, "classifier_hidden_size": 8, "num_classes": 5, **overrides})

    def get_inputs(self, batch_size, seed=0):
        images = torch.rand(batch_size, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
        return {"pixel_values": images, "return_logits": True}

    def outputs(self, model, inputs):
        with torch.no_grad():
            output = model(**inputs, return_dict=True)
        return {**{f"feature_maps[{i}]": maps for i, maps in enumerate(output.feature_maps)}, "logits": output.logits}

    def expected_shapes(self, batch_size):
        maps = [(batch_size, 4, 32, 32), (batch_size, 6, 16, 16), (batch_size, 8, 8, 8), (batch_size, 8, 4, 4),
                (batch_size, 8, 2, 2)]
        return {**{f"feature_maps[{i}]": shape for i, shape in enumerate(maps)}, "logits": (batch_size, 5)}


def test_forward_feature_shapes():
    model = VGG19Model(tiny_config()).eval()
    output = model(torch.rand(2, 3, 64, 48))
    assert [tuple(f.shape) for f in output.feature_maps] == [
        (2, 4, 64, 48), (2, 6, 32, 24), (2, 8, 16, 12), (2, 8, 8, 6), (2, 8, 4, 3)
    ]
    # requested order is kept, names and indices mix
    maps = model(torch.rand(1, 3, 32, 32), layers=["pool5", 1, "conv3_4"]).feature_maps
    assert [tuple(f.shape) for f in maps] == [(1, 8, 1, 1), (1, 4, 32, 32), (1, 8, 8, 8)]
    with pytest.raises(ValueError, match="pixel_values"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="classifier"):
        model(torch.rand(1, 3, 32, 32), return_logits=True)


def test_every_layer_matches_functional_ops_composed_by_hand(tiny_converted):
    """Independent check: conv2d(pad 1) + relu + max_pool2d(2) written out with torch.nn.functional."""
    original, model = tiny_converted
    config = model.config
    images = torch.rand(2, 3, 32, 32)
    all_layers = config.layer_names
    maps = dict(zip(all_layers, model(images, layers=all_layers).feature_maps))

    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    hidden = (images - mean) / std
    conv_indices = iter(TORCHVISION_CONV_INDICES)
    for block, num_convs in enumerate((2, 2, 4, 4, 4), start=1):
        for conv in range(1, num_convs + 1):
            index = next(conv_indices)
            weight, bias = original[f"features.{index}.weight"], original[f"features.{index}.bias"]
            hidden = F.conv2d(hidden, weight, bias, padding=1)
            torch.testing.assert_close(maps[f"conv{block}_{conv}"], hidden, rtol=1e-5, atol=1e-5)
            hidden = F.relu(hidden)
            torch.testing.assert_close(maps[f"relu{block}_{conv}"], hidden, rtol=1e-5, atol=1e-5)
        hidden = F.max_pool2d(hidden, kernel_size=2, stride=2)
        torch.testing.assert_close(maps[f"pool{block}"], hidden, rtol=1e-5, atol=1e-5)


def test_classifier_matches_functional_ops(tmp_path):
    original = synthetic_torchvision_state_dict()
    torch.save(original, tmp_path / "vgg19.pth")
    (model,) = convert_checkpoint(tmp_path / "vgg19.pth", argparse.Namespace(classifier=True))
    images = torch.rand(2, 3, 32, 32)
    output = model(images, layers=["pool5"], return_logits=True)
    hidden = F.adaptive_avg_pool2d(output.feature_maps[0], (7, 7)).flatten(1)
    hidden = F.relu(F.linear(hidden, original["classifier.0.weight"], original["classifier.0.bias"]))
    hidden = F.relu(F.linear(hidden, original["classifier.3.weight"], original["classifier.3.bias"]))
    logits = F.linear(hidden, original["classifier.6.weight"], original["classifier.6.bias"])
    torch.testing.assert_close(output.logits, logits, rtol=1e-5, atol=1e-5)


def test_normalize_input_flag():
    model = VGG19Model(tiny_config()).eval()
    raw = VGG19Model(tiny_config(normalize_input=False)).eval()
    raw.load_state_dict(model.state_dict())
    images = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(model(images).feature_maps[2], raw(model.normalize(images)).feature_maps[2])
    assert not torch.allclose(model(images).feature_maps[2], raw(images).feature_maps[2])


# --- converter ------------------------------------------------------------------------------------------------


def test_converter_places_tensors_and_drops_classifier(tmp_path, tiny_converted):
    original, _ = tiny_converted
    torch.save({"state_dict": {f"module.{k}": v for k, v in original.items()}}, tmp_path / "wrapped.pth")
    (model,) = convert_checkpoint(tmp_path / "wrapped.pth", argparse.Namespace(classifier=False))
    assert model.config.block_channels == list(TINY_BLOCK_CHANNELS)
    assert model.config.convs_per_block == [2, 2, 4, 4, 4]
    assert model.classifier is None
    assert not any(k.startswith("classifier") for k in model.state_dict())
    assert torch.equal(model.features[0].weight, original["features.0.weight"])
    assert torch.equal(model.features[19].bias, original["features.19.bias"])
    assert torch.equal(model.features[34].weight, original["features.34.weight"])

    torch.save(original, tmp_path / "plain.pth")
    (with_head,) = convert_checkpoint(tmp_path / "plain.pth", argparse.Namespace(classifier=True))
    assert with_head.config.classifier_hidden_size == 16 and with_head.config.num_classes == 10
    assert torch.equal(with_head.classifier[3].weight, original["classifier.3.weight"])
    assert torch.equal(with_head.classifier[6].bias, original["classifier.6.bias"])


def test_converter_leaves_converted_input_unchanged(tiny_converted):
    _, model = tiny_converted
    state_dict = model.state_dict()
    converted = convert_vgg19_state_dict(state_dict, model.config)
    assert converted.keys() == state_dict.keys()
    assert all(converted[k] is state_dict[k] for k in state_dict)


def test_converter_refuses_wrong_files(tmp_path, tiny_converted):
    original, _ = tiny_converted
    broken = dict(original)
    del broken["features.34.bias"]
    torch.save(broken, tmp_path / "missing.pth")
    with pytest.raises(ModelLoadError, match="missing"):
        convert_checkpoint(tmp_path / "missing.pth", None)

    extra = dict(original, **{"features.35.weight": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(ModelLoadError, match="unexpected"):
        convert_checkpoint(tmp_path / "extra.pth", None)

    features_only = {k: v for k, v in original.items() if k.startswith("features")}
    torch.save(features_only, tmp_path / "features.pth")
    with pytest.raises(ModelLoadError, match="classifier"):
        convert_checkpoint(tmp_path / "features.pth", argparse.Namespace(classifier=True))


def test_convert_command_writes_loadable_folder(tmp_path, tiny_converted):
    from talkface.cli import main

    original, _ = tiny_converted
    torch.save(original, tmp_path / "vgg19-dcbb9e9d.pth")
    out = tmp_path / "vgg19"
    assert main(["convert", "vgg19", "--checkpoint", str(tmp_path / "vgg19-dcbb9e9d.pth"), "--out", str(out)]) == 0
    model = VGG19Model.from_pretrained(out)
    assert model.config.use_classifier is False
    assert torch.equal(model.features[28].weight, original["features.28.weight"])
    assert (out / "README.md").is_file()


# --- perceptual loss ------------------------------------------------------------------------------------------


def test_perceptual_loss_zero_for_identical_and_positive_otherwise():
    loss_fn = VGGPerceptualLoss(VGG19Model(tiny_config()))
    target = torch.rand(2, 3, 32, 32)
    assert loss_fn(target.clone(), target).item() == 0.0
    assert loss_fn(torch.rand(2, 3, 32, 32), target).item() > 0.0
    # (batch, frames, 3, H, W) is flattened into one batch
    frames = torch.rand(2, 5, 3, 32, 32)
    flattened = loss_fn(frames.flatten(0, 1), frames.flip(0).flatten(0, 1))
    torch.testing.assert_close(loss_fn(frames, frames.flip(0)), flattened)


def test_perceptual_loss_gradient_and_frozen_network():
    vgg = VGG19Model(tiny_config())
    loss_fn = VGGPerceptualLoss(vgg).train()
    assert not vgg.training  # .train() on the loss keeps the network in eval mode
    generated = torch.rand(2, 3, 32, 32, requires_grad=True)
    loss = loss_fn(generated, torch.rand(2, 3, 32, 32))
    loss.backward()
    assert generated.grad is not None and generated.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in vgg.parameters())


def test_perceptual_loss_is_the_weighted_sum_of_layer_l1():
    vgg = VGG19Model(tiny_config()).eval()
    generated, target = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    weights = [0.5, 0.0, 2.0]
    layers = ["relu1_1", "relu3_1", "relu5_1"]
    loss = VGGPerceptualLoss(vgg, layers=layers, layer_weights=weights)(generated, target)
    generated_maps = vgg(generated, layers=layers).feature_maps
    target_maps = vgg(target, layers=layers).feature_maps
    expected = sum(w * (g - t).abs().mean() for w, g, t in zip(weights, generated_maps, target_maps))
    torch.testing.assert_close(loss, expected)
    # defaults come from the config: relu1_1..relu5_1 with 1/32 .. 1
    default = VGGPerceptualLoss(vgg)
    assert default.layers == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert default.layer_weights == [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0]
    with pytest.raises(ValueError, match="layer_weights"):
        VGGPerceptualLoss(vgg, layers=layers, layer_weights=[1.0])
    with pytest.raises(ValueError, match="unknown VGG-19 layer"):
        VGGPerceptualLoss(vgg, layers=["relu7_1"])
    with pytest.raises(ValueError, match="same shape"):
        default(torch.rand(1, 3, 32, 32), torch.rand(2, 3, 32, 32))


# --- real weights (RUN_SLOW=1 and TALKFACE_VGG19_WEIGHTS=/path/to/vgg19-dcbb9e9d.pth) ----------------------------


@pytest.mark.slow
def test_real_weight_file_converts():
    import os

    path = os.environ.get("TALKFACE_VGG19_WEIGHTS")
    if not path:
        pytest.skip("set TALKFACE_VGG19_WEIGHTS to the path of torchvision's vgg19-dcbb9e9d.pth")
    (model,) = convert_checkpoint(path, argparse.Namespace(classifier=True))
    assert sum(p.numel() for p in model.parameters()) == 143_667_240
    # a flat grey image is not a confident ImageNet class, but the logits must be finite and well spread
    with torch.no_grad():
        logits = model(torch.full((1, 3, 224, 224), 0.5), return_logits=True).logits
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all() and logits.std() > 0
