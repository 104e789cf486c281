"""The FID Inception-v3 network: pool3 features for the Fréchet Inception Distance.

Module and parameter names follow the pytorch-fid weight file (`Conv2d_1a_3x3.conv.weight`,
`Mixed_5b.branch1x1.bn.running_mean`, `fc.weight`, ...), which themselves follow torchvision's Inception-v3, so
the file loads without renaming. The three differences from torchvision's network are described in
`FIDInceptionConfig`; they matter: with torchvision's blocks the same weights give different FID values.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...hub.mixin import TalkFaceHubMixin
from .configuration_fid_inception import FIDInceptionConfig


@dataclass
class FIDInceptionOutput(ModelOutput):
    """
    Output of [`FIDInceptionModel`].

    Args:
        pooled_features (`torch.FloatTensor` of shape (batch, hidden_size)):
            The globally average-pooled output of Mixed_7c ("pool3", 2048-d): the activations FID is computed on.
        hidden_states (`tuple[torch.FloatTensor]`, *optional*):
            With `output_hidden_states=True`: the feature maps after the first max pool (64 channels), the second
            max pool (192), Mixed_6e (768) and the final average pool (2048, 1x1): pytorch-fid's four output blocks.
        logits (`torch.FloatTensor` of shape (batch, num_classes), *optional*):
            The 1008-class `fc` output, with `return_logits=True`.
    """

    pooled_features: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    logits: torch.FloatTensor | None = None


class FIDInceptionConvBlock(nn.Module):
    """Convolution without bias, batch norm, ReLU (torchvision's `BasicConv2d`)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, eps=1e-3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=eps)

    def forward(self, hidden_states):
        return F.relu(self.bn(self.conv(hidden_states)))


def average_pool_without_padding(hidden_states):
    # TensorFlow's average pool divides by the number of real (unpadded) pixels in the window
    return F.avg_pool2d(hidden_states, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionBlockA(nn.Module):
    """Mixed_5b/5c/5d: 1x1, 5x5 and double-3x3 branches plus an average-pool branch; 35x35 grid."""

    def __init__(self, config, in_channels, pool_features):
        super().__init__()
        w, eps = config.width, config.batch_norm_eps
        self.branch1x1 = FIDInceptionConvBlock(in_channels, w(64), 1, eps=eps)
        self.branch5x5_1 = FIDInceptionConvBlock(in_channels, w(48), 1, eps=eps)
        self.branch5x5_2 = FIDInceptionConvBlock(w(48), w(64), 5, padding=2, eps=eps)
        self.branch3x3dbl_1 = FIDInceptionConvBlock(in_channels, w(64), 1, eps=eps)
        self.branch3x3dbl_2 = FIDInceptionConvBlock(w(64), w(96), 3, padding=1, eps=eps)
        self.branch3x3dbl_3 = FIDInceptionConvBlock(w(96), w(96), 3, padding=1, eps=eps)
        self.branch_pool = FIDInceptionConvBlock(in_channels, pool_features, 1, eps=eps)
        self.out_channels = w(64) + w(64) + w(96) + pool_features

    def forward(self, hidden_states):
        branch1x1 = self.branch1x1(hidden_states)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(hidden_states))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(hidden_states)))
        branch_pool = self.branch_pool(average_pool_without_padding(hidden_states))
        return torch.cat([branch1x1, branch5x5, branch3x3dbl, branch_pool], dim=1)


class FIDInceptionBlockB(nn.Module):
    """Mixed_6a: grid reduction 35x35 -> 17x17 (strided 3x3, strided double-3x3 and max-pool branches)."""

    def __init__(self, config, in_channels):
        super().__init__()
        w, eps = config.width, config.batch_norm_eps
        self.branch3x3 = FIDInceptionConvBlock(in_channels, w(384), 3, stride=2, eps=eps)
        self.branch3x3dbl_1 = FIDInceptionConvBlock(in_channels, w(64), 1, eps=eps)
        self.branch3x3dbl_2 = FIDInceptionConvBlock(w(64), w(96), 3, padding=1, eps=eps)
        self.branch3x3dbl_3 = FIDInceptionConvBlock(w(96), w(96), 3, stride=2, eps=eps)
        self.out_channels = w(384) + w(96) + in_channels

    def forward(self, hidden_states):
        branch3x3 = self.branch3x3(hidden_states)
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(hidden_states)))
        branch_pool = F.max_pool2d(hidden_states, kernel_size=3, stride=2)
        return torch.cat([branch3x3, branch3x3dbl, branch_pool], dim=1)


