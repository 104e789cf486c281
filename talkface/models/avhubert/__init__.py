"""AV-HuBERT: audio-visual speech representations (encoder) and the seq2seq lip reader, in native PyTorch."""

from transformers import AutoConfig, AutoModel

from .configuration_avhubert import AVHubertConfig
from .modeling_avhubert import AVHubertModel, AVHubertModelOutput, AVHubertPreTrainedModel
from .modeling_avhubert_lip_reading import AVHubertForLipReading, AVHubertGenerationOutput, AVHubertLipReadingOutput

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
