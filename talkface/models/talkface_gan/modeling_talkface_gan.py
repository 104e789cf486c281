"""talkface generator and discriminator.

`TalkFaceModel` turns (identity reference frames, pose frames with the lower half masked, mel windows) into faces
whose mouths follow the audio:

    reference frames --identity encoder--+--> skip features -----------------------+
                                         |                                         |
    masked frames ----pose encoder-------+--> bottleneck concat -> 1x1 conv ---+   |
                                                                               |   v
    mel windows ------frozen expert audio encoder (Wav2Lip SyncNet) ------> concat -> decoder -> sigmoid -> faces

The identity and pose encoders share a design but not their weights. The decoder upsamples with transposed convs
and concatenates the identity and pose features of the matching resolution after every stage. The audio encoder
is the lip-sync expert's, frozen (its weights are saved with the model so a trained folder is self-contained).

k frames (default 5) are generated per pass so that the losses can score them as a window; the network itself
processes every frame independently, with k folded into the batch.

`TalkFaceDiscriminator` is a spectrally normalised conv critic giving one real/fake logit per face.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...hub.mixin import TalkFaceHubMixin
from ...errors import ModelLoadError
from .configuration_talkface_gan import TalkFaceConfig, TalkFaceDiscriminatorConfig

# --- building blocks -----------------------------------------------------------------------------------------------


class TalkFaceConvBlock(nn.Module):
    """Conv (or transposed conv) -> ReLU -> batch norm, optionally adding the input (same shape) at the end."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1, output_padding=0,
                 transposed=False, residual=False, eps=1e-5):
        super().__init__()
        if transposed:
            self.conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, output_padding)
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)
        self.norm = nn.BatchNorm2d(out_channels, eps=eps)
        self.residual = residual

    def forward(self, hidden_states):
        output = self.norm(F.relu(self.conv(hidden_states)))
        return output + hidden_states if self.residual else output


class TalkFaceStage(nn.Sequential):
    """One first conv (strided, stem or transposed) followed by `num_convs` stride-1 3x3 convs."""

    def __init__(self, first_block: TalkFaceConvBlock, channels, num_convs, use_residual, eps):
        blocks = [first_block] + [
            TalkFaceConvBlock(channels, channels, 3, 1, 1, residual=use_residual, eps=eps) for _ in range(num_convs)
        ]
        super().__init__(*blocks)


