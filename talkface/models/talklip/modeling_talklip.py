"""TalkLip generator as a transformers model.

Architecture of Wang et al., "Seeing What You Said: Talking Face Generation Guided by a Lip Reading Expert"
(CVPR 2023), github.com/Sxjdwang/TalkLip (models/talklip.py, models/learn_sync.py). Written from the paper and the
released state-dict layout. The face encoder/decoder are Wav2Lip's, with Wav2Lip's module names
(`face_encoder_blocks.N.M.conv_block.0`), so TalkLip's face keys load unchanged; the building blocks are copied from
`talkface.models.wav2lip` (not imported) as the folder-per-model layout asks.

The global audio encoder *is* an AV-HuBERT encoder (a whole `AVHubertModel`, video front end included, as in the
released files), so it is composed from `talkface.models.avhubert` rather than copied: 1000 lines of transformer
would otherwise drift apart from the lip reader that the training losses use.

Data flow (global encoder; B utterances of T frames at 25 fps, N generated faces):

    audio_features (B, 104, T) --AV-HuBERT, audio only, final layer + final LayerNorm--> (B, T, D)
        -> flatten (B * T, D) -> pick rows `audio_frame_indices` (N,) -> audio_map Linear(D, 512) -> (N, 512, 1, 1)
    masked_and_reference_faces (N, 6, 96, 96) --face encoder--> skip maps; decoder from the audio embedding
        -> (N, 3, 96, 96)

Images are BGR in [0, 1] (as in Wav2Lip and TalkLip).
"""

import contextlib
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
from ..avhubert.modeling_avhubert import AVHubertModel
from .configuration_talklip import TalkLipConfig

# The bottleneck turns the 3x3 maps of the face and audio encoders into 1x1 with a valid 3x3 convolution.
BOTTLENECK_KERNEL_SIZE = 3


# --- building blocks ----------------------------------------------------------------------------------------------
# Copied from talkface.networks.wav2lip.Wav2LipConvBlock with Wav2Lip->TalkLip
class TalkLipConvBlock(nn.Module):
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


# Copied from talkface.networks.wav2lip.Wav2LipTransposedConvBlock with Wav2Lip->TalkLip
class TalkLipTransposedConvBlock(nn.Module):
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


class TalkLipContrastiveHead(nn.Module):
    """The audio side of TalkLip's audio-visual contrastive loss (`sync_net` in the released checkpoints).

    normalize -> Linear(audio_feature_dim, projection_dim) -> normalize. The visual side (the lip reader's encoder
    features) is only normalised; see `talkface.training.losses.talklip.contrastive_sync_loss`.
    """

    def __init__(self, audio_feature_dim: int, projection_dim: int):
        super().__init__()
        self.audio_projection = nn.Linear(audio_feature_dim, projection_dim)

    def forward(self, audio_features: torch.Tensor) -> torch.Tensor:
        """(N, audio_feature_dim) -> (N, projection_dim), unit length."""
        return F.normalize(self.audio_projection(F.normalize(audio_features, dim=-1)), dim=-1)


# Copied from talkface.models.wav2lip.modeling_wav2lip._init_conv_weights
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
class TalkLipModelOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): L1 reconstruction loss, when `target_faces` is given.
        generated_faces (`torch.FloatTensor` of shape `(N, 3, image_size, image_size)`): BGR in [0, 1].
        audio_embeds (`torch.FloatTensor` of shape `(N, hidden_size, 1, 1)`): the audio embedding the decoder
            starts from.
        audio_hidden_states (`torch.FloatTensor` of shape `(B, T, D)`, *optional*): the global encoder's output
            for every frame of every utterance (global encoder, when it ran).
        picked_audio_features (`torch.FloatTensor` of shape `(N, audio_feature_dim)`, *optional*): the audio
            feature of each generated face before `audio_map` (the audio input of the contrastive loss); for the
            local encoder, the flattened audio embedding.
        contrastive_audio_embeds (`torch.FloatTensor` of shape `(N, contrastive_projection_dim)`, *optional*):
            `contrastive_head(picked_audio_features)`, unit length, when the model has the head (computed inside
            forward so that distributed training sees the head used by the model).
    """

    loss: torch.FloatTensor | None = None
    generated_faces: torch.FloatTensor | None = None
    audio_embeds: torch.FloatTensor | None = None
    audio_hidden_states: torch.FloatTensor | None = None
    picked_audio_features: torch.FloatTensor | None = None
    contrastive_audio_embeds: torch.FloatTensor | None = None


# --- model --------------------------------------------------------------------------------------------------------
class TalkLipPreTrainedModel(TalkFaceHubMixin, PreTrainedModel):
    config_class = TalkLipConfig
    base_model_prefix = "talklip"
    main_input_name = "masked_and_reference_faces"

    def _init_weights(self, module):
        # the AV-HuBERT encoder is a sub-model: transformers dispatches its own _init_weights to it
        _init_conv_weights(module)
        if isinstance(module, nn.Linear):
            # nn.Linear's default initialisation, as TalkLip's audio_map and sync head were created
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1 / math.sqrt(module.in_features) if module.in_features > 0 else 0
                init.uniform_(module.bias, -bound, bound)


def flatten_frame_indices(batch_index: torch.Tensor, frame_index: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(utterance, frame) pairs -> rows of the flattened (B * T, D) audio sequence: `batch_index * T + frame_index`."""
    return batch_index.long() * num_frames + frame_index.long()


