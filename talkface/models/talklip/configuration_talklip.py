"""Configuration of the TalkLip generator.

TalkLip (Wang et al., "Seeing What You Said: Talking Face Generation Guided by a Lip Reading Expert", CVPR 2023;
github.com/Sxjdwang/TalkLip, models/talklip.py) is the Wav2Lip generator with a different audio encoder: instead of
Wav2Lip's convolutional encoder over a 0.2 s mel window ("local"), the audio-only AV-HuBERT transformer encodes the
whole utterance ("global") and a linear map turns each picked frame's feature into the decoder's audio embedding.
The defaults reproduce the released TalkLip checkpoints (global encoder = AV-HuBERT Base).
"""

from transformers import PretrainedConfig

from ..avhubert.configuration_avhubert import AVHubertConfig

AUDIO_ENCODER_TYPES = ("local", "global")


# Copied from talkface.models.wav2lip.configuration_wav2lip._as_pair
def _as_pair(value, name):
    """An int or a 2-sequence of ints -> tuple (height, width)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return tuple(value)
    raise ValueError(f"{name} entries must be an int or a pair of ints, got {value!r}")


# Copied from talkface.models.wav2lip.configuration_wav2lip._check_positive_ints
def _check_positive_ints(name, values, length=None):
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{name} must be a non-empty list, got {values!r}")
    if length is not None and len(values) != length:
        raise ValueError(f"{name} must have {length} entries (one per stage), got {len(values)}: {list(values)}")
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} entries must be positive integers, got {list(values)}")


# Copied from talkface.models.wav2lip.configuration_wav2lip._check_non_negative_ints
def _check_non_negative_ints(name, values, length):
    if not isinstance(values, (list, tuple)) or len(values) != length:
        raise ValueError(f"{name} must have {length} entries (one per stage), got {values!r}")
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} entries must be non-negative integers, got {list(values)}")


# Copied from talkface.models.wav2lip.configuration_wav2lip.conv_output_size
def conv_output_size(size, kernel_size, stride, padding):
    return (size + 2 * padding - kernel_size) // stride + 1


# Copied from talkface.models.wav2lip.configuration_wav2lip.audio_encoder_output_size
def audio_encoder_output_size(num_mel_bins, mel_step_size, strides, kernel_size=3):
    """Spatial size of the audio feature map after the strided "same" convolutions (before the valid 3x3)."""
    height, width = num_mel_bins, mel_step_size
    for stride in strides:
        stride_h, stride_w = _as_pair(stride, "audio_encoder_strides")
        height = conv_output_size(height, kernel_size, stride_h, kernel_size // 2)
        width = conv_output_size(width, kernel_size, stride_w, kernel_size // 2)
    return height, width


def _avhubert_config(value) -> AVHubertConfig:
    """An AVHubertConfig from None (AV-HuBERT Base), a config, or its dict (as stored in config.json)."""
    if value is None:
        return AVHubertConfig()
    if isinstance(value, AVHubertConfig):
        return value
    if isinstance(value, dict):
        fields = {k: v for k, v in value.items() if k not in ("model_type", "transformers_version")}
        return AVHubertConfig(**fields)
    raise ValueError(f"avhubert_config must be an AVHubertConfig, a dict or None, got {type(value).__name__}")


class TalkLipConfig(PretrainedConfig):
    r"""Configuration of [`TalkLipModel`].

    The face path is Wav2Lip's U-Net (the same fields, defaults and state-dict names as [`Wav2LipConfig`], so a
    TalkLip checkpoint's face keys are Wav2Lip's): a face encoder of `len(face_encoder_channels)` stages plus a
    bottleneck down to a 1x1 `hidden_size` map, and a decoder that starts from the audio embedding and upsamples back,
    concatenating the face-encoder map of the same size after every block.

    The audio embedding comes from one of two encoders (`audio_encoder_type`):

    * `"global"` (TalkLip, the default): the audio-only AV-HuBERT encoder (`avhubert_config`) runs over the whole
      utterance's stacked log filterbanks (104 x T at 25 Hz); its final-layer output (after the final LayerNorm) at
      each generated frame goes through `audio_map` (Linear(encoder width, hidden_size)).
    * `"local"` (Wav2Lip): a convolutional encoder over each frame's (1, num_mel_bins, mel_step_size) mel window.

    Args:
        audio_encoder_type (`str`, defaults to `"global"`): `"global"` or `"local"`, see above.
        num_channels (`int`, defaults to 6): input channels: the masked target frame (3, lower half zeroed) and the
            identity reference frame (3), both BGR in [0, 1].
        num_output_channels (`int`, defaults to 3): channels of the generated face (BGR, sigmoid output).
        image_size (`int`, defaults to 96): side of the square face crop.
        hidden_size (`int`, defaults to 512): channels of the bottleneck: the face encoder's last feature map and the
            audio embedding.
        face_encoder_channels (`list[int]`, defaults to `[16, 32, 64, 128, 256, 512]`): output channels of each face
            encoder stage (the bottleneck adds one more stage with `hidden_size` channels).
        face_encoder_kernel_sizes (`list[int]`, defaults to `[7, 3, 3, 3, 3, 3]`): kernel of each stage's first conv.
        face_encoder_strides (`list[int]`, defaults to `[1, 2, 2, 2, 2, 2]`): stride of each stage's first conv; the
            first must be 1 and the face must shrink to 3x3 before the bottleneck.
        face_encoder_residual_layers (`list[int]`, defaults to `[0, 2, 3, 2, 2, 1]`): residual convs per stage.
        decoder_channels (`list[int]`, defaults to `[512, 512, 384, 256, 128, 64]`): output channels of each decoder
            upsampling block, deepest first.
        decoder_residual_layers (`list[int]`, defaults to `[1, 2, 2, 2, 2, 2]`): residual convs per decoder block.
        decoder_bottleneck_residual_layers (`int`, defaults to 0): residual convs after the decoder's first (1x1)
            block.
        output_hidden_channels (`int`, defaults to 32): channels of the conv before the final 1x1 conv and sigmoid.
        kernel_size (`int`, defaults to 3): kernel of residual, audio and decoder convolutions.
        batch_norm_eps (`float`, defaults to 1e-5) / batch_norm_momentum (`float`, defaults to 0.1): BatchNorm
            settings.
        num_mel_bins (`int`, defaults to 80) / mel_step_size (`int`, defaults to 16): the local encoder's mel window.
        audio_encoder_channels (`list[int]`, defaults to `[32, 64, 128, 256]`),
        audio_encoder_strides (`list`, defaults to `[[1, 1], [3, 1], [3, 3], [3, 2]]`),
        audio_encoder_residual_layers (`list[int]`, defaults to `[2, 2, 2, 1]`): the local (Wav2Lip) audio encoder;
            only used with `audio_encoder_type="local"`.
        avhubert_config (`AVHubertConfig` or `dict`, *optional*): the global encoder (default: AV-HuBERT Base).
            Stored as None for the local encoder.
        trainable_audio_layers (`int`, defaults to 3): how many of the global encoder's last transformer layers are
            fine-tuned (TalkLip fine-tunes layers 9-11 of 12); all its other parameters are frozen. Fine-tuning
            only happens while `TalkLipModel.set_audio_encoder_finetuning(True)` is on (the staged schedule).
            Always 0 for the local encoder (it is trained whole, like Wav2Lip's).
        use_contrastive_head (`bool`, defaults to `True`): whether the model holds the audio projection of TalkLip's
            audio-visual contrastive loss (the released `sync_net`). It is only used in training.
        contrastive_projection_dim (`int`, *optional*): output width of that projection; must equal the width of
            the lip reader's visual features (768 for AV-HuBERT Base). Defaults to the audio feature width.
    """

    model_type = "talklip"
    # `img_size` is this field's former name: old config.json files and `config.img_size` keep working
    attribute_map = {"img_size": "image_size"}

    def __init__(
        self,
        audio_encoder_type: str = "global",
        num_channels: int = 6,
        num_output_channels: int = 3,
        image_size: int = 96,
        hidden_size: int = 512,
        face_encoder_channels=(16, 32, 64, 128, 256, 512),
        face_encoder_kernel_sizes=(7, 3, 3, 3, 3, 3),
        face_encoder_strides=(1, 2, 2, 2, 2, 2),
        face_encoder_residual_layers=(0, 2, 3, 2, 2, 1),
        decoder_channels=(512, 512, 384, 256, 128, 64),
        decoder_residual_layers=(1, 2, 2, 2, 2, 2),
        decoder_bottleneck_residual_layers: int = 0,
        output_hidden_channels: int = 32,
        kernel_size: int = 3,
        batch_norm_eps: float = 1e-5,
        batch_norm_momentum: float = 0.1,
        num_mel_bins: int = 80,
        mel_step_size: int = 16,
        audio_encoder_channels=(32, 64, 128, 256),
        audio_encoder_strides=((1, 1), (3, 1), (3, 3), (3, 2)),
        audio_encoder_residual_layers=(2, 2, 2, 1),
        avhubert_config=None,
        trainable_audio_layers: int = 3,
        use_contrastive_head: bool = True,
        contrastive_projection_dim: int | None = None,
        **kwargs,
    ):
        image_size = kwargs.pop("img_size", image_size)  # the former name, in old config.json files
        if audio_encoder_type not in AUDIO_ENCODER_TYPES:
            raise ValueError(f"audio_encoder_type must be one of {AUDIO_ENCODER_TYPES}, got {audio_encoder_type!r}")
        self.audio_encoder_type = audio_encoder_type
        self.num_channels = num_channels
        self.num_output_channels = num_output_channels
        self.image_size = image_size
        self.hidden_size = hidden_size
        self.face_encoder_channels = list(face_encoder_channels)
        self.face_encoder_kernel_sizes = list(face_encoder_kernel_sizes)
        self.face_encoder_strides = list(face_encoder_strides)
        self.face_encoder_residual_layers = list(face_encoder_residual_layers)
        self.decoder_channels = list(decoder_channels)
        self.decoder_residual_layers = list(decoder_residual_layers)
        self.decoder_bottleneck_residual_layers = decoder_bottleneck_residual_layers
        self.output_hidden_channels = output_hidden_channels
        self.kernel_size = kernel_size
        self.batch_norm_eps = batch_norm_eps
        self.batch_norm_momentum = batch_norm_momentum
        self.num_mel_bins = num_mel_bins
        self.mel_step_size = mel_step_size
        self.audio_encoder_channels = list(audio_encoder_channels)
        self.audio_encoder_strides = [list(_as_pair(s, "audio_encoder_strides")) for s in audio_encoder_strides]
        self.audio_encoder_residual_layers = list(audio_encoder_residual_layers)
        self.avhubert_config = _avhubert_config(avhubert_config) if audio_encoder_type == "global" else None
        # the local encoder is Wav2Lip's and trains whole: the field only applies to the global one
        self.trainable_audio_layers = trainable_audio_layers if audio_encoder_type == "global" else 0
        self.use_contrastive_head = bool(use_contrastive_head)
        self.contrastive_projection_dim = (
            int(contrastive_projection_dim) if contrastive_projection_dim is not None else self.audio_feature_dim
        )
        super().__init__(**kwargs)
        self._validate()

    @property
    def is_global(self) -> bool:
        return self.audio_encoder_type == "global"

    @property
    def audio_feature_dim(self) -> int:
        """Width of the per-frame audio feature before the decoder: the AV-HuBERT width (global) or hidden_size."""
        return self.avhubert_config.encoder_embed_dim if self.is_global else self.hidden_size

    @property
    def num_face_encoder_stages(self) -> int:
        return len(self.face_encoder_channels)

    def _validate(self):
        for name in ("num_channels", "num_output_channels", "image_size", "hidden_size", "output_hidden_channels",
                     "kernel_size", "num_mel_bins", "mel_step_size", "contrastive_projection_dim"):
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
            raise ValueError(f"face_encoder_strides[0] must be 1, got {self.face_encoder_strides}")
        size = self.image_size
        for stride in self.face_encoder_strides:
            if size % stride:
                raise ValueError(f"image_size={self.image_size} does not divide evenly through face_encoder_strides="
                                 f"{self.face_encoder_strides}")
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
        if not self.is_global:
            audio_size = audio_encoder_output_size(self.num_mel_bins, self.mel_step_size, self.audio_encoder_strides,
                                                   self.kernel_size)
            if audio_size != (3, 3):
                raise ValueError(
                    f"num_mel_bins={self.num_mel_bins}, mel_step_size={self.mel_step_size} with audio_encoder_strides="
                    f"{self.audio_encoder_strides} give a {audio_size} map, but it must be (3, 3) before the valid "
                    "3x3 conv"
                )
        max_layers = self.avhubert_config.encoder_layers if self.is_global else 0
        if (not isinstance(self.trainable_audio_layers, int) or isinstance(self.trainable_audio_layers, bool)
                or not 0 <= self.trainable_audio_layers <= max_layers):
            raise ValueError(
                f"trainable_audio_layers must be an integer in 0..{max_layers} (the global encoder's layer count), "
                f"got {self.trainable_audio_layers!r}"
            )


__all__ = ["TalkLipConfig", "AUDIO_ENCODER_TYPES"]
