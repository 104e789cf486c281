"""Configurations of the talkface generator (`TalkFaceModel`) and its discriminator (`TalkFaceDiscriminator`).

The generator has no original checkpoint to reproduce: the defaults are the full-size design trained in
train/configs/talkface_avhubert.yaml (96x96 faces, k = 5 frames per pass, the Wav2Lip lip-sync expert's audio
encoder). Tests build tiny variants by shrinking the channel lists.
"""

from transformers import PretrainedConfig


def _check_channels(name, value, min_len=1):
    value = tuple(int(c) for c in value)
    if len(value) < min_len or any(c <= 0 for c in value):
        raise ValueError(f"{name}={value!r} must be a list of at least {min_len} positive channel counts")
    return value


class TalkFaceConfig(PretrainedConfig):
    r"""
    Configuration of `TalkFaceModel`, the talkface generator.

    The identity encoder (reference frames) and the pose encoder (frames with the lower half masked) share this
    design but not their weights. Stage 0 is a stride-1 stem conv at full resolution; stages 1..n-2 halve the
    resolution with a strided conv; the last stage turns the 3x3 map into 1x1 with an unpadded 3x3 conv. Each stage's
    first conv is followed by `convs_per_block` stride-1 convs. Every conv is followed by ReLU and batch norm.
    Hence `image_size` must be `3 * 2 ** (len(encoder_channels) - 2)` (96 for the default 7 stages).

    Args:
        image_size (`int`, *optional*, defaults to 96):
            Side of the square face crop, in pixels.
        num_channels (`int`, *optional*, defaults to 3):
            Image channels (RGB, values in [0, 1]).
        num_frames (`int`, *optional*, defaults to 5):
            k, the number of consecutive frames generated per pass (and scored together by the sync losses). The
            network itself folds the frames into the batch; k sets the window shape of the data and losses.
        encoder_channels (`list[int]`, *optional*, defaults to `[16, 32, 64, 128, 256, 512, 512]`):
            Output channels of each stage of the identity and pose encoders.
        encoder_stem_kernel_size (`int`, *optional*, defaults to 7):
            Kernel size of the stride-1 stem conv of stage 0.
        convs_per_block (`int`, *optional*, defaults to 2):
            Stride-1 3x3 convs after the first conv of each encoder and decoder stage.
        use_residual (`bool`, *optional*, defaults to `True`):
            Add the input of each stride-1 conv to its output (the first conv of a stage is never residual).
        fusion_channels (`int`, *optional*, defaults to 512):
            Channels of the 1x1 conv that reduces the concatenated identity and pose bottleneck features.
        decoder_channels (`list[int]`, *optional*, defaults to `[512, 512, 512, 384, 256, 128, 64]`):
            Output channels of each decoder stage, from the 1x1 bottleneck up to full resolution; one per encoder
            stage. Stage 0 is a 1x1 conv; stage 1 a transposed conv from 1x1 to 3x3; the others double the
            resolution with a stride-2 transposed conv. After each stage the identity and pose features of the same
            resolution are concatenated (skip connections).
        output_hidden_size (`int`, *optional*, defaults to 32):
            Channels of the 3x3 conv before the final 1x1 conv to RGB and the sigmoid.
        audio_encoder_channels (`list[int]`, *optional*, defaults to `[32, 64, 128, 256]`):
            Channels of each stage of the Wav2Lip lip-sync expert's audio encoder (`SyncNetConfig` field of the same
            name). The audio-encoder fields must match the expert loaded with `TalkFaceModel.load_audio_encoder_from`.
        audio_encoder_strides (`list`, *optional*, defaults to `[[1, 1], [3, 1], [3, 3], [3, 2]]`):
            (mel, time) stride of each audio stage's first conv (80x16 -> 80x16 -> 27x16 -> 9x6 -> 3x3).
        audio_encoder_residual_layers (`list[int]`, *optional*, defaults to `[2, 2, 2, 2]`):
            Residual convs per audio stage.
        audio_hidden_size (`int`, *optional*, defaults to 512):
            Size of the audio embedding (the expert's `hidden_size`: a valid 3x3 conv to 1x1, then a 1x1 conv).
        num_mels (`int`, *optional*, defaults to 80):
            Mel bands of the audio input (fixed by the expert's audio encoder).
        mel_steps (`int`, *optional*, defaults to 16):
            Mel frames per audio window (0.2 s at 80 mel frames per second; fixed by the expert's audio encoder).
        freeze_audio_encoder (`bool`, *optional*, defaults to `True`):
            Keep the audio encoder frozen: its parameters do not require gradients and its batch norms stay in eval
            mode even when the model trains.
        batch_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of every batch norm.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the normal initialisation of conv weights when not using Kaiming init (unused by default).
    """

    model_type = "talkface"
    # `img_size` is this field's former name: old config.json files and `config.img_size` keep working
    attribute_map = {"img_size": "image_size"}

    def __init__(
        self,
        image_size=96,
        num_channels=3,
        num_frames=5,
        encoder_channels=(16, 32, 64, 128, 256, 512, 512),
        encoder_stem_kernel_size=7,
        convs_per_block=2,
        use_residual=True,
        fusion_channels=512,
        decoder_channels=(512, 512, 512, 384, 256, 128, 64),
        output_hidden_size=32,
        audio_encoder_channels=(32, 64, 128, 256),
        audio_encoder_strides=((1, 1), (3, 1), (3, 3), (3, 2)),
        audio_encoder_residual_layers=(2, 2, 2, 2),
        audio_hidden_size=512,
        num_mels=80,
        mel_steps=16,
        freeze_audio_encoder=True,
        batch_norm_eps=1e-5,
        initializer_range=0.02,
        **kwargs,
    ):
        image_size = kwargs.pop("img_size", image_size)  # the former name, in old config.json files
        self.encoder_channels = list(_check_channels("encoder_channels", encoder_channels, min_len=3))
        self.decoder_channels = list(_check_channels("decoder_channels", decoder_channels))
        if len(self.decoder_channels) != len(self.encoder_channels):
            raise ValueError(
                f"decoder_channels has {len(self.decoder_channels)} stages but encoder_channels has "
                f"{len(self.encoder_channels)}; give one decoder stage per encoder stage"
            )
        expected_size = 3 * 2 ** (len(self.encoder_channels) - 2)
        if image_size != expected_size:
            raise ValueError(
                f"image_size={image_size} does not fit {len(self.encoder_channels)} encoder stages, which need "
                f"image_size={expected_size} (3 * 2 ** (stages - 2)); change image_size or the length of "
                "encoder_channels"
            )
        if num_mels != 80 or mel_steps != 16:
            raise ValueError(
                f"num_mels={num_mels}, mel_steps={mel_steps}: the expert's audio encoder needs 80 mel bands x 16 "
                "steps; compute mel windows with TalkingFaceAudioFeatureExtractor"
            )
        self.audio_encoder_channels = list(_check_channels("audio_encoder_channels", audio_encoder_channels))
        self.audio_encoder_strides = [[int(v) for v in (s if isinstance(s, (list, tuple)) else (s, s))]
                                      for s in audio_encoder_strides]
        self.audio_encoder_residual_layers = [int(n) for n in audio_encoder_residual_layers]
        num_audio_stages = len(self.audio_encoder_channels)
        if len(self.audio_encoder_strides) != num_audio_stages or len(self.audio_encoder_residual_layers) != \
                num_audio_stages or any(len(s) != 2 for s in self.audio_encoder_strides):
            raise ValueError(
                f"audio_encoder_strides={self.audio_encoder_strides} and audio_encoder_residual_layers="
                f"{self.audio_encoder_residual_layers} must have one entry per audio stage ({num_audio_stages})"
            )
        mel_height, mel_width = num_mels, mel_steps
        for stride_h, stride_w in self.audio_encoder_strides:
            mel_height, mel_width = (mel_height - 1) // stride_h + 1, (mel_width - 1) // stride_w + 1
        if (mel_height, mel_width) != (3, 3):
            raise ValueError(
                f"audio_encoder_strides={self.audio_encoder_strides} turn a {num_mels}x{mel_steps} mel window into "
                f"{mel_height}x{mel_width}, but the audio encoder needs 3x3 before its valid 3x3 conv"
            )
        for name, value in (("num_channels", num_channels), ("num_frames", num_frames),
                            ("audio_hidden_size", audio_hidden_size),
                            ("fusion_channels", fusion_channels), ("output_hidden_size", output_hidden_size)):
            if int(value) <= 0:
                raise ValueError(f"{name}={value} must be a positive integer")
        if encoder_stem_kernel_size <= 0 or encoder_stem_kernel_size % 2 == 0:
            raise ValueError(f"encoder_stem_kernel_size={encoder_stem_kernel_size} must be a positive odd number")
        if convs_per_block < 0:
            raise ValueError(f"convs_per_block={convs_per_block} must be >= 0")
        self.image_size = int(image_size)
        self.num_channels = int(num_channels)
        self.num_frames = int(num_frames)
        self.encoder_stem_kernel_size = int(encoder_stem_kernel_size)
        self.convs_per_block = int(convs_per_block)
        self.use_residual = bool(use_residual)
        self.fusion_channels = int(fusion_channels)
        self.output_hidden_size = int(output_hidden_size)
        self.audio_hidden_size = int(audio_hidden_size)
        self.num_mels = int(num_mels)
        self.mel_steps = int(mel_steps)
        self.freeze_audio_encoder = bool(freeze_audio_encoder)
        self.batch_norm_eps = float(batch_norm_eps)
        self.initializer_range = float(initializer_range)
        super().__init__(**kwargs)

    @property
    def num_stages(self) -> int:
        return len(self.encoder_channels)

    @property
    def mask_start_row(self) -> int:
        """First masked row of the pose frames (the lower half of the face is hidden)."""
        return self.image_size // 2


