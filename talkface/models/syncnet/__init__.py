"""The Wav2Lip lip-sync expert (SyncNet_color) and its converter from `lipsync_expert.pth`."""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

from ..wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor
from .configuration_syncnet import SyncNetConfig
from .modeling_syncnet import SyncNetModel, SyncNetOutput, SyncNetPreTrainedModel, cosine_loss

AutoConfig.register(SyncNetConfig.model_type, SyncNetConfig, exist_ok=True)
AutoFeatureExtractor.register(SyncNetConfig, TalkingFaceAudioFeatureExtractor, exist_ok=True)
AutoModel.register(SyncNetConfig, SyncNetModel, exist_ok=True)

__all__ = ["SyncNetConfig", "SyncNetModel", "SyncNetOutput", "SyncNetPreTrainedModel", "cosine_loss"]
