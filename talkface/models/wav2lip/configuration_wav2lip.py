"""Configurations of the Wav2Lip generator and its visual-quality discriminator.

Defaults reproduce the released architecture (Prajwal et al., "A Lip Sync Expert Is All You Need for Speech to Lip
Generation In The Wild", ACM MM 2020; github.com/Rudrabha/Wav2Lip, models/wav2lip.py).
"""

from transformers import PretrainedConfig


def _as_pair(value, name):
    """An int or a 2-sequence of ints -> tuple (height, width)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return tuple(value)
    raise ValueError(f"{name} entries must be an int or a pair of ints, got {value!r}")


def _check_positive_ints(name, values, length=None):
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{name} must be a non-empty list, got {values!r}")
    if length is not None and len(values) != length:
        raise ValueError(f"{name} must have {length} entries (one per stage), got {len(values)}: {list(values)}")
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} entries must be positive integers, got {list(values)}")


def _check_non_negative_ints(name, values, length):
    if not isinstance(values, (list, tuple)) or len(values) != length:
        raise ValueError(f"{name} must have {length} entries (one per stage), got {values!r}")
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} entries must be non-negative integers, got {list(values)}")


def conv_output_size(size, kernel_size, stride, padding):
    return (size + 2 * padding - kernel_size) // stride + 1


def audio_encoder_output_size(num_mel_bins, mel_step_size, strides, kernel_size=3):
    """Spatial size of the audio feature map after the strided "same" convolutions (before the valid 3x3)."""
    height, width = num_mel_bins, mel_step_size
    for stride in strides:
        stride_h, stride_w = _as_pair(stride, "audio_encoder_strides")
        height = conv_output_size(height, kernel_size, stride_h, kernel_size // 2)
        width = conv_output_size(width, kernel_size, stride_w, kernel_size // 2)
    return height, width


class Wav2LipConfig(PretrainedConfig):
    r"""Configuration of [`Wav2LipModel`], the Wav2Lip lip-sync generator.

    The network is a U-Net: a face encoder of `len(face_encoder_channels)` stages plus a bottleneck (valid 3x3 conv
    down to 1x1, then a 1x1 conv), an audio encoder that maps a (1, num_mel_bins, mel_step_size) mel window to a
    `hidden_size` vector, and a decoder that starts from the audio vector and upsamples back to the face size,
    concatenating the face-encoder feature map of the same size after every block. Every convolution is followed by
    BatchNorm and ReLU; "residual" convolutions keep the shape and add their input before the ReLU. Convolutions are
    "same"-padded (padding = kernel_size // 2) unless stated otherwise.

    Args:
        num_channels (`int`, defaults to 6): input channels: the masked target frame (3, lower half zeroed) and the
            identity reference frame (3), both BGR in [0, 1].
        num_output_channels (`int`, defaults to 3): channels of the generated face (BGR, sigmoid output).
        image_size (`int`, defaults to 96): side of the square face crop.
        num_mel_bins (`int`, defaults to 80): mel bands of the audio window.
        mel_step_size (`int`, defaults to 16): mel frames of the audio window (0.2 s at 80 mel frames/s).
        hidden_size (`int`, defaults to 512): channels of the bottleneck: the face encoder's last feature map and the
            audio embedding.
        face_encoder_channels (`list[int]`, defaults to `[16, 32, 64, 128, 256, 512]`): output channels of each face
            encoder stage (the bottleneck adds one more stage with `hidden_size` channels).
        face_encoder_kernel_sizes (`list[int]`, defaults to `[7, 3, 3, 3, 3, 3]`): kernel of each stage's first conv.
        face_encoder_strides (`list[int]`, defaults to `[1, 2, 2, 2, 2, 2]`): stride of each stage's first conv;
            the decoder upsamples by the same factors. The first must be 1 (the output is made at that resolution)
            and the face must shrink to 3x3 before the bottleneck.
        face_encoder_residual_layers (`list[int]`, defaults to `[0, 2, 3, 2, 2, 1]`): residual 3x3 convs after each
            stage's first conv.
        audio_encoder_channels (`list[int]`, defaults to `[32, 64, 128, 256]`): output channels of each audio stage.
        audio_encoder_strides (`list`, defaults to `[[1, 1], [3, 1], [3, 3], [3, 2]]`): (mel, time) stride of each
            audio stage's first 3x3 conv; the mel window must shrink to 3x3 (80x16 -> 80x16 -> 27x16 -> 9x6 -> 3x3)
            before a valid 3x3 conv and a 1x1 conv to `hidden_size`.
        audio_encoder_residual_layers (`list[int]`, defaults to `[2, 2, 2, 1]`): residual convs per audio stage.
        decoder_channels (`list[int]`, defaults to `[512, 512, 384, 256, 128, 64]`): output channels of each
            decoder upsampling block (transposed conv), one per face encoder stage, deepest first. The first one
            (3x3 valid transposed conv) turns the 1x1 bottleneck into 3x3; the others upsample by the encoder strides.
        decoder_residual_layers (`list[int]`, defaults to `[1, 2, 2, 2, 2, 2]`): residual convs after each
            decoder upsampling block.
        decoder_bottleneck_residual_layers (`int`, defaults to 0): residual convs after the decoder's first block
            (a 1x1 conv on the audio embedding).
        output_hidden_channels (`int`, defaults to 32): channels of the 3x3 conv (+BN+ReLU) before the final 1x1
            conv and sigmoid.
        kernel_size (`int`, defaults to 3): kernel of residual, audio and decoder convolutions.
        batch_norm_eps (`float`, defaults to 1e-5) / batch_norm_momentum (`float`, defaults to 0.1): BatchNorm
            settings (PyTorch defaults, as in the original).
    """

    model_type = "wav2lip"
    # `img_size` is this field's former name: old config.json files and `config.img_size` keep working
    attribute_map = {"img_size": "image_size"}

    def __init__(
        self,
        num_channels: int = 6,
        num_output_channels: int = 3,
        image_size: int = 96,
        num_mel_bins: int = 80,
        mel_step_size: int = 16,
        hidden_size: int = 512,
        face_encoder_channels=(16, 32, 64, 128, 256, 512),
        face_encoder_kernel_sizes=(7, 3, 3, 3, 3, 3),
        face_encoder_strides=(1, 2, 2, 2, 2, 2),
        face_encoder_residual_layers=(0, 2, 3, 2, 2, 1),
        audio_encoder_channels=(32, 64, 128, 256),
        audio_encoder_strides=((1, 1), (3, 1), (3, 3), (3, 2)),
        audio_encoder_residual_layers=(2, 2, 2, 1),
        decoder_channels=(512, 512, 384, 256, 128, 64),
        decoder_residual_layers=(1, 2, 2, 2, 2, 2),
        decoder_bottleneck_residual_layers: int = 0,
        output_hidden_channels: int = 32,
        kernel_size: int = 3,
        batch_norm_eps: float = 1e-5,
        batch_norm_momentum: float = 0.1,
        **kwargs,
    ):
        image_size = kwargs.pop("img_size", image_size)  # the former name, in old config.json files
        self.num_channels = num_channels
        self.num_output_channels = num_output_channels
        self.image_size = image_size
        self.num_mel_bins = num_mel_bins
        self.mel_step_size = mel_step_size
        self.hidden_size = hidden_size
        self.face_encoder_channels = list(face_encoder_channels)
        self.face_encoder_kernel_sizes = list(face_encoder_kernel_sizes)
        self.face_encoder_strides = list(face_encoder_strides)
        self.face_encoder_residual_layers = list(face_encoder_residual_layers)
        self.audio_encoder_channels = list(audio_encoder_channels)
        self.audio_encoder_strides = [list(_as_pair(s, "audio_encoder_strides")) for s in audio_encoder_strides]
        self.audio_encoder_residual_layers = list(audio_encoder_residual_layers)
        self.decoder_channels = list(decoder_channels)
        self.decoder_residual_layers = list(decoder_residual_layers)
        self.decoder_bottleneck_residual_layers = decoder_bottleneck_residual_layers
        self.output_hidden_channels = output_hidden_channels
        self.kernel_size = kernel_size
        self.batch_norm_eps = batch_norm_eps
        self.batch_norm_momentum = batch_norm_momentum
        super().__init__(**kwargs)
        self._validate()

    def _validate(self):
        for name in ("num_channels", "num_output_channels", "image_size", "num_mel_bins", "mel_step_size",
                     "hidden_size", "output_hidden_channels", "kernel_size"):
            _check_positive_ints(name, [getattr(self, name)])
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {self.kernel_size}")
        num_stages = len(self.face_encoder_channels)
        _check_positive_ints("face_encoder_channels", self.face_encoder_channels)
        _check_positive_ints("face_encoder_kernel_sizes", self.face_encoder_kernel_sizes, num_stages)
        _check_positive_ints("face_encoder_strides", self.face_encoder_strides, num_stages)
        _check_non_negative_ints("face_encoder_residual_layers", self.face_encoder_residual_layers, num_stages)
        _check_positive_ints("decoder_channels", self.decoder_channels, num_stages)
        _check_non_negative_ints("decoder_residual_layers", self.decoder_residual_layers, num_stages)
        _check_non_negative_ints("decoder_bottleneck_residual_layers", [self.decoder_bottleneck_residual_layers], 1)
        if any(k % 2 == 0 for k in self.face_encoder_kernel_sizes):
            raise ValueError(f"face_encoder_kernel_sizes must be odd, got {self.face_encoder_kernel_sizes}")
        if self.face_encoder_strides[0] != 1:
            raise ValueError(
                f"face_encoder_strides[0] must be 1 (the output is made at the first stage's resolution), "
                f"got {self.face_encoder_strides}"
            )
        size = self.image_size
        for stride in self.face_encoder_strides:
            if size % stride:
                raise ValueError(
                    f"image_size={self.image_size} does not divide evenly through face_encoder_strides="
                    f"{self.face_encoder_strides} (size {size} at stride {stride}); the decoder could not mirror it"
                )
            size //= stride
        if size != 3:
            raise ValueError(
                f"image_size={self.image_size} with face_encoder_strides={self.face_encoder_strides} gives a "
                f"{size}x{size} map before the bottleneck, but it must be 3x3 (e.g. image_size 96 with strides "
                "[1, 2, 2, 2, 2, 2])"
            )
        num_audio_stages = len(self.audio_encoder_channels)
        _check_positive_ints("audio_encoder_channels", self.audio_encoder_channels)
        _check_non_negative_ints("audio_encoder_residual_layers", self.audio_encoder_residual_layers, num_audio_stages)
        if len(self.audio_encoder_strides) != num_audio_stages:
            raise ValueError(
                f"audio_encoder_strides must have {num_audio_stages} entries, got {self.audio_encoder_strides}"
            )
        audio_size = audio_encoder_output_size(self.num_mel_bins, self.mel_step_size, self.audio_encoder_strides,
                                               self.kernel_size)
        if audio_size != (3, 3):
            raise ValueError(
                f"num_mel_bins={self.num_mel_bins}, mel_step_size={self.mel_step_size} with audio_encoder_strides="
                f"{self.audio_encoder_strides} give a {audio_size} map, but it must be (3, 3) before the valid "
                "3x3 conv"
            )

    @property
    def num_face_encoder_stages(self) -> int:
        return len(self.face_encoder_channels)

    @property
    def face_encoder_feature_sizes(self) -> list[int]:
        """Side of each face-encoder stage's output (96, 48, 24, 12, 6, 3 by default)."""
        sizes, size = [], self.image_size
        for stride in self.face_encoder_strides:
            size //= stride
            sizes.append(size)
        return sizes


class Wav2LipVisualDiscriminatorConfig(PretrainedConfig):
    r"""Configuration of [`Wav2LipVisualDiscriminator`], Wav2Lip's visual-quality discriminator (`Wav2Lip_disc_qual`).

    It scores the lower half of a face crop (BGR in [0, 1]) as real (1) or generated (0). Convolutions have no
    normalisation and use LeakyReLU; each stage is a strided conv followed by `residual`-free same-size convs.

    Args:
        num_channels (`int`, defaults to 3): channels of a face frame (BGR).
        image_size (`int`, defaults to 96): side of the square face crop; the discriminator sees rows image_size // 2:.
        hidden_size (`int`, defaults to 512): channels of the bottleneck (valid 3x3 conv then 1x1 conv).
        stage_channels (`list[int]`, defaults to `[32, 64, 128, 256, 512, 512]`): output channels of each stage.
        stage_kernel_sizes (`list[int]`, defaults to `[7, 5, 5, 5, 3, 3]`): kernel size of each stage's convs.
        stage_strides (`list`, defaults to `[1, [1, 2], 2, 2, 2, 2]`): stride of each stage's first conv; the
            48x96 lower half must shrink to 3x3 (48x96 -> 48x48 -> 24 -> 12 -> 6 -> 3) before the bottleneck.
        stage_extra_layers (`list[int]`, defaults to `[0, 1, 1, 1, 1, 1]`): stride-1 convs after each stage's first.
        leaky_relu_slope (`float`, defaults to 0.01): negative slope of the LeakyReLU activations.
    """

    model_type = "wav2lip_discriminator"
    # `img_size` is this field's former name: old config.json files and `config.img_size` keep working
    attribute_map = {"img_size": "image_size"}

    def __init__(
        self,
        num_channels: int = 3,
        image_size: int = 96,
        hidden_size: int = 512,
        stage_channels=(32, 64, 128, 256, 512, 512),
        stage_kernel_sizes=(7, 5, 5, 5, 3, 3),
        stage_strides=(1, (1, 2), 2, 2, 2, 2),
        stage_extra_layers=(0, 1, 1, 1, 1, 1),
        leaky_relu_slope: float = 0.01,
        **kwargs,
    ):
        image_size = kwargs.pop("img_size", image_size)  # the former name, in old config.json files
        self.num_channels = num_channels
        self.image_size = image_size
        self.hidden_size = hidden_size
        self.stage_channels = list(stage_channels)
        self.stage_kernel_sizes = list(stage_kernel_sizes)
        self.stage_strides = [list(_as_pair(s, "stage_strides")) for s in stage_strides]
        self.stage_extra_layers = list(stage_extra_layers)
        self.leaky_relu_slope = leaky_relu_slope
        super().__init__(**kwargs)
        self._validate()

    def _validate(self):
        for name in ("num_channels", "image_size", "hidden_size"):
            _check_positive_ints(name, [getattr(self, name)])
        num_stages = len(self.stage_channels)
        _check_positive_ints("stage_channels", self.stage_channels)
        _check_positive_ints("stage_kernel_sizes", self.stage_kernel_sizes, num_stages)
        _check_non_negative_ints("stage_extra_layers", self.stage_extra_layers, num_stages)
        if len(self.stage_strides) != num_stages:
            raise ValueError(f"stage_strides must have {num_stages} entries, got {self.stage_strides}")
        if any(k % 2 == 0 for k in self.stage_kernel_sizes):
            raise ValueError(f"stage_kernel_sizes must be odd, got {self.stage_kernel_sizes}")
        if self.image_size % 2:
            raise ValueError(f"image_size must be even (the lower half is scored), got {self.image_size}")
        if not 0 <= self.leaky_relu_slope < 1:
            raise ValueError(f"leaky_relu_slope must be in [0, 1), got {self.leaky_relu_slope}")
        height, width = self.image_size // 2, self.image_size
        for kernel, (stride_h, stride_w) in zip(self.stage_kernel_sizes, self.stage_strides):
            height = conv_output_size(height, kernel, stride_h, kernel // 2)
            width = conv_output_size(width, kernel, stride_w, kernel // 2)
        if (height, width) != (3, 3):
            raise ValueError(
                f"image_size={self.image_size} with stage_strides={self.stage_strides} gives a {height}x{width} map "
                "for the lower half, but it must be 3x3 before the bottleneck"
            )


__all__ = ["Wav2LipConfig", "Wav2LipVisualDiscriminatorConfig"]