class FIDInceptionBlockC(nn.Module):
    """Mixed_6b-6e: factorised 7x7 branches (1x7 then 7x1) plus an average-pool branch; 17x17 grid."""

    def __init__(self, config, in_channels, channels_7x7):
        super().__init__()
        w, eps = config.width, config.batch_norm_eps
        c7 = channels_7x7
        self.branch1x1 = FIDInceptionConvBlock(in_channels, w(192), 1, eps=eps)
        self.branch7x7_1 = FIDInceptionConvBlock(in_channels, c7, 1, eps=eps)
        self.branch7x7_2 = FIDInceptionConvBlock(c7, c7, (1, 7), padding=(0, 3), eps=eps)
        self.branch7x7_3 = FIDInceptionConvBlock(c7, w(192), (7, 1), padding=(3, 0), eps=eps)
        self.branch7x7dbl_1 = FIDInceptionConvBlock(in_channels, c7, 1, eps=eps)
        self.branch7x7dbl_2 = FIDInceptionConvBlock(c7, c7, (7, 1), padding=(3, 0), eps=eps)
        self.branch7x7dbl_3 = FIDInceptionConvBlock(c7, c7, (1, 7), padding=(0, 3), eps=eps)
        self.branch7x7dbl_4 = FIDInceptionConvBlock(c7, c7, (7, 1), padding=(3, 0), eps=eps)
        self.branch7x7dbl_5 = FIDInceptionConvBlock(c7, w(192), (1, 7), padding=(0, 3), eps=eps)
        self.branch_pool = FIDInceptionConvBlock(in_channels, w(192), 1, eps=eps)
        self.out_channels = 4 * w(192)

    def forward(self, hidden_states):
        branch1x1 = self.branch1x1(hidden_states)
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(hidden_states)))
        branch7x7dbl = self.branch7x7dbl_1(hidden_states)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = layer(branch7x7dbl)
        branch_pool = self.branch_pool(average_pool_without_padding(hidden_states))
        return torch.cat([branch1x1, branch7x7, branch7x7dbl, branch_pool], dim=1)


class FIDInceptionBlockD(nn.Module):
    """Mixed_7a: grid reduction 17x17 -> 8x8 (strided 3x3, 7x7-then-strided-3x3 and max-pool branches)."""

    def __init__(self, config, in_channels):
        super().__init__()
        w, eps = config.width, config.batch_norm_eps
        self.branch3x3_1 = FIDInceptionConvBlock(in_channels, w(192), 1, eps=eps)
        self.branch3x3_2 = FIDInceptionConvBlock(w(192), w(320), 3, stride=2, eps=eps)
        self.branch7x7x3_1 = FIDInceptionConvBlock(in_channels, w(192), 1, eps=eps)
        self.branch7x7x3_2 = FIDInceptionConvBlock(w(192), w(192), (1, 7), padding=(0, 3), eps=eps)
        self.branch7x7x3_3 = FIDInceptionConvBlock(w(192), w(192), (7, 1), padding=(3, 0), eps=eps)
        self.branch7x7x3_4 = FIDInceptionConvBlock(w(192), w(192), 3, stride=2, eps=eps)
        self.out_channels = w(320) + w(192) + in_channels

    def forward(self, hidden_states):
        branch3x3 = self.branch3x3_2(self.branch3x3_1(hidden_states))
        branch7x7x3 = self.branch7x7x3_1(hidden_states)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = layer(branch7x7x3)
        branch_pool = F.max_pool2d(hidden_states, kernel_size=3, stride=2)
        return torch.cat([branch3x3, branch7x7x3, branch_pool], dim=1)


