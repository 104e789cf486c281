"""VGG-19 (torchvision layout) as a feature extractor, and the perceptual loss built on it.

The module tree matches torchvision's `vgg19` exactly (`features.{i}` for the convolutional stack,
`classifier.{0,3,6}` for the optional head), so torchvision's state dict loads without renaming. The network
is used frozen: as the feature extractor of `VGGPerceptualLoss` when training a generator.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...hub.mixin import TalkFaceHubMixin
from .configuration_vgg19 import VGG19Config


@dataclass
class VGG19ModelOutput(ModelOutput):
    """
    Output of [`VGG19Model`].

    Args:
        feature_maps (`tuple[torch.FloatTensor]`):
            Activations of the requested layers, in the order they were requested; each is
            (batch, channels, height, width).
        logits (`torch.FloatTensor` of shape (batch, num_classes), *optional*):
            Classifier output, when `return_logits=True` and the model has the classifier head.
    """

    feature_maps: tuple[torch.FloatTensor, ...] | None = None
    logits: torch.FloatTensor | None = None


class VGG19PreTrainedModel(TalkFaceHubMixin, PreTrainedModel):
    config_class = VGG19Config
    base_model_prefix = "vgg19"
    main_input_name = "pixel_values"

    @torch.no_grad()
    def _init_weights(self, module):
        # torchvision's VGG initialisation; only used for fresh (unconverted) models
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=0.01)
            init.zeros_(module.bias)


class VGG19Model(VGG19PreTrainedModel):
    """VGG-19 returning the activations of chosen layers (and optionally ImageNet logits)."""

    @classmethod
    def card_variants(cls):
        # the rows of the model card's parameter table (talkface.hub.cards)
        return [
            ("convolutions only (`talkface convert vgg19`, default)", VGG19Config()),
            ("with the ImageNet classifier (`--classifier`)", VGG19Config(use_classifier=True)),
        ]

    def __init__(self, config: VGG19Config):
        super().__init__(config)
        # `features` is a flat Sequential so that its indices are torchvision's: features.0 is conv1_1,
        # features.1 relu1_1, features.4 pool1, features.5 conv2_1, ...
        layers = []
        in_channels = config.num_channels
        for out_channels, num_convs in zip(config.block_channels, config.convs_per_block):
            for _ in range(num_convs):
                layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
                # not in-place: a requested conv output must not be overwritten by the ReLU that follows it
                layers.append(nn.ReLU())
                in_channels = out_channels
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)

        if config.use_classifier:
            self.avgpool = nn.AdaptiveAvgPool2d((config.pool_output_size, config.pool_output_size))
            hidden = config.classifier_hidden_size
            # indices 0, 3, 6 hold the linear layers, as in torchvision
            self.classifier = nn.Sequential(
                nn.Linear(in_channels * config.pool_output_size**2, hidden),
                nn.ReLU(),
                nn.Dropout(config.classifier_dropout),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                nn.Dropout(config.classifier_dropout),
                nn.Linear(hidden, config.num_classes),
            )
        else:
            self.avgpool = None
            self.classifier = None
        self.post_init()

    def normalize(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Map RGB images in [0, 1] to the normalised input the ImageNet weights expect."""
        mean = torch.tensor(self.config.image_mean, device=pixel_values.device, dtype=pixel_values.dtype)
        std = torch.tensor(self.config.image_std, device=pixel_values.device, dtype=pixel_values.dtype)
        return (pixel_values - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)

    def forward(
        self,
        pixel_values: torch.Tensor,
        layers=None,
        return_logits: bool = False,
        return_dict: bool | None = None,
    ):
        r"""
        pixel_values (`torch.FloatTensor` of shape (batch, 3, height, width)):
            RGB images in [0, 1] (or already normalised when `config.normalize_input` is False). Height and width
            must be at least 2**k for a layer after the k-th pooling.
        layers (`list[str | int]`, *optional*):
            Layers whose activations to return, by name (`"relu3_1"`) or torchvision index (`11`); defaults to
            `config.feature_layers`. The forward pass stops after the deepest requested layer.
        return_logits (`bool`, *optional*, defaults to `False`):
            Also run the classifier head (the model must have one) and return ImageNet logits.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"pixel_values must be (batch, {self.config.num_channels}, height, width), "
                f"got shape {tuple(pixel_values.shape)}"
            )
        if return_logits and self.classifier is None:
            raise ValueError("return_logits=True needs the classifier head; build the model with use_classifier=True")

        layers = layers if layers is not None else self.config.feature_layers
        requested = [self.config.layer_index(layer) for layer in layers]
        last_index = len(self.features) - 1 if return_logits else max(requested)

        hidden_states = self.normalize(pixel_values) if self.config.normalize_input else pixel_values
        activations = {}
        for index, layer in enumerate(self.features):
            if index > last_index:
                break
            hidden_states = layer(hidden_states)
            if index in requested:
                activations[index] = hidden_states
        feature_maps = tuple(activations[index] for index in requested)

        logits = None
        if return_logits:
            pooled = self.avgpool(hidden_states)
            logits = self.classifier(torch.flatten(pooled, 1))  # (batch, channels * pool**2) -> (batch, num_classes)

        if not return_dict:
            return (feature_maps,) if logits is None else (feature_maps, logits)
        return VGG19ModelOutput(feature_maps=feature_maps, logits=logits)


class VGGPerceptualLoss(nn.Module):
    """Weighted L1 distance between VGG-19 activations of generated and target images.

        loss = sum_l  w_l * mean(|phi_l(generated) - phi_l(target)|)

    over the layers `layers` (default: the model config's `feature_layers`, relu1_1 .. relu5_1) with weights
    `layer_weights` (default: the config's `perceptual_layer_weights`, 1/32, 1/16, 1/8, 1/4, 1). The network is
    frozen (no gradients to its weights, always in eval mode); gradients flow to `generated` only, the target
    is treated as a constant.

    Inputs are RGB in [0, 1], shaped (..., 3, height, width): leading dimensions (batch, frames, ...) are
    flattened into one batch, so (batch, 3, H, W) and (batch, frames, 3, H, W) both work. Convert BGR inputs
    (Wav2Lip-style) to RGB first.
    """

    def __init__(self, vgg: VGG19Model, layers=None, layer_weights=None):
        super().__init__()
        config = vgg.config
        if layers is None:
            layers = list(config.feature_layers)
            if layer_weights is None:
                layer_weights = list(config.perceptual_layer_weights)
        elif layer_weights is None:
            layer_weights = [1.0] * len(layers)
        if len(layer_weights) != len(layers):
            raise ValueError(
                f"layer_weights must have one weight per layer ({len(layers)}), got {list(layer_weights)}"
            )
        if min(layer_weights) < 0:
            raise ValueError(f"layer_weights must be non-negative, got {list(layer_weights)}")
        for layer in layers:
            config.layer_index(layer)  # fail now, not at the first training step
        self.layers = list(layers)
        self.layer_weights = [float(w) for w in layer_weights]
        self.vgg = vgg.eval().requires_grad_(False)

    @classmethod
    def from_pretrained(cls, path_or_repo_id, layers=None, layer_weights=None, **kwargs) -> "VGGPerceptualLoss":
        """Build the loss on a converted VGG-19 folder or Hub id (`talkface convert vgg19 ...`)."""
        return cls(VGG19Model.from_pretrained(path_or_repo_id, **kwargs), layers=layers, layer_weights=layer_weights)

    def train(self, mode: bool = True):
        # the feature extractor stays in eval mode whatever the surrounding training loop asks
        super().train(mode)
        self.vgg.eval()
        return self

    def forward(self, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if generated.shape != target.shape:
            raise ValueError(
                "generated and target must have the same shape, "
                f"got {tuple(generated.shape)} and {tuple(target.shape)}"
            )
        if generated.ndim < 4 or generated.shape[-3] != self.vgg.config.num_channels:
            raise ValueError(
                f"images must be (..., {self.vgg.config.num_channels}, height, width) RGB in [0, 1], "
                f"got shape {tuple(generated.shape)}"
            )
        image_shape = generated.shape[-3:]
        generated = generated.reshape(-1, *image_shape)  # (batch * ..., 3, height, width)
        target = target.reshape(-1, *image_shape)

        generated_features = self.vgg(generated, layers=self.layers, return_dict=True).feature_maps
        with torch.no_grad():
            target_features = self.vgg(target, layers=self.layers, return_dict=True).feature_maps

        loss = generated.new_zeros(())
        for weight, generated_map, target_map in zip(self.layer_weights, generated_features, target_features):
            loss = loss + weight * F.l1_loss(generated_map, target_map)
        return loss
