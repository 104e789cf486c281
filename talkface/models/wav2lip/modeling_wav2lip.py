"""Wav2Lip generator and visual-quality discriminator as transformers models.

Architecture of Prajwal et al., "A Lip Sync Expert Is All You Need for Speech to Lip Generation In The Wild"
(ACM MM 2020), github.com/Rudrabha/Wav2Lip (models/wav2lip.py, models/conv.py). Written from the paper and the
released state-dict layout; module names follow the original checkpoint (`face_encoder_blocks.N.M.conv_block.0`)
so the released weights load with an identity key mapping.

Images are BGR in [0, 1] (the original code reads frames with OpenCV and never converts them).
"""

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...hub.mixin import TalkFaceHubMixin
from .configuration_wav2lip import Wav2LipConfig, Wav2LipVisualDiscriminatorConfig

# The bottleneck turns the 3x3 maps of the face and audio encoders into 1x1 with a valid 3x3 convolution.
BOTTLENECK_KERNEL_SIZE = 3


# --- building blocks ----------------------------------------------------------------------------------------------
class Wav2LipConvBlock(nn.Module):
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


class Wav2LipTransposedConvBlock(nn.Module):
    """ConvTranspose2d -> BatchNorm -> ReLU (decoder upsampling). State keys: conv_block.0.*, conv_block.1.*."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 batch_norm_eps=1e-5, batch_norm_momentum=0.1):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, output_padding),
            nn.BatchNorm2d(out_channels, eps=batch_norm_eps, momentum=batch_norm_momentum),
        )
        self.act = nn.ReLU()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(hidden_states))


class Wav2LipLeakyConvBlock(nn.Module):
    """Conv2d -> LeakyReLU, no normalisation (discriminator). State keys: conv_block.0.*."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, negative_slope=0.01):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding))
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(hidden_states))


def _init_conv_weights(module: nn.Module):
    """PyTorch's default initialisation (what the original was trained from); BatchNorm to identity."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        init.kaiming_uniform_(module.weight, a=math.sqrt(5))
        if module.bias is not None:
            fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(module.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(module.bias, -bound, bound)
    elif isinstance(module, nn.BatchNorm2d):
        init.ones_(module.weight)
        init.zeros_(module.bias)
        init.zeros_(module.running_mean)
        init.ones_(module.running_var)
        init.zeros_(module.num_batches_tracked)


# --- outputs ------------------------------------------------------------------------------------------------------
@dataclass
class Wav2LipModelOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): L1 reconstruction loss, when `target_faces` is given.
        generated_faces (`torch.FloatTensor`): (batch, 3, image_size, image_size) BGR in [0, 1], or
            (batch, 3, frames, image_size, image_size) for 5-D input.
        audio_embeds (`torch.FloatTensor`): (batch * frames, hidden_size, 1, 1) audio embedding the decoder starts
            from.
    """

    loss: torch.FloatTensor | None = None
    generated_faces: torch.FloatTensor | None = None
    audio_embeds: torch.FloatTensor | None = None


