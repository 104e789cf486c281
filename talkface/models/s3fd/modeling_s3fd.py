"""S3FD face detector (syncnet_python `detectors/s3fd`, S3FD.pytorch), natively in PyTorch.

A VGG-16 trunk (through fc6/fc7 as dilated convolutions) plus two extra stages give six feature maps with strides
4..128. conv3_3, conv4_3 and conv5_3 are L2-normalised with learned per-channel scales. Every cell of every map has
one square anchor; a 3x3 convolution per level predicts the anchor's box offsets (4) and scores (2, face and
background; level 0 has 3 background channels whose maximum is taken: the "max-out background label").

Module names and indices are the original ones (`vgg.N`, `L2Norm3_3`, `extras.N`, `loc.N`, `conf.N`), so the released
`sfd_face.pth` state dict loads with its own keys. The network's input is RGB minus the per-channel means
(R - 123, G - 117, B - 104); `S3FDFeatureExtractor` prepares it and post-processes the outputs exactly as the
reference (`Detect`, then `detect_faces`' threshold and second NMS).
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from ...hub.mixin import TalkFaceHubMixin
from .configuration_s3fd import S3FDConfig

#: how to make an S3FD model folder (appended to load errors)
S3FD_CONVERT_HINT = "create it with: talkface convert s3fd --checkpoint sfd_face.pth --out DIR"

# VGG-16 as the original `vgg` ModuleList: ("conv", in, out, kernel, padding, dilation) / ("relu",) / ("pool", ceil)
# fmt: off
_VGG_LAYOUT = (
    ("conv", 3, 64, 3, 1, 1), ("relu",), ("conv", 64, 64, 3, 1, 1), ("relu",), ("pool", False),
    ("conv", 64, 128, 3, 1, 1), ("relu",), ("conv", 128, 128, 3, 1, 1), ("relu",), ("pool", False),
    ("conv", 128, 256, 3, 1, 1), ("relu",), ("conv", 256, 256, 3, 1, 1), ("relu",),
    ("conv", 256, 256, 3, 1, 1), ("relu",), ("pool", True),
    ("conv", 256, 512, 3, 1, 1), ("relu",), ("conv", 512, 512, 3, 1, 1), ("relu",),
    ("conv", 512, 512, 3, 1, 1), ("relu",), ("pool", False),
    ("conv", 512, 512, 3, 1, 1), ("relu",), ("conv", 512, 512, 3, 1, 1), ("relu",),
    ("conv", 512, 512, 3, 1, 1), ("relu",), ("pool", False),
    ("conv", 512, 1024, 3, 6, 6), ("relu",),   # fc6, dilated
    ("conv", 1024, 1024, 1, 0, 1), ("relu",),  # fc7
)
# fmt: on
# the trunk is tapped after these many layers: conv3_3 + ReLU, conv4_3 + ReLU, conv5_3 + ReLU, fc7 + ReLU
_TAPS = (16, 23, 30, len(_VGG_LAYOUT))
# (in, out, kernel, stride, padding) of the extra stages; every second one is a detection source
_EXTRAS = ((1024, 256, 1, 1, 0), (256, 512, 3, 2, 1), (512, 128, 1, 1, 0), (128, 256, 3, 2, 1))
_SOURCE_CHANNELS = (256, 512, 512, 1024, 512, 256)


@dataclass
class S3FDOutput(ModelOutput):
    """
    Args:
        box_offsets (`torch.FloatTensor` of shape `(batch, anchors, 4)`):
            Encoded box regressions of every anchor, levels concatenated (row-major cells within a level); the
            reference's `Detect` input `loc`.
        scores (`torch.FloatTensor` of shape `(batch, anchors, 2)`):
            Softmax of (background, face) per anchor, after level 0's max-out; `[..., 1]` is the face score.
        anchors (`torch.FloatTensor` of shape `(anchors, 4)`):
            Anchor centre x, centre y, width, height, normalised by the input width and height (`PriorBox`).
        boxes (`torch.FloatTensor` of shape `(batch, anchors, 4)`):
            Decoded boxes x1, y1, x2, y2, normalised by the input width and height.
        loc_maps (`tuple(torch.FloatTensor)`):
            Raw box-regression maps of the six levels, each `(batch, 4, height, width)`.
        conf_maps (`tuple(torch.FloatTensor)`):
            Raw score maps of the six levels, each `(batch, channels, height, width)`, before the max-out
            (level 0 has `max_out_background + 1` channels, the others 2).
    """

    box_offsets: torch.FloatTensor | None = None
    scores: torch.FloatTensor | None = None
    anchors: torch.FloatTensor | None = None
    boxes: torch.FloatTensor | None = None
    loc_maps: tuple | None = None
    conf_maps: tuple | None = None


class S3FDL2Norm(nn.Module):
    """x / (||x||_channels + eps) * weight, the weight a learned per-channel scale (the original `L2Norm`)."""

    def __init__(self, channels: int, scale: float, eps: float):
        super().__init__()
        self.scale = scale
        self.eps = eps
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        norm = hidden_states.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return self.weight[None, :, None, None] * torch.div(hidden_states, norm)


def anchor_boxes(image_size, feature_sizes, anchor_sizes, anchor_strides) -> torch.Tensor:
    """Anchors (cx, cy, w, h), normalised, for an input of `image_size` (height, width), as `PriorBox`.

    Cell (i, j) of level k is centred at ((j + 0.5) / (W / stride), (i + 0.5) / (H / stride)). When the image side
    is not a multiple of the stride the centres do not tile the image exactly; that is the reference's arithmetic.
    """
    height, width = image_size
    anchors = []
    for (rows, cols), size, stride in zip(feature_sizes, anchor_sizes, anchor_strides):
        centre_x = (np.arange(cols, dtype=np.float64) + 0.5) / (width / stride)
        centre_y = (np.arange(rows, dtype=np.float64) + 0.5) / (height / stride)
        grid_y, grid_x = np.meshgrid(centre_y, centre_x, indexing="ij")
        level = np.empty((rows * cols, 4), dtype=np.float64)
        level[:, 0], level[:, 1] = grid_x.reshape(-1), grid_y.reshape(-1)
        level[:, 2], level[:, 3] = size / width, size / height
        anchors.append(level)
    return torch.from_numpy(np.concatenate(anchors).astype(np.float32))


def decode_boxes(box_offsets: torch.Tensor, anchors: torch.Tensor, variances) -> torch.Tensor:
    """SSD decoding of `(..., anchors, 4)` offsets into x1, y1, x2, y2 (the reference's operation order)."""
    centres = anchors[..., :2] + box_offsets[..., :2] * variances[0] * anchors[..., 2:]
    sizes = anchors[..., 2:] * torch.exp(box_offsets[..., 2:] * variances[1])
    top_left = centres - sizes / 2
    return torch.cat((top_left, sizes + top_left), dim=-1)


class S3FDPreTrainedModel(TalkFaceHubMixin, PreTrainedModel):
    config_class = S3FDConfig
    base_model_prefix = "s3fd"
    main_input_name = "pixel_values"

    def _init_weights(self, module):
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, S3FDL2Norm):
            nn.init.constant_(module.weight, module.scale)


