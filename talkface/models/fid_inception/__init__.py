from transformers import AutoConfig, AutoModel

from .configuration_fid_inception import FIDInceptionConfig
from .modeling_fid_inception import FIDInceptionModel, FIDInceptionOutput, FIDInceptionPreTrainedModel

AutoConfig.register(FIDInceptionConfig.model_type, FIDInceptionConfig, exist_ok=True)
AutoModel.register(FIDInceptionConfig, FIDInceptionModel, exist_ok=True)

__all__ = ["FIDInceptionConfig", "FIDInceptionModel", "FIDInceptionOutput", "FIDInceptionPreTrainedModel"]