class FIDInceptionBlockE(nn.Module):
    """Mixed_7b/7c: expanded 1x3 + 3x1 branches on the 8x8 grid.

    `pool` is "avg" for Mixed_7b (without padding, as in blocks A and C) and "max" for Mixed_7c: the FID graph
    max-pools there, unlike the paper and torchvision, and the released features depend on it.
    """

    def __init__(self, config, in_channels, pool):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        w, eps = config.width, config.batch_norm_eps
        self.pool = pool
        self.branch1x1 = FIDInceptionConvBlock(in_channels, w(320), 1, eps=eps)
        self.branch3x3_1 = FIDInceptionConvBlock(in_channels, w(384), 1, eps=eps)
        self.branch3x3_2a = FIDInceptionConvBlock(w(384), w(384), (1, 3), padding=(0, 1), eps=eps)
        self.branch3x3_2b = FIDInceptionConvBlock(w(384), w(384), (3, 1), padding=(1, 0), eps=eps)
        self.branch3x3dbl_1 = FIDInceptionConvBlock(in_channels, w(448), 1, eps=eps)
        self.branch3x3dbl_2 = FIDInceptionConvBlock(w(448), w(384), 3, padding=1, eps=eps)
        self.branch3x3dbl_3a = FIDInceptionConvBlock(w(384), w(384), (1, 3), padding=(0, 1), eps=eps)
        self.branch3x3dbl_3b = FIDInceptionConvBlock(w(384), w(384), (3, 1), padding=(1, 0), eps=eps)
        self.branch_pool = FIDInceptionConvBlock(in_channels, w(192), 1, eps=eps)
        self.out_channels = w(320) + 2 * w(384) + 2 * w(384) + w(192)

    def forward(self, hidden_states):
        branch1x1 = self.branch1x1(hidden_states)
        branch3x3 = self.branch3x3_1(hidden_states)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], dim=1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(hidden_states))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], dim=1)
        if self.pool == "max":
            pooled = F.max_pool2d(hidden_states, kernel_size=3, stride=1, padding=1)
        else:
            pooled = average_pool_without_padding(hidden_states)
        branch_pool = self.branch_pool(pooled)
        return torch.cat([branch1x1, branch3x3, branch3x3dbl, branch_pool], dim=1)


class FIDInceptionPreTrainedModel(TalkFaceHubMixin, PreTrainedModel):
    config_class = FIDInceptionConfig
    base_model_prefix = "fid_inception"
    main_input_name = "pixel_values"

    @torch.no_grad()
    def _init_weights(self, module):
        # Only fresh (unconverted) models use this; He init keeps random features well scaled through the depth.
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=0.01)
            init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)


