"""Convert pytorch-fid's Inception weights into a talkface `FIDInceptionModel` folder.

    talkface convert fid-inception --checkpoint pt_inception-2015-12-05-6726825d.pth --out models/fid_inception

The weight file (`FID_WEIGHTS_URL`) is TensorFlow's `inception-2015-12-05` graph ported to a PyTorch state dict
by pytorch-fid: `Conv2d_1a_3x3.conv.weight`, `Conv2d_1a_3x3.bn.{weight,bias,running_mean,running_var}`, ...,
`Mixed_7c.branch_pool.*`, `fc.weight` [1008, 2048], `fc.bias`; no auxiliary classifier. Our module tree keeps
those names, so the conversion is a checked identity. Batch-norm `num_batches_tracked` counters (unused at
inference) are added as zeros when the file has none.
"""

import re

import torch

from ...errors import ModelLoadError
from ..convert_utils import check_keys, load_original_checkpoint, unwrap_state_dict
from .configuration_fid_inception import ALLOWED_CHANNEL_DIVISORS, FIDInceptionConfig
from .modeling_fid_inception import FIDInceptionModel

FID_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_FILENAME}"

# fmt: off
ORIGINAL_TO_CONVERTED_KEY_MAPPING = {
    r"^(Conv2d_\w+|Mixed_\w+)\.(\w+\.)?conv\.weight$":                                        r"\g<0>",
    r"^(Conv2d_\w+|Mixed_\w+)\.(\w+\.)?bn\.(weight|bias|running_mean|running_var|num_batches_tracked)$": r"\g<0>",
    r"^fc\.(weight|bias)$":                                                                  r"\g<0>",
}
# fmt: on


def convert_fid_inception_state_dict(original_state_dict: dict, config: FIDInceptionConfig) -> dict:
    """Map a pytorch-fid Inception state dict onto `FIDInceptionModel` keys.

    `fc.*` is dropped when `config.include_classifier` is False; missing `num_batches_tracked` counters are
    added as zeros. Keys that match no mapping are kept, so that the key check reports them. Already-converted
    input comes back unchanged.
    """
    converted = {}
    for key, tensor in original_state_dict.items():
        if key.startswith("fc.") and not config.include_classifier:
            continue
        new_key = key
        for pattern, replacement in ORIGINAL_TO_CONVERTED_KEY_MAPPING.items():
            if re.match(pattern, key):
                new_key = re.sub(pattern, replacement, key)
                break
        converted[new_key] = tensor
    for key in list(converted):
        if key.endswith(".bn.running_mean"):
            counter = key[: -len("running_mean")] + "num_batches_tracked"
            if counter not in converted:
                converted[counter] = torch.tensor(0, dtype=torch.long)
    return converted


def config_from_state_dict(state_dict: dict) -> FIDInceptionConfig:
    """Read the width and classifier size of a pytorch-fid-format state dict, refusing other Inceptions."""
    if "Conv2d_1a_3x3.conv.weight" not in state_dict:
        raise ModelLoadError(f"the checkpoint has no Conv2d_1a_3x3.conv.weight; is this {FID_WEIGHTS_FILENAME}?")
    if any(key.startswith("AuxLogits.") for key in state_dict) or (
        "fc.weight" in state_dict and state_dict["fc.weight"].shape[0] == 1000
    ):
        raise ModelLoadError(
            "this looks like torchvision's ImageNet inception_v3 weights, which give FID values that are not "
            f"comparable; use pytorch-fid's {FID_WEIGHTS_FILENAME} ({FID_WEIGHTS_URL})"
        )
    stem_width = state_dict["Conv2d_1a_3x3.conv.weight"].shape[0]
    divisor = 32 // stem_width if stem_width and 32 % stem_width == 0 else 0
    if divisor not in ALLOWED_CHANNEL_DIVISORS:
        raise ModelLoadError(
            f"unexpected Conv2d_1a_3x3 width {stem_width} (expected 32); is this {FID_WEIGHTS_FILENAME}?"
        )
    include_classifier = "fc.weight" in state_dict
    num_classes = state_dict["fc.weight"].shape[0] if include_classifier else 1008
    return FIDInceptionConfig(channel_divisor=divisor, include_classifier=include_classifier, num_classes=num_classes)


def model_from_state_dict(original_state_dict: dict) -> FIDInceptionModel:
    """Build an `FIDInceptionModel` (eval mode) from a pytorch-fid-format state dict, checking every key."""
    config = config_from_state_dict(original_state_dict)
    converted = convert_fid_inception_state_dict(original_state_dict, config)
    model = FIDInceptionModel(config)
    check_keys(converted, model.state_dict().keys(), "FID Inception")
    try:
        model.load_state_dict(converted, strict=True)
    except RuntimeError as err:  # shape mismatches
        raise ModelLoadError(
            f"the checkpoint does not fit the FID Inception architecture: {str(err).splitlines()[-1][:300]}"
        ) from err
    return model.eval()


def convert_checkpoint(checkpoint_path, args=None) -> list:
    original = unwrap_state_dict(load_original_checkpoint(checkpoint_path))
    return [model_from_state_dict(original)]
