"""AV-HuBERT: audio-visual speech representations (encoder) and the seq2seq lip reader, in native PyTorch."""

from transformers import AutoConfig, AutoModel

from .configuration_avhubert import AVHubertConfig
from .modeling_avhubert import (
    AVHubertForLipReading,
    AVHubertGenerationOutput,
    AVHubertLipReadingOutput,
    AVHubertModel,
    AVHubertModelOutput,
    AVHubertPreTrainedModel,
)

AutoConfig.register("avhubert", AVHubertConfig, exist_ok=True)
AutoModel.register(AVHubertConfig, AVHubertModel, exist_ok=True)

__all__ = [
    "AVHubertConfig",
    "AVHubertModel",
    "AVHubertForLipReading",
    "AVHubertPreTrainedModel",
    "AVHubertModelOutput",
    "AVHubertLipReadingOutput",
    "AVHubertGenerationOutput",
]
