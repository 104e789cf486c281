"""AV-HuBERT in native PyTorch: the audio-visual encoder (the lip reader is in `modeling_avhubert_lip_reading.py`).

Written from the description of the original fairseq model (facebookresearch/av_hubert `hubert.py`, `resnet.py`,
`decoder.py` and the fairseq wav2vec2 `TransformerEncoder` they use). Module names follow the original checkpoints,
so converting one is a short key table (see `convert_avhubert_fairseq_checkpoint.py`).

Data flow of `AVHubertModel` (B = batch, T = video frames at 25 fps, D = encoder width):

    audio_features (B, 104, T) --Linear--> (B, D, T) --.
                                                       +-- concat (audio first) -> (B, T, 2D) -> LayerNorm(2D)
    video (B, 1, T, 88, 88) --3-D conv + ResNet-18--> (B, 512, T) --Linear--> (B, D, T) --'
        -> post_extract_proj (B, T, D) -> zero padded frames -> + conv positions -> pre-LN transformer layers
        -> final LayerNorm (only when all layers run, i.e. `output_layer=None`)

A missing modality is replaced by zeros of shape (B, D, T) *after* the other front end, exactly as the reference
`extract_finetune` does; the zeros still go through the 2D LayerNorm.
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
from .configuration_avhubert import AVHubertConfig


@dataclass
class AVHubertModelOutput(ModelOutput):
    """Output of [`AVHubertModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch, frames, hidden_size)`):
            Output of the last layer that ran: with `output_layer=None`, the last transformer layer followed by the
            final LayerNorm; with `output_layer=k`, the output of layer k (1-based) *without* the final LayerNorm.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            The encoder input (fused features + positional convolution) and the output of every layer that ran,
            none of them with the final LayerNorm: `hidden_states[k]` is the output of layer k.
        padding_mask (`torch.BoolTensor` of shape `(batch, frames)`, *optional*):
            True at padded frames (the input mask, passed through).
    """

    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    padding_mask: torch.BoolTensor | None = None



def _activation(name: str) -> nn.Module:
    # fairseq's "gelu" is the exact (erf) GELU, which is torch's default
    return nn.GELU() if name == "gelu" else nn.ReLU()


# ----------------------------------------------------------------------------------------------------------------
# Video front end: 3-D convolution stem + ResNet-18 trunk (lip-reading variant with PReLU), one embedding per frame
# ----------------------------------------------------------------------------------------------------------------


def _resnet_activation(relu_type: str, channels: int) -> nn.Module:
    return nn.PReLU(num_parameters=channels) if relu_type == "prelu" else nn.ReLU()


class AVHubertBasicBlock(nn.Module):
    """ResNet BasicBlock: two 3x3 convolutions with BatchNorm, the activation after each, a 1x1 shortcut when the
    shape changes. Names (`conv1`, `bn1`, `relu1`, ..., `downsample.0/1`) follow the original checkpoint."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, relu_type: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = _resnet_activation(relu_type, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = _resnet_activation(relu_type, out_channels)
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.downsample = None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        shortcut = hidden_states if self.downsample is None else self.downsample(hidden_states)
        hidden_states = self.relu1(self.bn1(self.conv1(hidden_states)))
        hidden_states = self.bn2(self.conv2(hidden_states))
        return self.relu2(hidden_states + shortcut)


class AVHubertResNetTrunk(nn.Module):
    """Four stages of BasicBlocks (`layer1` .. `layer4`, stride 1, 2, 2, 2) and a global average pool."""

    def __init__(self, config: AVHubertConfig):
        super().__init__()
        in_channels = config.video_frontend_channels
        for stage, (channels, num_blocks) in enumerate(zip(config.resnet_channels, config.resnet_blocks)):
            stride = 1 if stage == 0 else 2
            blocks = [AVHubertBasicBlock(in_channels, channels, stride, config.resnet_relu_type)]
            blocks += [
                AVHubertBasicBlock(channels, channels, 1, config.resnet_relu_type) for _ in range(num_blocks - 1)
            ]
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
            in_channels = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        # frames: (batch * time, channels, height, width)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            frames = stage(frames)
        return self.avgpool(frames).flatten(1)  # (batch * time, resnet_channels[-1])


