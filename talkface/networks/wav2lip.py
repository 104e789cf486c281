"""The Wav2Lip generator's layers in plain PyTorch, and a loader for converted folders that needs no transformers.

Architecture of Prajwal et al., "A Lip Sync Expert Is All You Need for Speech to Lip Generation In The Wild"
(ACM MM 2020), github.com/Rudrabha/Wav2Lip (models/wav2lip.py, models/conv.py). Module names follow the original
checkpoint (`face_encoder_blocks.N.M.conv_block.0`), so the released weights load with an identity key mapping.

`Wav2LipLayers` builds the network's modules on an `nn.Module` and runs them; two classes use it:
* `talkface.models.wav2lip.Wav2LipModel` (a transformers `PreTrainedModel`: training, `save_pretrained`,
  `push_to_hub`, `AutoModel`);
* `Wav2LipNetwork` here, a plain `nn.Module` with the same modules under the same names, so the same state dict
  and the same outputs. `load_wav2lip_network(folder)` loads a folder written by `talkface convert wav2lip`
  (config.json + model.safetensors) into it: the generation path's start-up without transformers' import (issue 14).

Images are BGR in [0, 1] (the original code reads frames with OpenCV and never converts them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

# The bottleneck turns the 3x3 maps of the face and audio encoders into 1x1 with a valid 3x3 convolution.
BOTTLENECK_KERNEL_SIZE = 3

#: config.json keys that decide the generator's modules (every folder `save_pretrained` writes has them all)
ARCHITECTURE_KEYS = ("num_channels", "num_output_channels", "image_size", "num_mel_bins", "mel_step_size",
                     "hidden_size", "face_encoder_channels", "face_encoder_kernel_sizes", "face_encoder_strides",
                     "face_encoder_residual_layers", "audio_encoder_channels", "audio_encoder_strides",
                     "audio_encoder_residual_layers", "decoder_channels", "decoder_residual_layers",
                     "decoder_bottleneck_residual_layers", "output_hidden_channels", "kernel_size", "batch_norm_eps",
                     "batch_norm_momentum")


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


# --- the generator's layers ---------------------------------------------------------------------------------------
class Wav2LipLayers:
    """Mixin of an `nn.Module` that holds the Wav2Lip generator: `_build_wav2lip_layers(config)` in `__init__`
    (after `nn.Module.__init__`), then `_check_inputs` and `_generate` in `forward`.

    `config` is anything with the `ARCHITECTURE_KEYS` attributes (a `Wav2LipConfig`, or a `Wav2LipArchitecture`).
    """

    def _build_wav2lip_layers(self, config):
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
        num_stages = len(config.face_encoder_channels)
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

    def _wav2lip_forward(self, faces: torch.Tensor, mel_chunks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(generated_faces, audio_embeds) of checked inputs, 4-D or 5-D (see `Wav2LipModel`)."""
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
        return generated_faces, audio_embeds


# --- the plain network --------------------------------------------------------------------------------------------
class Wav2LipArchitecture:
    """The `ARCHITECTURE_KEYS` of a converted folder's config.json, as attributes (what `Wav2LipLayers` reads).

    `from_dict` returns None for a config it cannot take exactly as `Wav2LipConfig` would (another model type, a
    key missing, a malformed value): the caller then loads the folder through transformers instead.
    """

    model_type = "wav2lip"

    def __init__(self, **values):
        self.__dict__.update(values)

    @classmethod
    def from_dict(cls, config: dict) -> Wav2LipArchitecture | None:
        if not isinstance(config, dict) or config.get("model_type") != cls.model_type:
            return None
        config = dict(config)
        if "img_size" in config:  # the former name of image_size, in old config.json files
            config.setdefault("image_size", config.pop("img_size"))
        if any(key not in config for key in ARCHITECTURE_KEYS):
            return None
        values = {key: config[key] for key in ARCHITECTURE_KEYS}
        sizes = [value for key, value in values.items() if not key.startswith("batch_norm")]
        if not all(_all_ints(value) for value in sizes):
            return None
        return cls(**values)


def _all_ints(value) -> bool:
    """An int, or a list of ints / of lists of ints (config.json sizes, kernels and strides)."""
    if isinstance(value, list):
        return bool(value) and all(_all_ints(item) for item in value)
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class Wav2LipNetworkOutput:
    """What `Wav2LipNetwork` returns: the fields of `Wav2LipModelOutput` that inference uses."""

    generated_faces: torch.Tensor
    audio_embeds: torch.Tensor


class Wav2LipNetwork(Wav2LipLayers, nn.Module):
    """The Wav2Lip generator as a plain `nn.Module` (inference): same modules, state dict and outputs as
    `talkface.models.wav2lip.Wav2LipModel`, without transformers. Inputs as `Wav2LipModel`'s (4-D or 5-D)."""

    def __init__(self, config):
        nn.Module.__init__(self)
        self.config = config
        self._build_wav2lip_layers(config)

    def forward(self, masked_and_reference_faces: torch.Tensor, mel_chunks: torch.Tensor) -> Wav2LipNetworkOutput:
        self._check_inputs(masked_and_reference_faces, mel_chunks)
        generated_faces, audio_embeds = self._wav2lip_forward(masked_and_reference_faces, mel_chunks)
        return Wav2LipNetworkOutput(generated_faces=generated_faces, audio_embeds=audio_embeds)


WEIGHTS_NAME = "model.safetensors"


def load_wav2lip_network(folder) -> Wav2LipNetwork | None:
    """The generator of a local folder written by `save_pretrained` (config.json + one model.safetensors holding
    exactly the network's float32 tensors), in eval mode; None when the folder is anything else (sharded or
    non-float32 weights, a config this class does not read exactly, keys that do not match): load it with
    `Wav2LipModel.from_pretrained` then, which handles every case."""
    folder = Path(folder)
    config_file, weights_file = folder / "config.json", folder / WEIGHTS_NAME
    if not (config_file.is_file() and weights_file.is_file()):
        return None
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    architecture = Wav2LipArchitecture.from_dict(config)
    if architecture is None or config.get("architectures") not in (None, ["Wav2LipModel"]):
        return None
    if config.get("quantization_config") is not None:
        return None
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights_file))
    except Exception:  # noqa: BLE001  a damaged file: from_pretrained reports it with its own message
        return None
    if any(tensor.is_floating_point() and tensor.dtype != torch.float32 for tensor in state.values()):
        return None
    try:
        with torch.device("meta"):  # no memory and no random initialisation: every tensor comes from the file
            network = Wav2LipNetwork(architecture)
    except (TypeError, ValueError):
        return None
    expected = network.state_dict()
    if set(state) != set(expected) or any(state[key].shape != expected[key].shape for key in expected):
        return None
    network.load_state_dict(state, strict=True, assign=True)
    return network.eval()


__all__ = ["ARCHITECTURE_KEYS", "BOTTLENECK_KERNEL_SIZE", "Wav2LipArchitecture", "Wav2LipConvBlock", "Wav2LipLayers",
           "Wav2LipLeakyConvBlock", "Wav2LipNetwork", "Wav2LipNetworkOutput", "Wav2LipTransposedConvBlock",
           "load_wav2lip_network"]
