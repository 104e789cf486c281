from transformers import AutoConfig, AutoModel

from .configuration_vgg19 import VGG19Config
from .modeling_vgg19 import VGG19Model, VGG19ModelOutput, VGG19PreTrainedModel, VGGPerceptualLoss

AutoConfig.register(VGG19Config.model_type, VGG19Config, exist_ok=True)
AutoModel.register(VGG19Config, VGG19Model, exist_ok=True)

__all__ = ["VGG19Config", "VGG19Model", "VGG19ModelOutput", "VGG19PreTrainedModel", "VGGPerceptualLoss"]
