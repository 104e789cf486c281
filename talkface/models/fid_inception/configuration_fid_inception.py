"""Configuration of the FID Inception-v3 network (the feature extractor of the Fréchet Inception Distance)."""

from transformers import PretrainedConfig

# Every channel width of Inception-v3 is a multiple of 16, so dividing all of them by one of these keeps the
# architecture's shape (used by tests to build small random networks quickly).
ALLOWED_CHANNEL_DIVISORS = (1, 2, 4, 8, 16)
# The smallest input the stem and the three stride-2 reductions accept (the pooled map is then 1x1).
MIN_INPUT_SIZE = 75


class FIDInceptionConfig(PretrainedConfig):
    r"""
    Configuration of [`FIDInceptionModel`]: the Inception-v3 variant that TensorFlow's original FID code used
    (graph `inception-2015-12-05`) as ported to PyTorch by pytorch-fid (weight file
    `pt_inception-2015-12-05-6726825d.pth`). The defaults reproduce that network, whose 2048-d pool3 features
    define FID.

    It differs from torchvision's `inception_v3` in: the 1008-class `fc`; the average pools inside the
    Mixed_5b-d / Mixed_6b-e / Mixed_7b blocks exclude the zero padding from the average
    (`count_include_pad=False`, as in TensorFlow); and the pool branch of Mixed_7c is a 3x3 *max* pool. There is
    no auxiliary classifier.

    Args:
        channel_divisor (`int`, *optional*, defaults to 1):
            Divides every channel width of the network (1 = the real architecture, 2048-d features). One of
            1, 2, 4, 8, 16; anything but 1 exists only to build small random networks for tests.
        num_classes (`int`, *optional*, defaults to 1008):
            Output size of `fc` (the 2015 TensorFlow graph has 1008 classes).
        include_classifier (`bool`, *optional*, defaults to `True`):
            Whether the model holds `fc`. FID never uses it, but it is part of the weight file.
        resize_input (`bool`, *optional*, defaults to `True`):
            Whether `forward` resizes inputs to `image_size` x `image_size` (bilinear, `align_corners=False`,
            no antialiasing), as pytorch-fid does.
        image_size (`int`, *optional*, defaults to 299):
            Side of the resized input. 299 for FID; at least 75.
        normalize_input (`bool`, *optional*, defaults to `True`):
            Whether `forward` takes RGB in [0, 1] and maps it to [-1, 1] (`2 * x - 1`) itself.
        batch_norm_eps (`float`, *optional*, defaults to 0.001):
            Epsilon of every batch norm (TensorFlow's value).
    """

    model_type = "fid_inception"
    # `input_size` is this field's former name: old config.json files and `config.input_size` keep working
    attribute_map = {"input_size": "image_size"}

    def __init__(
        self,
        channel_divisor=1,
        num_classes=1008,
        include_classifier=True,
        resize_input=True,
        image_size=299,
        normalize_input=True,
        batch_norm_eps=1e-3,
        **kwargs,
    ):
        image_size = kwargs.pop("input_size", image_size)  # the former name, in old config.json files
        self.channel_divisor = int(channel_divisor)
        self.num_classes = int(num_classes)
        self.include_classifier = bool(include_classifier)
        self.resize_input = bool(resize_input)
        self.image_size = int(image_size)
        self.normalize_input = bool(normalize_input)
        self.batch_norm_eps = float(batch_norm_eps)
        self._validate()
        super().__init__(**kwargs)

    def _validate(self):
        if self.channel_divisor not in ALLOWED_CHANNEL_DIVISORS:
            raise ValueError(f"channel_divisor must be one of {ALLOWED_CHANNEL_DIVISORS}, got {self.channel_divisor}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {self.num_classes}")
        if self.image_size < MIN_INPUT_SIZE:
            raise ValueError(
                f"image_size must be at least {MIN_INPUT_SIZE} (Inception-v3's minimum), got {self.image_size}"
            )
        if self.batch_norm_eps <= 0:
            raise ValueError(f"batch_norm_eps must be positive, got {self.batch_norm_eps}")

    @property
    def hidden_size(self) -> int:
        """Size of the pooled features (2048 for the real network)."""
        return 2048 // self.channel_divisor

    def width(self, channels: int) -> int:
        """A channel width of the real architecture, scaled by `channel_divisor`."""
        return channels // self.channel_divisor
