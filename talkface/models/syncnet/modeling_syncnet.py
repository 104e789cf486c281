"""The Wav2Lip lip-sync expert (`SyncNet_color`) as a transformers model.

Architecture of Prajwal et al., "A Lip Sync Expert Is All You Need for Speech to Lip Generation In The Wild"
(ACM MM 2020), github.com/Rudrabha/Wav2Lip (models/syncnet.py). Module names follow the released
`lipsync_expert.pth` (`face_encoder.N.conv_block.0.weight`), so its weights load with an identity key mapping.

The expert scores whether 5 consecutive face frames (lower halves, BGR in [0, 1], stacked on channels frame by frame
as [f0 B,G,R, f1 B,G,R, ...]) and the 0.2 s mel window starting at the first frame are in sync: both are embedded
into non-negative (ReLU) L2-normalised 512-d vectors and their cosine similarity (in [0, 1]) is read as the
probability of sync, trained with binary cross-entropy (`cosine_loss`). Frozen, it is Wav2Lip's sync loss.
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
from .configuration_syncnet import SyncNetConfig

# The encoders end with a valid 3x3 convolution that turns their 3x3 map into 1x1.
BOTTLENECK_KERNEL_SIZE = 3


# Copied from talkface.networks.wav2lip.Wav2LipConvBlock with Wav2Lip->SyncNet
class SyncNetConvBlock(nn.Module):
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


def cosine_loss(audio_embeds: torch.Tensor, face_embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the cosine similarity (read as P(in sync)) against labels (1 = in sync, 0 = not).

    With labels all 1 this is Wav2Lip's sync loss for the generator. The cosine of non-negative vectors is in [0, 1];
    it is clamped away from 0 and 1 so the log stays finite.
    """
    similarity = F.cosine_similarity(audio_embeds, face_embeds, dim=1)  # (batch,)
    eps = torch.finfo(similarity.dtype).eps
    labels = labels.to(similarity.dtype).reshape(similarity.shape)
    return F.binary_cross_entropy(similarity.clamp(eps, 1 - eps), labels)


