"""Convert a released Wav2Lip generator checkpoint (`wav2lip.pth`, `wav2lip_gan.pth`) into a talkface model folder.

    talkface convert wav2lip --checkpoint wav2lip_gan.pth --out models/wav2lip-gan [--push-to-hub user/wav2lip-gan]

The released files are `{"state_dict": ..., "optimizer": ..., "global_step": ..., "global_epoch": ...}`; the state
dict keys may carry DataParallel's `module.` prefix. They are read with `torch.load(weights_only=True)`: no code from
the file runs. `Wav2LipModel` keeps the original module names, so the key mapping is the identity; the table below is
where a rename would go. The folder also gets the matching `TalkingFaceAudioFeatureExtractor`
(`preprocessor_config.json`): the Wav2Lip mel parameters the weights were trained with.
"""

import json
import re
from pathlib import Path

from ...errors import TalkFaceUserError
from .feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor
from ..convert_utils import load_original_checkpoint, load_state_dict_strictly, unwrap_state_dict
from .configuration_wav2lip import Wav2LipConfig
from .modeling_wav2lip import Wav2LipModel

# fmt: off
# original key regex -> converted key (applied to the first matching pattern). Every top-level module of the
# original generator keeps its name, so each rule maps a key to itself.
ORIGINAL_TO_CONVERTED_KEY_MAPPING = {
    r"^face_encoder_blocks\.(\d+)\.(\d+)\.conv_block\.": r"face_encoder_blocks.\1.\2.conv_block.",
    r"^audio_encoder\.(\d+)\.conv_block\.":             r"audio_encoder.\1.conv_block.",
    r"^face_decoder_blocks\.(\d+)\.(\d+)\.conv_block\.": r"face_decoder_blocks.\1.\2.conv_block.",
    r"^output_block\.":                                 r"output_block.",
}
# fmt: on

# keys that identify the other Wav2Lip-family checkpoints, to say which converter a wrong file belongs to
_KIND_HINTS = {
    "binary_pred.0.weight": "the Wav2Lip visual-quality discriminator: use `talkface convert wav2lip-discriminator`",
    "face_encoder.0.conv_block.0.weight": "the Wav2Lip lip-sync expert: use `talkface convert syncnet`",
    "output_block.1.weight": "a Wav2Lip generator: use `talkface convert wav2lip`",
}


def rename_keys(state_dict: dict, mapping: dict) -> dict:
    """Apply the first matching regex of `mapping` to every key; keys that match none are kept as they are."""
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in mapping.items()]
    converted = {}
    for key, value in state_dict.items():
        new_key = key
        for pattern, replacement in compiled:
            if pattern.search(key):
                new_key = pattern.sub(replacement, key, count=1)
                break
        converted[new_key] = value
    return converted


def convert_wav2lip_state_dict(original_state_dict: dict, config: Wav2LipConfig | None = None) -> dict:
    """Original Wav2Lip generator state dict (or its checkpoint container) -> `Wav2LipModel` state dict.

    Unwraps `{"state_dict": ...}` and strips a `module.` prefix; converted input comes back unchanged.
    `config` is accepted for symmetry with the other converters (the mapping does not depend on it).
    """
    return rename_keys(unwrap_state_dict(original_state_dict), ORIGINAL_TO_CONVERTED_KEY_MAPPING)


def load_converted_state_dict(model, state_dict: dict, what: str):
    """Strictly load `state_dict` into `model`; a key naming another Wav2Lip-family network names its converter."""
    return load_state_dict_strictly(model, state_dict, what, wrong_kind_hints=_KIND_HINTS).eval()


def load_config_argument(config_cls, path):
    """The config from a `--config` JSON file (a config.json or plain dict), or the released default."""
    if not path:
        return config_cls()
    path = Path(path)
    if not path.is_file():
        raise TalkFaceUserError(f"config file not found: {path}; pass a config.json, or omit --config for the default")
    try:
        values = json.loads(path.read_text())
    except ValueError as err:
        raise TalkFaceUserError(f"{path} is not valid JSON ({err}); pass a config.json") from err
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as err:
        raise TalkFaceUserError(f"invalid --config {path}: {err}") from err


def add_arguments(parser):
    parser.add_argument("--config", help="config.json of the architecture (default: the released Wav2Lip)")


def convert_checkpoint(checkpoint_path, args=None) -> list:
    """Read the original file and return [Wav2LipModel, TalkingFaceAudioFeatureExtractor]."""
    config = load_config_argument(Wav2LipConfig, getattr(args, "config", None))
    checkpoint = load_original_checkpoint(checkpoint_path)
    state_dict = convert_wav2lip_state_dict(checkpoint, config)
    model = load_converted_state_dict(Wav2LipModel(config), state_dict, "Wav2Lip generator")
    feature_extractor = TalkingFaceAudioFeatureExtractor(mel_step_size=config.mel_step_size,
                                                         num_mel_bins=config.num_mel_bins)
    return [model, feature_extractor]


__all__ = ["ORIGINAL_TO_CONVERTED_KEY_MAPPING", "convert_wav2lip_state_dict", "convert_checkpoint"]