class S3FDModel(S3FDPreTrainedModel):
    """The S3FD network. `forward` gives every anchor's scores and decoded box; `S3FDFeatureExtractor`
    (`post_process`, `post_process_faces`) turns them into detections, and `detect_faces` does it all for
    a list of RGB images."""

    @classmethod
    def card_variants(cls):
        # the rows of the model card's parameter table (talkface.hub.cards)
        return [("S3FD `sfd_face.pth`", S3FDConfig())]

    def __init__(self, config: S3FDConfig):
        super().__init__(config)
        layers = []
        for spec in _VGG_LAYOUT:
            if spec[0] == "conv":
                _, cin, cout, kernel, padding, dilation = spec
                layers.append(nn.Conv2d(cin, cout, kernel, 1, padding=padding, dilation=dilation))
            elif spec[0] == "relu":
                layers.append(nn.ReLU(inplace=True))
            else:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=spec[1]))
        self.vgg = nn.ModuleList(layers)
        scale3, scale4, scale5 = config.l2_norm_scales
        self.L2Norm3_3 = S3FDL2Norm(256, scale3, config.l2_norm_eps)
        self.L2Norm4_3 = S3FDL2Norm(512, scale4, config.l2_norm_eps)
        self.L2Norm5_3 = S3FDL2Norm(512, scale5, config.l2_norm_eps)
        self.extras = nn.ModuleList(
            [nn.Conv2d(cin, cout, kernel, stride, padding=padding) for cin, cout, kernel, stride, padding in _EXTRAS])
        self.loc = nn.ModuleList([nn.Conv2d(c, 4, 3, 1, padding=1) for c in _SOURCE_CHANNELS])
        num_level0_scores = config.max_out_background + 1
        self.conf = nn.ModuleList(
            [nn.Conv2d(c, num_level0_scores if i == 0 else 2, 3, 1, padding=1) for i, c in enumerate(_SOURCE_CHANNELS)])
        self.post_init()

    def _sources(self, hidden_states: torch.Tensor) -> list[torch.Tensor]:
        """The six detection sources: normalised conv3_3 / conv4_3 / conv5_3, fc7, and the two extra stages."""
        sources = []
        norms = (self.L2Norm3_3, self.L2Norm4_3, self.L2Norm5_3, None)
        start = 0
        for stop, norm in zip(_TAPS, norms):
            for layer in self.vgg[start:stop]:
                hidden_states = layer(hidden_states)
            sources.append(norm(hidden_states) if norm is not None else hidden_states)
            start = stop
        for index, layer in enumerate(self.extras):
            hidden_states = torch.relu_(layer(hidden_states))
            if index % 2 == 1:
                sources.append(hidden_states)
        return sources

    def forward(self, pixel_values: torch.Tensor, return_dict: bool | None = None):
        """pixel_values: (batch, 3, height, width), RGB minus the channel means (see `S3FDFeatureExtractor`)."""
        if pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"pixel_values must have shape (batch, 3, height, width), got {tuple(pixel_values.shape)}")
        if min(pixel_values.shape[2:]) < 2:
            raise ValueError(f"the input is too small for S3FD: {tuple(pixel_values.shape[2:])} pixels")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        sources = self._sources(pixel_values)
        loc_maps = tuple(head(source) for head, source in zip(self.loc, sources))
        conf_maps = tuple(head(source) for head, source in zip(self.conf, sources))
        background = self.config.max_out_background
        level0 = conf_maps[0]
        level0 = torch.cat((level0[:, :background].max(dim=1, keepdim=True).values, level0[:, background:]), dim=1)
        batch = pixel_values.shape[0]
        box_offsets = torch.cat([m.permute(0, 2, 3, 1).reshape(batch, -1) for m in loc_maps], dim=1)
        logits = torch.cat(
            [m.permute(0, 2, 3, 1).reshape(batch, -1) for m in (level0,) + conf_maps[1:]], dim=1)
        box_offsets = box_offsets.view(batch, -1, 4)
        scores = torch.softmax(logits.view(batch, -1, 2), dim=-1)
        anchors = anchor_boxes(tuple(pixel_values.shape[2:]), [tuple(m.shape[2:]) for m in loc_maps],
                               self.config.anchor_sizes, self.config.anchor_strides).to(pixel_values.device)
        boxes = decode_boxes(box_offsets, anchors, self.config.box_variances)
        if not return_dict:
            return box_offsets, scores, anchors, boxes, loc_maps, conf_maps
        return S3FDOutput(box_offsets=box_offsets, scores=scores, anchors=anchors, boxes=boxes, loc_maps=loc_maps,
                          conf_maps=conf_maps)

    @torch.inference_mode()
    def detect_faces(self, images_rgb, feature_extractor=None, scales=None, threshold: float | None = None,
                     batch_size: int = 16) -> list[np.ndarray]:
        """Faces in RGB uint8 images (a list of (H, W, 3) arrays): one (n, 5) float64 array per image, rows
        x1, y1, x2, y2 (original-image pixels) and score, as the reference's `S3FD.detect_faces`.

        Images of the same size are run through the network together, `batch_size` at a time. `scales` (default
        the feature extractor's) resizes the images before detection; boxes of all scales are merged by the
        final NMS. `threshold` is the face score a box must exceed (default the feature extractor's).
        """
        if feature_extractor is None:
            from .feature_extraction_s3fd import S3FDFeatureExtractor

            feature_extractor = S3FDFeatureExtractor()
        scales = tuple(scales) if scales is not None else tuple(feature_extractor.scales)
        images = [np.asarray(image) for image in images_rgb]
        per_image = [[] for _ in images]
        device = next(self.parameters()).device
        groups = {}
        for index, image in enumerate(images):
            groups.setdefault(image.shape, []).append(index)
        for scale in scales:
            for indices in groups.values():
                for start in range(0, len(indices), batch_size):
                    chunk = indices[start : start + batch_size]
                    pixel_values = feature_extractor([images[i] for i in chunk], scale=scale)["pixel_values"]
                    outputs = self(pixel_values.to(device))
                    detections = feature_extractor.post_process(outputs)
                    for i, rows in zip(chunk, detections):
                        per_image[i].append(
                            feature_extractor.face_rows(rows, images[i].shape[:2], threshold=threshold))
        return [feature_extractor.merge_faces(parts) for parts in per_image]


