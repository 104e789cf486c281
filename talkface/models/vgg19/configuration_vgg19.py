"""Configuration of the VGG-19 network used as a perceptual-loss feature extractor."""

from transformers import PretrainedConfig

NUM_BLOCKS = 5

# Per-layer weights of the perceptual loss over relu1_1 .. relu5_1: deeper layers count more, because their
# activations are smaller and sparser. These are the weights pix2pixHD popularised for exactly these five layers.
DEFAULT_PERCEPTUAL_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
DEFAULT_PERCEPTUAL_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Config(PretrainedConfig):
    r"""
    Configuration of [`VGG19Model`], the VGG-19 network of Simonyan & Zisserman ("Very Deep Convolutional Networks
    for Large-Scale Image Recognition", 2015) in the layout of torchvision's `vgg19` (configuration "E", no batch
    norm). The defaults reproduce torchvision's ImageNet checkpoint `vgg19-dcbb9e9d.pth`.

    The convolutional part (`features`) is five blocks of 3x3 convolutions (padding 1) each followed by a ReLU,
    every block closed by a 2x2 max-pool of stride 2. Layers are named as in the perceptual-loss literature:
    `conv{block}_{i}`, `relu{block}_{i}` and `pool{block}`, with blocks and convolutions counted from 1
    (`relu3_1` is the ReLU after the first convolution of the third block). Their position in
    `features` (the torchvision index, e.g. `relu3_1` = 11) is also accepted wherever a layer name is.

    Args:
        block_channels (`list[int]`, *optional*, defaults to `[64, 128, 256, 512, 512]`):
            Output channels of the convolutions of each of the five blocks.
        convs_per_block (`list[int]`, *optional*, defaults to `[2, 2, 4, 4, 4]`):
            Number of convolutions in each of the five blocks (VGG-19 has 16 in all).
        num_channels (`int`, *optional*, defaults to 3):
            Channels of the input images (RGB).
        use_classifier (`bool`, *optional*, defaults to `False`):
            Whether the model has torchvision's classifier head (adaptive average pool to `pool_output_size`,
            then three linear layers). A perceptual loss needs only the convolutional features, so converted
            checkpoints drop the head unless asked to keep it (it is 86% of the parameters).
        classifier_hidden_size (`int`, *optional*, defaults to 4096):
            Width of the two hidden linear layers of the classifier.
        num_classes (`int`, *optional*, defaults to 1000):
            Output size of the classifier (ImageNet classes).
        classifier_dropout (`float`, *optional*, defaults to 0.5):
            Dropout probability after each hidden linear layer of the classifier (active in training mode only).
        pool_output_size (`int`, *optional*, defaults to 7):
            Side of the adaptive average pool between the features and the classifier.
        normalize_input (`bool`, *optional*, defaults to `True`):
            Whether `forward` takes RGB images in [0, 1] and normalises them with `image_mean` / `image_std`
            itself. Set it to `False` to feed already-normalised tensors.
        image_mean (`list[float]`, *optional*, defaults to the ImageNet mean `[0.485, 0.456, 0.406]`):
            Per-channel mean subtracted from [0, 1] inputs when `normalize_input` is set.
        image_std (`list[float]`, *optional*, defaults to the ImageNet std `[0.229, 0.224, 0.225]`):
            Per-channel standard deviation dividing the inputs when `normalize_input` is set.
        feature_layers (`list[str | int]`, *optional*, defaults to `["relu1_1", "relu2_1", ..., "relu5_1"]`):
            Layers whose activations `forward` returns when the call names none; also the layers of
            [`VGGPerceptualLoss`] built from this model.
        perceptual_layer_weights (`list[float]`, *optional*, defaults to `[1/32, 1/16, 1/8, 1/4, 1]`):
            Weight of each of `feature_layers` in [`VGGPerceptualLoss`] (one per layer, non-negative).
    """

    model_type = "vgg19"

    def __init__(
        self,
        block_channels=(64, 128, 256, 512, 512),
        convs_per_block=(2, 2, 4, 4, 4),
        num_channels=3,
        use_classifier=False,
        classifier_hidden_size=4096,
        num_classes=1000,
        classifier_dropout=0.5,
        pool_output_size=7,
        normalize_input=True,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        feature_layers=DEFAULT_PERCEPTUAL_LAYERS,
        perceptual_layer_weights=DEFAULT_PERCEPTUAL_LAYER_WEIGHTS,
        **kwargs,
    ):
        self.block_channels = [int(c) for c in block_channels]
        self.convs_per_block = [int(n) for n in convs_per_block]
        self.num_channels = int(num_channels)
        self.use_classifier = bool(use_classifier)
        self.classifier_hidden_size = int(classifier_hidden_size)
        self.num_classes = int(num_classes)
        self.classifier_dropout = float(classifier_dropout)
        self.pool_output_size = int(pool_output_size)
        self.normalize_input = bool(normalize_input)
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]
        # JSON has no tuples and keeps ints as ints, so names and indices both survive a save/load round trip
        self.feature_layers = list(feature_layers)
        self.perceptual_layer_weights = [float(w) for w in perceptual_layer_weights]
        self._validate()
        super().__init__(**kwargs)

    def _validate(self):
        if len(self.block_channels) != NUM_BLOCKS or min(self.block_channels) < 1:
            raise ValueError(
                f"block_channels must list {NUM_BLOCKS} positive channel counts, got {self.block_channels}"
            )
        if len(self.convs_per_block) != NUM_BLOCKS or min(self.convs_per_block) < 1:
            raise ValueError(
                f"convs_per_block must list {NUM_BLOCKS} positive counts, got {self.convs_per_block}"
            )
        for name in ("num_channels", "classifier_hidden_size", "num_classes", "pool_output_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0.0 <= self.classifier_dropout < 1.0:
            raise ValueError(f"classifier_dropout must be in [0, 1), got {self.classifier_dropout}")
        for name in ("image_mean", "image_std"):
            if len(getattr(self, name)) != self.num_channels:
                raise ValueError(
                    f"{name} must have one value per input channel ({self.num_channels}), got {getattr(self, name)}"
                )
        if min(self.image_std) <= 0:
            raise ValueError(f"image_std values must be positive, got {self.image_std}")
        if not self.feature_layers:
            raise ValueError("feature_layers must name at least one layer, e.g. ['relu1_1', 'relu2_1']")
        for layer in self.feature_layers:
            self.layer_index(layer)  # raises ValueError on an unknown layer
        if len(self.perceptual_layer_weights) != len(self.feature_layers):
            raise ValueError(
                f"perceptual_layer_weights must have one weight per feature layer ({len(self.feature_layers)}), "
                f"got {self.perceptual_layer_weights}"
            )
        if min(self.perceptual_layer_weights) < 0:
            raise ValueError(f"perceptual_layer_weights must be non-negative, got {self.perceptual_layer_weights}")

    @property
    def layer_names(self) -> list[str]:
        """Names of the layers of `features`, in order: the name at position i is torchvision's `features.i`."""
        names = []
        for block, num_convs in enumerate(self.convs_per_block, start=1):
            for conv in range(1, num_convs + 1):
                names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            names.append(f"pool{block}")
        return names

    @property
    def conv_layer_indices(self) -> list[int]:
        """Positions of the convolutions in `features` (torchvision: 0, 2, 5, 7, 10, ...)."""
        return [i for i, name in enumerate(self.layer_names) if name.startswith("conv")]

    def layer_index(self, layer) -> int:
        """Position in `features` of a layer given by name (`"relu3_1"`) or by torchvision index (`11`)."""
        names = self.layer_names
        if isinstance(layer, bool):  # bool is an int subclass; True is not a layer
            raise ValueError(
                f"unknown VGG-19 layer {layer!r}; use a name like 'relu3_1' or an index 0..{len(names) - 1}"
            )
        if isinstance(layer, int):
            if 0 <= layer < len(names):
                return layer
        elif isinstance(layer, str) and layer in names:
            return names.index(layer)
        raise ValueError(
            f"unknown VGG-19 layer {layer!r}; use a name like 'relu3_1' (one of {names[0]} .. {names[-1]}) "
            f"or an index 0..{len(names) - 1}"
        )