class TalkLipModel(TalkLipPreTrainedModel):
    """TalkLip generator: (masked frame + reference frame, audio) -> generated face.

    Inputs:
        masked_and_reference_faces: (N, 6, image_size, image_size) BGR in [0, 1]; channels 0-2 the target frame
            with its lower half zeroed, channels 3-5 the identity reference frame. (Called `face_frames` before;
            that keyword still works, with a warning.)
        Global encoder: `audio_features` (B, 104, T) AV-HuBERT audio features of whole utterances (see
            `AVHubertFeatureExtractor`), `audio_frame_indices` (N,) the row of each face in the flattened
            (B * T) sequence (`flatten_frame_indices`; with B = 1 simply the frame numbers), and an optional
            `padding_mask` (B, T), True at padding.
        Local encoder: `mel_chunks` (N, 1, num_mel_bins, mel_step_size), as for Wav2Lip.
        Either: `audio_embeds` (N, hidden_size) or (N, hidden_size, 1, 1), precomputed (skips the audio encoder).

    The global encoder only receives gradients while `set_audio_encoder_finetuning(True)` is on, and then only in
    its last `config.trainable_audio_layers` layers (their `requires_grad` is set at construction; everything else
    in the encoder is frozen). Otherwise it runs under `torch.no_grad()`, as TalkLip does before its first stage.
    """

    @classmethod
    def card_variants(cls):
        # the rows of the model card's parameter table (talkface.hub.cards)
        return [
            ("global audio encoder (AV-HuBERT Base)", TalkLipConfig()),
            ("local mel audio encoder", TalkLipConfig(audio_encoder_type="local")),
        ]

    def __init__(self, config: TalkLipConfig):
        super().__init__(config)
        bn = {"batch_norm_eps": config.batch_norm_eps, "batch_norm_momentum": config.batch_norm_momentum}
        kernel = config.kernel_size
        same = kernel // 2

        def stage(in_channels, out_channels, first_kernel, stride, num_residual):
            layers = [TalkLipConvBlock(in_channels, out_channels, first_kernel, stride, first_kernel // 2, **bn)]
            layers += [TalkLipConvBlock(out_channels, out_channels, kernel, 1, same, residual=True, **bn)
                       for _ in range(num_residual)]
            return layers

        def bottleneck(in_channels):
            # valid 3x3 conv: 3x3 -> 1x1, then a 1x1 conv
            return [TalkLipConvBlock(in_channels, config.hidden_size, BOTTLENECK_KERNEL_SIZE, 1, 0, **bn),
                    TalkLipConvBlock(config.hidden_size, config.hidden_size, 1, 1, 0, **bn)]

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

        if config.is_global:
            self.audio_encoder = AVHubertModel(config.avhubert_config)
            self.audio_map = nn.Linear(config.avhubert_config.encoder_embed_dim, config.hidden_size)
        else:
            # Wav2Lip's local encoder: one flat Sequential, keys audio_encoder.N.conv_block.*
            audio_layers = []
            in_channels = 1
            for out_channels, stride, num_residual in zip(
                config.audio_encoder_channels, config.audio_encoder_strides, config.audio_encoder_residual_layers
            ):
                audio_layers += stage(in_channels, out_channels, kernel, tuple(stride), num_residual)
                in_channels = out_channels
            self.audio_encoder = nn.Sequential(*audio_layers, *bottleneck(in_channels))
            self.audio_map = None

        # decoder: starts from the audio embedding; after every block the face-encoder map of the same size is
        # concatenated, deepest first (bottleneck, then stages n-1 ... 0)
        skip_channels = list(config.face_encoder_channels) + [config.hidden_size]
        self.face_decoder_blocks = nn.ModuleList()
        first = [TalkLipConvBlock(config.hidden_size, config.hidden_size, 1, 1, 0, **bn)]
        first += [TalkLipConvBlock(config.hidden_size, config.hidden_size, kernel, 1, same, residual=True, **bn)
                  for _ in range(config.decoder_bottleneck_residual_layers)]
        self.face_decoder_blocks.append(nn.Sequential(*first))
        in_channels = config.hidden_size + skip_channels.pop()
        num_stages = config.num_face_encoder_stages
        for block_index, (out_channels, num_residual) in enumerate(
            zip(config.decoder_channels, config.decoder_residual_layers)
        ):
            if block_index == 0:
                # 1x1 -> 3x3: the transpose of the bottleneck's valid 3x3 conv
                upsample = TalkLipTransposedConvBlock(in_channels, out_channels, BOTTLENECK_KERNEL_SIZE, 1, 0, **bn)
            else:
                # undo the stride of the encoder stage whose input size we are returning to
                stride = config.face_encoder_strides[num_stages - block_index]
                upsample = TalkLipTransposedConvBlock(in_channels, out_channels, kernel, stride, same,
                                                      output_padding=stride - 1, **bn)
            layers = [upsample] + [
                TalkLipConvBlock(out_channels, out_channels, kernel, 1, same, residual=True, **bn)
                for _ in range(num_residual)
            ]
            self.face_decoder_blocks.append(nn.Sequential(*layers))
            in_channels = out_channels + skip_channels.pop()

        self.output_block = nn.Sequential(
            TalkLipConvBlock(in_channels, config.output_hidden_channels, kernel, 1, same, **bn),
            nn.Conv2d(config.output_hidden_channels, config.num_output_channels, kernel_size=1),
            nn.Sigmoid(),
        )
        if config.use_contrastive_head:
            self.contrastive_head = TalkLipContrastiveHead(config.audio_feature_dim,
                                                           config.contrastive_projection_dim)
        else:
            self.contrastive_head = None

        # runtime switch of the staged schedule (not part of the architecture, hence not in the config)
        self.audio_encoder_finetuning = False
        self.post_init()
        self.freeze_audio_encoder()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        model = super().from_pretrained(*args, **kwargs)
        # loading replaces the parameters (requires_grad=True again): restore the frozen audio encoder
        model.freeze_audio_encoder()
        return model

    # -- audio encoder freezing -------------------------------------------------------------------------------------

    def trainable_audio_encoder_parameters(self) -> list[nn.Parameter]:
        """The global encoder's parameters that fine-tuning updates: its last `trainable_audio_layers` layers."""
        if not self.config.is_global or self.config.trainable_audio_layers == 0:
            return []
        layers = self.audio_encoder.encoder.layers[-self.config.trainable_audio_layers:]
        return [p for layer in layers for p in layer.parameters()]

    def freeze_audio_encoder(self):
        """requires_grad=False on the global encoder except its last `trainable_audio_layers` layers.

        Called at construction; call it again after anything that resets `requires_grad` (e.g. `requires_grad_()`
        on the whole model). The local encoder is trained whole and is left alone.
        """
        if not self.config.is_global:
            return
        self.audio_encoder.requires_grad_(False)
        for parameter in self.trainable_audio_encoder_parameters():
            parameter.requires_grad_(True)

    def set_audio_encoder_finetuning(self, enabled: bool):
        """Turn fine-tuning of the global encoder's trainable layers on or off (TalkLip's first training stage)."""
        self.audio_encoder_finetuning = bool(enabled)

    # -- audio ------------------------------------------------------------------------------------------------------

    def encode_audio(self, audio_features: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Global encoder: (B, 104, T) -> (B, T, D), the final layer after the final LayerNorm (audio only)."""
        if not self.config.is_global:
            raise ValueError("encode_audio needs the global encoder; this TalkLip model uses the local (mel) one")
        # without fine-tuning the encoder is a fixed feature extractor: no graph, no activation memory
        context = contextlib.nullcontext() if self.audio_encoder_finetuning else torch.no_grad()
        with context:
            return self.audio_encoder(audio_features=audio_features, padding_mask=padding_mask,
                                      return_dict=True).last_hidden_state

    def project_audio(self, audio_features: torch.Tensor) -> torch.Tensor:
        """Picked global features (N, D) -> decoder audio embeddings (N, hidden_size): `audio_map`."""
        return self.audio_map(audio_features)

    def _check_faces(self, faces: torch.Tensor):
        config = self.config
        face_shape = (config.num_channels, config.image_size, config.image_size)
        if faces.dim() != 4 or tuple(faces.shape[1:]) != face_shape:
            raise ValueError(
                f"TalkLipModel expects masked_and_reference_faces (N, {config.num_channels}, {config.image_size}, "
                f"{config.image_size}) (masked target frame + reference frame, BGR in [0, 1]); got "
                f"{tuple(faces.shape)}"
            )

    def _audio_embedding(self, num_faces, mel_chunks, audio_features, audio_frame_indices, padding_mask):
        """(audio_embeds (N, hidden_size), audio_hidden_states or None, picked features (N, audio_feature_dim))."""
        config = self.config
        if config.is_global:
            if audio_features is None or audio_frame_indices is None:
                raise ValueError("the global TalkLip encoder needs audio_features (B, 104, T) and "
                                 "audio_frame_indices (N,); mel_chunks are for the local encoder")
            audio_hidden_states = self.encode_audio(audio_features, padding_mask)  # (B, T, D)
            batch, num_frames, width = audio_hidden_states.shape
            indices = audio_frame_indices.reshape(-1).long().to(audio_hidden_states.device)
            if indices.numel() != num_faces:
                raise ValueError(f"audio_frame_indices has {indices.numel()} entries for {num_faces} faces")
            if int(indices.min()) < 0 or int(indices.max()) >= batch * num_frames:
                raise ValueError(
                    f"audio_frame_indices must lie in [0, B * T) = [0, {batch * num_frames}) (row b * T + t of the "
                    f"flattened audio), got values in [{int(indices.min())}, {int(indices.max())}]"
                )
            picked = audio_hidden_states.reshape(batch * num_frames, width)[indices]  # (N, D)
            return self.project_audio(picked), audio_hidden_states, picked
        mel_shape = (1, config.num_mel_bins, config.mel_step_size)
        if mel_chunks is None or mel_chunks.dim() != 4 or tuple(mel_chunks.shape[1:]) != mel_shape \
                or mel_chunks.shape[0] != num_faces:
            got = None if mel_chunks is None else tuple(mel_chunks.shape)
            raise ValueError(f"the local TalkLip encoder needs mel_chunks (N={num_faces}, 1, {config.num_mel_bins}, "
                             f"{config.mel_step_size}); got {got}")
        embeds = self.audio_encoder(mel_chunks).reshape(num_faces, config.hidden_size)  # (N, hidden_size)
        return embeds, None, embeds

    # -- face -------------------------------------------------------------------------------------------------------

    def decode(self, masked_and_reference_faces: torch.Tensor, audio_embeds: torch.Tensor) -> torch.Tensor:
        """Masked + reference faces (N, 6, H, W) + audio embeddings (N, hidden_size[, 1, 1]) -> faces (N, 3, H, W)."""
        faces = masked_and_reference_faces
        self._check_faces(faces)
        num_faces = faces.shape[0]
        if audio_embeds.numel() != num_faces * self.config.hidden_size:
            raise ValueError(f"audio_embeds must hold {num_faces} x {self.config.hidden_size} values, got "
                             f"{tuple(audio_embeds.shape)}")
        skip_features = []
        hidden_states = faces
        for block in self.face_encoder_blocks:
            hidden_states = block(hidden_states)
            skip_features.append(hidden_states)

        hidden_states = audio_embeds.reshape(num_faces, self.config.hidden_size, 1, 1).to(faces.dtype)
        for block in self.face_decoder_blocks:
            hidden_states = block(hidden_states)
            hidden_states = torch.cat((hidden_states, skip_features.pop()), dim=1)
        return self.output_block(hidden_states)  # (N, 3, H, W)

    def forward(
        self,
        masked_and_reference_faces: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
        audio_frame_indices: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        mel_chunks: torch.Tensor | None = None,
        audio_embeds: torch.Tensor | None = None,
        target_faces: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> TalkLipModelOutput | tuple:
        faces = _renamed_argument(masked_and_reference_faces, kwargs, "face_frames", "masked_and_reference_faces")
        if kwargs:
            raise TypeError(f"TalkLipModel.forward got unexpected arguments {sorted(kwargs)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        self._check_faces(faces)
        num_faces = faces.shape[0]
        audio_hidden_states = picked = None
        if audio_embeds is None:
            audio_embeds, audio_hidden_states, picked = self._audio_embedding(
                num_faces, mel_chunks, audio_features, audio_frame_indices, padding_mask)
        generated_faces = self.decode(faces, audio_embeds)
        audio_embeds = audio_embeds.reshape(num_faces, self.config.hidden_size, 1, 1)

        contrastive = None
        if self.contrastive_head is not None and picked is not None:
            contrastive = self.contrastive_head(picked)

        loss = None
        if target_faces is not None:
            loss = F.l1_loss(generated_faces, target_faces)
        output = TalkLipModelOutput(loss=loss, generated_faces=generated_faces, audio_embeds=audio_embeds,
                                    audio_hidden_states=audio_hidden_states, picked_audio_features=picked,
                                    contrastive_audio_embeds=contrastive)
        return output if return_dict else output.to_tuple()


__all__ = [
    "TalkLipConvBlock",
    "TalkLipTransposedConvBlock",
    "TalkLipContrastiveHead",
    "TalkLipModelOutput",
    "TalkLipPreTrainedModel",
    "TalkLipModel",
    "flatten_frame_indices",
]
