"""Wav2Lip generator, visual-quality discriminator, and their converters from the original checkpoints."""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

from .feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor
from .configuration_wav2lip import Wav2LipConfig, Wav2LipVisualDiscriminatorConfig
from .modeling_wav2lip import (
    Wav2LipModel,
    Wav2LipModelOutput,
    Wav2LipDiscriminatorOutput,
    Wav2LipPreTrainedModel,
    Wav2LipVisualDiscriminator,
)

AutoConfig.register(Wav2LipConfig.model_type, Wav2LipConfig, exist_ok=True)
AutoFeatureExtractor.register(Wav2LipConfig, TalkingFaceAudioFeatureExtractor, exist_ok=True)
AutoModel.register(Wav2LipConfig, Wav2LipModel, exist_ok=True)
AutoConfig.register(Wav2LipVisualDiscriminatorConfig.model_type, Wav2LipVisualDiscriminatorConfig, exist_ok=True)
AutoModel.register(Wav2LipVisualDiscriminatorConfig, Wav2LipVisualDiscriminator, exist_ok=True)

__all__ = [
    "TalkingFaceAudioFeatureExtractor",
    "Wav2LipConfig",
    "Wav2LipVisualDiscriminatorConfig",
    "Wav2LipModel",
    "Wav2LipModelOutput",
    "Wav2LipDiscriminatorOutput",
    "Wav2LipPreTrainedModel",
    "Wav2LipVisualDiscriminator",
]
