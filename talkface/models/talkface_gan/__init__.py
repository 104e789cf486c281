"""talkface's own generator (`TalkFaceModel`) and discriminator (`TalkFaceDiscriminator`)."""

from transformers import AutoConfig, AutoModel

from .configuration_talkface_gan import TalkFaceConfig, TalkFaceDiscriminatorConfig, audio_encoder_kwargs
from .modeling_talkface_gan import (
    TalkFaceDiscriminator,
    TalkFaceDiscriminatorOutput,
    TalkFaceModel,
    TalkFaceModelOutput,
    TalkFacePreTrainedModel,
)

AutoConfig.register("talkface", TalkFaceConfig, exist_ok=True)
AutoConfig.register("talkface_discriminator", TalkFaceDiscriminatorConfig, exist_ok=True)
AutoModel.register(TalkFaceConfig, TalkFaceModel, exist_ok=True)
AutoModel.register(TalkFaceDiscriminatorConfig, TalkFaceDiscriminator, exist_ok=True)

__all__ = [
    "TalkFaceConfig",
    "TalkFaceDiscriminator",
    "TalkFaceDiscriminatorConfig",
    "TalkFaceDiscriminatorOutput",
    "TalkFaceModel",
    "TalkFaceModelOutput",
    "TalkFacePreTrainedModel",
    "audio_encoder_kwargs",
]
