"""Convert an original GFPGAN "clean" checkpoint (GFPGANv1.4.pth, also v1.3 / v1.2) into a talkface model folder.

    talkface convert gfpgan --checkpoint GFPGANv1.4.pth --out models/gfpgan-v1.4

The release file is a dict {"params_ema": state_dict} (training checkpoints may hold "params" as well; the EMA
weights are the ones used for inference). Our module tree keeps the original names, so the conversion is a strict
check plus the (empty) rename table below; the architecture (size, widths, SFT variant) is read from the tensor
shapes, so the same converter handles the tiny synthetic checkpoints of the tests.

Download: https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth
"""

import logging
import re

import torch

from ...errors import ModelLoadError
from ..convert_utils import check_keys, load_original_checkpoint, unwrap_state_dict
from .configuration_gfpgan import GFPGANConfig
from .modeling_gfpgan import GFPGANModel

logger = logging.getLogger(__name__)

GFPGAN_V14_URL = "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth"

# Where a rename would go: (original regex, converted replacement), applied in order. Our modules carry the
# original names (conv_body_first, condition_scale.N, stylegan_decoder.style_convs.N, toRGB.N, ...), so the
# table is empty; it stays so that a future rename lives in one place.
# fmt: off
ORIGINAL_TO_CONVERTED_KEY_MAPPING = ()
# fmt: on

# Containers of the release and training checkpoints, in order of preference (EMA weights first).
CHECKPOINT_CONTAINER_KEYS = ("params_ema", "params", "state_dict")


def convert_gfpgan_state_dict(original_state_dict: dict, config: GFPGANConfig | None = None) -> dict:
    """Original-format GFPGAN state dict (or a checkpoint container) -> talkface `GFPGANModel` state dict.

    Already-converted input comes back unchanged (same keys, same tensors). `config` is accepted for the common
    converter signature; the mapping does not depend on it.
    """
    state_dict = unwrap_state_dict(original_state_dict, container_keys=CHECKPOINT_CONTAINER_KEYS)
    converted = {}
    for key, tensor in state_dict.items():
        new_key = key
        for pattern, replacement in ORIGINAL_TO_CONVERTED_KEY_MAPPING:
            new_key = re.sub(pattern, replacement, new_key)
        converted[new_key] = tensor
    return converted


def config_from_state_dict(state_dict: dict, **overrides) -> GFPGANConfig:
    """Read the architecture hyper-parameters off the tensor shapes of a (converted) GFPGAN state dict."""
    try:
        num_down = len({k.split(".")[1] for k in state_dict if k.startswith("conv_body_down.")})
        image_size = 2 ** (num_down + 2)
        num_style_feat = state_dict["stylegan_decoder.style_mlp.1.weight"].shape[0]
        num_mlp = sum(1 for k in state_dict if re.fullmatch(r"stylegan_decoder\.style_mlp\.\d+\.weight", k))
        decoder_4 = state_dict["stylegan_decoder.constant_input.weight"].shape[1]
        narrow = decoder_4 / 512
        channel_multiplier = 2
        if image_size >= 64:
            # decoder width at 64x64 = 256 * channel_multiplier * narrow
            decoder_64 = state_dict["stylegan_decoder.style_convs.6.modulated_conv.weight"].shape[1]
            channel_multiplier = max(1, round(decoder_64 / (256 * narrow)))
        linear_out = state_dict["final_linear.weight"].shape[0]
        different_w = linear_out != num_style_feat
        sft_channels = state_dict["condition_scale.0.2.weight"].shape[0]
        sft_half = sft_channels == state_dict["condition_scale.0.0.weight"].shape[0]
    except KeyError as err:
        raise ModelLoadError(
            f"the checkpoint lacks {err} and is not a GFPGAN 'clean' (v1.2/v1.3/v1.4) generator; "
            f"use GFPGANv1.4.pth from {GFPGAN_V14_URL}"
        ) from err
    params = dict(image_size=image_size, num_style_feat=num_style_feat, num_mlp=num_mlp, narrow=narrow,
                  channel_multiplier=channel_multiplier, different_w=different_w, sft_half=sft_half)
    params.update(overrides)
    try:
        return GFPGANConfig(**params)
    except ValueError as err:
        raise ModelLoadError(f"the checkpoint's shapes give no valid GFPGAN configuration ({err})") from err


def check_shapes(converted: dict, model: torch.nn.Module):
    expected = model.state_dict()
    wrong = [(k, tuple(v.shape), tuple(expected[k].shape))
             for k, v in converted.items() if v.shape != expected[k].shape]
    if wrong:
        key, got, want = wrong[0]
        raise ModelLoadError(
            f"the checkpoint does not match the GFPGAN architecture: {len(wrong)} tensors have other shapes "
            f"(e.g. {key}: {got}, expected {want}); is this a GFPGAN 'clean' v1 checkpoint?"
        )


def load_converted_model(original_state_dict: dict, config: GFPGANConfig | None = None) -> GFPGANModel:
    """Build a `GFPGANModel` from an original-format state dict (strict: every key and shape must match)."""
    converted = convert_gfpgan_state_dict(original_state_dict)
    config = config or config_from_state_dict(converted)
    model = GFPGANModel(config)
    check_keys(converted, model.state_dict().keys(), "GFPGAN")
    check_shapes(converted, model)
    model.load_state_dict(converted, strict=True)
    return model.eval()


def convert_checkpoint(checkpoint_path, args=None):
    """Entry point of `talkface convert gfpgan`: returns [model]."""
    checkpoint = load_original_checkpoint(checkpoint_path)
    if isinstance(checkpoint, dict):
        found = [k for k in CHECKPOINT_CONTAINER_KEYS if isinstance(checkpoint.get(k), dict)]
        logger.info("using %s from %s", found[0] if found else "the top-level state dict", checkpoint_path)
    model = load_converted_model(checkpoint)
    logger.info("GFPGAN %dx%d, %.1fM parameters", model.config.image_size, model.config.image_size,
                sum(p.numel() for p in model.parameters()) / 1e6)
    return [model]
