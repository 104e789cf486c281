"""GFPGAN v1 "clean" (GFPGANv1.4) face restoration, natively in PyTorch, and the face enhancer built on it."""

from transformers import AutoConfig, AutoModel

from .configuration_gfpgan import FFHQ_TEMPLATE_512, GFPGANConfig
from .modeling_gfpgan import GFPGANModel, GFPGANOutput, GFPGANPreTrainedModel

AutoConfig.register("gfpgan", GFPGANConfig, exist_ok=True)
AutoModel.register(GFPGANConfig, GFPGANModel, exist_ok=True)

__all__ = ["FFHQ_TEMPLATE_512", "GFPGANConfig", "GFPGANModel", "GFPGANOutput", "GFPGANPreTrainedModel"]
