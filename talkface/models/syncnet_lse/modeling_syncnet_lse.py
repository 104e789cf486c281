"""The Chung & Zisserman SyncNet (syncnet_python `SyncNetModel.S`), used to score lip sync (LSE-C / LSE-D).

Two streams map 0.2 s of audio and 0.2 s of video to embeddings of the same size; in-sync pairs are close in
Euclidean distance. The embeddings are not normalised. Module names and indices follow the original
(`netcnnaud`, `netfcaud`, `netcnnlip`, `netfclip`), so the released `syncnet_v2.model` state dict loads with its
own key names.

Inputs follow the original recipe exactly: the audio stream reads MFCCs of the int16-scaled signal
(batch, 1, 13, 20); the video stream reads BGR frames in 0..255 without normalisation (batch, 3, frames, 224, 224).
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from ...hub.mixin import TalkFaceHubMixin
from .configuration_syncnet_lse import SyncNetLSEConfig


@dataclass
class SyncNetLSEOutput(ModelOutput):
    """
    Args:
        video_embeddings (`torch.FloatTensor` of shape `(batch, windows, embedding_size)`):
            One embedding per window of `video_window` consecutive frames (windows slide by one frame).
        audio_embeddings (`torch.FloatTensor` of shape `(batch, embedding_size)`):
            One embedding per MFCC window.
        distances (`torch.FloatTensor` of shape `(batch, windows)`):
            `||video - audio + 1e-6||` (the quantity syncnet_python compares) when both inputs are given with the
            same batch size and the video holds exactly one window; `None` otherwise.
    """

    video_embeddings: torch.FloatTensor | None = None
    audio_embeddings: torch.FloatTensor | None = None
    distances: torch.FloatTensor | None = None


# torch.nn.functional.pairwise_distance adds this to the difference before the norm; the reference uses it.
PAIRWISE_DISTANCE_EPS = 1e-6


def _audio_stream(config: SyncNetLSEConfig) -> nn.Sequential:
    """`netcnnaud`: 2-D convolutions over (mfcc, time); indices match the original state dict."""
    c1, c2, c3, c4, c5, c6 = config.audio_channels
    eps = config.batch_norm_eps
    return nn.Sequential(
        nn.Conv2d(1, c1, kernel_size=3, padding=1),  # 0
        nn.BatchNorm2d(c1, eps=eps),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=1, stride=1),  # 3: a no-op kept so that the indices match the original
        nn.Conv2d(c1, c2, kernel_size=3, padding=1),  # 4
        nn.BatchNorm2d(c2, eps=eps),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=(1, 2)),  # 7: halves time only
        nn.Conv2d(c2, c3, kernel_size=3, padding=1),  # 8
        nn.BatchNorm2d(c3, eps=eps),
        nn.ReLU(inplace=True),
        nn.Conv2d(c3, c4, kernel_size=3, padding=1),  # 11
        nn.BatchNorm2d(c4, eps=eps),
        nn.ReLU(inplace=True),
        nn.Conv2d(c4, c5, kernel_size=3, padding=1),  # 14
        nn.BatchNorm2d(c5, eps=eps),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),  # 17
        nn.Conv2d(c5, c6, kernel_size=config.audio_final_kernel),  # 18: collapses the map to 1 x 1
        nn.BatchNorm2d(c6, eps=eps),
        nn.ReLU(inplace=True),
    )


def _video_stream(config: SyncNetLSEConfig) -> nn.Sequential:
    """`netcnnlip`: 3-D convolutions; only the first one mixes time (kernel `video_window`, no temporal padding)."""
    c1, c2, c3, c4, c5, c6 = config.video_channels
    eps = config.batch_norm_eps
    final = config.video_final_kernel
    return nn.Sequential(
        nn.Conv3d(config.num_channels, c1, kernel_size=(config.video_window, 7, 7), stride=(1, 2, 2)),  # 0
        nn.BatchNorm3d(c1, eps=eps),
        nn.ReLU(inplace=True),
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
        nn.Conv3d(c1, c2, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),  # 4
        nn.BatchNorm3d(c2, eps=eps),
        nn.ReLU(inplace=True),
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        nn.Conv3d(c2, c3, kernel_size=(1, 3, 3), padding=(0, 1, 1)),  # 8
        nn.BatchNorm3d(c3, eps=eps),
        nn.ReLU(inplace=True),
        nn.Conv3d(c3, c4, kernel_size=(1, 3, 3), padding=(0, 1, 1)),  # 11
        nn.BatchNorm3d(c4, eps=eps),
        nn.ReLU(inplace=True),
        nn.Conv3d(c4, c5, kernel_size=(1, 3, 3), padding=(0, 1, 1)),  # 14
        nn.BatchNorm3d(c5, eps=eps),
        nn.ReLU(inplace=True),
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
        nn.Conv3d(c5, c6, kernel_size=(1, final, final)),  # 18: collapses the map to 1 x 1
        nn.BatchNorm3d(c6, eps=eps),
        nn.ReLU(inplace=True),
    )


def _embedding_head(config: SyncNetLSEConfig, in_features: int) -> nn.Sequential:
    """`netfcaud` / `netfclip`: Linear, BatchNorm1d, ReLU, Linear (no activation on the embedding)."""
    return nn.Sequential(
        nn.Linear(in_features, config.fc_hidden_size),
        nn.BatchNorm1d(config.fc_hidden_size, eps=config.batch_norm_eps),
        nn.ReLU(inplace=True),
        nn.Linear(config.fc_hidden_size, config.embedding_size),
    )


class SyncNetLSEPreTrainedModel(TalkFaceHubMixin, PreTrainedModel):
    config_class = SyncNetLSEConfig
    base_model_prefix = "syncnet_lse"
    main_input_name = "pixel_values"

    def _init_weights(self, module):
        if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            if module.running_mean is not None:
                module.running_mean.zero_()
                module.running_var.fill_(1.0)


class SyncNetLSEModel(SyncNetLSEPreTrainedModel):
    """SyncNet audio and video streams. `get_audio_embeddings` is the original `forward_aud`;
    `get_video_embeddings` is `forward_lip` applied to every window of a longer clip at once."""

    @classmethod
    def card_variants(cls):
        # the rows of the model card's parameter table (talkface.hub.cards)
        return [("SyncNet `syncnet_v2.model`", SyncNetLSEConfig())]

    def __init__(self, config: SyncNetLSEConfig):
        super().__init__(config)
        # registration order follows the original, so state-dict keys come out in the same order
        self.netcnnaud = _audio_stream(config)
        self.netfcaud = _embedding_head(config, config.audio_channels[-1])
        self.netfclip = _embedding_head(config, config.video_channels[-1])
        self.netcnnlip = _video_stream(config)
        self.post_init()

    def get_audio_embeddings(self, input_features: torch.Tensor) -> torch.Tensor:
        """MFCC windows (batch, 1, num_mfcc, audio_window) -> embeddings (batch, embedding_size)."""
        expected = (1, self.config.num_mfcc, self.config.audio_window)
        if input_features.dim() != 4 or tuple(input_features.shape[1:]) != expected:
            raise ValueError(f"input_features must have shape (batch, {expected}), got {tuple(input_features.shape)}")
        hidden_states = self.netcnnaud(input_features)  # (batch, channels, 1, 1)
        return self.netfcaud(hidden_states.flatten(1))

    def get_video_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Frames (batch, channels, frames, size, size), frames >= video_window -> (batch, windows, embedding_size).

        Window w covers frames w .. w + video_window - 1; with exactly `video_window` frames this is the
        original `forward_lip` (one window). Only the first convolution spans time, so running it over a longer
        clip gives every sliding window's embedding without stacking overlapping copies of the frames.
        """
        config = self.config
        if (
            pixel_values.dim() != 5
            or pixel_values.shape[1] != config.num_channels
            or pixel_values.shape[2] < config.video_window
            or tuple(pixel_values.shape[3:]) != (config.image_size, config.image_size)
        ):
            raise ValueError(
                f"pixel_values must have shape (batch, {config.num_channels}, frames >= {config.video_window}, "
                f"{config.image_size}, {config.image_size}), got {tuple(pixel_values.shape)}"
            )
        hidden_states = self.netcnnlip(pixel_values)  # (batch, channels, windows, 1, 1)
        batch, channels, windows = hidden_states.shape[:3]
        hidden_states = hidden_states.reshape(batch, channels, windows).transpose(1, 2)  # (batch, windows, channels)
        embeddings = self.netfclip(hidden_states.reshape(batch * windows, channels))
        return embeddings.reshape(batch, windows, -1)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ):
        if pixel_values is None and input_features is None:
            raise ValueError("pass pixel_values, input_features or both")
        return_dict = return_dict if return_dict is not None else self.config.use_return_dict
        video_embeddings = self.get_video_embeddings(pixel_values) if pixel_values is not None else None
        audio_embeddings = self.get_audio_embeddings(input_features) if input_features is not None else None
        distances = None
        one_window_each = (
            video_embeddings is not None
            and audio_embeddings is not None
            and video_embeddings.shape[1] == 1
            and video_embeddings.shape[0] == audio_embeddings.shape[0]
        )
        if one_window_each:
            difference = video_embeddings[:, 0] - audio_embeddings + PAIRWISE_DISTANCE_EPS
            distances = torch.linalg.vector_norm(difference, dim=-1)[:, None]  # (batch, windows=1)
        if not return_dict:
            return tuple(t for t in (video_embeddings, audio_embeddings, distances) if t is not None)
        return SyncNetLSEOutput(
            video_embeddings=video_embeddings, audio_embeddings=audio_embeddings, distances=distances
        )
