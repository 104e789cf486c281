"""Chung & Zisserman SyncNet (syncnet_python, `syncnet_v2.model`) for the LSE-C / LSE-D metrics."""

from transformers import AutoConfig, AutoModel

from .configuration_syncnet_lse import SyncNetLSEConfig
from .feature_extraction_syncnet_lse import SyncNetLSEFeatureExtractor
from .modeling_syncnet_lse import SyncNetLSEModel, SyncNetLSEOutput, SyncNetLSEPreTrainedModel

AutoConfig.register(SyncNetLSEConfig.model_type, SyncNetLSEConfig, exist_ok=True)
AutoModel.register(SyncNetLSEConfig, SyncNetLSEModel, exist_ok=True)

__all__ = [
    "SyncNetLSEConfig",
    "SyncNetLSEFeatureExtractor",
    "SyncNetLSEModel",
    "SyncNetLSEOutput",
    "SyncNetLSEPreTrainedModel",
]
