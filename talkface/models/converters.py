"""The converter module of each `talkface convert` kind, imported explicitly (no import strings).

A converter module exposes `convert_checkpoint(checkpoint_path, args=None) -> list` (objects with
`save_pretrained`, the model first) and optionally `add_arguments(parser)` for its extra flags. `talkface convert`
and `talkface download` (through `talkface.hub.registry`'s `converter` field) both look kinds up here.
"""

from .avhubert import convert_avhubert_fairseq_checkpoint
from .fid_inception import convert_fid_inception_checkpoint
from .gfpgan import convert_gfpgan_original_checkpoint
from .s3fd import convert_s3fd_original_checkpoint
from .syncnet import convert_syncnet_original_checkpoint
from .syncnet_lse import convert_syncnet_lse_original_checkpoint
from .talklip import convert_talklip_original_checkpoint
from .vgg19 import convert_vgg19_torchvision_checkpoint
from .wav2lip import convert_wav2lip_discriminator_checkpoint, convert_wav2lip_original_checkpoint

CONVERTERS = {
    "wav2lip": convert_wav2lip_original_checkpoint,
    "wav2lip-discriminator": convert_wav2lip_discriminator_checkpoint,
    "syncnet": convert_syncnet_original_checkpoint,
    "syncnet-lse": convert_syncnet_lse_original_checkpoint,
    "avhubert": convert_avhubert_fairseq_checkpoint,
    "talklip": convert_talklip_original_checkpoint,
    "vgg19": convert_vgg19_torchvision_checkpoint,
    "fid-inception": convert_fid_inception_checkpoint,
    "gfpgan": convert_gfpgan_original_checkpoint,
    "s3fd": convert_s3fd_original_checkpoint,
}


def converter_for(kind: str):
    """The converter module of `kind` (a `talkface convert` sub-command name)."""
    try:
        return CONVERTERS[kind]
    except KeyError:
        raise ValueError(f"no converter for kind {kind!r}; known: {', '.join(CONVERTERS)}") from None


__all__ = ["CONVERTERS", "converter_for"]
