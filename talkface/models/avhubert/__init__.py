"""AV-HuBERT: audio-visual speech representations (encoder) and the seq2seq lip reader, in native PyTorch."""

from transformers import AutoConfig, AutoModel

from .configuration_avhubert import AVHubertConfig
from .feature_extraction_avhubert import AVHubertFeatureExtractor
from .modeling_avhubert import AVHubertModel, AVHubertModelOutput, AVHubertPreTrainedModel
from .modeling_avhubert_lip_reading import AVHubertForLipReading, AVHubertGenerationOutput, AVHubertLipReadingOutput
from .tokenization_avhubert import AVHubertTokenizer

AutoConfig.register("avhubert", AVHubertConfig, exist_ok=True)
AutoModel.register(AVHubertConfig, AVHubertModel, exist_ok=True)

__all__ = [
    "AVHubertConfig",
    "AVHubertFeatureExtractor",
    "AVHubertTokenizer",
    "AVHubertModel",
    "AVHubertForLipReading",
    "AVHubertPreTrainedModel",
    "AVHubertModelOutput",
    "AVHubertLipReadingOutput",
    "AVHubertGenerationOutput",
]
