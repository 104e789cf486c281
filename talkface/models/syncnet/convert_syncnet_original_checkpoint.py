"""Convert the Wav2Lip lip-sync expert checkpoint (`lipsync_expert.pth`) into a talkface model folder.

    talkface convert syncnet --checkpoint lipsync_expert.pth --out models/syncnet-expert

The file is `{"state_dict": ..., "optimizer": ..., "global_step": ..., "global_epoch": ...}` (keys possibly prefixed
with `module.`), read with `torch.load(weights_only=True)`. `SyncNetModel` keeps the original module names, so the
mapping is the identity. The folder also gets the Wav2Lip `TalkingFaceAudioFeatureExtractor` the expert was trained
with (`preprocessor_config.json`).
"""

import json
import re
from pathlib import Path

from ...errors import TalkFaceUserError
from ..wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor
from ..convert_utils import load_original_checkpoint, load_state_dict_strictly, unwrap_state_dict
from .configuration_syncnet import SyncNetConfig
from .modeling_syncnet import SyncNetModel

# fmt: off
# original key regex -> converted key; the original names are kept, so each rule maps a key to itself
ORIGINAL_TO_CONVERTED_KEY_MAPPING = {
    r"^face_encoder\.(\d+)\.conv_block\.":  r"face_encoder.\1.conv_block.",
    r"^audio_encoder\.(\d+)\.conv_block\.": r"audio_encoder.\1.conv_block.",
}
# fmt: on

# keys that identify the other Wav2Lip-family checkpoints, to say which converter a wrong file belongs to
_KIND_HINTS = {
    "output_block.1.weight": "a Wav2Lip generator: use `talkface convert wav2lip`",
    "binary_pred.0.weight": "the Wav2Lip visual-quality discriminator: use `talkface convert wav2lip-discriminator`",
}


def convert_syncnet_state_dict(original_state_dict: dict, config: SyncNetConfig | None = None) -> dict:
    """Original `SyncNet_color` state dict (or its checkpoint container) -> `SyncNetModel` state dict.

    Unwraps `{"state_dict": ...}` and strips a `module.` prefix; converted input comes back unchanged.
    """
    compiled = [(re.compile(p), r) for p, r in ORIGINAL_TO_CONVERTED_KEY_MAPPING.items()]
    converted = {}
    for key, value in unwrap_state_dict(original_state_dict).items():
        new_key = next((p.sub(r, key, count=1) for p, r in compiled if p.search(key)), key)
        converted[new_key] = value
    return converted


def _load_config(path) -> SyncNetConfig:
    if not path:
        return SyncNetConfig()
    path = Path(path)
    if not path.is_file():
        raise TalkFaceUserError(f"config file not found: {path}; pass a config.json, or omit --config for the default")
    try:
        return SyncNetConfig(**json.loads(path.read_text()))
    except (TypeError, ValueError) as err:
        raise TalkFaceUserError(f"invalid --config {path}: {err}") from err


def add_arguments(parser):
    parser.add_argument("--config", help="config.json of the architecture (default: the released expert)")


def convert_checkpoint(checkpoint_path, args=None) -> list:
    """Read the original file and return [SyncNetModel, TalkingFaceAudioFeatureExtractor]."""
    config = _load_config(getattr(args, "config", None))
    state_dict = convert_syncnet_state_dict(load_original_checkpoint(checkpoint_path), config)
    model = SyncNetModel(config)
    load_state_dict_strictly(model, state_dict, "Wav2Lip lip-sync expert (SyncNet_color)",
                             wrong_kind_hints=_KIND_HINTS)
    feature_extractor = TalkingFaceAudioFeatureExtractor(mel_step_size=config.mel_step_size,
                                                         num_mel_bins=config.num_mel_bins)
    return [model.eval(), feature_extractor]


__all__ = ["ORIGINAL_TO_CONVERTED_KEY_MAPPING", "convert_syncnet_state_dict", "convert_checkpoint"]
