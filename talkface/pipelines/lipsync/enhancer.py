"""Face enhancement with GFPGAN: align a face to the model's template, restore it, and paste it back.

    enhancer = load_enhancer("gfpgan", "models/gfpgan-v1.4")      # a converted model folder or Hub id
    frame = enhancer(frame_rgb, detection)                       # detection.landmarks: (68, 2) in frame pixels

`GFPGANEnhancer` is the pipeline's `enhancer` hook: a callable `(frame_rgb, detection) -> frame_rgb` that works on
full frames (uint8 RGB, any size). For each frame it
  1. takes 5 points from the 68-point landmarks (eye centres, nose tip, mouth corners),
  2. fits a similarity transform (rotation, uniform scale, translation) from them to the 5-point FFHQ template of
     the model (`config.face_template`, scaled to `image_size`) and warps the face to image_size x image_size,
  3. runs the network (RGB in [-1, 1]),
  4. warps the restored face back and blends it in with a soft mask: the warped square, eroded and blurred so the
     seam falls inside the face square and fades over a width proportional to the face size.
Only the bounding box of the warped-back square is touched; pixels outside it are returned unchanged.
"""

import logging

import cv2
import numpy as np
import torch

from ...errors import ModelLoadError, TalkFaceUserError
from ...faces.backends import box_iou as _box_iou
from ...utils.sources import resolve_source

logger = logging.getLogger(__name__)

# 68-point (iBUG/dlib) indices of the 5 alignment points, in the template's order
LEFT_EYE_68 = slice(36, 42)  # the eye on the image's left (the subject's right eye)
RIGHT_EYE_68 = slice(42, 48)
NOSE_TIP_68 = 30
MOUTH_LEFT_68 = 48
MOUTH_RIGHT_68 = 54

# Background of the aligned crop where the warp leaves the frame: the grey of the original alignment helper
# ((135, 133, 132) BGR), so borders look like what the model saw in training.
WARP_BORDER_RGB = (132, 133, 135)
# Faces whose eye distance is below this (pixels) are left alone: too small (or too side-on) to restore.
MIN_EYE_DISTANCE = 5.0

GFPGAN_V14_URL = "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth"
CONVERT_HINT = (
    f"download GFPGANv1.4.pth from {GFPGAN_V14_URL} and run "
    "`talkface convert gfpgan --checkpoint GFPGANv1.4.pth --out models/gfpgan-v1.4`, then pass that folder"
)


def five_points_from_68(landmarks68: np.ndarray) -> np.ndarray:
    """(68, 2) landmarks -> (5, 2): left eye centre, right eye centre, nose tip, left and right mouth corners."""
    landmarks68 = np.asarray(landmarks68, dtype=np.float64)
    if landmarks68.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {landmarks68.shape}")
    return np.stack([
        landmarks68[LEFT_EYE_68].mean(axis=0),
        landmarks68[RIGHT_EYE_68].mean(axis=0),
        landmarks68[NOSE_TIP_68],
        landmarks68[MOUTH_LEFT_68],
        landmarks68[MOUTH_RIGHT_68],
    ])


