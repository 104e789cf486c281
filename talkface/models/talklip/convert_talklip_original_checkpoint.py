"""Convert a released TalkLip generator checkpoint into a talkface model folder.

    talkface convert talklip --checkpoint TalkLip_g.pth --out models/talklip-g [--push-to-hub user/talklip-g]

TalkLip's `train.py` saves `{"state_dict", "optimizer", "global_step", "global_epoch"}`; the state dict holds

* Wav2Lip-identical face keys (`face_encoder_blocks.*`, `face_decoder_blocks.*`, `output_block.*`): kept as they are;
* `audio_encoder.w2v_model.*`: a whole AV-HuBERT encoder in fairseq naming (video front end, `mask_emb` and
  `label_embs_concat` included): converted by AV-HuBERT's own converter (`convert_avhubert_state_dict`: positional
  conv weight norm folded, fairseq names mapped) and stored under `audio_encoder.`;
* `audio_map.*`: the 768 -> 512 projection, kept;
* `sync_net.Linearaudio.*`: the audio projection of the contrastive loss -> `contrastive_head.audio_projection.*`.
  It is kept in the model (optional submodule, `use_contrastive_head`) so that a converted checkpoint can resume
  training with the same head; inference never uses it.

The file is read with `torch.load(weights_only=True)` (no code from it runs). The architecture comes from the tensor
shapes (AV-HuBERT layer count, widths, kernel; attention heads by width: Base 12, Large 16) unless `--config` gives a
`config.json`. The folder also gets the `AVHubertFeatureExtractor` (`preprocessor_config.json`) of the global encoder's
audio features (or Wav2Lip's mel extractor for a local-encoder checkpoint).
"""

import json
import logging
import re
from pathlib import Path

import torch

from ...errors import ModelLoadError, TalkFaceUserError
from ..avhubert.convert_avhubert_fairseq_checkpoint import config_from_fairseq_checkpoint, convert_avhubert_state_dict
from ..convert_utils import load_original_checkpoint, load_state_dict_strictly, unwrap_state_dict
from .configuration_talklip import TalkLipConfig
from .modeling_talklip import TalkLipModel

logger = logging.getLogger(__name__)

ORIGINAL_AUDIO_ENCODER_PREFIX = "audio_encoder.w2v_model."
AUDIO_ENCODER_PREFIX = "audio_encoder."

# fmt: off
# original key regex -> converted key, first match wins; keys matching no rule keep their name (the face path, the
# local audio encoder and audio_map use the original module names). The AV-HuBERT part is handled separately by
# AV-HuBERT's converter, because its mapping is not a pure rename (weight-norm folding).
ORIGINAL_TO_CONVERTED_KEY_MAPPING = {
    r"^sync_net\.Linearaudio\.": "contrastive_head.audio_projection.",
    r"^sync_net\.": None,  # nothing else in av_sync holds parameters; anything unexpected is dropped loudly below
}
# fmt: on


def _rename(key: str) -> str | None:
    for pattern, replacement in ORIGINAL_TO_CONVERTED_KEY_MAPPING.items():
        if re.search(pattern, key):
            return None if replacement is None else re.sub(pattern, replacement, key, count=1)
    return key


def is_global_state_dict(state_dict) -> bool:
    """True for the AV-HuBERT ("global") encoder, original or converted naming."""
    return any(key.startswith(ORIGINAL_AUDIO_ENCODER_PREFIX) or key.startswith("audio_encoder.encoder.")
               for key in state_dict)


def _is_converted(state_dict) -> bool:
    return "audio_encoder.encoder.pos_conv.conv.weight" in state_dict or any(
        key.startswith("contrastive_head.") for key in state_dict)


def convert_talklip_state_dict(original_state_dict: dict, config: TalkLipConfig) -> dict:
    """Original TalkLip state dict (or its checkpoint container) -> `TalkLipModel` state dict.

    Unwraps `{"state_dict": ...}` and strips a `module.` prefix. The AV-HuBERT encoder goes through
    `convert_avhubert_state_dict` with `config.avhubert_config` (which decides whether the pretraining-only
    `mask_emb` / `label_embs_concat` are kept). Converted input comes back unchanged.
    """
    state_dict = unwrap_state_dict(original_state_dict)
    if _is_converted(state_dict):
        return dict(state_dict)
    converted, avhubert = {}, {}
    dropped = []
    for key, tensor in state_dict.items():
        if key.startswith(ORIGINAL_AUDIO_ENCODER_PREFIX):
            avhubert[key[len(ORIGINAL_AUDIO_ENCODER_PREFIX):]] = tensor
            continue
        new_key = _rename(key)
        if new_key is None:
            dropped.append(key)
        else:
            converted[new_key] = tensor
    if dropped:
        logger.warning("dropped %d keys of TalkLip's sync head that the model has no place for: %s", len(dropped),
                       dropped[:3])
    if avhubert:
        if config.avhubert_config is None:
            raise ModelLoadError("the checkpoint has a global (AV-HuBERT) audio encoder but the config is local; "
                                 "use audio_encoder_type='global'")
        for key, tensor in convert_avhubert_state_dict(avhubert, config.avhubert_config).items():
            converted[AUDIO_ENCODER_PREFIX + key] = tensor
    return converted


