"""Convert syncnet_python's S3FD weights (`sfd_face.pth`) into a talkface `S3FDModel` folder.

    talkface convert s3fd --checkpoint sfd_face.pth --out models/s3fd

The released file (https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/sfd_face.pth, syncnet_python's
download_model.sh) is a plain state dict of `S3FDNet` (65 tensors, no buffers). It is read with
`torch.load(weights_only=True)`: no code from the file runs. Our module names are the original ones, so the mapping
only strips wrappers (`net.` of the `S3FD` helper, `module.` of DataParallel).
"""

import logging

import torch

from ...errors import ModelLoadError
from ..convert_utils import load_original_checkpoint, load_state_dict_strictly, unwrap_state_dict
from .configuration_s3fd import S3FDConfig
from .feature_extraction_s3fd import S3FDFeatureExtractor
from .modeling_s3fd import S3FDModel

logger = logging.getLogger(__name__)

# a checkpoint of face_alignment's S3FD (the one Wav2Lip ships as s3fd.pth) has these names instead
_FACE_ALIGNMENT_KEYS = {"conv1_1.weight": "face_alignment's S3FD (s3fd-619a316812.pth, Wav2Lip's s3fd.pth), "
                                          "whose layer names differ; convert syncnet_python's sfd_face.pth"}


def convert_s3fd_state_dict(original_state_dict: dict) -> dict:
    """Original `S3FDNet` state dict (or a container of it) -> `S3FDModel` keys (the same names)."""
    return dict(unwrap_state_dict(original_state_dict, strip_prefixes=("module.", "net.")))


def convert_checkpoint(checkpoint_path, args=None) -> list:
    """Entry point of `talkface convert s3fd`: returns [model, feature_extractor]."""
    state_dict = convert_s3fd_state_dict(load_original_checkpoint(checkpoint_path))
    model = S3FDModel(S3FDConfig())
    load_state_dict_strictly(model, state_dict, "S3FD (sfd_face.pth)", wrong_kind_hints=_FACE_ALIGNMENT_KEYS)
    model.eval()
    with torch.no_grad():  # a cheap sanity check: a grey image gives finite scores
        outputs = model(torch.zeros(1, 3, 64, 64))
    if not (torch.isfinite(outputs.scores).all() and torch.isfinite(outputs.box_offsets).all()):
        raise ModelLoadError(f"the converted S3FD from {checkpoint_path} gives non-finite outputs; the file is damaged")
    logger.info("converted %d tensors from %s", len(state_dict), checkpoint_path)
    return [model, S3FDFeatureExtractor()]


__all__ = ["convert_checkpoint", "convert_s3fd_state_dict"]