class S3FDDetector:
    """An `S3FDModel` with its feature extractor: the `detector` that `talkface.faces.S3FDFaceBackend` calls.

    `detect_faces(images_rgb, scales=None, threshold=None, batch_size=16)` is `S3FDModel.detect_faces` with this
    feature extractor.
    """

    def __init__(self, model: S3FDModel, feature_extractor=None):
        from .feature_extraction_s3fd import S3FDFeatureExtractor

        self.model = model.eval()
        self.feature_extractor = feature_extractor or S3FDFeatureExtractor()

    def detect_faces(self, images_rgb, scales=None, threshold=None, batch_size: int = 16) -> list[np.ndarray]:
        return self.model.detect_faces(images_rgb, self.feature_extractor, scales=scales, threshold=threshold,
                                       batch_size=batch_size)

    @classmethod
    def from_pretrained(cls, source=None, device="cpu") -> "S3FDDetector":
        """Load a converted S3FD folder, Hub id or registry name; None reads the `TALKFACE_S3FD` environment
        variable, else takes the name s3fd (`talkface download s3fd --accept-license`)."""
        import os

        from ...errors import ModelLoadError
        from ...hub.registry import DEFAULT_S3FD
        from .feature_extraction_s3fd import S3FDFeatureExtractor

        source = source or os.environ.get("TALKFACE_S3FD") or DEFAULT_S3FD
        from ...utils.sources import resolve_source

        source = resolve_source(source, what="S3FD model", hint=S3FD_CONVERT_HINT).location
        try:
            model = S3FDModel.from_pretrained(source)
        except (OSError, ValueError) as err:
            raise ModelLoadError(
                f"cannot load an S3FD model from {source} ({str(err).splitlines()[0][:200]}); " + S3FD_CONVERT_HINT
            ) from err
        try:
            feature_extractor = S3FDFeatureExtractor.from_pretrained(source)
        except OSError:
            feature_extractor = None
        return cls(model.to(device), feature_extractor)
