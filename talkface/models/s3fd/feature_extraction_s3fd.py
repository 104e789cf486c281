"""Pre- and post-processing of S3FD, exactly as syncnet_python's `S3FD.detect_faces` and `Detect`.

Preprocessing (per scale s): `cv2.resize(rgb, (0, 0), fx=s, fy=s, INTER_LINEAR)`, then float32 RGB minus
(123, 117, 104). The reference writes this as two channel swaps around a BGR-order mean subtraction; the network
sees RGB order either way.

Post-processing, per image:
1. `post_process` (the reference's `Detect`): anchors whose face score exceeds `candidate_threshold` (0.05), at most
   `nms_top_k` (5000) of them by score, greedy NMS at IoU `nms_threshold` (0.3), the first `max_detections` (750)
   kept: a (2, 750, 5) array of [score, x1, y1, x2, y2] (normalised), class 0 (background) all zeros.
2. `face_rows`: the rows whose score exceeds the face threshold, scaled to the original image's pixels.
3. `merge_faces`: the rows of every scale together, then greedy NMS at IoU `face_nms_threshold` (0.1), in float64.
"""

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin

from ...hub.mixin import FeatureExtractorHubMixin


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, overlap: float, top_k: int, max_keep: int
               ) -> torch.Tensor:
    """Indices of the boxes kept by greedy NMS, highest score first (the reference's torch `nms`).

    Only the `top_k` highest scores take part; boxes overlapping a kept box by IoU > `overlap` are dropped. The
    arithmetic (areas without +1, union = (area - inter) + area_kept) and the ascending sort of the scores, whose
    order among ties decides which of two equal-score boxes is kept, are the reference's.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    x1, y1, x2, y2 = boxes.unbind(1)
    area = torch.mul(x2 - x1, y2 - y1)
    _, order = scores.sort(0)  # ascending: the best box is last
    order = order[-top_k:]
    keep = []
    while order.numel() > 0 and len(keep) < max_keep:
        best = order[-1]
        keep.append(int(best))
        if order.numel() == 1:
            break
        order = order[:-1]
        width = torch.clamp(torch.minimum(x2[order], x2[best]) - torch.maximum(x1[order], x1[best]), min=0.0)
        height = torch.clamp(torch.minimum(y2[order], y2[best]) - torch.maximum(y1[order], y1[best]), min=0.0)
        inter = width * height
        iou = inter / ((area[order] - inter) + area[best])
        order = order[iou.le(overlap)]
    return torch.tensor(keep, dtype=torch.long)


def numpy_nms(detections: np.ndarray, overlap: float) -> np.ndarray:
    """Indices kept by greedy NMS over (n, 5) float64 rows [x1, y1, x2, y2, score] (the reference's `nms_`):
    boxes overlapping a kept box by IoU > `overlap` are dropped."""
    x1, y1, x2, y2, scores = (detections[:, k] for k in range(5))
    areas = (x2 - x1) * (y2 - y1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        best = order[0]
        keep.append(int(best))
        rest = order[1:]
        width = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]))
        height = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]))
        inter = width * height
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[np.where(iou <= overlap)[0]]
    return np.array(keep, dtype=np.int64)


class S3FDFeatureExtractor(FeatureExtractorHubMixin, FeatureExtractionMixin):
    r"""
    Args:
        image_mean (`list[float]`, defaults to `[123.0, 117.0, 104.0]`): subtracted from R, G, B.
        scales (`list[float]`, defaults to `[1.0]`): image scales `detect_faces` runs at (syncnet_python's
            run_pipeline uses 0.25 on full frames).
        candidate_threshold (`float`, defaults to 0.05): face score an anchor needs to enter the NMS.
        nms_threshold (`float`, defaults to 0.3): IoU above which the NMS drops a box.
        nms_top_k (`int`, defaults to 5000): highest-scoring anchors the NMS considers.
        max_detections (`int`, defaults to 750): boxes kept per image (rows of `post_process`'s output).
        face_threshold (`float`, defaults to 0.8): score a box must exceed to be a face (`detect_faces`'
            default; run_pipeline passes 0.9).
        face_nms_threshold (`float`, defaults to 0.1): IoU of the final NMS over the faces of all scales.
    """

    card_preprocessing = "s3fd"  # the model card preprocessing table these defaults fill

    model_input_names = ["pixel_values"]

    def __init__(self, image_mean=(123.0, 117.0, 104.0), scales=(1.0,), candidate_threshold=0.05,
                 nms_threshold=0.3, nms_top_k=5000, max_detections=750, face_threshold=0.8,
                 face_nms_threshold=0.1, **kwargs):
        super().__init__(**kwargs)
        self.image_mean = [float(m) for m in image_mean]
        self.scales = [float(s) for s in scales]
        self.candidate_threshold = float(candidate_threshold)
        self.nms_threshold = float(nms_threshold)
        self.nms_top_k = int(nms_top_k)
        self.max_detections = int(max_detections)
        self.face_threshold = float(face_threshold)
        self.face_nms_threshold = float(face_nms_threshold)
        if len(self.image_mean) != 3:
            raise ValueError(f"image_mean must have 3 values (R, G, B), got {self.image_mean}")
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales must be positive numbers, got {self.scales}")

    def __call__(self, images_rgb, scale: float | None = None, return_tensors="pt") -> BatchFeature:
        """RGB uint8 images of one size -> {"pixel_values": (batch, 3, H', W') float32} at `scale`."""
        import cv2

        scale = self.scales[0] if scale is None else float(scale)
        images = [images_rgb] if isinstance(images_rgb, np.ndarray) and images_rgb.ndim == 3 else list(images_rgb)
        if not images:
            raise ValueError("no images given")
        shapes = {np.asarray(image).shape for image in images}
        if len(shapes) != 1:
            raise ValueError(f"images of one batch must have the same size, got {sorted(shapes)}")
        shape = shapes.pop()
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"expected RGB (H, W, 3) images, got shape {shape}")
        mean = np.asarray(self.image_mean, dtype=np.float32)
        batch = []
        for image in images:
            image = np.ascontiguousarray(image)
            if scale != 1.0:
                image = cv2.resize(image, dsize=(0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
            batch.append((image.astype(np.float32) - mean).transpose(2, 0, 1))
        # a C-contiguous batch: a channels-last one would run other convolution kernels (float round-off that can
        # swap two near-equal scores)
        pixel_values = torch.from_numpy(np.ascontiguousarray(np.stack(batch)))
        return BatchFeature({"pixel_values": pixel_values}, tensor_type=return_tensors)

    def post_process(self, outputs) -> torch.Tensor:
        """The reference's `Detect`: (batch, 2, max_detections, 5) rows [score, x1, y1, x2, y2] (normalised),
        sorted by score, zero rows after the last box; class 0 (background) is all zeros."""
        boxes, scores = outputs.boxes.float().cpu(), outputs.scores.float().cpu()
        detections = torch.zeros(boxes.shape[0], 2, self.max_detections, 5)
        for index in range(boxes.shape[0]):
            face_scores = scores[index, :, 1]
            mask = face_scores.gt(self.candidate_threshold)
            candidate_scores, candidate_boxes = face_scores[mask], boxes[index][mask]
            keep = greedy_nms(candidate_boxes, candidate_scores, self.nms_threshold, self.nms_top_k,
                              self.max_detections)
            count = len(keep)
            if count:
                detections[index, 1, :count] = torch.cat(
                    (candidate_scores[keep].unsqueeze(1), candidate_boxes[keep]), dim=1)
        return detections

    def face_rows(self, detections: torch.Tensor, image_size, threshold: float | None = None) -> np.ndarray:
        """One image's `post_process` rows -> (n, 5) float64 [x1, y1, x2, y2, score] in pixels of the image of
        `image_size` (height, width), for rows scoring above `threshold` (default `face_threshold`).

        The reference walks each class's rows while the score exceeds the threshold (it fails with an IndexError
        when all 750 rows do; here they are all taken). Coordinates are scaled in float32, as there."""
        threshold = self.face_threshold if threshold is None else float(threshold)
        height, width = image_size
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        rows = []
        for class_rows in detections:
            above = class_rows[:, 0] > threshold
            count = int(above.numel()) if bool(above.all()) else int(torch.argmin(above.to(torch.uint8)))
            if count:
                points = (class_rows[:count, 1:] * scale).numpy().astype(np.float64)
                rows.append(np.concatenate([points, class_rows[:count, :1].numpy().astype(np.float64)], axis=1))
        return np.concatenate(rows) if rows else np.empty((0, 5))

    def merge_faces(self, parts) -> np.ndarray:
        """Faces of one image from all scales, after the final NMS (`face_nms_threshold`)."""
        faces = np.concatenate(list(parts)) if len(parts) else np.empty((0, 5))
        if len(faces) == 0:
            return np.empty((0, 5))
        return faces[numpy_nms(faces, self.face_nms_threshold)]