# fields shared with SyncNetConfig that fix the expert's audio encoder (same names in both configs)
AUDIO_ENCODER_FIELDS = ("audio_encoder_channels", "audio_encoder_strides", "audio_encoder_residual_layers")


def audio_encoder_kwargs(syncnet_config) -> dict:
    """TalkFaceConfig keyword arguments that make its audio encoder match a lip-sync expert's `SyncNetConfig`."""
    kwargs = {name: getattr(syncnet_config, name) for name in AUDIO_ENCODER_FIELDS}
    kwargs["audio_hidden_size"] = syncnet_config.hidden_size
    kwargs["batch_norm_eps"] = getattr(syncnet_config, "batch_norm_eps", 1e-5)
    return kwargs


class TalkFaceDiscriminatorConfig(PretrainedConfig):
    r"""
    Configuration of `TalkFaceDiscriminator`, the real/fake face critic trained with the generator.

    A stack of strided convs (kernel 3, stride 2, padding 1), each spectrally normalised and followed by a
    LeakyReLU, then a spectrally normalised 1x1 conv to one channel averaged over the remaining positions: one logit
    per face.

    Args:
        image_size (`int`, *optional*, defaults to 96):
            Side of the square face crop.
        num_channels (`int`, *optional*, defaults to 3):
            Image channels (RGB, values in [0, 1]).
        hidden_channels (`list[int]`, *optional*, defaults to `[32, 64, 128, 256, 512, 512, 512]`):
            Output channels of each strided conv (7 for 96x96 faces: 96 -> 48 -> ... -> 1).
        leaky_relu_slope (`float`, *optional*, defaults to 0.2):
            Negative slope of the LeakyReLUs.
        spectral_norm_eps (`float`, *optional*, defaults to 1e-12):
            Epsilon of the power-iteration normalisations.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the normal initialisation of the conv weights.
    """

    model_type = "talkface_discriminator"
    # `img_size` is this field's former name: old config.json files and `config.img_size` keep working
    attribute_map = {"img_size": "image_size"}

    def __init__(
        self,
        image_size=96,
        num_channels=3,
        hidden_channels=(32, 64, 128, 256, 512, 512, 512),
        leaky_relu_slope=0.2,
        spectral_norm_eps=1e-12,
        initializer_range=0.02,
        **kwargs,
    ):
        image_size = kwargs.pop("img_size", image_size)  # the former name, in old config.json files
        self.hidden_channels = list(_check_channels("hidden_channels", hidden_channels))
        if image_size <= 0:
            raise ValueError(f"image_size={image_size} must be positive")
        if not 0.0 <= leaky_relu_slope < 1.0:
            raise ValueError(f"leaky_relu_slope={leaky_relu_slope} must be in [0, 1)")
        if num_channels <= 0:
            raise ValueError(f"num_channels={num_channels} must be positive")
        self.image_size = int(image_size)
        self.num_channels = int(num_channels)
        self.leaky_relu_slope = float(leaky_relu_slope)
        self.spectral_norm_eps = float(spectral_norm_eps)
        self.initializer_range = float(initializer_range)
        super().__init__(**kwargs)