class TalkFaceFaceEncoder(nn.Module):
    """Identity or pose encoder: returns the feature map of every stage, from full resolution down to 1x1."""

    def __init__(self, config: TalkFaceConfig):
        super().__init__()
        channels = config.encoder_channels
        eps = config.batch_norm_eps
        stages = []
        in_channels = config.num_channels
        for index, out_channels in enumerate(channels):
            if index == 0:  # stride-1 stem at full resolution
                kernel = config.encoder_stem_kernel_size
                first = TalkFaceConvBlock(in_channels, out_channels, kernel, 1, kernel // 2, eps=eps)
            elif index < len(channels) - 1:  # halve the resolution
                first = TalkFaceConvBlock(in_channels, out_channels, 3, 2, 1, eps=eps)
            else:  # 3x3 -> 1x1
                first = TalkFaceConvBlock(in_channels, out_channels, 3, 1, 0, eps=eps)
            stages.append(TalkFaceStage(first, out_channels, config.convs_per_block, config.use_residual, eps))
            in_channels = out_channels
        self.stages = nn.ModuleList(stages)

    def forward(self, frames):
        features = []
        hidden_states = frames
        for stage in self.stages:
            hidden_states = stage(hidden_states)
            features.append(hidden_states)
        return features


class TalkFaceFaceDecoder(nn.Module):
    """Upsamples the fused bottleneck back to the face, concatenating both encoders' features after each stage."""

    def __init__(self, config: TalkFaceConfig):
        super().__init__()
        enc = config.encoder_channels
        dec = config.decoder_channels
        eps = config.batch_norm_eps
        num_stages = len(enc)
        stages = []
        in_channels = config.fusion_channels + config.audio_hidden_size
        for index, out_channels in enumerate(dec):
            if index == 0:  # stays at 1x1
                first = TalkFaceConvBlock(in_channels, out_channels, 1, 1, 0, eps=eps)
            elif index == 1:  # 1x1 -> 3x3
                first = TalkFaceConvBlock(in_channels, out_channels, 3, 1, 0, transposed=True, eps=eps)
            else:  # double the resolution
                first = TalkFaceConvBlock(in_channels, out_channels, 3, 2, 1, output_padding=1, transposed=True,
                                          eps=eps)
            stages.append(TalkFaceStage(first, out_channels, config.convs_per_block, config.use_residual, eps))
            # skip connections: identity + pose features of the encoder stage with the same resolution
            in_channels = out_channels + 2 * enc[num_stages - 1 - index]
        self.stages = nn.ModuleList(stages)
        self.output_conv = TalkFaceConvBlock(in_channels, config.output_hidden_size, 3, 1, 1, eps=eps)
        self.output_projection = nn.Conv2d(config.output_hidden_size, config.num_channels, kernel_size=1)

    def forward(self, hidden_states, identity_features, pose_features):
        num_stages = len(self.stages)
        for index, stage in enumerate(self.stages):
            hidden_states = stage(hidden_states)
            skip = num_stages - 1 - index
            hidden_states = torch.cat([hidden_states, identity_features[skip], pose_features[skip]], dim=1)
        return torch.sigmoid(self.output_projection(self.output_conv(hidden_states)))


# The original `conv_block.0/1` layout, so that the lip-sync expert's audio-encoder weights load unchanged.
# Copied from talkface.networks.wav2lip.Wav2LipConvBlock with Wav2Lip->TalkFaceExpert
class TalkFaceExpertConvBlock(nn.Module):
    """Conv2d -> BatchNorm -> (+ input if residual) -> ReLU. State keys: conv_block.0.* (conv), conv_block.1.* (BN)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, residual=False,
                 batch_norm_eps=1e-5, batch_norm_momentum=0.1):
        super().__init__()
        if residual and (in_channels != out_channels or stride not in (1, (1, 1))):
            raise ValueError("a residual conv block must keep channels and size (in == out channels, stride 1)")
        self.conv_block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding),
            nn.BatchNorm2d(out_channels, eps=batch_norm_eps, momentum=batch_norm_momentum),
        )
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        output = self.conv_block(hidden_states)
        if self.residual:
            output = output + hidden_states
        return self.act(output)


def build_expert_audio_encoder(config: TalkFaceConfig) -> nn.Sequential:
    """The audio encoder of the Wav2Lip lip-sync expert (`SyncNet_color.audio_encoder`), as one flat Sequential.

    Each stage is a strided 3x3 conv plus residual 3x3 convs; then a valid 3x3 conv and a 1x1 conv:
    (batch, 1, 80, 16) -> 80x16 -> 27x16 -> 9x6 -> 3x3 -> 1x1 -> (batch, audio_hidden_size, 1, 1).
    """
    eps = config.batch_norm_eps
    layers = []
    in_channels = 1
    for out_channels, stride, num_residual in zip(config.audio_encoder_channels, config.audio_encoder_strides,
                                                  config.audio_encoder_residual_layers):
        layers.append(TalkFaceExpertConvBlock(in_channels, out_channels, 3, tuple(stride), 1, batch_norm_eps=eps))
        layers += [TalkFaceExpertConvBlock(out_channels, out_channels, 3, 1, 1, residual=True, batch_norm_eps=eps)
                   for _ in range(num_residual)]
        in_channels = out_channels
    layers.append(TalkFaceExpertConvBlock(in_channels, config.audio_hidden_size, 3, 1, 0, batch_norm_eps=eps))
    layers.append(TalkFaceExpertConvBlock(config.audio_hidden_size, config.audio_hidden_size, 1, 1, 0,
                                          batch_norm_eps=eps))
    return nn.Sequential(*layers)


class TalkFaceSpectralNormConv2d(nn.Conv2d):
    """Conv2d whose weight is divided by its largest singular value (estimated by one power iteration per training
    forward, as in Miyato et al. 2018). The running estimate of the left singular vector is the `weight_u` buffer;
    in eval mode it is not updated, so evaluation has no side effects."""

    def __init__(self, *args, eps=1e-12, **kwargs):
        super().__init__(*args, **kwargs)
        self.eps = eps
        self.register_buffer("weight_u", F.normalize(torch.randn(self.out_channels), dim=0, eps=eps))

    def normalized_weight(self):
        # the singular-value estimate is done in float32 even under autocast (bf16 power iterations drift)
        with torch.autocast(device_type=self.weight.device.type, enabled=False):
            return self._normalized_weight_fp32()

    def _normalized_weight_fp32(self):
        weight_matrix = self.weight.float().flatten(1)  # (out_channels, in_channels * kh * kw)
        with torch.no_grad():
            u = self.weight_u
            v = F.normalize(weight_matrix.t() @ u, dim=0, eps=self.eps)
            if self.training:
                u = F.normalize(weight_matrix @ v, dim=0, eps=self.eps)
                v = F.normalize(weight_matrix.t() @ u, dim=0, eps=self.eps)
                self.weight_u.copy_(u)
        sigma = torch.dot(u, weight_matrix @ v)
        return (self.weight.float() / sigma).to(self.weight.dtype)

    def forward(self, hidden_states):
        return self._conv_forward(hidden_states, self.normalized_weight(), self.bias)


# --- outputs -------------------------------------------------------------------------------------------------------


@dataclass
class TalkFaceModelOutput(ModelOutput):
    """
    Args:
        generated_frames (`torch.FloatTensor` of shape `(batch, num_frames, 3, image_size, image_size)`):
            Generated RGB faces in [0, 1] (4-D `(batch, 3, image_size, image_size)` when the inputs were 4-D).
        audio_embeddings (`torch.FloatTensor` of shape `(batch * num_frames, audio_hidden_size)`):
            The frozen expert's audio embedding of each frame's mel window.
        loss (`torch.FloatTensor`, *optional*):
            Mean absolute error to `target_frames` when those were given.
    """

    loss: torch.FloatTensor | None = None
    generated_frames: torch.FloatTensor | None = None
    audio_embeddings: torch.FloatTensor | None = None


@dataclass
class TalkFaceDiscriminatorOutput(ModelOutput):
    """
    Args:
        logits (`torch.FloatTensor` of shape `(batch, num_frames)` or `(batch,)`):
            Real/fake logit of each face (positive = real).
    """

    logits: torch.FloatTensor | None = None


# --- models --------------------------------------------------------------------------------------------------------


class TalkFacePreTrainedModel(TalkFaceHubMixin, PreTrainedModel):
    config_class = TalkFaceConfig
    base_model_prefix = "talkface"
    main_input_name = "masked_frames"

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)


class TalkFaceModel(TalkFacePreTrainedModel):
    """The talkface generator. See the module docstring for the architecture."""

    @classmethod
    def card_variants(cls):
        # the rows of the model card's parameter table (talkface.hub.cards)
        return [("generator (incl. the frozen expert audio encoder)", TalkFaceConfig())]

    def __init__(self, config: TalkFaceConfig):
        super().__init__(config)
        self.identity_encoder = TalkFaceFaceEncoder(config)
        self.pose_encoder = TalkFaceFaceEncoder(config)
        bottleneck = config.encoder_channels[-1]
        self.fusion = TalkFaceConvBlock(2 * bottleneck, config.fusion_channels, 1, 1, 0, eps=config.batch_norm_eps)
        self.audio_encoder = build_expert_audio_encoder(config)
        self.decoder = TalkFaceFaceDecoder(config)
        self.post_init()
        if config.freeze_audio_encoder:
            self.audio_encoder.requires_grad_(False)
            self.audio_encoder.eval()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        model = super().from_pretrained(*args, **kwargs)
        if model.config.freeze_audio_encoder:
            # loading replaces the parameters, which resets requires_grad: freeze the expert again
            model.audio_encoder.requires_grad_(False)
        return model

    def train(self, mode: bool = True):
        super().train(mode)
        if self.config.freeze_audio_encoder:
            # the frozen expert keeps its batch-norm statistics: never switch it to training mode
            self.audio_encoder.eval()
        return self

    def load_audio_encoder_from(self, syncnet_path, **kwargs):
        """Copy the audio encoder of a converted Wav2Lip lip-sync expert (a `syncnet` model folder or Hub id, or an
        already loaded `SyncNetModel`) into this model. The weights then travel with this model's own folder."""
        from ..syncnet import SyncNetModel  # the expert is only needed here, not to run the generator

        expert = syncnet_path if isinstance(syncnet_path, nn.Module) else SyncNetModel.from_pretrained(
            syncnet_path, **kwargs
        )
        state_dict = expert.audio_encoder.state_dict()
        own = self.audio_encoder.state_dict()
        mismatched = [k for k in own if k not in state_dict or state_dict[k].shape != own[k].shape]
        if mismatched or len(state_dict) != len(own):
            name = syncnet_path if not isinstance(syncnet_path, nn.Module) else type(syncnet_path).__name__
            raise ModelLoadError(
                f"the audio encoder of {name} does not fit this TalkFaceConfig (first mismatched key: "
                f"{(mismatched or sorted(set(state_dict) - set(own)))[0]}); copy the expert's audio-encoder fields "
                "into the config: TalkFaceConfig(**audio_encoder_kwargs(expert.config))"
            )
        self.audio_encoder.load_state_dict(state_dict)
        if self.config.freeze_audio_encoder:
            self.audio_encoder.requires_grad_(False).eval()
        return self

    def encode_audio(self, mel_chunks):
        """(N, 1, 80, 16) mel windows -> (N, audio_hidden_size, 1, 1) expert audio embeddings."""
        if self.config.freeze_audio_encoder:
            with torch.no_grad():
                return self.audio_encoder(mel_chunks)
        return self.audio_encoder(mel_chunks)

    def forward(self, reference_frames, masked_frames, mel_chunks, target_frames=None, return_dict=None):
        r"""
        Args:
            reference_frames (`torch.FloatTensor` of shape `(batch, num_frames, 3, image_size, image_size)`):
                Identity references (RGB in [0, 1]) from another part of the video. 4-D input
                `(batch, 3, image_size, image_size)` is taken as single frames.
            masked_frames (`torch.FloatTensor`, same shape):
                The target frames with the lower half set to 0 (they give the head pose).
            mel_chunks (`torch.FloatTensor` of shape `(batch, num_frames, 1, 80, 16)` or `(batch, 1, 80, 16)`):
                Each frame's mel window (`TalkingFaceAudioFeatureExtractor.frame_mel_chunks`).
            target_frames (`torch.FloatTensor`, *optional*, same shape as `masked_frames`):
                Ground truth; when given, `loss` is the L1 reconstruction error.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if reference_frames.shape != masked_frames.shape:
            raise ValueError(
                f"reference_frames {tuple(reference_frames.shape)} and masked_frames {tuple(masked_frames.shape)} "
                "must have the same shape"
            )
        size = self.config.image_size
        if masked_frames.dim() not in (4, 5) or masked_frames.shape[-3:] != (self.config.num_channels, size, size):
            raise ValueError(
                f"masked_frames has shape {tuple(masked_frames.shape)}; expected (batch, frames, "
                f"{self.config.num_channels}, {size}, {size}) or (batch, {self.config.num_channels}, {size}, {size})"
            )
        leading_shape = masked_frames.shape[:-3]  # (batch, frames) or (batch,)
        num_items = leading_shape.numel()
        if mel_chunks.shape[:-3] != leading_shape or mel_chunks.shape[-3:] != (1, self.config.num_mels,
                                                                                 self.config.mel_steps):
            raise ValueError(
                f"mel_chunks has shape {tuple(mel_chunks.shape)}; expected {tuple(leading_shape)} + "
                f"(1, {self.config.num_mels}, {self.config.mel_steps})"
            )
        # fold the k frames into the batch: (batch * frames, C, H, W)
        reference = reference_frames.reshape(num_items, *reference_frames.shape[-3:])
        masked = masked_frames.reshape(num_items, *masked_frames.shape[-3:])
        mels = mel_chunks.reshape(num_items, *mel_chunks.shape[-3:]).to(masked.dtype)

        identity_features = self.identity_encoder(reference)
        pose_features = self.pose_encoder(masked)
        fused = self.fusion(torch.cat([identity_features[-1], pose_features[-1]], dim=1))  # (N, fusion, 1, 1)
        audio_embeddings = self.encode_audio(mels)  # (N, audio_hidden, 1, 1)
        bottleneck = torch.cat([fused, audio_embeddings.to(fused.dtype)], dim=1)
        generated = self.decoder(bottleneck, identity_features, pose_features)  # (N, 3, H, W)
        generated = generated.reshape(*leading_shape, *generated.shape[1:])

        loss = None
        if target_frames is not None:
            loss = F.l1_loss(generated, target_frames.to(generated.dtype))
        audio_embeddings = audio_embeddings.flatten(1)
        if not return_dict:
            return tuple(t for t in (loss, generated, audio_embeddings) if t is not None)
        return TalkFaceModelOutput(loss=loss, generated_frames=generated, audio_embeddings=audio_embeddings)


class TalkFaceDiscriminatorPreTrainedModel(TalkFaceHubMixin, PreTrainedModel):
    config_class = TalkFaceDiscriminatorConfig
    base_model_prefix = "talkface_discriminator"
    main_input_name = "frames"

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, nn.Conv2d):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                init.zeros_(module.bias)


class TalkFaceDiscriminator(TalkFaceDiscriminatorPreTrainedModel):
    """Real/fake critic: strided spectrally normalised convs with LeakyReLU, then a 1x1 conv to one logit."""

    @classmethod
    def card_variants(cls):
        # the rows of the model card's parameter table (talkface.hub.cards)
        return [("discriminator", TalkFaceDiscriminatorConfig())]

    def __init__(self, config: TalkFaceDiscriminatorConfig):
        super().__init__(config)
        layers = []
        in_channels = config.num_channels
        for out_channels in config.hidden_channels:
            layers.append(TalkFaceSpectralNormConv2d(in_channels, out_channels, 3, 2, 1, eps=config.spectral_norm_eps))
            layers.append(nn.LeakyReLU(config.leaky_relu_slope))
            in_channels = out_channels
        self.convs = nn.Sequential(*layers)
        self.classifier = TalkFaceSpectralNormConv2d(in_channels, 1, 1, 1, 0, eps=config.spectral_norm_eps)
        self.post_init()

    def forward(self, frames, return_dict=None):
        r"""
        Args:
            frames (`torch.FloatTensor` of shape `(batch, num_frames, 3, image_size, image_size)` or
                `(batch, 3, image_size, image_size)`): RGB faces in [0, 1].
        Returns logits of shape `(batch, num_frames)` or `(batch,)`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        size = self.config.image_size
        if frames.dim() not in (4, 5) or frames.shape[-3:] != (self.config.num_channels, size, size):
            raise ValueError(
                f"frames has shape {tuple(frames.shape)}; expected (..., {self.config.num_channels}, {size}, {size})"
            )
        leading_shape = frames.shape[:-3]
        hidden_states = self.convs(frames.reshape(-1, *frames.shape[-3:]))  # (N, C, h, w)
        logits = self.classifier(hidden_states).mean(dim=(1, 2, 3)).reshape(leading_shape)
        if not return_dict:
            return (logits,)
        return TalkFaceDiscriminatorOutput(logits=logits)


__all__ = [
    "TalkFaceDiscriminator",
    "TalkFaceDiscriminatorOutput",
    "TalkFaceDiscriminatorPreTrainedModel",
    "TalkFaceModel",
    "TalkFaceModelOutput",
    "TalkFacePreTrainedModel",
]
