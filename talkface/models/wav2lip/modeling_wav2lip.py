"""Wav2Lip generator and visual-quality discriminator as transformers models.

Architecture of Prajwal et al., "A Lip Sync Expert Is All You Need for Speech to Lip Generation In The Wild"
(ACM MM 2020), github.com/Rudrabha/Wav2Lip (models/wav2lip.py, models/conv.py). Written from the paper and the
released state-dict layout; module names follow the original checkpoint (`face_encoder_blocks.N.M.conv_block.0`)
so the released weights load with an identity key mapping. The layers are `talkface.networks.wav2lip`'s
(`Wav2LipLayers`, shared with the transformers-free `Wav2LipNetwork` that the generation path loads).

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
from ...networks.wav2lip import (  # noqa: F401  (the blocks stay importable from here)
    BOTTLENECK_KERNEL_SIZE,
    Wav2LipConvBlock,
    Wav2LipLayers,
    Wav2LipLeakyConvBlock,
    Wav2LipTransposedConvBlock,
)
from .configuration_wav2lip import Wav2LipConfig, Wav2LipVisualDiscriminatorConfig


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


class Wav2LipModel(Wav2LipLayers, Wav2LipPreTrainedModel):
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
        self._build_wav2lip_layers(config)  # talkface.networks.wav2lip.Wav2LipLayers
        self.post_init()

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
        generated_faces, audio_embeds = self._wav2lip_forward(faces, mel_chunks)

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
