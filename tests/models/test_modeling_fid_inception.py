"""FID Inception: the weight-file key list, conversion, the FID-specific blocks checked by hand, save/load."""

import argparse
import zlib

import pytest
import torch
import torch.nn.functional as F

from talkface.errors import ModelLoadError
from talkface.models.fid_inception import FIDInceptionConfig, FIDInceptionModel
from talkface.models.fid_inception.convert_fid_inception_checkpoint import (
    convert_checkpoint,
    convert_fid_inception_state_dict,
)
from tests.models.model_tester import ModelTesterMixin, randomise_batch_norm

# --- the architecture written out as data: (module, in_channels, out_channels, kernel) of every conv ----------
# Widths from the Inception-v3 paper / TensorFlow graph; names from the pytorch-fid weight file.


def _block_a(name, cin, pool):
    return [(f"{name}.branch1x1", cin, 64, (1, 1)), (f"{name}.branch5x5_1", cin, 48, (1, 1)),
            (f"{name}.branch5x5_2", 48, 64, (5, 5)), (f"{name}.branch3x3dbl_1", cin, 64, (1, 1)),
            (f"{name}.branch3x3dbl_2", 64, 96, (3, 3)), (f"{name}.branch3x3dbl_3", 96, 96, (3, 3)),
            (f"{name}.branch_pool", cin, pool, (1, 1))]


def _block_c(name, c7):
    return [(f"{name}.branch1x1", 768, 192, (1, 1)), (f"{name}.branch7x7_1", 768, c7, (1, 1)),
            (f"{name}.branch7x7_2", c7, c7, (1, 7)), (f"{name}.branch7x7_3", c7, 192, (7, 1)),
            (f"{name}.branch7x7dbl_1", 768, c7, (1, 1)), (f"{name}.branch7x7dbl_2", c7, c7, (7, 1)),
            (f"{name}.branch7x7dbl_3", c7, c7, (1, 7)), (f"{name}.branch7x7dbl_4", c7, c7, (7, 1)),
            (f"{name}.branch7x7dbl_5", c7, 192, (1, 7)), (f"{name}.branch_pool", 768, 192, (1, 1))]


def _block_e(name, cin):
    return [(f"{name}.branch1x1", cin, 320, (1, 1)), (f"{name}.branch3x3_1", cin, 384, (1, 1)),
            (f"{name}.branch3x3_2a", 384, 384, (1, 3)), (f"{name}.branch3x3_2b", 384, 384, (3, 1)),
            (f"{name}.branch3x3dbl_1", cin, 448, (1, 1)), (f"{name}.branch3x3dbl_2", 448, 384, (3, 3)),
            (f"{name}.branch3x3dbl_3a", 384, 384, (1, 3)), (f"{name}.branch3x3dbl_3b", 384, 384, (3, 1)),
            (f"{name}.branch_pool", cin, 192, (1, 1))]


FID_INCEPTION_CONVS = (
    [("Conv2d_1a_3x3", 3, 32, (3, 3)), ("Conv2d_2a_3x3", 32, 32, (3, 3)), ("Conv2d_2b_3x3", 32, 64, (3, 3)),
     ("Conv2d_3b_1x1", 64, 80, (1, 1)), ("Conv2d_4a_3x3", 80, 192, (3, 3))]
    + _block_a("Mixed_5b", 192, 32) + _block_a("Mixed_5c", 256, 64) + _block_a("Mixed_5d", 288, 64)
    + [("Mixed_6a.branch3x3", 288, 384, (3, 3)), ("Mixed_6a.branch3x3dbl_1", 288, 64, (1, 1)),
       ("Mixed_6a.branch3x3dbl_2", 64, 96, (3, 3)), ("Mixed_6a.branch3x3dbl_3", 96, 96, (3, 3))]
    + _block_c("Mixed_6b", 128) + _block_c("Mixed_6c", 160) + _block_c("Mixed_6d", 160) + _block_c("Mixed_6e", 192)
    + [("Mixed_7a.branch3x3_1", 768, 192, (1, 1)), ("Mixed_7a.branch3x3_2", 192, 320, (3, 3)),
       ("Mixed_7a.branch7x7x3_1", 768, 192, (1, 1)), ("Mixed_7a.branch7x7x3_2", 192, 192, (1, 7)),
       ("Mixed_7a.branch7x7x3_3", 192, 192, (7, 1)), ("Mixed_7a.branch7x7x3_4", 192, 192, (3, 3))]
    + _block_e("Mixed_7b", 1280) + _block_e("Mixed_7c", 2048)
)