def config_from_state_dict(state_dict: dict, keep_pretraining_modules: bool = True) -> TalkLipConfig:
    """The TalkLip config a state dict (original naming) was trained with: released face path, encoder from shapes."""
    if not is_global_state_dict(state_dict):
        head = state_dict.get("sync_net.Linearaudio.weight")
        return TalkLipConfig(audio_encoder_type="local", use_contrastive_head=head is not None,
                             contrastive_projection_dim=None if head is None else int(head.shape[0]))
    encoder_shapes = {key[len(ORIGINAL_AUDIO_ENCODER_PREFIX):]: tuple(tensor.shape)
                      for key, tensor in state_dict.items() if key.startswith(ORIGINAL_AUDIO_ENCODER_PREFIX)}
    # TalkLip files carry no fairseq cfg: sizes come from shapes, the rest are the released AV-HuBERT values
    avhubert_config = config_from_fairseq_checkpoint(None, encoder_shapes,
                                                     keep_pretraining_modules=keep_pretraining_modules)
    kwargs = {"avhubert_config": avhubert_config}
    if "audio_map.weight" in state_dict:
        kwargs["hidden_size"] = int(state_dict["audio_map.weight"].shape[0])
    if "sync_net.Linearaudio.weight" in state_dict:
        kwargs["contrastive_projection_dim"] = int(state_dict["sync_net.Linearaudio.weight"].shape[0])
    else:
        kwargs["use_contrastive_head"] = False
    kwargs["trainable_audio_layers"] = min(3, avhubert_config.encoder_layers)
    return TalkLipConfig(**kwargs)


def load_talklip_state_dict(model: TalkLipModel, state_dict: dict) -> TalkLipModel:
    """Strictly load a converted state dict, with one actionable error for key or shape mismatches."""
    load_state_dict_strictly(model, state_dict, "TalkLip")
    model.freeze_audio_encoder()
    return model.eval()


def _config_argument(path) -> TalkLipConfig | None:
    if not path:
        return None
    path = Path(path)
    if not path.is_file():
        raise TalkFaceUserError(f"config file not found: {path}; pass a TalkLip config.json, or omit --config")
    try:
        values = json.loads(path.read_text())
    except ValueError as err:
        raise TalkFaceUserError(f"{path} is not valid JSON ({err}); pass a TalkLip config.json") from err
    values = {k: v for k, v in values.items() if k not in ("model_type", "transformers_version", "architectures")}
    try:
        return TalkLipConfig(**values)
    except (TypeError, ValueError) as err:
        raise TalkFaceUserError(f"invalid --config {path}: {err}") from err


def feature_extractor_for(config: TalkLipConfig):
    """The preprocessing the weights expect: AV-HuBERT filterbanks (global) or Wav2Lip mels (local)."""
    if config.is_global:
        from ..avhubert.feature_extraction_avhubert import AVHubertFeatureExtractor

        return AVHubertFeatureExtractor()
    from ..wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor

    return TalkingFaceAudioFeatureExtractor(num_mel_bins=config.num_mel_bins, mel_step_size=config.mel_step_size)


def convert_talklip_checkpoint(checkpoint, config: TalkLipConfig | None = None,
                               keep_pretraining_modules: bool = True) -> list:
    """[TalkLipModel, feature extractor] from a loaded TalkLip checkpoint dict (or bare state dict)."""
    original = unwrap_state_dict(checkpoint)
    if not any(key.startswith("face_encoder_blocks.") for key in original):
        raise ModelLoadError("the checkpoint has no face_encoder_blocks.*: it is not a TalkLip/Wav2Lip generator "
                             "(the TalkLip discriminator is a Wav2Lip discriminator: `talkface convert "
                             "wav2lip-discriminator`)")
    if config is None:
        config = config_from_state_dict(original, keep_pretraining_modules=keep_pretraining_modules)
    converted = convert_talklip_state_dict(original, config)
    for key, tensor in converted.items():
        if tensor.is_floating_point() and tensor.dtype != torch.float32:
            converted[key] = tensor.float()
    model = load_talklip_state_dict(TalkLipModel(config), converted)
    return [model, feature_extractor_for(config)]


def add_arguments(parser):
    parser.add_argument("--config", help="config.json of the architecture (default: read from the checkpoint's "
                                         "shapes, the released face path)")
    parser.add_argument(
        "--drop-pretraining-modules", action="store_true",
        help="leave out AV-HuBERT's mask_emb and label_embs_concat (unused by TalkLip; kept by default so that the "
             "conversion loses nothing)",
    )


def convert_checkpoint(checkpoint_path, args=None) -> list:
    """Entry point of `talkface convert talklip`: [TalkLipModel, feature extractor]."""
    config = _config_argument(getattr(args, "config", None))
    checkpoint = load_original_checkpoint(checkpoint_path)
    keep = not getattr(args, "drop_pretraining_modules", False)
    return convert_talklip_checkpoint(checkpoint, config=config, keep_pretraining_modules=keep)


__all__ = [
    "ORIGINAL_TO_CONVERTED_KEY_MAPPING",
    "convert_talklip_state_dict",
    "config_from_state_dict",
    "convert_talklip_checkpoint",
    "convert_checkpoint",
]
