"""Configuration of S3FD, the single-shot scale-invariant face detector (Zhang et al., ICCV 2017)."""

from transformers import PretrainedConfig

NUM_LEVELS = 6


class S3FDConfig(PretrainedConfig):
    r"""
    Configuration of [`S3FDModel`]: a VGG-16 trunk with six detection levels (conv3_3, conv4_3, conv5_3 with L2
    normalisation, fc7, and two extra stages), each predicting, per anchor, a face/background score and a box
    offset. The defaults reproduce the detector of syncnet_python (`detectors/s3fd`, weights `sfd_face.pth`, the
    S3FD.pytorch network), which is also the detector Wav2Lip's face cropping uses.

    Anchors: level k has one square anchor of side `anchor_sizes[k]` pixels centred on every cell of its
    feature map, cell centres spaced `anchor_strides[k]` pixels apart (in units of the input image). Offsets are
    decoded as in SSD with `box_variances`.

    Args:
        anchor_sizes (`list[int]`, *optional*, defaults to `[16, 32, 64, 128, 256, 512]`):
            Anchor side in input pixels per level (`min_sizes` of the original `PriorBox`).
        anchor_strides (`list[int]`, *optional*, defaults to `[4, 8, 16, 32, 64, 128]`):
            Stride of each level's feature map relative to the input (`steps` of `PriorBox`).
        box_variances (`list[float]`, *optional*, defaults to `[0.1, 0.2]`):
            SSD decoding variances of the centre and of the log size.
        l2_norm_scales (`list[float]`, *optional*, defaults to `[10.0, 8.0, 5.0]`):
            Initial per-channel scales of the L2 normalisation of conv3_3, conv4_3 and conv5_3 (learned; only used
            to initialise fresh weights).
        max_out_background (`int`, *optional*, defaults to 3):
            Background channels of level 0's classifier; their maximum is the background score ("max-out
            background label" of the paper). Level 0 therefore has `max_out_background + 1` score channels.
        l2_norm_eps (`float`, *optional*, defaults to 1e-10):
            Added to the L2 norm before dividing.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialisation of fresh (unconverted) convolutions.
    """

    model_type = "s3fd"

    def __init__(
        self,
        anchor_sizes=(16, 32, 64, 128, 256, 512),
        anchor_strides=(4, 8, 16, 32, 64, 128),
        box_variances=(0.1, 0.2),
        l2_norm_scales=(10.0, 8.0, 5.0),
        max_out_background=3,
        l2_norm_eps=1e-10,
        initializer_range=0.02,
        **kwargs,
    ):
        self.anchor_sizes = [int(s) for s in anchor_sizes]
        self.anchor_strides = [int(s) for s in anchor_strides]
        self.box_variances = [float(v) for v in box_variances]
        self.l2_norm_scales = [float(s) for s in l2_norm_scales]
        self.max_out_background = max_out_background
        self.l2_norm_eps = l2_norm_eps
        self.initializer_range = initializer_range
        self._validate()
        super().__init__(**kwargs)

    def _validate(self):
        for name in ("anchor_sizes", "anchor_strides"):
            values = getattr(self, name)
            if len(values) != NUM_LEVELS or min(values) < 1:
                raise ValueError(f"{name} must list {NUM_LEVELS} positive integers, got {values}")
        if len(self.box_variances) != 2 or min(self.box_variances) <= 0:
            raise ValueError(f"box_variances must be two positive numbers, got {self.box_variances}")
        if len(self.l2_norm_scales) != 3:
            raise ValueError(f"l2_norm_scales must list 3 scales (conv3_3, conv4_3, conv5_3), got {self.l2_norm_scales}")
        if not isinstance(self.max_out_background, int) or self.max_out_background < 1:
            raise ValueError(f"max_out_background must be a positive integer, got {self.max_out_background!r}")
        if self.l2_norm_eps <= 0:
            raise ValueError(f"l2_norm_eps must be > 0, got {self.l2_norm_eps}")