@dataclass
class Wav2LipDiscriminatorOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): binary cross-entropy against `labels` (1 = real).
        probabilities (`torch.FloatTensor` of shape `(batch * frames, 1)`): probability that each face is real.
        logits (`torch.FloatTensor` of shape `(batch * frames, 1)`): the same before the sigmoid.
    """

    loss: torch.FloatTensor | None = None
    probabilities: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None


def _renamed_argument(value, kwargs: dict, old_name: str, new_name: str):
    """The value of an input passed under its former keyword (`old_name`), with a FutureWarning; one release only."""
    if old_name in kwargs:
        if value is not None:
            raise TypeError(f"got both {new_name} and its former name {old_name}; pass {new_name} only")
        warnings.warn(f"the input `{old_name}` is now called `{new_name}`; the old keyword will be removed",
                      FutureWarning, stacklevel=3)
        value = kwargs.pop(old_name)
    if value is None:
        raise TypeError(f"missing the required input {new_name}")
    return value


# --- generator ----------------------------------------------------------------------------------------------------
class Wav2LipPreTrainedModel(TalkFaceHubMixin, PreTrainedModel):
    config_class = Wav2LipConfig
    base_model_prefix = "wav2lip"
    main_input_name = "masked_and_reference_faces"

    def _init_weights(self, module):
        _init_conv_weights(module)


class Wav2LipModel(Wav2LipPreTrainedModel):
    """Wav2Lip generator: (masked frame + reference frame, mel window) -> generated face.

    Inputs:
        masked_and_reference_faces: (batch, 6, image_size, image_size) BGR in [0, 1]; channels 0-2 the target
            frame with its lower half (rows image_size // 2:) zeroed, channels 3-5 the identity reference frame.
            Or (batch, 6, frames, H, W). (Called `face_frames` before; that keyword still works, with a warning.)
        mel_chunks: (batch, 1, num_mel_bins, mel_step_size) normalised mel window (see
            `TalkingFaceAudioFeatureExtractor`). Or (batch, frames, 1, num_mel_bins, mel_step_size).
    """

    @classmethod
    def card_variants(cls):
        # the rows of the model card's parameter table (talkface.hub.cards)
        return [("Wav2Lip / Wav2Lip + GAN (same network)", Wav2LipConfig())]

    def __init__(self, config: Wav2LipConfig):
        super().__init__(config)
        bn = {"batch_norm_eps": config.batch_norm_eps, "batch_norm_momentum": config.batch_norm_momentum}
        kernel = config.kernel_size
        same = kernel // 2

        def stage(in_channels, out_channels, first_kernel, stride, num_residual):
            layers = [Wav2LipConvBlock(in_channels, out_channels, first_kernel, stride, first_kernel // 2, **bn)]
            layers += [Wav2LipConvBlock(out_channels, out_channels, kernel, 1, same, residual=True, **bn)
                       for _ in range(num_residual)]
            return layers

        def bottleneck(in_channels):
            # valid 3x3 conv: 3x3 -> 1x1, then a 1x1 conv
            return [Wav2LipConvBlock(in_channels, config.hidden_size, BOTTLENECK_KERNEL_SIZE, 1, 0, **bn),
                    Wav2LipConvBlock(config.hidden_size, config.hidden_size, 1, 1, 0, **bn)]

        # face encoder: one Sequential per stage (its output is a skip connection), the bottleneck last
        self.face_encoder_blocks = nn.ModuleList()
        in_channels = config.num_channels
        for out_channels, first_kernel, stride, num_residual in zip(
            config.face_encoder_channels, config.face_encoder_kernel_sizes, config.face_encoder_strides,
            config.face_encoder_residual_layers,
        ):
            self.face_encoder_blocks.append(nn.Sequential(*stage(in_channels, out_channels, first_kernel, stride,
                                                                 num_residual)))
            in_channels = out_channels
        self.face_encoder_blocks.append(nn.Sequential(*bottleneck(in_channels)))

        # audio encoder: one flat Sequential, as in the original
        audio_layers = []
        in_channels = 1
        for out_channels, stride, num_residual in zip(
            config.audio_encoder_channels, config.audio_encoder_strides, config.audio_encoder_residual_layers
        ):
            audio_layers += stage(in_channels, out_channels, kernel, tuple(stride), num_residual)
            in_channels = out_channels
        self.audio_encoder = nn.Sequential(*audio_layers, *bottleneck(in_channels))

        # decoder: starts from the audio embedding; after every block the face-encoder map of the same size is
        # concatenated, deepest first (bottleneck, then stages n-1 ... 0)
        skip_channels = list(config.face_encoder_channels) + [config.hidden_size]
        self.face_decoder_blocks = nn.ModuleList()
        first = [Wav2LipConvBlock(config.hidden_size, config.hidden_size, 1, 1, 0, **bn)]
        first += [Wav2LipConvBlock(config.hidden_size, config.hidden_size, kernel, 1, same, residual=True, **bn)
                  for _ in range(config.decoder_bottleneck_residual_layers)]
        self.face_decoder_blocks.append(nn.Sequential(*first))
        in_channels = config.hidden_size + skip_channels.pop()
        num_stages = config.num_face_encoder_stages
        for block_index, (out_channels, num_residual) in enumerate(
            zip(config.decoder_channels, config.decoder_residual_layers)
        ):
            if block_index == 0:
                # 1x1 -> 3x3: the transpose of the bottleneck's valid 3x3 conv
                upsample = Wav2LipTransposedConvBlock(in_channels, out_channels, BOTTLENECK_KERNEL_SIZE, 1, 0, **bn)
            else:
                # undo the stride of the encoder stage whose input size we are returning to
                stride = config.face_encoder_strides[num_stages - block_index]
                upsample = Wav2LipTransposedConvBlock(in_channels, out_channels, kernel, stride, same,
                                                      output_padding=stride - 1, **bn)
            layers = [upsample] + [
                Wav2LipConvBlock(out_channels, out_channels, kernel, 1, same, residual=True, **bn)
                for _ in range(num_residual)
            ]
            self.face_decoder_blocks.append(nn.Sequential(*layers))
            in_channels = out_channels + skip_channels.pop()

        self.output_block = nn.Sequential(
            Wav2LipConvBlock(in_channels, config.output_hidden_channels, kernel, 1, same, **bn),
            nn.Conv2d(config.output_hidden_channels, config.num_output_channels, kernel_size=1),
            nn.Sigmoid(),
        )
        self.post_init()

    def _check_inputs(self, faces: torch.Tensor, mel_chunks: torch.Tensor):
        config = self.config
        face_shape = (config.num_channels, config.image_size, config.image_size)
        mel_shape = (1, config.num_mel_bins, config.mel_step_size)
        if faces.dim() == 4:
            ok = tuple(faces.shape[1:]) == face_shape and tuple(mel_chunks.shape[1:]) == mel_shape
            ok = ok and mel_chunks.dim() == 4 and mel_chunks.shape[0] == faces.shape[0]
        elif faces.dim() == 5:
            batch, channels, frames, height, width = faces.shape
            ok = (channels, height, width) == face_shape and mel_chunks.dim() == 5
            ok = ok and tuple(mel_chunks.shape) == (batch, frames) + mel_shape
        else:
            ok = False
        if not ok:
            raise ValueError(
                f"Wav2LipModel expects masked_and_reference_faces (batch, {config.num_channels}, {config.image_size}, "
                f"{config.image_size}) with mel_chunks (batch, 1, {config.num_mel_bins}, {config.mel_step_size}), "
                f"or the 5-D forms (batch, {config.num_channels}, frames, H, W) and (batch, frames, 1, mels, steps); "
                f"got {tuple(faces.shape)} and {tuple(mel_chunks.shape)}"
            )

    def get_audio_embedding(self, mel_chunks: torch.Tensor) -> torch.Tensor:
        """(batch, 1, num_mel_bins, mel_step_size) -> (batch, hidden_size, 1, 1)."""
        return self.audio_encoder(mel_chunks)

    def forward(
        self,
        masked_and_reference_faces: torch.Tensor | None = None,
        mel_chunks: torch.Tensor | None = None,
        target_faces: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> Wav2LipModelOutput | tuple:
        faces = _renamed_argument(masked_and_reference_faces, kwargs, "face_frames", "masked_and_reference_faces")
        if mel_chunks is None:
            raise TypeError("missing the required input mel_chunks")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        self._check_inputs(faces, mel_chunks)
        is_sequence = faces.dim() == 5
        if is_sequence:
            batch, channels, frames, height, width = faces.shape
            # fold time into batch: (batch * frames, channels, H, W), batch-major
            faces = faces.transpose(1, 2).reshape(batch * frames, channels, height, width)
            mel_chunks = mel_chunks.reshape(batch * frames, *mel_chunks.shape[2:])  # (batch * frames, 1, mels, steps)

        audio_embeds = self.audio_encoder(mel_chunks)  # (N, hidden_size, 1, 1)

        skip_features = []
        hidden_states = faces
        for block in self.face_encoder_blocks:
            hidden_states = block(hidden_states)
            skip_features.append(hidden_states)

        hidden_states = audio_embeds
        for block in self.face_decoder_blocks:
            hidden_states = block(hidden_states)
            hidden_states = torch.cat((hidden_states, skip_features.pop()), dim=1)

        generated_faces = self.output_block(hidden_states)  # (N, 3, H, W)
        if is_sequence:
            # (batch, frames, 3, H, W) -> (batch, 3, frames, H, W), the layout of the 5-D input
            generated_faces = generated_faces.reshape(batch, frames, *generated_faces.shape[1:]).transpose(1, 2)

        loss = None
        if target_faces is not None:
            loss = F.l1_loss(generated_faces, target_faces)

        if not return_dict:
            output = (generated_faces, audio_embeds)
            return (loss,) + output if loss is not None else output
        return Wav2LipModelOutput(loss=loss, generated_faces=generated_faces, audio_embeds=audio_embeds)


# --- visual-quality discriminator ---------------------------------------------------------------------------------
class Wav2LipVisualDiscriminatorPreTrainedModel(TalkFaceHubMixin, PreTrainedModel):
    config_class = Wav2LipVisualDiscriminatorConfig
    base_model_prefix = "wav2lip_discriminator"
    main_input_name = "face_frames"

    def _init_weights(self, module):
        _init_conv_weights(module)


class Wav2LipVisualDiscriminator(Wav2LipVisualDiscriminatorPreTrainedModel):
    """Wav2Lip's visual-quality discriminator: probability that the lower half of a face crop is real.

    Inputs: face_frames (batch, 3, image_size, image_size) or (batch, 3, frames, image_size, image_size), BGR in
    [0, 1]; only rows image_size // 2: are looked at.
    """

    @classmethod
    def card_variants(cls):
        # the rows of the model card's parameter table (talkface.hub.cards)
        return [("visual-quality discriminator", Wav2LipVisualDiscriminatorConfig())]

    def __init__(self, config: Wav2LipVisualDiscriminatorConfig):
        super().__init__(config)
        slope = config.leaky_relu_slope
        self.face_encoder_blocks = nn.ModuleList()
        in_channels = config.num_channels
        for out_channels, kernel, stride, num_extra in zip(
            config.stage_channels, config.stage_kernel_sizes, config.stage_strides, config.stage_extra_layers
        ):
            layers = [Wav2LipLeakyConvBlock(in_channels, out_channels, kernel, tuple(stride), kernel // 2, slope)]
            layers += [Wav2LipLeakyConvBlock(out_channels, out_channels, kernel, 1, kernel // 2, slope)
                       for _ in range(num_extra)]
            self.face_encoder_blocks.append(nn.Sequential(*layers))
            in_channels = out_channels
        self.face_encoder_blocks.append(nn.Sequential(
            Wav2LipLeakyConvBlock(in_channels, config.hidden_size, BOTTLENECK_KERNEL_SIZE, 1, 0, slope),
            Wav2LipLeakyConvBlock(config.hidden_size, config.hidden_size, 1, 1, 0, slope),
        ))
        self.binary_pred = nn.Sequential(nn.Conv2d(config.hidden_size, 1, kernel_size=1), nn.Sigmoid())
        self.post_init()

    def _lower_half_2d(self, face_frames: torch.Tensor) -> torch.Tensor:
        config = self.config
        if face_frames.dim() == 5:
            batch, channels, frames, height, width = face_frames.shape
            face_frames = face_frames.transpose(1, 2).reshape(batch * frames, channels, height, width)
        if face_frames.dim() != 4 or tuple(face_frames.shape[1:]) != (config.num_channels, config.image_size,
                                                                        config.image_size):
            raise ValueError(
                f"Wav2LipVisualDiscriminator expects face_frames (batch, {config.num_channels}, {config.image_size}, "
                f"{config.image_size}) or (batch, {config.num_channels}, frames, H, W); got {tuple(face_frames.shape)}"
            )
        return face_frames[:, :, config.image_size // 2 :]  # (N, 3, image_size // 2, image_size)

    def forward(
        self,
        face_frames: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> Wav2LipDiscriminatorOutput | tuple:
        """`labels`: (N,) or (N, 1) with 1 for real faces, 0 for generated ones (N = batch * frames)."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        hidden_states = self._lower_half_2d(face_frames)
        for block in self.face_encoder_blocks:
            hidden_states = block(hidden_states)
        logits = self.binary_pred[0](hidden_states).reshape(hidden_states.shape[0], 1)  # (N, 1)
        probabilities = torch.sigmoid(logits)
        loss = None
        if labels is not None:
            labels = labels.to(logits.dtype).reshape(logits.shape)
            loss = F.binary_cross_entropy_with_logits(logits, labels)
        if not return_dict:
            output = (probabilities, logits)
            return (loss,) + output if loss is not None else output
        return Wav2LipDiscriminatorOutput(loss=loss, probabilities=probabilities, logits=logits)

    def perceptual_forward(self, generated_faces: torch.Tensor) -> Wav2LipDiscriminatorOutput:
        """Generator-side adversarial term: BCE of the generated faces against the label "real"."""
        num_faces = generated_faces.shape[0] * (generated_faces.shape[2] if generated_faces.dim() == 5 else 1)
        real = torch.ones(num_faces, device=generated_faces.device, dtype=generated_faces.dtype)
        return self.forward(generated_faces, labels=real, return_dict=True)


__all__ = [
    "Wav2LipConvBlock",
    "Wav2LipTransposedConvBlock",
    "Wav2LipLeakyConvBlock",
    "Wav2LipModelOutput",
    "Wav2LipDiscriminatorOutput",
    "Wav2LipPreTrainedModel",
    "Wav2LipModel",
    "Wav2LipVisualDiscriminatorPreTrainedModel",
    "Wav2LipVisualDiscriminator",
]
