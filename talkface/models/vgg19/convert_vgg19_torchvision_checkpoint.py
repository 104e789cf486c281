"""Convert torchvision's VGG-19 ImageNet weights into a talkface `VGG19Model` folder.

    talkface convert vgg19 --checkpoint vgg19-dcbb9e9d.pth --out models/vgg19 [--classifier]

The weight file is torchvision's `https://download.pytorch.org/models/vgg19-dcbb9e9d.pth`: a plain state dict
with `features.{i}.weight/bias` for the 16 convolutions (i = 0, 2, 5, 7, 10, ..., 34) and
`classifier.{0,3,6}.weight/bias` for the head. Our module tree keeps torchvision's names, so the conversion is
a checked identity on the kept keys; the classifier is dropped unless `--classifier` is given.
"""

import argparse
import math
import re

from ..convert_utils import check_keys, load_original_checkpoint, unwrap_state_dict
from ...errors import ModelLoadError
from .configuration_vgg19 import NUM_BLOCKS, VGG19Config
from .modeling_vgg19 import VGG19Model

# fmt: off
ORIGINAL_TO_CONVERTED_KEY_MAPPING = {
    r"^features\.(\d+)\.(weight|bias)$":     r"features.\1.\2",
    r"^classifier\.(0|3|6)\.(weight|bias)$": r"classifier.\1.\2",
}
# fmt: on
CLASSIFIER_KEY = re.compile(r"^classifier\.")


def convert_vgg19_state_dict(original_state_dict: dict, config: VGG19Config) -> dict:
    """Map a torchvision VGG-19 state dict onto `VGG19Model` keys.

    Classifier weights are dropped when `config.use_classifier` is False. Keys that match no mapping are kept
    as they are, so that the key check reports them. Already-converted input comes back unchanged.
    """
    converted = {}
    for key, tensor in original_state_dict.items():
        if CLASSIFIER_KEY.match(key) and not config.use_classifier:
            continue
        new_key = key
        for pattern, replacement in ORIGINAL_TO_CONVERTED_KEY_MAPPING.items():
            if re.match(pattern, key):
                new_key = re.sub(pattern, replacement, key)
                break
        converted[new_key] = tensor
    return converted


def config_from_state_dict(state_dict: dict, use_classifier: bool = False) -> VGG19Config:
    """Read the channel widths and block layout of a torchvision-format VGG state dict.

    In torchvision's layout two convolutions of one block sit 2 indices apart (conv, relu) and the first
    convolution of the next block 3 apart (conv, relu, pool), which is how blocks are told apart.
    """
    conv_indices = sorted(
        int(m.group(1)) for key in state_dict if (m := re.match(r"^features\.(\d+)\.weight$", key))
    )
    if not conv_indices:
        raise ModelLoadError("the checkpoint has no features.N.weight keys; is this torchvision's vgg19 weight file?")
    convs_per_block, block_channels = [1], []
    for previous, index in zip(conv_indices, conv_indices[1:]):
        if index - previous == 3:  # a pool between the two convolutions: a new block starts
            block_channels.append(state_dict[f"features.{previous}.weight"].shape[0])
            convs_per_block.append(1)
        elif index - previous == 2:
            convs_per_block[-1] += 1
        else:
            raise ModelLoadError(f"unexpected VGG layer layout at features.{index}; is this a torchvision VGG file?")
    block_channels.append(state_dict[f"features.{conv_indices[-1]}.weight"].shape[0])
    if len(convs_per_block) != NUM_BLOCKS:
        raise ModelLoadError(f"expected {NUM_BLOCKS} VGG blocks, found {len(convs_per_block)}; is this a VGG file?")
    num_channels = state_dict[f"features.{conv_indices[0]}.weight"].shape[1]

    head = {}
    if use_classifier:
        if "classifier.0.weight" not in state_dict or "classifier.6.weight" not in state_dict:
            raise ModelLoadError("the checkpoint has no classifier weights; convert without --classifier")
        hidden, flat_size = state_dict["classifier.0.weight"].shape
        pool_output_size = math.isqrt(flat_size // block_channels[-1])
        head = dict(classifier_hidden_size=hidden, num_classes=state_dict["classifier.6.weight"].shape[0],
                    pool_output_size=pool_output_size)
    return VGG19Config(block_channels=block_channels, convs_per_block=convs_per_block, num_channels=num_channels,
                       use_classifier=use_classifier, **head)


def add_arguments(parser):
    parser.add_argument(
        "--classifier", action=argparse.BooleanOptionalAction, default=False,
        help="keep torchvision's ImageNet classifier head (default: --no-classifier, features only)",
    )


def convert_checkpoint(checkpoint_path, args=None) -> list:
    use_classifier = bool(getattr(args, "classifier", False))
    original = unwrap_state_dict(load_original_checkpoint(checkpoint_path))
    config = config_from_state_dict(original, use_classifier=use_classifier)
    converted = convert_vgg19_state_dict(original, config)
    model = VGG19Model(config)
    check_keys(converted, model.state_dict().keys(), "VGG-19")
    try:
        model.load_state_dict(converted, strict=True)
    except RuntimeError as err:  # shape mismatches
        raise ModelLoadError(
            f"the checkpoint does not fit the VGG-19 architecture: {str(err).splitlines()[-1][:300]}"
        ) from err
    return [model.eval()]
