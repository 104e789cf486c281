"""GFPGAN, "clean" v1 architecture (GFPGANv1.2 / v1.3 / v1.4), natively in PyTorch.

Blind face restoration (Wang et al., "Towards Real-World Blind Face Restoration with Generative Facial Prior",
CVPR 2021). A U-Net encodes an aligned, degraded face; its bottleneck predicts StyleGAN2 latents, and its decoder
features modulate a pretrained StyleGAN2 generator through spatial feature transforms (SFT: per-pixel scale and
shift). The "clean" variant needs no custom CUDA ops: modulated convolutions are plain convolutions and up/down
sampling is bilinear.

Module and parameter names follow the original module tree, so a GFPGANv1.4 `params_ema` state dict loads without
renaming (see convert_gfpgan_original_checkpoint.py).

Images are (batch, 3, image_size, image_size) RGB in [-1, 1].
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...hub.mixin import TalkFaceHubMixin
from .configuration_gfpgan import GFPGANConfig


@dataclass
class GFPGANOutput(ModelOutput):
    """Output of [`GFPGANModel`].

    Args:
        restored_pixel_values (`torch.FloatTensor` of shape `(batch, 3, image_size, image_size)`):
            The restored faces, RGB, nominally in [-1, 1] (not clamped; clamp before converting to pixels).
        intermediate_rgbs (`tuple(torch.FloatTensor)`, *optional*):
            The U-Net decoder's RGB predictions at 8x8 ... image_size (training-time supervision), when requested.
        latents (`torch.FloatTensor` of shape `(batch, num_latents, num_style_feat)`):
            The latents fed to the StyleGAN2 decoder.
    """

    restored_pixel_values: torch.FloatTensor = None
    intermediate_rgbs: tuple | None = None
    latents: torch.FloatTensor | None = None


def _resample(hidden_states: torch.Tensor, scale_factor: float) -> torch.Tensor:
    return F.interpolate(hidden_states, scale_factor=scale_factor, mode="bilinear", align_corners=False)


# ------------------------------------------------------------------------------------------------------------------
# U-Net encoder/decoder blocks
# ------------------------------------------------------------------------------------------------------------------
class GFPGANResBlock(nn.Module):
    """Residual block that halves ("down") or doubles ("up") the resolution with bilinear resampling."""

    def __init__(self, in_channels: int, out_channels: int, scale_factor: float, negative_slope: float):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.scale_factor = scale_factor
        self.negative_slope = negative_slope

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        residual = F.leaky_relu(self.conv1(hidden_states), self.negative_slope)
        residual = _resample(residual, self.scale_factor)
        residual = F.leaky_relu(self.conv2(residual), self.negative_slope)
        shortcut = self.skip(_resample(hidden_states, self.scale_factor))
        return residual + shortcut


# ------------------------------------------------------------------------------------------------------------------
# StyleGAN2 ("clean") decoder blocks
# ------------------------------------------------------------------------------------------------------------------
class GFPGANPixelNorm(nn.Module):
    """Scale each vector to unit root-mean-square along dim 1 (the style MLP's input normalisation)."""

    def forward(self, styles: torch.Tensor) -> torch.Tensor:
        # dim 1 as in the original; for (batch, num_latents, feat) input this normalises across latents.
        return styles * torch.rsqrt(torch.mean(styles**2, dim=1, keepdim=True) + 1e-8)


class GFPGANModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution without bias.

    The per-sample kernel is `weight * style` (scaled along input channels), optionally demodulated to unit norm per
    output channel. Instead of building a kernel per sample (grouped convolution), the style scales the input and
    the demodulation scales the output, which is the same operation and batches without a grouped convolution.
    """

    def __init__(self, in_channels, out_channels, kernel_size, num_style_feat, demodulate=True, upsample=False,
                 eps=1e-8):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        self.eps = eps
        self.modulation = nn.Linear(num_style_feat, in_channels, bias=True)
        self.modulation.is_style_modulation = True  # initialised by _init_weights' modulated-conv branch
        # (1, out, in, k, k): the leading 1 is the original layout (a batch axis for the per-sample kernel)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))

    def forward(self, hidden_states: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        input_scale = self.modulation(style)  # (batch, in)
        kernel = self.weight[0]  # (out, in, k, k)
        if self.upsample:
            hidden_states = _resample(hidden_states, 2)
        hidden_states = hidden_states * input_scale[:, :, None, None]
        hidden_states = F.conv2d(hidden_states, kernel, padding=self.kernel_size // 2)
        if self.demodulate:
            # ||kernel[o] * scale||^2 = sum_c scale_c^2 * sum_k kernel[o, c, k]^2
            kernel_energy = kernel.pow(2).sum(dim=(2, 3))  # (out, in)
            demod = torch.rsqrt(input_scale.pow(2) @ kernel_energy.t() + self.eps)  # (batch, out)
            hidden_states = hidden_states * demod[:, :, None, None]
        return hidden_states


class GFPGANStyleConv(nn.Module):
    """Modulated 3x3 convolution, noise injection, bias and leaky ReLU."""

    def __init__(self, in_channels, out_channels, num_style_feat, upsample, negative_slope):
        super().__init__()
        self.modulated_conv = GFPGANModulatedConv2d(in_channels, out_channels, 3, num_style_feat, upsample=upsample)
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))
        self.negative_slope = negative_slope

    def forward(self, hidden_states, style, noise=None):
        # sqrt(2) restores the variance that the leaky ReLU halves (the original's gain "for conversion")
        hidden_states = self.modulated_conv(hidden_states, style) * math.sqrt(2)
        if noise is None:
            batch, _, height, width = hidden_states.shape
            noise = hidden_states.new_empty(batch, 1, height, width).normal_()
        hidden_states = hidden_states + self.weight * noise + self.bias
        return F.leaky_relu(hidden_states, self.negative_slope)


class GFPGANToRGB(nn.Module):
    """Modulated 1x1 convolution to RGB (no demodulation), added to the upsampled RGB of the previous level."""

    def __init__(self, in_channels, num_style_feat, upsample=True):
        super().__init__()
        self.upsample = upsample
        self.modulated_conv = GFPGANModulatedConv2d(in_channels, 3, 1, num_style_feat, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, hidden_states, style, previous_rgb=None):
        rgb = self.modulated_conv(hidden_states, style) + self.bias
        if previous_rgb is not None:
            if self.upsample:
                previous_rgb = _resample(previous_rgb, 2)
            rgb = rgb + previous_rgb
        return rgb


class GFPGANConstantInput(nn.Module):
    """The learned 4x4 input of the StyleGAN2 generator."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch_size: int) -> torch.Tensor:
        return self.weight.expand(batch_size, -1, -1, -1)


class GFPGANStyleDecoder(nn.Module):
    """StyleGAN2 generator whose features are modulated by SFT conditions (the original StyleGAN2GeneratorCSFT)."""

    def __init__(self, config: GFPGANConfig):
        super().__init__()
        self.sft_half = config.sft_half
        self.num_noise_layers = config.num_noise_layers
        feat, slope = config.num_style_feat, config.negative_slope

        mlp = [GFPGANPixelNorm()]
        for _ in range(config.num_mlp):
            mlp += [nn.Linear(feat, feat), nn.LeakyReLU(slope)]
        self.style_mlp = nn.Sequential(*mlp)

        first = config.decoder_channels(4)
        self.constant_input = GFPGANConstantInput(first, size=4)
        self.style_conv1 = GFPGANStyleConv(first, first, feat, upsample=False, negative_slope=slope)
        self.to_rgb1 = GFPGANToRGB(first, feat, upsample=False)

        # Fixed noise maps, one per style conv: 4x4, then two at each resolution 8 ... image_size.
        self.noises = nn.Module()
        for layer_idx in range(config.num_noise_layers):
            resolution = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise{layer_idx}", torch.randn(1, 1, resolution, resolution))

        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_channels = first
        for resolution in config.resolutions[1:]:
            out_channels = config.decoder_channels(resolution)
            self.style_convs.append(GFPGANStyleConv(in_channels, out_channels, feat, True, slope))  # upsamples
            self.style_convs.append(GFPGANStyleConv(out_channels, out_channels, feat, False, slope))
            self.to_rgbs.append(GFPGANToRGB(out_channels, feat, upsample=True))
            in_channels = out_channels

    def stored_noise(self):
        return [getattr(self.noises, f"noise{i}") for i in range(self.num_noise_layers)]

    def forward(self, latents: torch.Tensor, conditions, randomize_noise: bool) -> torch.Tensor:
        """latents: (batch, num_latents, feat); conditions: [scale_8, shift_8, scale_16, shift_16, ...]."""
        noise = [None] * self.num_noise_layers if randomize_noise else self.stored_noise()

        hidden_states = self.constant_input(latents.shape[0])
        hidden_states = self.style_conv1(hidden_states, latents[:, 0], noise=noise[0])
        rgb = self.to_rgb1(hidden_states, latents[:, 1])

        for level, to_rgb in enumerate(self.to_rgbs):
            latent_idx = 2 * level + 1
            up_conv, conv = self.style_convs[2 * level], self.style_convs[2 * level + 1]
            hidden_states = up_conv(hidden_states, latents[:, latent_idx], noise=noise[latent_idx])
            scale, shift = conditions[2 * level], conditions[2 * level + 1]
            if self.sft_half:
                # only the second half of the channels is modulated; the first half keeps the generative prior
                kept, modulated = torch.split(hidden_states, hidden_states.shape[1] // 2, dim=1)
                hidden_states = torch.cat([kept, modulated * scale + shift], dim=1)
            else:
                hidden_states = hidden_states * scale + shift
            hidden_states = conv(hidden_states, latents[:, latent_idx + 1], noise=noise[latent_idx + 1])
            rgb = to_rgb(hidden_states, latents[:, latent_idx + 2], rgb)
        return rgb


# ------------------------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------------------------
class GFPGANPreTrainedModel(TalkFaceHubMixin, PreTrainedModel):
    config_class = GFPGANConfig
    base_model_prefix = "gfpgan"
    main_input_name = "pixel_values"

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, GFPGANModulatedConv2d):
            fan_in = module.in_channels * module.kernel_size**2
            init.normal_(module.weight, std=1.0 / math.sqrt(fan_in))
            # modulation starts as the identity scale (bias 1), as in StyleGAN2
            init.kaiming_normal_(module.modulation.weight, a=0, mode="fan_in", nonlinearity="linear")
            init.ones_(module.modulation.bias)
        elif isinstance(module, GFPGANStyleConv):
            init.zeros_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, GFPGANToRGB):
            init.zeros_(module.bias)
        elif isinstance(module, GFPGANConstantInput):
            init.normal_(module.weight)
        elif isinstance(module, GFPGANStyleDecoder):
            for name, buffer in module.noises.named_buffers():
                init.normal_(buffer)
        elif isinstance(module, (nn.Conv2d, nn.Linear)) and not getattr(module, "is_style_modulation", False):
            init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="linear")
            if module.bias is not None:
                init.zeros_(module.bias)


