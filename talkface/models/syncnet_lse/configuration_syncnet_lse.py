"""Configuration of the Chung & Zisserman SyncNet used for the LSE-C / LSE-D lip-sync metrics."""

from transformers import PretrainedConfig

NUM_CONV_LAYERS = 6


class SyncNetLSEConfig(PretrainedConfig):
    r"""
    Configuration of [`SyncNetLSEModel`], the two-stream SyncNet of Chung & Zisserman ("Out of time", ACCV 2016
    workshops) as released in syncnet_python (`SyncNetModel.S` with `num_layers_in_fc_layers=1024`, weights file
    `syncnet_v2.model`). The defaults reproduce that checkpoint.

    The audio stream reads a window of MFCCs (`num_mfcc` coefficients x `audio_window` frames at 100 Hz = 0.2 s);
    the video stream reads `video_window` consecutive RGB frames of `image_size` pixels (0.2 s at 25 fps). Both end
    in an embedding of `embedding_size` values; the distance between the two embeddings measures lip sync.

    Args:
        audio_channels (`list[int]`, *optional*, defaults to `[64, 192, 384, 256, 256, 512]`):
            Output channels of the six 2-D convolutions of the audio stream (`netcnnaud`).
        video_channels (`list[int]`, *optional*, defaults to `[96, 256, 256, 256, 256, 512]`):
            Output channels of the six 3-D convolutions of the video stream (`netcnnlip`).
        fc_hidden_size (`int`, *optional*, defaults to 512):
            Width of the hidden layer of the two fully connected heads (`netfcaud`, `netfclip`).
        embedding_size (`int`, *optional*, defaults to 1024):
            Size of the audio and video embeddings (`num_layers_in_fc_layers` in syncnet_python).
        num_mfcc (`int`, *optional*, defaults to 13):
            MFCC coefficients per audio frame (the height of the audio input).
        audio_window (`int`, *optional*, defaults to 20):
            MFCC frames per audio window (the width of the audio input).
        video_window (`int`, *optional*, defaults to 5):
            Video frames per window (the temporal kernel of the first video convolution).
        image_size (`int`, *optional*, defaults to 224):
            Side of the square face frames the video stream reads.
        num_channels (`int`, *optional*, defaults to 3):
            Colour channels of the frames (the original network reads BGR in 0..255).
        batch_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of every batch-norm layer.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialisation of fresh (unconverted) weights.
    """

    model_type = "syncnet_lse"

    def __init__(
        self,
        audio_channels=(64, 192, 384, 256, 256, 512),
        video_channels=(96, 256, 256, 256, 256, 512),
        fc_hidden_size=512,
        embedding_size=1024,
        num_mfcc=13,
        audio_window=20,
        video_window=5,
        image_size=224,
        num_channels=3,
        batch_norm_eps=1e-5,
        initializer_range=0.02,
        **kwargs,
    ):
        self.audio_channels = [int(c) for c in audio_channels]
        self.video_channels = [int(c) for c in video_channels]
        self.fc_hidden_size = fc_hidden_size
        self.embedding_size = embedding_size
        self.num_mfcc = num_mfcc
        self.audio_window = audio_window
        self.video_window = video_window
        self.image_size = image_size
        self.num_channels = num_channels
        self.batch_norm_eps = batch_norm_eps
        self.initializer_range = initializer_range
        self._validate()
        super().__init__(**kwargs)

    def _validate(self):
        for name in ("audio_channels", "video_channels"):
            channels = getattr(self, name)
            if len(channels) != NUM_CONV_LAYERS or min(channels) < 1:
                raise ValueError(f"{name} must list {NUM_CONV_LAYERS} positive channel counts, got {channels}")
        for name in ("fc_hidden_size", "embedding_size", "num_mfcc", "audio_window", "video_window", "num_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.batch_norm_eps <= 0:
            raise ValueError(f"batch_norm_eps must be > 0, got {self.batch_norm_eps}")
        if min(self.audio_final_kernel) < 1:
            raise ValueError(
                f"num_mfcc={self.num_mfcc} x audio_window={self.audio_window} is too small for the audio stream "
                "(it needs num_mfcc >= 5 and audio_window >= 7)"
            )
        if not isinstance(self.image_size, int) or self.video_final_kernel < 1:
            raise ValueError(f"image_size must be an integer >= 51 for the video stream, got {self.image_size!r}")

    @property
    def audio_final_kernel(self) -> tuple[int, int]:
        """(height, width) of the audio map before the last convolution, which collapses it to 1 x 1."""
        height, width = self.num_mfcc, self.audio_window
        # max-pool 3x3 with stride (1, 2), then max-pool 3x3 with stride 2 (the 3x3 convolutions keep the size)
        height, width = height - 2, (width - 3) // 2 + 1
        return (height - 3) // 2 + 1, (width - 3) // 2 + 1

    @property
    def video_final_kernel(self) -> int:
        """Side of the video map before the last convolution, which collapses it to 1 x 1 (6 for 224 pixels)."""
        size = (self.image_size - 7) // 2 + 1  # conv 7x7 stride 2, no padding
        size = (size - 3) // 2 + 1  # max-pool 3x3 stride 2
        size = (size + 2 - 5) // 2 + 1  # conv 5x5 stride 2 padding 1
        size = (size + 2 - 3) // 2 + 1  # max-pool 3x3 stride 2 padding 1
        return (size - 3) // 2 + 1  # three 3x3 convs keep the size, then max-pool 3x3 stride 2
