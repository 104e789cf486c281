"""Configuration of the Wav2Lip lip-sync expert (`SyncNet_color`).

Defaults reproduce the released `lipsync_expert.pth` (github.com/Rudrabha/Wav2Lip, models/syncnet.py).
This is NOT the Chung & Zisserman SyncNet used for LSE-C/LSE-D metrics; that one is `syncnet_lse`.
"""

from transformers import PretrainedConfig


def _as_pair(value, name):
    """An int or a 2-sequence of ints -> tuple (height, width)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return tuple(value)
    raise ValueError(f"{name} entries must be an int or a pair of ints, got {value!r}")


def _conv_output_size(size, kernel_size, stride, padding):
    return (size + 2 * padding - kernel_size) // stride + 1


def _check_int_list(name, values, length=None, minimum=1):
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{name} must be a non-empty list, got {values!r}")
    if length is not None and len(values) != length:
        raise ValueError(f"{name} must have {length} entries (one per stage), got {len(values)}: {list(values)}")
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name} entries must be integers >= {minimum}, got {list(values)}")


class SyncNetConfig(PretrainedConfig):
    r"""Configuration of [`SyncNetModel`], the Wav2Lip lip-sync expert.

    It embeds `num_frames` consecutive face crops (lower halves, stacked on channels) and the mel window that covers
    them into `hidden_size`-d L2-normalised vectors whose cosine similarity is the probability of being in sync.
    Every conv is Conv2d -> BatchNorm -> (+input if residual) -> ReLU. Each encoder is a flat sequence of stages (a
    strided conv plus residual convs), then a valid 3x3 conv down to 1x1 and a 1x1 conv to `hidden_size`.

    Args:
        num_frames (`int`, defaults to 5): consecutive video frames per sample (0.2 s at 25 fps).
        num_channels (`int`, defaults to 3): channels per frame (BGR).
        image_size (`int`, defaults to 96): side of the face crop; the expert sees rows image_size // 2:, so the
            face input is (num_frames * num_channels, image_size // 2, image_size) = (15, 48, 96).
        num_mel_bins (`int`, defaults to 80) / mel_step_size (`int`, defaults to 16): the mel window (1, 80, 16).
        hidden_size (`int`, defaults to 512): embedding size.
        face_encoder_channels (`list[int]`, defaults to `[32, 64, 128, 256, 512, 512]`): channels of each face stage.
        face_encoder_kernel_sizes (`list[int]`, defaults to `[7, 5, 3, 3, 3, 3]`): kernel of each stage's first conv.
        face_encoder_strides (`list`, defaults to `[1, [1, 2], 2, 2, 2, 2]`): stride of each stage's first conv.
        face_encoder_paddings (`list[int]`, defaults to `[3, 1, 1, 1, 1, 1]`): padding of each stage's first conv (the
            5x5 conv is padded by 1 only: 48x96 -> 46x47). The map must end at 3x3 (46x47 -> 23x24 -> 12 -> 6 -> 3).
        face_encoder_residual_layers (`list[int]`, defaults to `[0, 2, 3, 2, 2, 0]`): residual convs per face stage.
        audio_encoder_channels (`list[int]`, defaults to `[32, 64, 128, 256]`): channels of each audio stage.
        audio_encoder_strides (`list`, defaults to `[[1, 1], [3, 1], [3, 3], [3, 2]]`): (mel, time) stride of each
            audio stage's first conv (80x16 -> 80x16 -> 27x16 -> 9x6 -> 3x3).
        audio_encoder_residual_layers (`list[int]`, defaults to `[2, 2, 2, 2]`): residual convs per audio stage.
        kernel_size (`int`, defaults to 3): kernel of residual and audio convolutions ("same" padding).
        batch_norm_eps (`float`, defaults to 1e-5) / batch_norm_momentum (`float`, defaults to 0.1): BatchNorm
            settings.
    """

    model_type = "syncnet"
    # `img_size` is this field's former name: old config.json files and `config.img_size` keep working
    attribute_map = {"img_size": "image_size"}

    def __init__(
        self,
        num_frames: int = 5,
        num_channels: int = 3,
        image_size: int = 96,
        num_mel_bins: int = 80,
        mel_step_size: int = 16,
        hidden_size: int = 512,
        face_encoder_channels=(32, 64, 128, 256, 512, 512),
        face_encoder_kernel_sizes=(7, 5, 3, 3, 3, 3),
        face_encoder_strides=(1, (1, 2), 2, 2, 2, 2),
        face_encoder_paddings=(3, 1, 1, 1, 1, 1),
        face_encoder_residual_layers=(0, 2, 3, 2, 2, 0),
        audio_encoder_channels=(32, 64, 128, 256),
        audio_encoder_strides=((1, 1), (3, 1), (3, 3), (3, 2)),
        audio_encoder_residual_layers=(2, 2, 2, 2),
        kernel_size: int = 3,
        batch_norm_eps: float = 1e-5,
        batch_norm_momentum: float = 0.1,
        **kwargs,
    ):
        image_size = kwargs.pop("img_size", image_size)  # the former name, in old config.json files
        self.num_frames = num_frames
        self.num_channels = num_channels
        self.image_size = image_size
        self.num_mel_bins = num_mel_bins
        self.mel_step_size = mel_step_size
        self.hidden_size = hidden_size
        self.face_encoder_channels = list(face_encoder_channels)
        self.face_encoder_kernel_sizes = list(face_encoder_kernel_sizes)
        self.face_encoder_strides = [list(_as_pair(s, "face_encoder_strides")) for s in face_encoder_strides]
        self.face_encoder_paddings = list(face_encoder_paddings)
        self.face_encoder_residual_layers = list(face_encoder_residual_layers)
        self.audio_encoder_channels = list(audio_encoder_channels)
        self.audio_encoder_strides = [list(_as_pair(s, "audio_encoder_strides")) for s in audio_encoder_strides]
        self.audio_encoder_residual_layers = list(audio_encoder_residual_layers)
        self.kernel_size = kernel_size
        self.batch_norm_eps = batch_norm_eps
        self.batch_norm_momentum = batch_norm_momentum
        super().__init__(**kwargs)
        self._validate()

    def _validate(self):
        for name in ("num_frames", "num_channels", "image_size", "num_mel_bins", "mel_step_size", "hidden_size",
                     "kernel_size"):
            _check_int_list(name, [getattr(self, name)])
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {self.kernel_size}")
        if self.image_size % 2:
            raise ValueError(f"image_size must be even (the lower half is used), got {self.image_size}")
        num_stages = len(self.face_encoder_channels)
        _check_int_list("face_encoder_channels", self.face_encoder_channels)
        _check_int_list("face_encoder_kernel_sizes", self.face_encoder_kernel_sizes, num_stages)
        _check_int_list("face_encoder_paddings", self.face_encoder_paddings, num_stages, minimum=0)
        _check_int_list("face_encoder_residual_layers", self.face_encoder_residual_layers, num_stages, minimum=0)
        if len(self.face_encoder_strides) != num_stages:
            raise ValueError(f"face_encoder_strides must have {num_stages} entries, got {self.face_encoder_strides}")
        height, width = self.face_input_size[1:]
        for kernel, (stride_h, stride_w), padding in zip(self.face_encoder_kernel_sizes, self.face_encoder_strides,
                                                         self.face_encoder_paddings):
            height = _conv_output_size(height, kernel, stride_h, padding)
            width = _conv_output_size(width, kernel, stride_w, padding)
        if (height, width) != (3, 3):
            raise ValueError(
                f"image_size={self.image_size} with face_encoder_strides={self.face_encoder_strides} and "
                f"face_encoder_paddings={self.face_encoder_paddings} gives a {height}x{width} face map, but it "
                "must be 3x3 before the valid 3x3 conv"
            )
        num_audio_stages = len(self.audio_encoder_channels)
        _check_int_list("audio_encoder_channels", self.audio_encoder_channels)
        _check_int_list("audio_encoder_residual_layers", self.audio_encoder_residual_layers, num_audio_stages,
                        minimum=0)
        if len(self.audio_encoder_strides) != num_audio_stages:
            raise ValueError(
                f"audio_encoder_strides must have {num_audio_stages} entries, got {self.audio_encoder_strides}"
            )
        height, width = self.num_mel_bins, self.mel_step_size
        for stride_h, stride_w in self.audio_encoder_strides:
            height = _conv_output_size(height, self.kernel_size, stride_h, self.kernel_size // 2)
            width = _conv_output_size(width, self.kernel_size, stride_w, self.kernel_size // 2)
        if (height, width) != (3, 3):
            raise ValueError(
                f"num_mel_bins={self.num_mel_bins}, mel_step_size={self.mel_step_size} with audio_encoder_strides="
                f"{self.audio_encoder_strides} give a {height}x{width} map, but it must be 3x3 before the valid "
                "3x3 conv"
            )

    @property
    def face_input_size(self) -> tuple[int, int, int]:
        """(channels, height, width) of the face input: (15, 48, 96) by default."""
        return (self.num_frames * self.num_channels, self.image_size // 2, self.image_size)


__all__ = ["SyncNetConfig"]