class GFPGANModel(GFPGANPreTrainedModel):
    """GFPGAN v1 "clean": restores an aligned face (see talkface.pipelines.lipsync.enhancer for alignment)."""

    @classmethod
    def card_variants(cls):
        # the rows of the model card's parameter table (talkface.hub.cards)
        return [("GFPGANv1.4 (clean)", GFPGANConfig())]

    def __init__(self, config: GFPGANConfig):
        super().__init__(config)
        slope = config.negative_slope
        resolutions = config.resolutions  # [4, 8, ..., image_size]
        enc = config.encoder_channels

        self.conv_body_first = nn.Conv2d(3, enc(config.image_size), 1)
        # encoder: image_size -> 4, halving at each step
        self.conv_body_down = nn.ModuleList(
            GFPGANResBlock(enc(res), enc(res // 2), 0.5, slope) for res in reversed(resolutions[1:])
        )
        self.final_conv = nn.Conv2d(enc(4), enc(4), 3, 1, 1)
        # decoder: 4 -> image_size, doubling at each step
        self.conv_body_up = nn.ModuleList(
            GFPGANResBlock(enc(res // 2), enc(res), 2.0, slope) for res in resolutions[1:]
        )
        self.toRGB = nn.ModuleList(nn.Conv2d(enc(res), 3, 1) for res in resolutions[1:])

        num_style_vectors = config.num_latents if config.different_w else 1
        self.final_linear = nn.Linear(enc(4) * 4 * 4, num_style_vectors * config.num_style_feat)

        self.stylegan_decoder = GFPGANStyleDecoder(config)

        # SFT condition heads: per level, a scale and a shift map for the modulated decoder channels
        self.condition_scale = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        for res in resolutions[1:]:
            channels = enc(res)
            sft_channels = channels if config.sft_half else 2 * channels
            for heads in (self.condition_scale, self.condition_shift):
                heads.append(nn.Sequential(
                    nn.Conv2d(channels, channels, 3, 1, 1),
                    nn.LeakyReLU(slope),
                    nn.Conv2d(channels, sft_channels, 3, 1, 1),
                ))
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, return_rgb: bool = False, randomize_noise: bool | None = None,
                return_dict: bool | None = None):
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch, 3, image_size, image_size)`):
                Aligned faces (see `config.face_template`), RGB in [-1, 1].
            return_rgb (`bool`, *optional*, defaults to `False`):
                Also return the U-Net decoder's intermediate RGB images.
            randomize_noise (`bool`, *optional*):
                Overrides `config.randomize_noise`.
        """
        config = self.config
        return_dict = return_dict if return_dict is not None else config.return_dict
        randomize_noise = config.randomize_noise if randomize_noise is None else randomize_noise
        if pixel_values.ndim != 4 or pixel_values.shape[1:] != (3, config.image_size, config.image_size):
            raise ValueError(
                f"pixel_values must have shape (batch, 3, {config.image_size}, {config.image_size}), got "
                f"{tuple(pixel_values.shape)}"
            )
        slope = config.negative_slope

        # --- U-Net encoder ---
        hidden_states = F.leaky_relu(self.conv_body_first(pixel_values), slope)
        skips = []
        for block in self.conv_body_down:
            hidden_states = block(hidden_states)
            skips.append(hidden_states)
        hidden_states = F.leaky_relu(self.final_conv(hidden_states), slope)  # (batch, enc(4), 4, 4)

        # --- style code from the bottleneck ---
        latents = self.final_linear(hidden_states.flatten(1))
        if config.different_w:
            latents = latents.view(latents.shape[0], config.num_latents, config.num_style_feat)
        if not config.input_is_latent:
            latents = self.stylegan_decoder.style_mlp(latents)
        if not config.different_w:
            latents = latents.unsqueeze(1).expand(-1, config.num_latents, -1)  # the same latent for every layer

        # --- U-Net decoder: SFT conditions (and RGB side outputs) ---
        conditions, intermediate_rgbs = [], []
        for level, block in enumerate(self.conv_body_up):
            hidden_states = block(hidden_states + skips[-1 - level])
            conditions.append(self.condition_scale[level](hidden_states))
            conditions.append(self.condition_shift[level](hidden_states))
            if return_rgb:
                intermediate_rgbs.append(self.toRGB[level](hidden_states))

        restored = self.stylegan_decoder(latents, conditions, randomize_noise=randomize_noise)
        intermediate_rgbs = tuple(intermediate_rgbs) if return_rgb else None
        if not return_dict:
            return tuple(v for v in (restored, intermediate_rgbs, latents) if v is not None)
        return GFPGANOutput(restored_pixel_values=restored, intermediate_rgbs=intermediate_rgbs, latents=latents)
