"""Convert Wav2Lip's visual-quality discriminator checkpoint (`visual_quality_disc.pth`) into a talkface model folder.

    talkface convert wav2lip-discriminator --checkpoint visual_quality_disc.pth --out models/wav2lip-disc

Same container as the generator (`{"state_dict": ...}`, optional `module.` prefix), read with
`torch.load(weights_only=True)`. `Wav2LipVisualDiscriminator` keeps the original module names (identity mapping).
Needed only to continue Wav2Lip's GAN training; inference does not use it.
"""

from ..convert_utils import load_original_checkpoint, unwrap_state_dict
from .configuration_wav2lip import Wav2LipVisualDiscriminatorConfig
from .convert_wav2lip_original_checkpoint import load_config_argument, load_converted_state_dict, rename_keys
from .modeling_wav2lip import Wav2LipVisualDiscriminator

# fmt: off
# original key regex -> converted key; the original names are kept, so each rule maps a key to itself
ORIGINAL_TO_CONVERTED_KEY_MAPPING = {
    r"^face_encoder_blocks\.(\d+)\.(\d+)\.conv_block\.0\.": r"face_encoder_blocks.\1.\2.conv_block.0.",
    r"^binary_pred\.0\.":                                   r"binary_pred.0.",
}
# fmt: on


def convert_wav2lip_discriminator_state_dict(original_state_dict: dict, config=None) -> dict:
    """Original `Wav2Lip_disc_qual` state dict (or its checkpoint container) -> `Wav2LipVisualDiscriminator` keys."""
    return rename_keys(unwrap_state_dict(original_state_dict), ORIGINAL_TO_CONVERTED_KEY_MAPPING)


def add_arguments(parser):
    parser.add_argument("--config", help="config.json of the architecture (default: the released discriminator)")


def convert_checkpoint(checkpoint_path, args=None) -> list:
    """Read the original file and return [Wav2LipVisualDiscriminator]."""
    config = load_config_argument(Wav2LipVisualDiscriminatorConfig, getattr(args, "config", None))
    state_dict = convert_wav2lip_discriminator_state_dict(load_original_checkpoint(checkpoint_path), config)
    model = load_converted_state_dict(Wav2LipVisualDiscriminator(config), state_dict,
                                      "Wav2Lip visual-quality discriminator")
    return [model]


__all__ = ["ORIGINAL_TO_CONVERTED_KEY_MAPPING", "convert_wav2lip_discriminator_state_dict", "convert_checkpoint"]
