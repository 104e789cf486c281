"""Configuration of GFPGAN (the "clean" v1 architecture used by GFPGANv1.2/v1.3/v1.4)."""

import math

from transformers import PretrainedConfig

# The 5-point FFHQ alignment template of a 512x512 GFPGAN face (x, y in pixels): the centres of the eye on the
# image's left and right, the nose tip, and the mouth corners on the image's left and right. These are the values
# of facexlib's FaceRestoreHelper, which GFPGAN's faces were aligned with in training and at inference.
FFHQ_TEMPLATE_512 = (
    (192.98138, 239.94708),
    (318.90277, 240.1936),
    (256.63416, 314.01935),
    (201.26117, 371.41043),
    (313.08905, 371.15118),
)

# Base channel count of the StyleGAN2 decoder per resolution: 512 up to 32x32, then halving with each doubling
# (times `channel_multiplier`). The U-Net encoder uses half of these.
_FLAT_CHANNELS_UP_TO = 32


class GFPGANConfig(PretrainedConfig):
    r"""Configuration of [`GFPGANModel`]: a U-Net encoder whose features modulate a StyleGAN2 decoder (SFT).

    The defaults reproduce GFPGANv1.4 (`GFPGANv1Clean(out_size=512, num_style_feat=512, channel_multiplier=2,
    num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)`).

    Args:
        image_size (`int`, *optional*, defaults to 512):
            Side of the square input and output faces; a power of two between 8 and 1024.
        num_style_feat (`int`, *optional*, defaults to 512):
            Width of the style (latent) vectors.
        num_mlp (`int`, *optional*, defaults to 8):
            Number of linear layers of the decoder's style MLP. The MLP is skipped when `input_is_latent` is true,
            but its weights are part of the checkpoint.
        channel_multiplier (`int`, *optional*, defaults to 2):
            Multiplier of the channel counts at resolutions above 32 ("large" StyleGAN2 networks use 2).
        narrow (`float`, *optional*, defaults to 1.0):
            Ratio applied to every channel count (the U-Net encoder additionally uses half of it).
        sft_half (`bool`, *optional*, defaults to `True`):
            Apply the spatial feature transform (scale and shift from the encoder) to half of the decoder's channels
            only; the other half passes unchanged.
        different_w (`bool`, *optional*, defaults to `True`):
            Predict one latent vector per decoder layer (`2 * log2(image_size) - 2` of them) instead of a single one.
        input_is_latent (`bool`, *optional*, defaults to `True`):
            Feed the encoder's style code to the decoder directly as latents (W space) instead of through the MLP.
        randomize_noise (`bool`, *optional*, defaults to `False`):
            Draw fresh noise for the decoder's noise injection on every call. False uses the stored noise maps, which
            makes the output deterministic. (The original inference helper draws fresh noise; the noise weights of
            the released model are small, so the difference is faint grain.)
        negative_slope (`float`, *optional*, defaults to 0.2):
            Slope of every leaky ReLU.
        face_template (`list[list[float]]`, *optional*):
            The 5-point alignment template (eye, eye, nose tip, mouth corner, mouth corner; x, y) in pixels of a
            512x512 face; it is scaled to `image_size`. Defaults to the FFHQ template the released weights expect.
    """

    model_type = "gfpgan"
    # `out_size` is this field's former name: old config.json files and `config.out_size` keep working
    attribute_map = {"out_size": "image_size"}

    def __init__(
        self,
        image_size: int = 512,
        num_style_feat: int = 512,
        num_mlp: int = 8,
        channel_multiplier: int = 2,
        narrow: float = 1.0,
        sft_half: bool = True,
        different_w: bool = True,
        input_is_latent: bool = True,
        randomize_noise: bool = False,
        negative_slope: float = 0.2,
        face_template=None,
        **kwargs,
    ):
        image_size = kwargs.pop("out_size", image_size)  # the former name, in old config.json files
        super().__init__(**kwargs)
        self.image_size = image_size
        self.num_style_feat = num_style_feat
        self.num_mlp = num_mlp
        self.channel_multiplier = channel_multiplier
        self.narrow = narrow
        self.sft_half = sft_half
        self.different_w = different_w
        self.input_is_latent = input_is_latent
        self.randomize_noise = randomize_noise
        self.negative_slope = negative_slope
        self.face_template = [list(map(float, p)) for p in (face_template or FFHQ_TEMPLATE_512)]
        self._validate()

    def _validate(self):
        if not isinstance(self.image_size, int) or self.image_size < 8 or self.image_size > 1024 or (
            self.image_size & (self.image_size - 1)
        ):
            raise ValueError(f"image_size must be a power of two between 8 and 1024, got {self.image_size!r}")
        for name in ("num_style_feat", "num_mlp", "channel_multiplier"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.narrow, (int, float)) and self.narrow > 0):
            raise ValueError(f"narrow must be a positive number, got {self.narrow!r}")
        if not 0 <= self.negative_slope < 1:
            raise ValueError(f"negative_slope must be in [0, 1), got {self.negative_slope!r}")
        if len(self.face_template) != 5 or any(len(p) != 2 for p in self.face_template):
            raise ValueError(f"face_template must hold 5 (x, y) points, got {self.face_template!r}")
        for resolution in self.resolutions:
            decoder, encoder = self.decoder_channels(resolution), self.encoder_channels(resolution)
            if encoder < 1:
                raise ValueError(
                    f"narrow={self.narrow} leaves the encoder no channels at {resolution}x{resolution}; "
                    "use a larger narrow"
                )
            # The SFT scale/shift maps (encoder width) must match the decoder channels they modulate.
            modulated = decoder - decoder // 2 if self.sft_half else decoder
            produced = encoder if self.sft_half else 2 * encoder
            if modulated != produced:
                raise ValueError(
                    f"narrow={self.narrow}, channel_multiplier={self.channel_multiplier}, sft_half={self.sft_half} "
                    f"give {produced} SFT channels for {modulated} decoder channels at {resolution}x{resolution}; "
                    "choose a narrow that keeps channel counts even (e.g. 1, 0.5, 0.25, 0.125)"
                )

    # ----- derived values -----
    @property
    def log_size(self) -> int:
        return int(math.log2(self.image_size))

    @property
    def resolutions(self) -> list:
        """Feature resolutions from 4x4 up to image_size."""
        return [2**i for i in range(2, self.log_size + 1)]

    @property
    def num_latents(self) -> int:
        """Latent vectors the decoder consumes: two per resolution above 4x4, plus the first conv and ToRGB."""
        return 2 * self.log_size - 2

    @property
    def num_noise_layers(self) -> int:
        """Style convolutions (each with a noise map): one at 4x4 and two per higher resolution."""
        return 2 * (self.log_size - 2) + 1

    def _base_channels(self, resolution: int):
        if resolution <= _FLAT_CHANNELS_UP_TO:
            return 512
        return (16384 // resolution) * self.channel_multiplier  # 256*cm at 64, 128*cm at 128, ...

    def decoder_channels(self, resolution: int) -> int:
        """Channels of the StyleGAN2 decoder at `resolution`."""
        return int(self._base_channels(resolution) * self.narrow)

    def encoder_channels(self, resolution: int) -> int:
        """Channels of the U-Net encoder/decoder at `resolution` (half the decoder's width)."""
        return int(self._base_channels(resolution) * (self.narrow * 0.5))

    def template_points(self):
        """The alignment template scaled to `image_size`, as a (5, 2) list."""
        scale = self.image_size / 512.0
        return [[x * scale, y * scale] for x, y in self.face_template]
