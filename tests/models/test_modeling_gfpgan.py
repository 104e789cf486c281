"""GFPGAN (clean v1): tiny-config model tests, the GFPGANv1.4 key layout, the converter on synthetic checkpoints."""

import math
import zlib

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel

from talkface.errors import ModelLoadError
from talkface.models.gfpgan import GFPGANConfig, GFPGANModel
from talkface.models.gfpgan.convert_gfpgan_original_checkpoint import (
    config_from_state_dict,
    convert_checkpoint,
    convert_gfpgan_state_dict,
)
from talkface.models.gfpgan.modeling_gfpgan import GFPGANModulatedConv2d, GFPGANStyleConv
from tests.models.model_tester import ModelTesterMixin

TINY = dict(image_size=32, num_style_feat=16, num_mlp=2, channel_multiplier=2, narrow=0.125)
TINY_64 = dict(image_size=64, num_style_feat=32, num_mlp=3, channel_multiplier=1, narrow=0.25)


def tiny_model(**overrides):
    torch.manual_seed(0)
    return GFPGANModel(GFPGANConfig(**{**TINY, **overrides})).eval()


def random_faces(batch, size):
    return torch.rand(batch, 3, size, size) * 2 - 1


# ---------------------------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------------------------
class TestGFPGANModel(ModelTesterMixin):
    model_class = GFPGANModel
    output_names = ("restored_pixel_values", "latents")
    former_field_names = {"out_size": "image_size"}
    bad_configs = (
        (dict(image_size=48), "image_size"),
        (dict(image_size=4), "image_size"),
        (dict(narrow=0), "narrow"),
        (dict(narrow=0.001), "narrow"),
        (dict(narrow=0.3), "SFT channels"),
        (dict(num_mlp=0), "num_mlp"),
        (dict(face_template=[[0, 0]] * 4), "face_template"),
    )
    batch_atol = 1e-4  # a 10-layer StyleGAN decoder in float32

    def get_config(self, **overrides):
        return GFPGANConfig(**{**TINY, **overrides})

    def get_inputs(self, batch_size, seed=0):
        images = torch.rand(batch_size, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
        return {"pixel_values": images * 2 - 1}

    def expected_shapes(self, batch_size):
        config = self.get_config()
        return {"restored_pixel_values": (batch_size, 3, 32, 32),
                "latents": (batch_size, config.num_latents, config.num_style_feat)}


@pytest.mark.parametrize("params", [TINY, TINY_64, {**TINY, "sft_half": False, "different_w": False,
                                                   "input_is_latent": False}])
def test_output_shapes_of_variants(params):
    config = GFPGANConfig(**params)
    model = GFPGANModel(config).eval()
    size = config.image_size
    with torch.no_grad():
        out = model(random_faces(2, size), return_rgb=True)
    assert out.restored_pixel_values.shape == (2, 3, size, size)
    assert [tuple(r.shape) for r in out.intermediate_rgbs] == [(2, 3, s, s) for s in config.resolutions[1:]]
    assert out.latents.shape == (2, config.num_latents, config.num_style_feat)
    assert torch.isfinite(out.restored_pixel_values).all()
    if not params.get("different_w", True):
        assert torch.equal(out.latents[:, 0], out.latents[:, -1])  # one latent repeated for every layer


def test_return_tuple():
    model = tiny_model()
    x = random_faces(1, 32)
    with torch.no_grad():
        as_tuple = model(x, return_dict=False)
        as_output = model(x)
    assert len(as_tuple) == 2  # restored, latents (no intermediate rgbs requested)
    assert torch.equal(as_tuple[0], as_output.restored_pixel_values)


def test_stored_noise_is_deterministic_random_noise_is_not():
    model = tiny_model()
    # give the noise injection a visible weight (it is zero-initialised)
    for module in model.stylegan_decoder.modules():
        if isinstance(module, GFPGANStyleConv):
            module.weight.data.fill_(0.5)
    x = random_faces(1, 32)
    with torch.no_grad():
        first, second = model(x).restored_pixel_values, model(x).restored_pixel_values
        randomized = model(x, randomize_noise=True).restored_pixel_values
    assert torch.equal(first, second)
    assert not torch.allclose(first, randomized)


def test_wrong_input_shape_raises():
    with pytest.raises(ValueError, match="pixel_values must have shape"):
        tiny_model()(torch.zeros(1, 3, 64, 64))


def test_modulated_conv_matches_per_sample_kernel():
    """Our input-scaling form equals the textbook form: modulate and demodulate a kernel per sample, group-convolve."""
    torch.manual_seed(1)
    conv = GFPGANModulatedConv2d(6, 5, 3, num_style_feat=8, upsample=True)
    conv.modulation.bias.data.uniform_(0.5, 1.5)
    x, style = torch.randn(3, 6, 7, 7), torch.randn(3, 8)

    scale = conv.modulation(style)  # (batch, in)
    kernels = conv.weight * scale[:, None, :, None, None]  # (batch, out, in, k, k)
    kernels = kernels * torch.rsqrt(kernels.pow(2).sum(dim=(2, 3, 4)) + 1e-8)[:, :, None, None, None]
    upsampled = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    expected = F.conv2d(upsampled.reshape(1, 3 * 6, 14, 14), kernels.reshape(3 * 5, 6, 3, 3), padding=1, groups=3)
    expected = expected.reshape(3, 5, 14, 14)
    torch.testing.assert_close(conv(x, style), expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# the GFPGANv1.4 checkpoint layout
# ---------------------------------------------------------------------------------------------------------------
def gfpgan_v14_key_shapes():
    """Keys and shapes of GFPGANv1.4's `params_ema`, enumerated from the original architecture's formulas
    (GFPGANv1Clean(out_size=512, num_style_feat=512, channel_multiplier=2, narrow=1, sft_half=True,
    different_w=True, num_mlp=8)), independently of our config helpers."""
    cm, feat = 2, 512
    decoder = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm}
    unet = {res: int(ch * 0.5) for res, ch in decoder.items()}
    shapes = {"conv_body_first.weight": (unet[512], 3, 1, 1), "conv_body_first.bias": (unet[512],)}

    def resblock(prefix, cin, cout):
        shapes.update({f"{prefix}.conv1.weight": (cin, cin, 3, 3), f"{prefix}.conv1.bias": (cin,),
                       f"{prefix}.conv2.weight": (cout, cin, 3, 3), f"{prefix}.conv2.bias": (cout,),
                       f"{prefix}.skip.weight": (cout, cin, 1, 1)})

    for i, log_res in enumerate(range(9, 2, -1)):
        resblock(f"conv_body_down.{i}", unet[2**log_res], unet[2 ** (log_res - 1)])
    shapes.update({"final_conv.weight": (unet[4], unet[4], 3, 3), "final_conv.bias": (unet[4],)})
    for i, log_res in enumerate(range(3, 10)):
        res = 2**log_res
        resblock(f"conv_body_up.{i}", unet[res // 2], unet[res])
        shapes.update({f"toRGB.{i}.weight": (3, unet[res], 1, 1), f"toRGB.{i}.bias": (3,)})
        for head in ("condition_scale", "condition_shift"):
            shapes.update({f"{head}.{i}.0.weight": (unet[res], unet[res], 3, 3), f"{head}.{i}.0.bias": (unet[res],),
                           f"{head}.{i}.2.weight": (unet[res], unet[res], 3, 3), f"{head}.{i}.2.bias": (unet[res],)})
    num_latents = 9 * 2 - 2
    shapes.update({"final_linear.weight": (num_latents * feat, unet[4] * 16),
                   "final_linear.bias": (num_latents * feat,)})

    d = "stylegan_decoder"
    for i in range(8):
        shapes.update({f"{d}.style_mlp.{2 * i + 1}.weight": (feat, feat), f"{d}.style_mlp.{2 * i + 1}.bias": (feat,)})
    shapes[f"{d}.constant_input.weight"] = (1, 512, 4, 4)

    def style_conv(prefix, cin, cout):
        shapes.update({f"{prefix}.modulated_conv.weight": (1, cout, cin, 3, 3),
                       f"{prefix}.modulated_conv.modulation.weight": (cin, feat),
                       f"{prefix}.modulated_conv.modulation.bias": (cin,),
                       f"{prefix}.weight": (1,), f"{prefix}.bias": (1, cout, 1, 1)})

    def to_rgb(prefix, cin):
        shapes.update({f"{prefix}.modulated_conv.weight": (1, 3, cin, 1, 1),
                       f"{prefix}.modulated_conv.modulation.weight": (cin, feat),
                       f"{prefix}.modulated_conv.modulation.bias": (cin,), f"{prefix}.bias": (1, 3, 1, 1)})

    style_conv(f"{d}.style_conv1", 512, 512)
    to_rgb(f"{d}.to_rgb1", 512)
    cin = 512
    for i, log_res in enumerate(range(3, 10)):
        cout = decoder[2**log_res]
        style_conv(f"{d}.style_convs.{2 * i}", cin, cout)
        style_conv(f"{d}.style_convs.{2 * i + 1}", cout, cout)
        to_rgb(f"{d}.to_rgbs.{i}", cout)
        cin = cout
    for i in range(15):
        res = 2 ** ((i + 5) // 2)
        shapes[f"{d}.noises.noise{i}"] = (1, 1, res, res)
    return shapes


def test_default_config_matches_gfpgan_v14_layout():
    with torch.device("meta"):  # no memory for the 87M parameters
        model = GFPGANModel(GFPGANConfig())
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = gfpgan_v14_key_shapes()
    assert sorted(ours) == sorted(expected)
    assert ours == expected
    # a few pairs written out by hand from the architecture (512 face, channel_multiplier 2)
    assert ours["conv_body_first.weight"] == (32, 3, 1, 1)
    assert ours["conv_body_down.0.conv2.weight"] == (64, 32, 3, 3)
    assert ours["final_linear.weight"] == (8192, 4096)
    assert ours["condition_scale.6.2.weight"] == (32, 32, 3, 3)
    assert ours["stylegan_decoder.style_conv1.modulated_conv.weight"] == (1, 512, 512, 3, 3)
    assert ours["stylegan_decoder.style_convs.13.modulated_conv.weight"] == (1, 64, 64, 3, 3)
    assert ours["stylegan_decoder.to_rgbs.6.modulated_conv.weight"] == (1, 3, 64, 1, 1)
    assert ours["stylegan_decoder.noises.noise14"] == (1, 1, 512, 512)
    assert len(ours) == 285
    assert sum(math.prod(s) for s in ours.values()) == 87_143_276  # ~348 MB in float32, the size of the .pth
    # and the shapes alone give back the released configuration
    config = config_from_state_dict(model.state_dict())
    assert (config.image_size, config.num_style_feat, config.num_mlp, config.channel_multiplier, config.narrow,
            config.sft_half, config.different_w) == (512, 512, 8, 2, 1.0, True, True)


# ---------------------------------------------------------------------------------------------------------------
# converter on synthetic original-format checkpoints
# ---------------------------------------------------------------------------------------------------------------
def origin_tensor(key, shape, salt=""):
    """A tensor whose values encode its key, so a misplaced tensor is caught."""
    g = torch.Generator().manual_seed(zlib.crc32((salt + key).encode()))
    return torch.randn(shape, generator=g)


def synthetic_original_state_dict(params, salt=""):
    with torch.device("meta"):
        model = GFPGANModel(GFPGANConfig(**params))
    return {k: origin_tensor(k, v.shape, salt) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("params", [TINY, TINY_64])
def test_convert_release_checkpoint(tmp_path, params):
    ema, raw = synthetic_original_state_dict(params), synthetic_original_state_dict(params, salt="params")
    path = tmp_path / "GFPGANv1.4.pth"
    torch.save({"params_ema": ema, "params": raw}, path)
    (model,) = convert_checkpoint(path)
    for key in ("conv_body_first.weight", "condition_shift.1.2.bias", "stylegan_decoder.noises.noise3",
                "stylegan_decoder.style_convs.2.modulated_conv.modulation.weight", "toRGB.0.weight"):
        assert torch.equal(model.state_dict()[key], ema[key]), key  # the EMA weights, each in its place
    for field, value in params.items():
        assert getattr(model.config, field) == value, field


def test_convert_params_only_and_prefixed(tmp_path):
    raw = synthetic_original_state_dict(TINY)
    path = tmp_path / "train.pth"
    torch.save({"params": {f"module.{k}": v for k, v in raw.items()}}, path)
    (model,) = convert_checkpoint(path)
    assert torch.equal(model.state_dict()["final_linear.weight"], raw["final_linear.weight"])


def test_convert_returns_converted_input_unchanged():
    converted = convert_gfpgan_state_dict({"params_ema": synthetic_original_state_dict(TINY)})
    again = convert_gfpgan_state_dict(converted)
    assert again.keys() == converted.keys()
    assert all(again[k] is converted[k] for k in converted)


@pytest.mark.parametrize("damage", ["missing", "unexpected", "shape"])
def test_convert_rejects_mismatched_checkpoints(tmp_path, damage):
    state_dict = synthetic_original_state_dict(TINY)
    if damage == "missing":
        del state_dict["condition_scale.0.0.bias"]
    elif damage == "unexpected":
        state_dict["stylegan_decoder.extra.weight"] = torch.zeros(3)
    else:
        state_dict["toRGB.1.weight"] = torch.zeros(3, 5, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save({"params_ema": state_dict}, path)
    with pytest.raises(ModelLoadError, match="does not match the GFPGAN architecture"):
        convert_checkpoint(path)


def test_convert_rejects_other_networks(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"params_ema": {"conv.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(ModelLoadError, match="GFPGANv1.4.pth"):
        convert_checkpoint(path)


def test_convert_cli_writes_loadable_folder(tmp_path):
    from talkface.cli import main

    ema = synthetic_original_state_dict(TINY)
    checkpoint = tmp_path / "GFPGANv1.4.pth"
    torch.save({"params_ema": ema}, checkpoint)
    out = tmp_path / "gfpgan"
    assert main(["convert", "gfpgan", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    assert (out / "README.md").is_file()
    model = AutoModel.from_pretrained(out)
    assert isinstance(model, GFPGANModel)
    assert torch.equal(model.state_dict()["stylegan_decoder.constant_input.weight"],
                       ema["stylegan_decoder.constant_input.weight"])
    # a missing checkpoint is a user error (exit 2), and nothing is written
    assert main(["convert", "gfpgan", "--checkpoint", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