@dataclass
class SyncNetOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): `cosine_loss` against `labels`, when given.
        audio_embeds (`torch.FloatTensor` of shape `(batch, hidden_size)`): L2-normalised audio embeddings.
        face_embeds (`torch.FloatTensor` of shape `(batch, hidden_size)`): L2-normalised face embeddings.
        cosine_similarity (`torch.FloatTensor` of shape `(batch,)`): their cosine similarity, P(in sync).
    """

    loss: torch.FloatTensor | None = None
    audio_embeds: torch.FloatTensor | None = None
    face_embeds: torch.FloatTensor | None = None
    cosine_similarity: torch.FloatTensor | None = None


# Copied from talkface.models.wav2lip.modeling_wav2lip._renamed_argument
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


class SyncNetPreTrainedModel(TalkFaceHubMixin, PreTrainedModel):
    config_class = SyncNetConfig
    base_model_prefix = "syncnet"
    main_input_name = "face_windows"

    def _init_weights(self, module):
        # PyTorch's default initialisation (what the original was trained from); BatchNorm to identity
        if isinstance(module, nn.Conv2d):
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


class SyncNetModel(SyncNetPreTrainedModel):
    """Wav2Lip lip-sync expert.

    Inputs:
        face_windows: (batch, num_frames * 3, image_size // 2, image_size) = (batch, 15, 48, 96): lower halves of 5
            consecutive BGR [0, 1] face crops, stacked frame by frame on channels; `stack_face_frames` makes them
            from RGB face frames. (Called `face_frames` before; that keyword still works, with a warning.)
        mel_chunks: (batch, 1, num_mel_bins, mel_step_size) = (batch, 1, 80, 16): the mel window starting at the
            first frame (`TalkingFaceAudioFeatureExtractor`).

    `audio_encoder` and `get_audio_embedding` can be used on their own (e.g. as a frozen audio encoder).
    """

    @classmethod
    def card_variants(cls):
        # the rows of the model card's parameter table (talkface.hub.cards)
        return [("lip-sync expert", SyncNetConfig())]

    def __init__(self, config: SyncNetConfig):
        super().__init__(config)
        bn = {"batch_norm_eps": config.batch_norm_eps, "batch_norm_momentum": config.batch_norm_momentum}
        kernel = config.kernel_size

        def encoder(in_channels, channels, kernel_sizes, strides, paddings, residual_layers):
            layers = []
            for out_channels, first_kernel, stride, padding, num_residual in zip(
                channels, kernel_sizes, strides, paddings, residual_layers
            ):
                layers.append(SyncNetConvBlock(in_channels, out_channels, first_kernel, tuple(stride), padding, **bn))
                layers += [SyncNetConvBlock(out_channels, out_channels, kernel, 1, kernel // 2, residual=True, **bn)
                           for _ in range(num_residual)]
                in_channels = out_channels
            # 3x3 -> 1x1 (valid conv), then a 1x1 conv to the embedding size
            layers.append(SyncNetConvBlock(in_channels, config.hidden_size, BOTTLENECK_KERNEL_SIZE, 1, 0, **bn))
            layers.append(SyncNetConvBlock(config.hidden_size, config.hidden_size, 1, 1, 0, **bn))
            return nn.Sequential(*layers)

        self.face_encoder = encoder(
            config.face_input_size[0], config.face_encoder_channels, config.face_encoder_kernel_sizes,
            config.face_encoder_strides, config.face_encoder_paddings, config.face_encoder_residual_layers,
        )
        num_audio_stages = len(config.audio_encoder_channels)
        self.audio_encoder = encoder(
            1, config.audio_encoder_channels, [kernel] * num_audio_stages, config.audio_encoder_strides,
            [kernel // 2] * num_audio_stages, config.audio_encoder_residual_layers,
        )
        self.post_init()

    @staticmethod
    def stack_face_frames(frames: torch.Tensor, channel_order: str = "rgb") -> torch.Tensor:
        """(batch, num_frames, 3, H, W) face crops in [0, 1] -> (batch, num_frames * 3, H // 2, W) `face_windows`.

        Keeps the lower half (rows H // 2:) and stacks the frames on channels frame-major ([f0 B,G,R, f1 B,G,R, ...]).
        The frames are RGB, like everywhere else in talkface, and are flipped to the BGR order the expert was trained
        on; pass `channel_order="bgr"` for frames that are BGR already.
        """
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"expected frames (batch, num_frames, 3, H, W), got {tuple(frames.shape)}")
        if channel_order not in ("bgr", "rgb"):
            raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")
        if channel_order == "rgb":
            frames = frames.flip(2)
        batch, num_frames, channels, height, width = frames.shape
        lower_half = frames[..., height // 2 :, :]  # (batch, num_frames, 3, H // 2, W)
        return lower_half.reshape(batch, num_frames * channels, height - height // 2, width)

    def _check_face(self, face_windows):
        expected = self.config.face_input_size
        if face_windows.dim() != 4 or tuple(face_windows.shape[1:]) != expected:
            raise ValueError(
                f"SyncNetModel expects face_windows (batch, {expected[0]}, {expected[1]}, {expected[2]}) (lower "
                f"halves of {self.config.num_frames} frames stacked on channels; see stack_face_frames), got "
                f"{tuple(face_windows.shape)}"
            )

    def _check_mel(self, mel_chunks):
        expected = (1, self.config.num_mel_bins, self.config.mel_step_size)
        if mel_chunks.dim() != 4 or tuple(mel_chunks.shape[1:]) != expected:
            raise ValueError(f"SyncNetModel expects mel_chunks (batch, 1, {expected[1]}, {expected[2]}), "
                             f"got {tuple(mel_chunks.shape)}")

    def get_audio_embedding(self, mel_chunks: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(batch, 1, num_mel_bins, mel_step_size) -> (batch, hidden_size), L2-normalised unless `normalize=False`."""
        self._check_mel(mel_chunks)
        audio_embeds = self.audio_encoder(mel_chunks).flatten(1)  # (batch, hidden_size)
        return F.normalize(audio_embeds, p=2, dim=1) if normalize else audio_embeds

    def get_face_embedding(self, face_windows: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(batch, 15, 48, 96) -> (batch, hidden_size), L2-normalised unless `normalize=False`."""
        self._check_face(face_windows)
        face_embeds = self.face_encoder(face_windows).flatten(1)  # (batch, hidden_size)
        return F.normalize(face_embeds, p=2, dim=1) if normalize else face_embeds

    def forward(
        self,
        face_windows: torch.Tensor | None = None,
        mel_chunks: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SyncNetOutput | tuple:
        """`labels`: (batch,) or (batch, 1), 1 for in-sync pairs and 0 for off-sync ones."""
        face_windows = _renamed_argument(face_windows, kwargs, "face_frames", "face_windows")
        if mel_chunks is None:
            raise TypeError("missing the required input mel_chunks")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if face_windows.shape[0] != mel_chunks.shape[0]:
            raise ValueError(f"face_windows and mel_chunks must have the same batch size, got "
                             f"{face_windows.shape[0]} and {mel_chunks.shape[0]}")
        face_embeds = self.get_face_embedding(face_windows)
        audio_embeds = self.get_audio_embedding(mel_chunks)
        similarity = F.cosine_similarity(audio_embeds, face_embeds, dim=1)
        loss = cosine_loss(audio_embeds, face_embeds, labels) if labels is not None else None
        if not return_dict:
            output = (audio_embeds, face_embeds, similarity)
            return (loss,) + output if loss is not None else output
        return SyncNetOutput(loss=loss, audio_embeds=audio_embeds, face_embeds=face_embeds,
                             cosine_similarity=similarity)


__all__ = ["SyncNetConvBlock", "SyncNetOutput", "SyncNetPreTrainedModel", "SyncNetModel", "cosine_loss"]
