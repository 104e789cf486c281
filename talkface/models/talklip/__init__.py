"""TalkLip generator (Wav2Lip face path + global AV-HuBERT audio encoder) and its checkpoint converter."""

from transformers import AutoConfig, AutoModel

from .configuration_talklip import TalkLipConfig
from .modeling_talklip import (
    TalkLipContrastiveHead,
    TalkLipModel,
    TalkLipModelOutput,
    TalkLipPreTrainedModel,
    flatten_frame_indices,
)

AutoConfig.register(TalkLipConfig.model_type, TalkLipConfig, exist_ok=True)
AutoModel.register(TalkLipConfig, TalkLipModel, exist_ok=True)

__all__ = [
    "TalkLipConfig",
    "TalkLipModel",
    "TalkLipModelOutput",
    "TalkLipPreTrainedModel",
    "TalkLipContrastiveHead",
    "flatten_frame_indices",
]