def estimate_similarity(source_points: np.ndarray, target_points: np.ndarray, method: str = "least_squares"):
    """2x3 similarity transform mapping `source_points` (N, 2) onto `target_points` (N, 2).

    "least_squares" is the closed-form fit over all points (Umeyama, no reflection): smooth from frame to frame,
    which matters for video. "lmeds" is OpenCV's robust fit (cv2.estimateAffinePartial2D with LMEDS), the choice of
    the original alignment helper, which ignores an outlier point at the price of jumping between point subsets.
    """
    src = np.asarray(source_points, dtype=np.float64)
    dst = np.asarray(target_points, dtype=np.float64)
    if method == "lmeds":
        matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
        if matrix is not None:
            return matrix
        logger.debug("LMEDS fit failed; falling back to least squares")
    elif method != "least_squares":
        raise ValueError(f"alignment method must be 'least_squares' or 'lmeds', got {method!r}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    # With z = x + iy, the best similarity is dst_c = a * src_c for the complex a minimising the squared error.
    src_z = src_c[:, 0] + 1j * src_c[:, 1]
    dst_z = dst_c[:, 0] + 1j * dst_c[:, 1]
    a = np.vdot(src_z, dst_z) / max(np.vdot(src_z, src_z).real, 1e-12)
    linear = np.array([[a.real, -a.imag], [a.imag, a.real]])
    translation = dst_mean - linear @ src_mean
    return np.hstack([linear, translation[:, None]])


# A fitted face must overlap the pipeline's box at least this much (intersection over union) to be the same face.
MIN_BOX_IOU = 0.3




class GFPGANEnhancer:
    """Restore the face of full video frames with a `GFPGANModel` (the pipeline's `enhancer` hook).

    Args:
        model: a `GFPGANModel` (any size; its config gives the crop size and template).
        strength: blend between the aligned input face (0) and the restored face (1). GFPGAN's "weight" option has
            no effect on the clean architecture; this blend is the knob that does something.
        alignment: "least_squares" (default, stable over video) or "lmeds" (the original helper's robust fit).
        landmark_backend: fits 68 landmarks when a detection comes with a box but no landmarks (the pipeline
            hands on the landmarks its tracker fitted, so this is only used for faces without them, e.g. a forced
            --box): a talkface face backend name ("mediapipe", "dlib", "face_alignment"), a `FaceBackend`
            instance, or None to leave such frames alone. Created on first use.
        device, dtype: where the model runs (default: where its parameters are).
    """

    def __init__(self, model, strength: float = 1.0, alignment: str = "least_squares", landmark_backend="mediapipe",
                 device=None, dtype=None):
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        if alignment not in ("least_squares", "lmeds"):
            raise ValueError(f"alignment must be 'least_squares' or 'lmeds', got {alignment!r}")
        self.model = model.eval()
        if device is not None or dtype is not None:
            self.model.to(device=device, dtype=dtype)
        param = next(self.model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.strength = float(strength)
        self.alignment = alignment
        self.face_size = int(model.config.image_size)
        self.template = np.asarray(model.config.template_points(), dtype=np.float64)  # (5, 2)
        self.landmark_backend = landmark_backend
        self._backend = None
        #: frames with a face box that were left as they are because no landmarks could be fitted
        self.frames_without_landmarks = 0

    def _landmarks_of(self, frame_rgb: np.ndarray, detection):
        """The (68, 2) landmarks of the detection, fitted on the frame when only a box is given; None if none."""
        if detection is None:
            return None
        if isinstance(detection, np.ndarray):
            return detection.astype(np.float64)
        if getattr(detection, "landmarks", None) is not None:
            return np.asarray(detection.landmarks, dtype=np.float64)
        box = getattr(detection, "box", None)
        if box is None or self.landmark_backend is None:
            return None
        if self._backend is None:
            from ...faces.backends import get_face_backend  # lazy: needs the optional face backend package

            self._backend = get_face_backend(self.landmark_backend)
        box = np.asarray(box, dtype=np.float64)
        faces = [f for f in self._backend.detect(frame_rgb, landmarks=True) if f.landmarks is not None]
        best = max(faces, key=lambda f: _box_iou(f.box, box), default=None)
        if best is None or _box_iou(best.box, box) < MIN_BOX_IOU:
            self.frames_without_landmarks += 1
            if self.frames_without_landmarks == 1:
                logger.warning("no face landmarks found in a face box; such frames are not enhanced")
            return None
        return np.asarray(best.landmarks, dtype=np.float64)

    # -- the three stages, usable on their own (the benchmark times them) -----------------------------------------
    def align(self, frame_rgb: np.ndarray, landmarks68: np.ndarray):
        """Warp the face to the template. Returns (aligned face (S, S, 3) uint8, 2x3 frame->face matrix)."""
        points = five_points_from_68(landmarks68)
        matrix = estimate_similarity(points, self.template, self.alignment)
        face = cv2.warpAffine(frame_rgb, matrix, (self.face_size, self.face_size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=WARP_BORDER_RGB)
        return face, matrix

    @torch.no_grad()
    def restore(self, aligned_face: np.ndarray) -> np.ndarray:
        """Run the network on an aligned (S, S, 3) uint8 RGB face; returns the restored face, uint8."""
        pixels = torch.from_numpy(np.ascontiguousarray(aligned_face)).to(self.device)
        pixels = pixels.permute(2, 0, 1)[None].to(self.dtype) / 127.5 - 1.0  # (1, 3, S, S) in [-1, 1]
        restored = self.model(pixels).restored_pixel_values.clamp(-1.0, 1.0)
        restored = ((restored[0].permute(1, 2, 0).float() + 1.0) * 127.5).round()  # (S, S, 3)
        restored = restored.clamp(0, 255).to(torch.uint8).cpu().numpy()
        if self.strength < 1.0:
            restored = cv2.addWeighted(restored, self.strength, aligned_face, 1.0 - self.strength, 0.0)
        return restored

    def paste(self, frame_rgb: np.ndarray, restored_face: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """Warp the restored face back into the frame and blend it in with a soft mask; returns a new frame."""
        height, width = frame_rgb.shape[:2]
        inverse = cv2.invertAffineTransform(matrix)
        size = self.face_size
        corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
        corners = corners @ inverse[:, :2].T + inverse[:, 2]  # (4, 2) the square's corners in the frame
        x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int) - 2, 0)
        x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 2, [width, height])
        output = frame_rgb.copy()
        if x1 <= x0 or y1 <= y0:
            return output  # the face square lies outside the frame
        # Work in the bounding box only: shift the inverse warp so the box's corner is the origin.
        roi_inverse = inverse.copy()
        roi_inverse[:, 2] -= (x0, y0)
        roi_size = (int(x1 - x0), int(y1 - y0))
        restored_roi = cv2.warpAffine(restored_face, roi_inverse, roi_size, flags=cv2.INTER_LINEAR)
        mask = cv2.warpAffine(np.ones((size, size), np.float32), roi_inverse, roi_size, flags=cv2.INTER_LINEAR)
        # Drop the interpolated rim of the warped square, then fade over ~1/20 of the face's side.
        mask = cv2.erode(mask, np.ones((2, 2), np.uint8))
        edge = int(np.sqrt(mask.sum())) // 20
        if edge > 0:
            mask = cv2.erode(mask, np.ones((2 * edge, 2 * edge), np.uint8))
            mask = cv2.GaussianBlur(mask, (2 * edge + 1, 2 * edge + 1), 0)
        mask = mask[:, :, None]
        roi = frame_rgb[y0:y1, x0:x1].astype(np.float32)
        blended = mask * restored_roi.astype(np.float32) + (1.0 - mask) * roi
        output[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        return output

    # -- the hook -----------------------------------------------------------------------------------------------
    def __call__(self, frame_rgb: np.ndarray, detection) -> np.ndarray:
        """Enhance the face of one frame.

        `detection` is the face of this frame: an object with `.landmarks` (68, 2) in frame pixels, or with
        `.box` (x1, y1, x2, y2) and no landmarks (they are then fitted with `landmark_backend`), or the (68, 2)
        array itself. None (no face) returns the frame unchanged.
        """
        if not (isinstance(frame_rgb, np.ndarray) and frame_rgb.dtype == np.uint8 and frame_rgb.ndim == 3
                and frame_rgb.shape[2] == 3):
            raise ValueError(f"frame_rgb must be a uint8 (H, W, 3) array, got {getattr(frame_rgb, 'shape', None)}")
        landmarks = self._landmarks_of(frame_rgb, detection)
        if landmarks is None:
            return frame_rgb
        points = five_points_from_68(landmarks)
        if np.linalg.norm(points[1] - points[0]) < MIN_EYE_DISTANCE or not np.isfinite(points).all():
            logger.debug("face too small or landmarks invalid; frame left as is")
            return frame_rgb
        face, matrix = self.align(frame_rgb, landmarks)
        restored = self.restore(face)
        return self.paste(frame_rgb, restored, matrix)


# ----------------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------------
ENHANCERS = ("gfpgan",)


def load_gfpgan_model(path_or_hub_id, device=None):
    """A `GFPGANModel` from a converted model folder, a Hub id, or the original GFPGANv1.4.pth file."""
    from ...models.gfpgan.configuration_gfpgan import GFPGANConfig
    from ...models.gfpgan.modeling_gfpgan import GFPGANModel

    if path_or_hub_id is None or str(path_or_hub_id).strip() == "":
        raise ModelLoadError(f"no GFPGAN weights given; {CONVERT_HINT}")
    source = resolve_source(path_or_hub_id, what="GFPGAN weights", hint=CONVERT_HINT)
    if source.is_file and source.path.suffix in (".pth", ".pt"):
        # the original release file: convert in memory (weights_only loading, strict key check)
        from ...models.gfpgan.convert_gfpgan_original_checkpoint import load_converted_model
        from ...models.convert_utils import load_original_checkpoint

        model = load_converted_model(load_original_checkpoint(source.path))
    else:
        if source.is_local and not (source.path / "config.json").is_file():
            raise ModelLoadError(f"{source} is not a converted GFPGAN model folder (no config.json); {CONVERT_HINT}")
        try:
            config_dict, _ = GFPGANConfig.get_config_dict(source.location)
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"cannot load GFPGAN from {path_or_hub_id} ({str(err).splitlines()[0][:200]}); "
                                 f"{CONVERT_HINT}") from err
        if config_dict.get("model_type") != "gfpgan":
            raise ModelLoadError(f"{path_or_hub_id} holds a {config_dict.get('model_type')!r} model, not GFPGAN; "
                                 f"{CONVERT_HINT}")
        try:
            model = GFPGANModel.from_pretrained(source.location)
        except OSError as err:
            raise ModelLoadError(f"cannot load GFPGAN weights from {path_or_hub_id} "
                                 f"({str(err).splitlines()[0][:200]}); {CONVERT_HINT}") from err
    if device is not None:
        model.to(device)
    return model.eval()


def load_enhancer(name: str, path_or_hub_id=None, device=None, **kwargs):
    """The face enhancer `name` ("gfpgan") with weights from `path_or_hub_id`; kwargs go to its constructor."""
    if name != "gfpgan":
        raise TalkFaceUserError(f"unknown face enhancer {name!r}; choose one of {', '.join(ENHANCERS)}")
    return GFPGANEnhancer(load_gfpgan_model(path_or_hub_id, device=device), **kwargs)