def expected_key_shapes(divisor=1, num_classes=1008, with_counters=True):
    """The state dict of the pytorch-fid weight file, from the table above (widths divided by `divisor`)."""
    shapes = {}
    for name, cin, cout, kernel in FID_INCEPTION_CONVS:
        cin = cin if cin == 3 else cin // divisor
        cout //= divisor
        shapes[f"{name}.conv.weight"] = (cout, cin, *kernel)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.bn.{stat}"] = (cout,)
        if with_counters:
            shapes[f"{name}.bn.num_batches_tracked"] = ()
    shapes["fc.weight"] = (num_classes, 2048 // divisor)
    shapes["fc.bias"] = (num_classes,)
    return shapes


def synthetic_fid_checkpoint(divisor=16, num_classes=12):
    """A pytorch-fid-format state dict (real key names, no num_batches_tracked) with key-dependent values."""
    state_dict = {}
    for key, shape in expected_key_shapes(divisor, num_classes, with_counters=False).items():
        generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        if key.endswith("running_var"):
            state_dict[key] = 0.5 + torch.rand(shape, generator=generator)
        elif key.endswith(("bn.weight", "running_mean", "bn.bias")):
            centre = 1.0 if key.endswith("bn.weight") else 0.0
            state_dict[key] = centre + 0.1 * torch.randn(shape, generator=generator)
        else:
            fan_in = max(1, torch.Size(shape[1:]).numel())
            state_dict[key] = torch.randn(shape, generator=generator) * (2.0 / fan_in) ** 0.5
    return state_dict


TINY = dict(channel_divisor=16, image_size=75, num_classes=12)


@pytest.fixture(scope="module")
def tiny_checkpoint_and_model():
    original = synthetic_fid_checkpoint()
    config = FIDInceptionConfig(**TINY)
    model = FIDInceptionModel(config).eval()
    model.load_state_dict(convert_fid_inception_state_dict(original, config), strict=True)
    return original, model


# --- architecture facts -------------------------------------------------------------------------------------


def test_default_model_has_the_weight_file_keys_and_parameter_count():
    with torch.device("meta"):
        model = FIDInceptionModel(FIDInceptionConfig())
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert actual == expected_key_shapes()
    assert len(actual) == 566  # 94 conv+bn layers x (1 + 5) + fc weight and bias; 472 without the bn counters
    # a few facts stated independently of the table
    assert actual["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert actual["fc.weight"] == (1008, 2048)
    assert actual["Mixed_7c.branch_pool.conv.weight"] == (192, 2048, 1, 1)
    assert actual["Mixed_6e.branch7x7dbl_5.conv.weight"] == (192, 192, 1, 7)
    # torchvision's inception_v3 has 27,161,264 parameters with its 1000-class fc and the auxiliary classifier
    # (3,326,696); the FID network drops the auxiliary classifier and has 8 more classes (8 x 2049).
    assert sum(p.numel() for p in model.parameters()) == 27_161_264 - 3_326_696 + 8 * 2049 == 23_850_960
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_default_model_outputs_2048_features():
    model = FIDInceptionModel(FIDInceptionConfig()).eval()
    with torch.no_grad():
        output = model(torch.rand(2, 3, 64, 80), output_hidden_states=True, return_logits=True)
    assert output.pooled_features.shape == (2, 2048)
    assert [tuple(h.shape) for h in output.hidden_states] == [
        (2, 64, 73, 73), (2, 192, 35, 35), (2, 768, 17, 17), (2, 2048, 1, 1)
    ]
    assert output.logits.shape == (2, 1008)


# --- converter ------------------------------------------------------------------------------------------------


def test_converter_loads_synthetic_checkpoint_strictly(tmp_path):
    original = synthetic_fid_checkpoint()
    torch.save(original, tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    (model,) = convert_checkpoint(tmp_path / "pt_inception-2015-12-05-6726825d.pth", argparse.Namespace())
    assert model.config.channel_divisor == 16 and model.config.num_classes == 12
    assert not model.training
    state_dict = model.state_dict()
    for key in ("Conv2d_1a_3x3.conv.weight", "Mixed_5b.branch5x5_2.bn.running_var", "Mixed_7c.branch_pool.conv.weight",
                "Mixed_6b.branch7x7dbl_3.bn.bias", "fc.weight", "fc.bias"):
        assert torch.equal(state_dict[key], original[key]), key
    assert torch.equal(model.Mixed_7a.branch7x7x3_4.conv.weight, original["Mixed_7a.branch7x7x3_4.conv.weight"])
    counters = [v for k, v in state_dict.items() if k.endswith("num_batches_tracked")]
    assert len(counters) == 94 and all(int(c) == 0 for c in counters)


def test_converter_leaves_converted_input_unchanged(tiny_checkpoint_and_model):
    _, model = tiny_checkpoint_and_model
    state_dict = model.state_dict()
    converted = convert_fid_inception_state_dict(state_dict, model.config)
    assert converted.keys() == state_dict.keys() and all(converted[k] is state_dict[k] for k in state_dict)


def test_converter_refuses_wrong_files(tmp_path):
    original = synthetic_fid_checkpoint()
    broken = {k: v for k, v in original.items() if k != "Mixed_6c.branch7x7_2.bn.running_mean"}
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(ModelLoadError, match="missing"):
        convert_checkpoint(tmp_path / "broken.pth")

    torchvision_like = dict(original, **{"AuxLogits.fc.weight": torch.zeros(12, 48)})
    torch.save(torchvision_like, tmp_path / "inception_v3_google.pth")
    with pytest.raises(ModelLoadError, match="pt_inception-2015-12-05-6726825d.pth"):
        convert_checkpoint(tmp_path / "inception_v3_google.pth")

    torch.save({"features.0.weight": torch.zeros(4, 3, 3, 3)}, tmp_path / "vgg.pth")
    with pytest.raises(ModelLoadError, match="Conv2d_1a_3x3"):
        convert_checkpoint(tmp_path / "vgg.pth")


def test_convert_command_writes_loadable_folder(tmp_path):
    from talkface.cli import main

    original = synthetic_fid_checkpoint()
    checkpoint = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(original, checkpoint)
    out = tmp_path / "fid_inception"
    assert main(["convert", "fid-inception", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    model = FIDInceptionModel.from_pretrained(out)
    assert torch.equal(model.Mixed_7b.branch3x3dbl_3b.conv.weight, original["Mixed_7b.branch3x3dbl_3b.conv.weight"])


# --- the FID-specific blocks, composed by hand with torch.nn.functional ---------------------------------------


def _conv_bn_relu(x, sd, name, stride=1, padding=0):
    x = F.conv2d(x, sd[f"{name}.conv.weight"], stride=stride, padding=padding)
    x = F.batch_norm(x, sd[f"{name}.bn.running_mean"], sd[f"{name}.bn.running_var"], sd[f"{name}.bn.weight"],
                     sd[f"{name}.bn.bias"], training=False, eps=1e-3)
    return F.relu(x)


def _block_a_by_hand(x, sd, name, include_pad=False):
    b1 = _conv_bn_relu(x, sd, f"{name}.branch1x1")
    b5 = _conv_bn_relu(_conv_bn_relu(x, sd, f"{name}.branch5x5_1"), sd, f"{name}.branch5x5_2", padding=2)
    b3 = _conv_bn_relu(x, sd, f"{name}.branch3x3dbl_1")
    b3 = _conv_bn_relu(b3, sd, f"{name}.branch3x3dbl_2", padding=1)
    b3 = _conv_bn_relu(b3, sd, f"{name}.branch3x3dbl_3", padding=1)
    pooled = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=include_pad)
    return torch.cat([b1, b5, b3, _conv_bn_relu(pooled, sd, f"{name}.branch_pool")], 1)


def _block_e_by_hand(x, sd, name, pool):
    b1 = _conv_bn_relu(x, sd, f"{name}.branch1x1")
    b3 = _conv_bn_relu(x, sd, f"{name}.branch3x3_1")
    b3 = torch.cat([_conv_bn_relu(b3, sd, f"{name}.branch3x3_2a", padding=(0, 1)),
                    _conv_bn_relu(b3, sd, f"{name}.branch3x3_2b", padding=(1, 0))], 1)
    bd = _conv_bn_relu(_conv_bn_relu(x, sd, f"{name}.branch3x3dbl_1"), sd, f"{name}.branch3x3dbl_2", padding=1)
    bd = torch.cat([_conv_bn_relu(bd, sd, f"{name}.branch3x3dbl_3a", padding=(0, 1)),
                    _conv_bn_relu(bd, sd, f"{name}.branch3x3dbl_3b", padding=(1, 0))], 1)
    if pool == "max":
        pooled = F.max_pool2d(x, 3, stride=1, padding=1)
    else:
        pooled = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    return torch.cat([b1, b3, bd, _conv_bn_relu(pooled, sd, f"{name}.branch_pool")], 1)


def test_stem_and_fid_blocks_match_functional_ops(tiny_checkpoint_and_model):
    original, model = tiny_checkpoint_and_model
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        output = model(images, output_hidden_states=True)

    # preprocessing and stem: bilinear resize to 75 (align_corners=False), [0, 1] -> [-1, 1]
    x = 2 * F.interpolate(images, size=(75, 75), mode="bilinear", align_corners=False) - 1
    x = _conv_bn_relu(x, original, "Conv2d_1a_3x3", stride=2)
    x = _conv_bn_relu(x, original, "Conv2d_2a_3x3")
    x = F.max_pool2d(_conv_bn_relu(x, original, "Conv2d_2b_3x3", padding=1), 3, stride=2)
    torch.testing.assert_close(output.hidden_states[0], x, rtol=1e-4, atol=1e-5)
    x = _conv_bn_relu(_conv_bn_relu(x, original, "Conv2d_3b_1x1"), original, "Conv2d_4a_3x3")
    x = F.max_pool2d(x, 3, stride=2)
    torch.testing.assert_close(output.hidden_states[1], x, rtol=1e-4, atol=1e-5)

    # block A: the average pool leaves the zero padding out of the mean
    with torch.no_grad():
        mixed_5b = model.Mixed_5b(x)
    torch.testing.assert_close(mixed_5b, _block_a_by_hand(x, original, "Mixed_5b"), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(mixed_5b, _block_a_by_hand(x, original, "Mixed_5b", include_pad=True), atol=1e-4)

    # blocks E: average pool in Mixed_7b, max pool in Mixed_7c (on an 8x8 map so padding matters)
    e_input = torch.rand(2, 1280 // 16, 8, 8)
    with torch.no_grad():
        mixed_7b = model.Mixed_7b(e_input)
        mixed_7c = model.Mixed_7c(mixed_7b)
    torch.testing.assert_close(mixed_7b, _block_e_by_hand(e_input, original, "Mixed_7b", "avg"), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mixed_7c, _block_e_by_hand(mixed_7b, original, "Mixed_7c", "max"), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(mixed_7c, _block_e_by_hand(mixed_7b, original, "Mixed_7c", "avg"), atol=1e-4)

    # pool3 is the global average of the last map
    torch.testing.assert_close(output.pooled_features, output.hidden_states[3].flatten(1))


# --- generic model behaviour ----------------------------------------------------------------------------------


class TestFIDInceptionModel(ModelTesterMixin):
    model_class = FIDInceptionModel
    output_names = ("pooled_features", "logits")
    former_field_names = {"input_size": "image_size"}
    bad_configs = (({"channel_divisor": 3}, "channel_divisor"), ({"image_size": 74}, "image_size"),
                   ({"batch_norm_eps": 0.0}, "batch_norm_eps"), ({"num_classes": 0}, "num_classes"))
    batch_atol = 1e-5

    def get_config(self, **overrides):
        return FIDInceptionConfig(**{**TINY, **overrides})

    def prepare_model(self, model):
        return randomise_batch_norm(model)

    def get_inputs(self, batch_size, seed=0):
        images = torch.rand(batch_size, 3, 48, 48, generator=torch.Generator().manual_seed(seed))
        return {"pixel_values": images, "return_logits": True}

    def expected_shapes(self, batch_size):
        return {"pooled_features": (batch_size, 128), "logits": (batch_size, 12)}


def test_tiny_output_shapes_and_flags(tiny_checkpoint_and_model):
    _, model = tiny_checkpoint_and_model
    with torch.no_grad():
        output = model(torch.rand(3, 3, 40, 50), return_logits=True)
        assert output.pooled_features.shape == (3, 128) and output.logits.shape == (3, 12)
        assert output.hidden_states is None
        assert model(torch.rand(1, 3, 40, 40), return_dict=False)[0].shape == (1, 128)
    with pytest.raises(ValueError, match="pixel_values"):
        model(torch.rand(1, 1, 75, 75))
    headless = FIDInceptionModel(FIDInceptionConfig(channel_divisor=16, image_size=75, include_classifier=False))
    assert not any(k.startswith("fc.") for k in headless.state_dict())
    with pytest.raises(ValueError, match="include_classifier"):
        headless(torch.rand(1, 3, 75, 75), return_logits=True)


# --- real weights (RUN_SLOW=1 and TALKFACE_FID_WEIGHTS=/path/to/pt_inception-2015-12-05-6726825d.pth) -----------


@pytest.mark.slow
def test_real_weight_file_converts():
    import os

    path = os.environ.get("TALKFACE_FID_WEIGHTS")
    if not path:
        pytest.skip("set TALKFACE_FID_WEIGHTS to the path of pt_inception-2015-12-05-6726825d.pth")
    (model,) = convert_checkpoint(path)
    assert model.config.channel_divisor == 1 and model.config.num_classes == 1008
    with torch.no_grad():
        features = model(torch.rand(2, 3, 128, 128)).pooled_features
    assert features.shape == (2, 2048) and torch.isfinite(features).all() and (features >= 0).all()