class AVHubertResNetEncoder(nn.Module):
    """`frontend3D` (Conv3d 5x7x7 stride (1,2,2) + BN3d + PReLU + MaxPool (1,3,3)) then the 2-D trunk per frame."""

    def __init__(self, config: AVHubertConfig):
        super().__init__()
        channels = config.video_frontend_channels
        # "frontend3D" (camel case) and the Sequential indices are the original checkpoint's names
        self.frontend3D = nn.Sequential(
            nn.Conv3d(1, channels, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False),
            nn.BatchNorm3d(channels),
            _resnet_activation(config.resnet_relu_type, channels),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        self.trunk = AVHubertResNetTrunk(config)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        batch_size = video.shape[0]
        features = self.frontend3D(video)  # (batch, channels, time, height / 4, width / 4); time is preserved
        num_frames = features.shape[2]
        features = features.transpose(1, 2).flatten(0, 1)  # (batch * time, channels, height / 4, width / 4)
        features = self.trunk(features)  # (batch * time, resnet_channels[-1])
        return features.view(batch_size, num_frames, -1).transpose(1, 2)  # (batch, resnet_channels[-1], time)


class AVHubertVideoFrontEnd(nn.Module):
    """Video front end (`feature_extractor_video`): ResNet encoder then a linear map to the encoder width."""

    def __init__(self, config: AVHubertConfig):
        super().__init__()
        self.resnet = AVHubertResNetEncoder(config)
        self.proj = nn.Linear(config.video_embed_dim, config.encoder_embed_dim)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        features = self.resnet(video)  # (batch, video_embed_dim, time)
        return self.proj(features.transpose(1, 2)).transpose(1, 2)  # (batch, hidden_size, time)


class AVHubertAudioFrontEnd(nn.Module):
    """Audio front end (`feature_extractor_audio`): a linear map of the 104-dim stacked filterbank frames."""

    def __init__(self, config: AVHubertConfig):
        super().__init__()
        self.proj = nn.Linear(config.audio_feat_dim, config.encoder_embed_dim)

    def forward(self, audio_features: torch.Tensor) -> torch.Tensor:
        return self.proj(audio_features.transpose(1, 2)).transpose(1, 2)  # (batch, hidden_size, time)


# ----------------------------------------------------------------------------------------------------------------
# Transformer encoder (fairseq wav2vec2 TransformerEncoder layout)
# ----------------------------------------------------------------------------------------------------------------


class AVHubertPositionalConvEmbedding(nn.Module):
    """Relative positions from a grouped 1-D convolution over time, then GELU.

    The original convolution is weight-normed (`weight_g`, `weight_v`, norm over dims 0 and 1); converted
    checkpoints hold the folded kernel `g * v / ||v||` as a plain weight, which gives the same output.
    With an even kernel, padding k/2 on both sides yields one frame too many: the last one is dropped ("SamePad").
    """

    def __init__(self, config: AVHubertConfig):
        super().__init__()
        self.conv = nn.Conv1d(
            config.encoder_embed_dim,
            config.encoder_embed_dim,
            kernel_size=config.conv_pos,
            padding=config.conv_pos // 2,
            groups=config.conv_pos_groups,
        )
        self.num_frames_to_trim = 1 if config.conv_pos % 2 == 0 else 0
        self.activation = nn.GELU()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        positions = self.conv(hidden_states.transpose(1, 2))  # (batch, hidden_size, time + 1 for even kernels)
        if self.num_frames_to_trim:
            positions = positions[:, :, : -self.num_frames_to_trim]
        return self.activation(positions).transpose(1, 2)  # (batch, time, hidden_size)


class AVHubertAttention(nn.Module):
    """Multi-head attention with fairseq's parameter names (`q_proj`, `k_proj`, `v_proj`, `out_proj`).

    Used as encoder self-attention (key padding mask), decoder causal self-attention (with a key/value cache for
    incremental decoding) and decoder cross-attention (keys and values computed once from the encoder output).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float, key_value_dim: int | None = None):
        super().__init__()
        key_value_dim = key_value_dim or embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(key_value_dim, embed_dim)
        self.v_proj = nn.Linear(key_value_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def _split_heads(self, states: torch.Tensor) -> torch.Tensor:
        batch_size, length, _ = states.shape
        return states.view(batch_size, length, self.num_heads, self.head_dim).transpose(1, 2)  # (B, heads, L, hd)

    def project_key_value(self, key_value_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of `key_value_states`, each (batch, heads, length, head_dim)."""
        return self._split_heads(self.k_proj(key_value_states)), self._split_heads(self.v_proj(key_value_states))

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        causal: bool = False,
        past_key_value: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Attend from `hidden_states` (batch, query_length, dim).

        Self-attention when `key_value_states` is None; then `past_key_value` holds the keys/values of earlier
        positions and the new ones are appended. For cross-attention, `past_key_value` holds the projected encoder
        keys/values and `key_value_states` is only read when it is None. `key_padding_mask` is True at keys to
        ignore. Returns the attended states and the (keys, values) to cache.
        """
        batch_size, query_length, embed_dim = hidden_states.shape
        query = self._split_heads(self.q_proj(hidden_states))
        if key_value_states is not None:
            key, value = past_key_value if past_key_value is not None else self.project_key_value(key_value_states)
        else:
            key, value = self.project_key_value(hidden_states)
            if past_key_value is not None:
                key = torch.cat([past_key_value[0], key], dim=2)
                value = torch.cat([past_key_value[1], value], dim=2)
        key_length = key.shape[2]

        allowed = None  # boolean (batch or 1, 1, query_length, key_length), True where attention is allowed
        if key_padding_mask is not None:
            allowed = ~key_padding_mask[:, None, None, :].to(torch.bool)
        if causal and query_length > 1:
            # query i sits at absolute position (key_length - query_length + i) and sees keys up to it
            offset = key_length - query_length
            future = torch.ones(query_length, key_length, dtype=torch.bool, device=query.device).triu(offset + 1)
            allowed = ~future if allowed is None else allowed & ~future
        attended = F.scaled_dot_product_attention(
            query, key, value, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
        )  # (batch, heads, query_length, head_dim)
        attended = attended.transpose(1, 2).reshape(batch_size, query_length, embed_dim)
        return self.out_proj(attended), (key, value)


class AVHubertEncoderLayer(nn.Module):
    """Transformer encoder layer (fairseq `TransformerSentenceEncoderLayer`), pre-LN when `layer_norm_first`."""

    def __init__(self, config: AVHubertConfig):
        super().__init__()
        dim = config.encoder_embed_dim
        self.layer_norm_first = config.layer_norm_first
        self.self_attn = AVHubertAttention(dim, config.encoder_attention_heads, config.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(dim, config.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.activation = _activation(config.activation_fn)
        self.dropout = nn.Dropout(config.dropout)
        self.activation_dropout = nn.Dropout(config.activation_dropout)

    def _feed_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.activation_dropout(self.activation(self.fc1(hidden_states)))
        return self.dropout(self.fc2(hidden_states))

    def forward(self, hidden_states: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.layer_norm_first:
            attended, _ = self.self_attn(self.self_attn_layer_norm(hidden_states), key_padding_mask=padding_mask)
            hidden_states = hidden_states + self.dropout(attended)
            return hidden_states + self._feed_forward(self.final_layer_norm(hidden_states))
        attended, _ = self.self_attn(hidden_states, key_padding_mask=padding_mask)
        hidden_states = self.self_attn_layer_norm(hidden_states + self.dropout(attended))
        return self.final_layer_norm(hidden_states + self._feed_forward(hidden_states))


class AVHubertTransformerEncoder(nn.Module):
    """Convolutional positions + transformer layers + final LayerNorm (`encoder.*` in the checkpoints)."""

    def __init__(self, config: AVHubertConfig):
        super().__init__()
        self.layer_norm_first = config.layer_norm_first
        self.layerdrop = config.encoder_layerdrop
        self.pos_conv = AVHubertPositionalConvEmbedding(config)
        self.layers = nn.ModuleList([AVHubertEncoderLayer(config) for _ in range(config.encoder_layers)])
        self.layer_norm = nn.LayerNorm(config.encoder_embed_dim, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        output_layer: int | None = None,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        if padding_mask is not None:
            # padded frames are zeroed so that they add nothing to their neighbours' convolutional positions
            hidden_states = hidden_states.masked_fill(padding_mask[..., None], 0.0)
        hidden_states = hidden_states + self.pos_conv(hidden_states)
        if not self.layer_norm_first:
            hidden_states = self.layer_norm(hidden_states)
        hidden_states = self.dropout(hidden_states)

        all_hidden_states = (hidden_states,) if output_hidden_states else None
        num_layers = len(self.layers) if output_layer is None else output_layer
        for layer in self.layers[:num_layers]:
            skip = self.training and self.layerdrop > 0 and torch.rand(()).item() < self.layerdrop
            if not skip:
                hidden_states = layer(hidden_states, padding_mask)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)

        # The final LayerNorm belongs to the full stack: an intermediate layer's output is returned without it.
        if self.layer_norm_first and output_layer is None:
            hidden_states = self.layer_norm(hidden_states)
        return hidden_states, all_hidden_states


# ----------------------------------------------------------------------------------------------------------------
# Pretrained model base class and the encoder model
# ----------------------------------------------------------------------------------------------------------------


class AVHubertPreTrainedModel(TalkFaceHubMixin, PreTrainedModel):
    config_class = AVHubertConfig
    base_model_prefix = "avhubert"
    main_input_name = "video"
    _no_split_modules = ["AVHubertEncoderLayer", "AVHubertDecoderLayer"]

    @torch.no_grad()
    def _init_weights(self, module):
        """Fresh-model initialisation (only used for parameters a checkpoint does not provide)."""
        if isinstance(module, AVHubertPositionalConvEmbedding):
            # wav2vec2 initialises the positional convolution with std sqrt(4 / (kernel * channels))
            std = math.sqrt(4.0 / (module.conv.kernel_size[0] * module.conv.in_channels))
            init.normal_(module.conv.weight, mean=0.0, std=std)
            init.zeros_(module.conv.bias)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=0.02)  # BERT-style init as in fairseq
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.Conv2d, nn.Conv3d)):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=module.embedding_dim**-0.5)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d, nn.BatchNorm3d)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            if getattr(module, "running_mean", None) is not None:
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)
        elif isinstance(module, nn.PReLU):
            init.constant_(module.weight, 0.25)
        elif isinstance(module, AVHubertModel):
            if module.mask_emb is not None:
                init.uniform_(module.mask_emb)
            if module.label_embs_concat is not None:
                init.uniform_(module.label_embs_concat)


class AVHubertModel(AVHubertPreTrainedModel):
    """The AV-HuBERT encoder: audio and/or video in, one contextual feature per video frame out.

    Inputs (both at the video frame rate, 25 fps):
      * `audio_features` (batch, 104, frames): stacked, per-frame normalised log filterbanks
        (see `AVHubertFeatureExtractor`);
      * `video` (batch, 1, frames, 88, 88): grayscale mouth crops normalised with mean 0.421 / std 0.165
        (see `normalize_mouth_frames`).

    Either may be None (the reference's zero placeholder is used for the missing one). The model is differentiable
    with respect to both inputs, so it can serve frozen (`model.eval().requires_grad_(False)`) inside a loss.
    """

    @classmethod
    def card_variants(cls):
        # the rows of the model card's parameter table (talkface.hub.cards)
        return [
            ("Base, pretrained encoder", AVHubertConfig.base()),
            ("Large, pretrained encoder", AVHubertConfig.large()),
        ]

    def __init__(self, config: AVHubertConfig):
        super().__init__(config)
        self.feature_extractor_audio = AVHubertAudioFrontEnd(config)
        self.feature_extractor_video = AVHubertVideoFrontEnd(config)
        self.layer_norm = nn.LayerNorm(config.fused_feature_dim, eps=config.layer_norm_eps)
        if config.fused_feature_dim != config.encoder_embed_dim:
            self.post_extract_proj = nn.Linear(config.fused_feature_dim, config.encoder_embed_dim)
        else:
            self.post_extract_proj = None
        self.dropout_input = nn.Dropout(config.dropout_input)
        self.encoder = AVHubertTransformerEncoder(config)

        # Pretraining-only parameters, kept so that checkpoints convert back and forth without loss.
        mask_dim = config.audio_feat_dim if config.masking_type == "input" else config.encoder_embed_dim
        self.mask_emb = nn.Parameter(torch.empty(mask_dim)) if config.use_mask_embedding else None
        if config.num_label_embeddings:
            self.label_embs_concat = nn.Parameter(torch.empty(config.num_label_embeddings, config.final_dim))
        else:
            self.label_embs_concat = None
        self.final_proj = nn.Linear(config.encoder_embed_dim, config.final_dim) if config.use_final_proj else None
        self.post_init()

    # -- front ends -------------------------------------------------------------------------------------------------

    def forward_audio_frontend(self, audio_features: torch.Tensor) -> torch.Tensor:
        """(batch, audio_feat_dim, frames) -> (batch, hidden_size, frames): the audio SubModel output."""
        return self.feature_extractor_audio(audio_features)

    def forward_video_frontend(self, video: torch.Tensor) -> torch.Tensor:
        """(batch, 1, frames, H, W) -> (batch, hidden_size, frames): the video SubModel output."""
        return self.feature_extractor_video(video)

    def fuse_features(self, audio_embeddings: torch.Tensor, video_embeddings: torch.Tensor) -> torch.Tensor:
        """Fuse front-end outputs (batch, hidden_size, frames) into encoder inputs (batch, frames, hidden_size)."""
        if self.config.modality_fuse == "concat":
            # audio first: (batch, 2 * hidden_size, frames)
            fused = torch.cat([audio_embeddings, video_embeddings], dim=1)
        else:
            fused = audio_embeddings + video_embeddings
        fused = self.layer_norm(fused.transpose(1, 2))  # (batch, frames, fused_feature_dim)
        if self.post_extract_proj is not None:
            fused = self.post_extract_proj(fused)
        return self.dropout_input(fused)

    # -- checks -----------------------------------------------------------------------------------------------------

    def _check_inputs(self, audio_features, video, padding_mask, output_layer) -> tuple[int, int]:
        if audio_features is None and video is None:
            raise ValueError("AVHubertModel needs audio_features, video, or both; got neither")
        batch_size = num_frames = None
        if audio_features is not None:
            if audio_features.dim() != 3 or audio_features.shape[1] != self.config.audio_feat_dim:
                raise ValueError(
                    f"audio_features must have shape (batch, {self.config.audio_feat_dim}, frames), got "
                    f"{tuple(audio_features.shape)}; build them with AVHubertFeatureExtractor"
                )
            batch_size, num_frames = audio_features.shape[0], audio_features.shape[2]
        if video is not None:
            if video.dim() != 5 or video.shape[1] != 1:
                raise ValueError(
                    f"video must have shape (batch, 1, frames, height, width) of grayscale mouth crops, got "
                    f"{tuple(video.shape)}; add the channel axis with video[:, None]"
                )
            if batch_size is not None and (video.shape[0], video.shape[2]) != (batch_size, num_frames):
                raise ValueError(
                    f"audio_features cover {batch_size} x {num_frames} (batch x frames) but video covers "
                    f"{video.shape[0]} x {video.shape[2]}; align the audio features to the video length first"
                )
            batch_size, num_frames = video.shape[0], video.shape[2]
        if num_frames < 1:
            raise ValueError("the inputs have no frames; AVHubertModel needs at least one frame")
        if padding_mask is not None and tuple(padding_mask.shape) != (batch_size, num_frames):
            raise ValueError(
                f"padding_mask must have shape (batch, frames) = ({batch_size}, {num_frames}), got "
                f"{tuple(padding_mask.shape)}"
            )
        if output_layer is not None and not 1 <= output_layer <= self.config.encoder_layers:
            raise ValueError(
                f"output_layer must be None (last layer + final LayerNorm) or in 1..{self.config.encoder_layers}, "
                f"got {output_layer}"
            )
        return batch_size, num_frames

    # -- forward ----------------------------------------------------------------------------------------------------

    def forward(
        self,
        audio_features: torch.Tensor | None = None,
        video: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        output_layer: int | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> AVHubertModelOutput | tuple:
        """Encode audio features and/or mouth crops.

        Args:
            audio_features: (batch, audio_feat_dim, frames) or None.
            video: (batch, 1, frames, height, width) or None.
            padding_mask: (batch, frames) bool, True at padded frames; padded frames are zeroed before the
                positional convolution and ignored as attention keys.
            output_layer: None for the full stack with the final LayerNorm (the reference default), or k in
                1..encoder_layers for the output of layer k without the final LayerNorm (reference semantics).
            output_hidden_states: also return the per-layer states.
        """
        if kwargs:
            raise TypeError(f"AVHubertModel.forward got unexpected arguments {sorted(kwargs)}")
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        batch_size, num_frames = self._check_inputs(audio_features, video, padding_mask, output_layer)

        audio_embeddings = self.forward_audio_frontend(audio_features) if audio_features is not None else None
        video_embeddings = self.forward_video_frontend(video) if video is not None else None
        # The missing modality is a zero tensor of the front-end output shape, as in the reference.
        if audio_embeddings is None:
            audio_embeddings = video_embeddings.new_zeros(video_embeddings.shape)
        if video_embeddings is None:
            video_embeddings = audio_embeddings.new_zeros(audio_embeddings.shape)

        hidden_states = self.fuse_features(audio_embeddings, video_embeddings)  # (batch, frames, hidden_size)
        if padding_mask is not None:
            padding_mask = padding_mask.to(device=hidden_states.device, dtype=torch.bool)
        hidden_states, all_hidden_states = self.encoder(
            hidden_states, padding_mask, output_layer=output_layer, output_hidden_states=output_hidden_states
        )
        if not return_dict:
            return tuple(v for v in (hidden_states, all_hidden_states, padding_mask) if v is not None)
        return AVHubertModelOutput(
            last_hidden_state=hidden_states, hidden_states=all_hidden_states, padding_mask=padding_mask
        )

    def encode_audio(self, audio_features, padding_mask=None, output_layer=None) -> torch.Tensor:
        """Audio-only features (batch, frames, hidden_size): the video half is the zero placeholder."""
        output = self(audio_features=audio_features, padding_mask=padding_mask, output_layer=output_layer)
        return output.last_hidden_state

    def encode_video(self, video, padding_mask=None, output_layer=None) -> torch.Tensor:
        """Video-only features (batch, frames, hidden_size): the audio half is the zero placeholder."""
        return self(video=video, padding_mask=padding_mask, output_layer=output_layer).last_hidden_state


__all__ = ["AVHubertPreTrainedModel", "AVHubertModel", "AVHubertModelOutput"]