class FIDInceptionModel(FIDInceptionPreTrainedModel):
    """FID Inception-v3: RGB images in [0, 1] -> 2048-d pool3 features."""

    @classmethod
    def card_variants(cls):
        # the rows of the model card's parameter table (talkface.hub.cards)
        return [("FID Inception-v3", FIDInceptionConfig())]

    def __init__(self, config: FIDInceptionConfig):
        super().__init__(config)
        w, eps = config.width, config.batch_norm_eps
        # Attribute names are those of the weight file (and of torchvision), capitals included.
        self.Conv2d_1a_3x3 = FIDInceptionConvBlock(3, w(32), 3, stride=2, eps=eps)
        self.Conv2d_2a_3x3 = FIDInceptionConvBlock(w(32), w(32), 3, eps=eps)
        self.Conv2d_2b_3x3 = FIDInceptionConvBlock(w(32), w(64), 3, padding=1, eps=eps)
        self.Conv2d_3b_1x1 = FIDInceptionConvBlock(w(64), w(80), 1, eps=eps)
        self.Conv2d_4a_3x3 = FIDInceptionConvBlock(w(80), w(192), 3, eps=eps)
        self.Mixed_5b = FIDInceptionBlockA(config, w(192), pool_features=w(32))
        self.Mixed_5c = FIDInceptionBlockA(config, self.Mixed_5b.out_channels, pool_features=w(64))
        self.Mixed_5d = FIDInceptionBlockA(config, self.Mixed_5c.out_channels, pool_features=w(64))
        self.Mixed_6a = FIDInceptionBlockB(config, self.Mixed_5d.out_channels)
        self.Mixed_6b = FIDInceptionBlockC(config, self.Mixed_6a.out_channels, channels_7x7=w(128))
        self.Mixed_6c = FIDInceptionBlockC(config, self.Mixed_6b.out_channels, channels_7x7=w(160))
        self.Mixed_6d = FIDInceptionBlockC(config, self.Mixed_6c.out_channels, channels_7x7=w(160))
        self.Mixed_6e = FIDInceptionBlockC(config, self.Mixed_6d.out_channels, channels_7x7=w(192))
        self.Mixed_7a = FIDInceptionBlockD(config, self.Mixed_6e.out_channels)
        self.Mixed_7b = FIDInceptionBlockE(config, self.Mixed_7a.out_channels, pool="avg")
        self.Mixed_7c = FIDInceptionBlockE(config, self.Mixed_7b.out_channels, pool="max")
        if self.Mixed_7c.out_channels != config.hidden_size:  # guards the width bookkeeping above
            raise ValueError(f"internal width error: {self.Mixed_7c.out_channels} != {config.hidden_size}")
        # torchvision applies dropout before fc; this model is for inference only, so there is none.
        self.fc = nn.Linear(config.hidden_size, config.num_classes) if config.include_classifier else None
        self.post_init()

    def preprocess(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Resize to `image_size` and map [0, 1] to [-1, 1], as configured."""
        if self.config.resize_input:
            size = (self.config.image_size, self.config.image_size)
            pixel_values = F.interpolate(pixel_values, size=size, mode="bilinear", align_corners=False)
        if self.config.normalize_input:
            pixel_values = 2 * pixel_values - 1
        return pixel_values

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool = False,
        return_logits: bool = False,
        return_dict: bool | None = None,
    ):
        r"""
        pixel_values (`torch.FloatTensor` of shape (batch, 3, height, width)):
            RGB images in [0, 1] (any size when `config.resize_input` is set).
        output_hidden_states (`bool`, *optional*, defaults to `False`):
            Also return the four intermediate feature maps of pytorch-fid's output blocks.
        return_logits (`bool`, *optional*, defaults to `False`):
            Also return the `fc` logits (the model must include the classifier).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"pixel_values must be (batch, 3, height, width), got shape {tuple(pixel_values.shape)}")
        if return_logits and self.fc is None:
            raise ValueError("return_logits=True needs fc; build the model with include_classifier=True")

        hidden_states = self.preprocess(pixel_values)  # (batch, 3, 299, 299)
        block_outputs = []
        hidden_states = self.Conv2d_1a_3x3(hidden_states)  # (batch, 32, 149, 149)
        hidden_states = self.Conv2d_2a_3x3(hidden_states)  # (batch, 32, 147, 147)
        hidden_states = self.Conv2d_2b_3x3(hidden_states)  # (batch, 64, 147, 147)
        hidden_states = F.max_pool2d(hidden_states, kernel_size=3, stride=2)  # (batch, 64, 73, 73)
        block_outputs.append(hidden_states)
        hidden_states = self.Conv2d_3b_1x1(hidden_states)  # (batch, 80, 73, 73)
        hidden_states = self.Conv2d_4a_3x3(hidden_states)  # (batch, 192, 71, 71)
        hidden_states = F.max_pool2d(hidden_states, kernel_size=3, stride=2)  # (batch, 192, 35, 35)
        block_outputs.append(hidden_states)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d):
            hidden_states = block(hidden_states)  # (batch, 256 / 288 / 288, 35, 35)
        hidden_states = self.Mixed_6a(hidden_states)  # (batch, 768, 17, 17)
        for block in (self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e):
            hidden_states = block(hidden_states)  # (batch, 768, 17, 17)
        block_outputs.append(hidden_states)
        hidden_states = self.Mixed_7a(hidden_states)  # (batch, 1280, 8, 8)
        hidden_states = self.Mixed_7b(hidden_states)  # (batch, 2048, 8, 8)
        hidden_states = self.Mixed_7c(hidden_states)  # (batch, 2048, 8, 8)
        pooled = F.adaptive_avg_pool2d(hidden_states, (1, 1))  # (batch, 2048, 1, 1)
        block_outputs.append(pooled)
        pooled_features = torch.flatten(pooled, 1)  # (batch, 2048)

        logits = self.fc(pooled_features) if return_logits else None
        hidden = tuple(block_outputs) if output_hidden_states else None
        if not return_dict:
            return tuple(v for v in (pooled_features, hidden, logits) if v is not None)
        return FIDInceptionOutput(pooled_features=pooled_features, hidden_states=hidden, logits=logits)
