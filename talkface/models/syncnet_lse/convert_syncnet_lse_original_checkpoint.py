"""Convert syncnet_python's `syncnet_v2.model` into a talkface `SyncNetLSEModel` folder.

    talkface convert syncnet-lse --checkpoint syncnet_v2.model --out models/syncnet-lse

The released file (http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model, 54.6 MB) is a plain
state dict of `SyncNetModel.S(num_layers_in_fc_layers=1024)`, saved by an old torch without the batch-norm
`num_batches_tracked` counters. It is read with `torch.load(weights_only=True)`: no code from the file runs.
Our module names are the original ones, so the mapping only strips wrappers (`__S__.` of `SyncNetInstance`,
`module.` of DataParallel) and adds the missing counters.
"""

import logging
import pickle
import re

import torch

from ...errors import ModelLoadError
from ..convert_utils import check_keys, load_original_checkpoint, unwrap_state_dict
from .configuration_syncnet_lse import SyncNetLSEConfig
from .feature_extraction_syncnet_lse import SyncNetLSEFeatureExtractor
from .modeling_syncnet_lse import SyncNetLSEModel

logger = logging.getLogger(__name__)

# fmt: off
ORIGINAL_TO_CONVERTED_KEY_MAPPING = {
    r"^__S__\.":  r"",   # a SyncNetInstance state dict wraps the network as `__S__`
    r"^module\.": r"",   # DataParallel
}
# fmt: on

_FULL_MODULE_HELP = (
    "{path} is a pickled whole SyncNet module, not a state dict, and loading it would run code from the file; "
    "in an environment with syncnet_python, and only if you trust the file, re-save its weights with "
    "`python -c \"import torch; torch.save(torch.load('{path}', weights_only=False).state_dict(), "
    "'syncnet_v2_state_dict.model')\"` and convert that file"
)


def convert_syncnet_lse_state_dict(original_state_dict: dict, config: SyncNetLSEConfig) -> dict:
    """Map an original `SyncNetModel.S` state dict onto `SyncNetLSEModel` keys (already-converted input passes
    through unchanged). Missing `num_batches_tracked` counters (torch < 0.4.1 checkpoints) are added as 0."""
    converted = {}
    for key, value in original_state_dict.items():
        new_key = key
        for pattern, replacement in ORIGINAL_TO_CONVERTED_KEY_MAPPING.items():
            new_key = re.sub(pattern, replacement, new_key)
        if new_key in converted:
            raise ModelLoadError(f"two checkpoint entries map to {new_key}; is this a syncnet_v2.model state dict?")
        converted[new_key] = value
    for key in list(converted):
        if key.endswith(".running_var"):
            counter = key[: -len("running_var")] + "num_batches_tracked"
            converted.setdefault(counter, torch.zeros((), dtype=torch.long))
    return converted


def _infer_config(state_dict: dict) -> SyncNetLSEConfig:
    """Read the widths from the tensors, so a checkpoint of another size converts too."""
    try:
        audio_channels = [state_dict[f"netcnnaud.{i}.weight"].shape[0] for i in (0, 4, 8, 11, 14, 18)]
        video_channels = [state_dict[f"netcnnlip.{i}.weight"].shape[0] for i in (0, 4, 8, 11, 14, 18)]
        fc_hidden_size = state_dict["netfclip.0.weight"].shape[0]
        embedding_size = state_dict["netfclip.3.weight"].shape[0]
        num_channels, video_window = state_dict["netcnnlip.0.weight"].shape[1:3]
    except KeyError as err:
        raise ModelLoadError(f"the checkpoint has no {err.args[0]!r} entry; is this syncnet_v2.model?") from err
    return SyncNetLSEConfig(
        audio_channels=audio_channels,
        video_channels=video_channels,
        fc_hidden_size=int(fc_hidden_size),
        embedding_size=int(embedding_size),
        num_channels=int(num_channels),
        video_window=int(video_window),
    )


def load_syncnet_lse_checkpoint(checkpoint_path) -> dict:
    """The state dict inside an original checkpoint file, refusing files that need code to unpickle."""
    try:
        checkpoint = load_original_checkpoint(checkpoint_path)
    except ModelLoadError as err:
        # The refused global names either appear in the unpickler's message (legacy files) or can be listed
        # without unpickling (zip files); a pickled `SyncNetModel.S` gets instructions instead of a generic error.
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(checkpoint_path))
        except (RuntimeError, ValueError, OSError, pickle.UnpicklingError):
            unsafe = []
        if "SyncNet" in str(err) or any("SyncNet" in name or name.endswith(".S") for name in unsafe):
            raise ModelLoadError(_FULL_MODULE_HELP.format(path=checkpoint_path)) from err
        raise
    if isinstance(checkpoint, torch.nn.Module):  # only reachable through an allow-list; kept for clarity
        raise ModelLoadError(_FULL_MODULE_HELP.format(path=checkpoint_path))
    return unwrap_state_dict(checkpoint, strip_prefixes=("module.", "__S__."))


def convert_checkpoint(checkpoint_path, args=None):
    """Entry point of `talkface convert syncnet-lse`: returns [model, feature_extractor]."""
    original = load_syncnet_lse_checkpoint(checkpoint_path)
    config = _infer_config(original)
    state_dict = convert_syncnet_lse_state_dict(original, config)
    model = SyncNetLSEModel(config)
    check_keys(state_dict, model.state_dict().keys(), "SyncNet (syncnet_v2.model)")
    for key, tensor in model.state_dict().items():
        if tuple(state_dict[key].shape) != tuple(tensor.shape):
            raise ModelLoadError(
                f"{key} has shape {tuple(state_dict[key].shape)} in the checkpoint but {tuple(tensor.shape)} in the "
                "model; is this syncnet_v2.model?"
            )
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    with torch.no_grad():  # a cheap sanity check: both streams give finite embeddings
        size = config.image_size
        grey_clip = torch.full((1, config.num_channels, config.video_window, size, size), 128.0)
        video = model.get_video_embeddings(grey_clip)
        audio = model.get_audio_embeddings(torch.zeros(1, 1, config.num_mfcc, config.audio_window))
    if not (torch.isfinite(video).all() and torch.isfinite(audio).all()):
        raise ModelLoadError(
            f"the converted SyncNet from {checkpoint_path} gives non-finite embeddings; the file is damaged")
    logger.info("converted %d tensors from %s", len(state_dict), checkpoint_path)
    feature_extractor = SyncNetLSEFeatureExtractor(
        audio_window=config.audio_window, video_window=config.video_window, image_size=config.image_size
    )
    return [model, feature_extractor]
