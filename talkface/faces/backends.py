"""Face backends: boxes, 68 iBUG landmarks and a confidence per face, behind one small interface.

* "mediapipe" (default, works offline): mediapipe's bundled BlazeFace detector (short-range model, falling back
  to the full-range model when it finds nothing) gives the boxes; FaceMesh, run on a square crop around each box,
  gives 468 points, of which `MEDIAPIPE_TO_IBUG68` picks the 68 iBUG ones.
* "dlib": dlib's HOG detector + the 68-point shape predictor from `face_recognition_models`.
* "face_alignment": the FAN landmark network (S3FD detector) of the `face_alignment` package; it downloads its
  weights on first use.
* "s3fd": talkface's own S3FD (`talkface.models.s3fd`, syncnet_python's `sfd_face.pth`), boxes only, batched.

Backends are found by name in `FACE_BACKENDS`, which `register_face_backend` fills. This module sits below the
models (it may not import them), so the S3FD backend is given its network (`S3FDFaceBackend(detector=...)`), or
loads it through the loader that `talkface.models.s3fd` installs with `set_s3fd_loader` when it is imported.

The optional packages are imported lazily; a missing one raises `MissingDependencyError` with the pip command.
Landmark layout (iBUG 300-W, 0-based): jaw 0-16 (from the subject's right ear, i.e. image left for a frontal
face, over the chin (8) to the left ear), right brow 17-21, left brow 22-26, nose bridge 27-30, nostrils 31-35,
right eye 36-41, left eye 42-47, outer lips 48-59 (48 and 54 the corners, 51 the top, 57 the bottom), inner lips
60-67 (60 and 64 the corners).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import TalkFaceUserError
from ..utils.imports import require
from ..utils.quiet import native_logs_silenced
from .roll import roll_angle, rotation_matrix

logger = logging.getLogger(__name__)

NUM_LANDMARKS = 68

# FaceMesh (468-point canonical mesh) index for each of the 68 iBUG points. First chosen by hand from the mesh
# topology (eye/lip contours, nose, the face oval spaced by arc length for the jaw), then refined against dlib's 68
# landmarks on 30 frames of clip05 (../shared/reference/golden/avhubert_roi.npz, dlib being the detector AV-HuBERT's
# reference preparation uses): for left/right point pairs, the mirror-symmetric pair of mesh indices on the same
# contour with the smallest error was kept. Mean point error against dlib: 5.8 -> 5.0 px at an inter-ocular distance
# of 139 px (jaw 7.4, brows 6.6, nose 2.7, eyes 3.8, lips 3.8). The eye corners stay the mesh's own corners (33, 263).
# fmt: off
MEDIAPIPE_TO_IBUG68 = np.array([
    # jaw 0-16: subject's right (image left) -> chin (8) -> subject's left
    127, 234, 93, 215, 138, 136, 149, 176, 152, 400, 378, 365, 367, 435, 323, 454, 356,
    # right brow 17-21 (outer -> inner), left brow 22-26 (inner -> outer)
    70, 63, 105, 66, 55, 285, 296, 334, 293, 300,
    # nose bridge 27-30 (top -> tip), nostril base 31-35 (image left -> right, 33 below the tip)
    168, 197, 5, 4, 240, 97, 2, 326, 460,
    # right eye 36-41: outer corner, upper lid x2, inner corner, lower lid x2
    33, 159, 158, 133, 153, 144,
    # left eye 42-47: inner corner, upper lid x2, outer corner, lower lid x2
    362, 385, 386, 263, 373, 380,
    # outer lips 48-59: right corner, upper lip to the left corner (54), lower lip back
    61, 39, 37, 0, 267, 269, 291, 404, 315, 17, 85, 180,
    # inner lips 60-67: right corner, upper inner, left corner (64), lower inner
    78, 82, 13, 312, 308, 317, 14, 87,
], dtype=np.int64)
# fmt: on
assert MEDIAPIPE_TO_IBUG68.shape == (NUM_LANDMARKS,)


@dataclass
class FaceDetection:
    """One face in one frame.

    box: float32 (4,) x1, y1, x2, y2 in pixels. landmarks: float32 (68, 2) (x, y) pixels in the iBUG layout, or
    None when landmarks were not requested (or could not be fitted). score: detector confidence in [0, 1].
    """

    box: np.ndarray
    landmarks: np.ndarray | None
    score: float

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


def box_iou(box_a: np.ndarray, box_b: np.ndarray) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    inter_w = min(box_a[2], box_b[2]) - max(box_a[0], box_b[0])
    inter_h = min(box_a[3], box_b[3]) - max(box_a[1], box_b[1])
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    inter = inter_w * inter_h
    union = (box_a[2] - box_a[0]) * (box_a[3] - box_a[1]) + (box_b[2] - box_b[0]) * (box_b[3] - box_b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


FACE_BACKENDS: dict[str, type] = {}


def register_face_backend(name: str):
    """Class decorator: make a `FaceBackend` subclass available as `get_face_backend(name)`."""

    def register(cls):
        cls.name = name
        FACE_BACKENDS[name] = cls
        return cls

    return register


class FaceBackend:
    """Detects faces in RGB uint8 frames. Subclasses implement `_detect` (and may override `detect_batch`)."""

    name = "base"
    #: False for backends that find boxes only (`detect(..., landmarks=True)` raises for them)
    provides_landmarks = True

    def detect(self, frame_rgb: np.ndarray, landmarks: bool = True) -> list[FaceDetection]:
        """Faces in `frame_rgb` (H, W, 3) uint8, largest box first. `landmarks=False` may skip landmark fitting."""
        if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 or frame_rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) frame, got {frame_rgb.dtype} {frame_rgb.shape}")
        detections = self._detect(np.ascontiguousarray(frame_rgb), landmarks)
        return sorted(detections, key=lambda d: d.area, reverse=True)

    def detect_batch(self, frames_rgb, landmarks: bool = True) -> list[list[FaceDetection]]:
        """`detect` of each frame; backends that run a network on several frames at once override this."""
        return [self.detect(frame, landmarks=landmarks) for frame in frames_rgb]

    def _detect(self, frame_rgb: np.ndarray, landmarks: bool) -> list[FaceDetection]:
        raise NotImplementedError

    def close(self):
        """Release native resources (graphs, sessions)."""


def _clip_box(box, width: int, height: int) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)], dtype=np.float32)


@register_face_backend("mediapipe")
class MediaPipeFaceBackend(FaceBackend):
    """mediapipe BlazeFace boxes + FaceMesh landmarks (the legacy `mp.solutions` graphs bundled with the wheel).

    Args:
        min_confidence: detector score threshold.
        max_faces: most faces reported per frame.
        model_selection: 0 = short-range model (faces within ~2 m, fast), 1 = full-range model (~5 m),
            "auto" = short-range first, full-range when it finds nothing.
        landmark_crop_scale: side of the square crop FaceMesh sees, relative to the larger box side.
        refit_roll: a first landmark fit whose roll (degrees, from the eye line) is at least this is fitted again
            on a crop turned upright by it (up to twice), so tilted and sideways heads get their landmarks.
    """

    name = "mediapipe"

    def __init__(self, min_confidence: float = 0.5, max_faces: int = 4, model_selection="auto",
                 landmark_crop_scale: float = 1.6, refit_roll: float = 20.0):
        if model_selection not in ("auto", 0, 1):
            raise ValueError(f"model_selection must be 'auto', 0 or 1, got {model_selection!r}")
        mp = require("mediapipe")
        self._solutions = mp.solutions
        self.min_confidence = min_confidence
        self.max_faces = max_faces
        self.model_selection = model_selection
        self.landmark_crop_scale = landmark_crop_scale
        self.refit_roll = refit_roll
        self._models = (0, 1) if model_selection == "auto" else (model_selection,)
        # the graphs, by name, created on first use (see `_process`)
        self._graphs: dict = {}

    def _detect(self, frame_rgb, landmarks):
        height, width = frame_rgb.shape[:2]
        detections, rolls = [], []
        for model in self._models:
            result = self._process(f"detector{model}", frame_rgb)
            for det in (result.detections or [])[: self.max_faces]:
                rel = det.location_data.relative_bounding_box
                box = _clip_box((rel.xmin * width, rel.ymin * height, (rel.xmin + rel.width) * width,
                                 (rel.ymin + rel.height) * height), width, height)
                if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                    continue
                detections.append(FaceDetection(box=box, landmarks=None, score=float(det.score[0])))
                rolls.append(_keypoint_roll(det, width, height))
            if detections:
                break
        if landmarks:
            for det, roll in zip(detections, rolls):
                det.landmarks = self._fit_landmarks(frame_rgb, det.box, roll)
        return detections

    def _fit_landmarks(self, frame_rgb, box, detector_roll: float = 0.0) -> np.ndarray | None:
        """68 points for the face in `box`: FaceMesh on a square crop around it, and, for a strongly tilted head
        (FaceMesh underestimates rolls beyond ~20 degrees: about 75 for a head lying sideways, and sometimes finds
        no face at all), again on that crop turned upright by the roll found so far (up to twice), keeping a fit
        only when it finds the face. The first crop is upright unless the detector's own eye keypoints say the head
        is tilted by `refit_roll` or more (then it is turned by their roll, and tried upright if that fails)."""
        first = detector_roll if abs(detector_roll) >= self.refit_roll else 0.0
        points = self._mesh_points(frame_rgb, box, first)
        if points is None:
            points = self._mesh_points(frame_rgb, box, detector_roll if first == 0.0 else 0.0)
        for _ in range(2):
            if points is None:
                break
            roll = roll_angle(points)
            if abs(roll) < self.refit_roll:
                break
            refined = self._mesh_points(frame_rgb, box, roll)
            if refined is None:
                break
            points = refined
        return points

    def _mesh_points(self, frame_rgb, box, roll_degrees: float) -> np.ndarray | None:
        height, width = frame_rgb.shape[:2]
        # FaceMesh runs its own detector; on a square crop centred on our box it always looks at *this* face.
        centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        half = max(box[2] - box[0], box[3] - box[1]) * self.landmark_crop_scale / 2
        if roll_degrees == 0.0:
            x1, y1 = int(max(0, centre_x - half)), int(max(0, centre_y - half))
            x2, y2 = int(min(width, centre_x + half)), int(min(height, centre_y + half))
            crop = np.ascontiguousarray(frame_rgb[y1:y2, x1:x2])
            to_frame = np.array([[x2 - x1, 0.0, x1], [0.0, y2 - y1, y1]])  # normalised crop coords -> frame pixels
        else:  # a square turned by the roll about the box centre (beyond the frame: black)
            import cv2

            side = max(8, int(round(2 * half)))
            crop_to_frame = rotation_matrix((centre_x - 0.5, centre_y - 0.5), roll_degrees)
            crop_to_frame[:, 2] += crop_to_frame[:, :2] @ np.array([0.5 - side / 2, 0.5 - side / 2])
            crop = cv2.warpAffine(frame_rgb, crop_to_frame, (side, side),
                                  flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
            # normalised crop coords (0..1 over the crop's edges) -> crop pixel indices -> frame pixel indices
            to_frame = crop_to_frame @ np.array([[side, 0.0, -0.5], [0.0, side, -0.5], [0.0, 0.0, 1.0]])
        if crop.shape[0] < 8 or crop.shape[1] < 8:
            return None
        result = self._process("mesh", crop)
        if not result.multi_face_landmarks:
            return None
        mesh_points = result.multi_face_landmarks[0].landmark
        points = np.array([[mesh_points[i].x, mesh_points[i].y] for i in MEDIAPIPE_TO_IBUG68], dtype=np.float64)
        return (points @ to_frame[:, :2].T + to_frame[:, 2]).astype(np.float32)

    def _new_graph(self, name: str):
        if name == "mesh":
            return self._solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                      refine_landmarks=False, min_detection_confidence=0.3)
        return self._solutions.face_detection.FaceDetection(model_selection=int(name[len("detector"):]),
                                                            min_detection_confidence=self.min_confidence)

    def _process(self, name: str, image):
        """Run graph `name` ("detector0", "detector1", "mesh") on an image. A graph is created on first use, and
        its creation and first run happen in one block with the native log lines silenced: mediapipe's graphs
        log from C++ as they start, partly from their own threads after the constructor returns, so the
        silenced window lasts until the first result is out (see talkface.utils.quiet)."""
        graph = self._graphs.get(name)
        if graph is not None:
            return graph.process(image)
        with native_logs_silenced():
            graph = self._new_graph(name)
            result = graph.process(image)
        self._graphs[name] = graph
        return result

    def close(self):
        graphs, self._graphs = self._graphs, {}
        for graph in graphs.values():
            graph.close()


def _keypoint_roll(detection, width: int, height: int) -> float:
    """Roll (degrees) of a BlazeFace detection from its eye keypoints (0: the subject's right eye, 1: the left);
    0 when it has none. Rougher than the landmarks' (about 75 for a head lying sideways), enough to start from."""
    keypoints = detection.location_data.relative_keypoints
    if len(keypoints) < 2:
        return 0.0
    dx = (keypoints[1].x - keypoints[0].x) * width
    dy = (keypoints[1].y - keypoints[0].y) * height
    return float(np.degrees(np.arctan2(dy, dx))) if dx or dy else 0.0


@register_face_backend("dlib")
class DlibFaceBackend(FaceBackend):
    """dlib's HOG face detector + the 68-point shape predictor shipped in `face_recognition_models`.

    Args:
        upsample: times dlib upsamples the image before detecting (finds smaller faces, slower).
    """

    name = "dlib"

    def __init__(self, upsample: int = 1):
        self._dlib = require("dlib")
        models = require("face_recognition_models")
        self.upsample = upsample
        self._detector = self._dlib.get_frontal_face_detector()
        self._predictor = self._dlib.shape_predictor(models.pose_predictor_model_location())

    def _detect(self, frame_rgb, landmarks):
        height, width = frame_rgb.shape[:2]
        rects, scores, _ = self._detector.run(frame_rgb, self.upsample, 0.0)
        detections = []
        for rect, score in zip(rects, scores):
            box = _clip_box((rect.left(), rect.top(), rect.right(), rect.bottom()), width, height)
            points = None
            if landmarks:
                shape = self._predictor(frame_rgb, rect)
                points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
            # HOG scores are SVM margins, not probabilities: squash them into (0, 1)
            detections.append(FaceDetection(box=box, landmarks=points, score=float(1 / (1 + np.exp(-score)))))
        return detections


@register_face_backend("face_alignment")
class FaceAlignmentBackend(FaceBackend):
    """The FAN 2D landmark network of the `face_alignment` package, with its S3FD detector.

    Its weights are downloaded by `face_alignment` on first use (they are not bundled).

    Args:
        device: "cpu" or "cuda".
        min_confidence: S3FD score threshold.
    """

    name = "face_alignment"

    def __init__(self, device: str = "cpu", min_confidence: float = 0.5):
        face_alignment = require("face_alignment")
        landmarks_type = getattr(face_alignment.LandmarksType, "TWO_D", None) or face_alignment.LandmarksType._2D
        self.min_confidence = min_confidence
        self._model = face_alignment.FaceAlignment(landmarks_type, device=device, flip_input=False)

    def _detect(self, frame_rgb, landmarks):
        height, width = frame_rgb.shape[:2]
        faces = self._model.face_detector.detect_from_image(frame_rgb[:, :, ::-1].copy())  # S3FD wants BGR
        faces = [f for f in faces if f[4] >= self.min_confidence]
        points_per_face = [None] * len(faces)
        if landmarks and faces:
            points_per_face = self._model.get_landmarks_from_image(frame_rgb, detected_faces=faces) or points_per_face
        return [
            FaceDetection(box=_clip_box(face[:4], width, height), score=float(face[4]),
                          landmarks=None if points is None else np.asarray(points, dtype=np.float32)[:, :2])
            for face, points in zip(faces, points_per_face)
        ]


_S3FD_LOADER = None


def set_s3fd_loader(loader):
    """Install the function that loads the S3FD network for `S3FDFaceBackend(model=...)`: called as
    `loader(model, device)` with a model folder / Hub id (or None for the default) and returns an object with
    `detect_faces(images_rgb, scales=..., threshold=..., batch_size=...)`. `talkface.models.s3fd` installs it."""
    global _S3FD_LOADER
    _S3FD_LOADER = loader


@register_face_backend("s3fd")
class S3FDFaceBackend(FaceBackend):
    """S3FD face boxes (no landmarks), as syncnet_python's detector, on batches of frames.

    Args:
        detector: the network: an object with `detect_faces(images_rgb, scales=..., threshold=..., batch_size=...)`
            giving one (n, 5) array [x1, y1, x2, y2, score] per image, as `talkface.models.s3fd.S3FDModel`
            (with its feature extractor bound). None loads it from `model` with the loader `talkface.models.s3fd`
            installs (`import talkface.models` does it).
        model: converted S3FD folder or Hub id (`talkface convert s3fd --checkpoint sfd_face.pth --out DIR`);
            default: the `TALKFACE_S3FD` environment variable.
        device: torch device of the network.
        scale: the frames are resized by this factor before detection (default: the model folder's
            `preprocessor_config.json` scales, 1.0 unless changed; syncnet_python's run_pipeline uses 0.25 on
            full-size frames, and the lip-sync pipeline already shrinks frames to at most 640 px).
        min_confidence: face score a box must exceed (default: the feature extractor's, 0.8).
        batch_size: frames per forward pass.
    """

    provides_landmarks = False

    def __init__(self, detector=None, model=None, device: str = "cpu", scale: float | None = None,
                 min_confidence: float | None = None, batch_size: int = 16):
        if scale is not None and scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        if min_confidence is not None and not 0 <= min_confidence < 1:
            raise ValueError(f"min_confidence must be in [0, 1), got {min_confidence}")
        if detector is None:
            if _S3FD_LOADER is None:
                raise TalkFaceUserError(
                    "the s3fd face backend needs talkface's S3FD model: `import talkface.models` first, or pass "
                    "S3FDFaceBackend(detector=...)")
            detector = _S3FD_LOADER(model, device)
        self.detector = detector
        self.scale = None if scale is None else float(scale)
        self.min_confidence = min_confidence
        self.batch_size = batch_size

    def scored_boxes(self, frames_rgb, scale: float | None = None, threshold: float | None = None
                     ) -> list[np.ndarray]:
        """The detector's own output for each frame: (n, 5) float64 [x1, y1, x2, y2, score] in frame pixels, in
        its order (descending score after the final NMS), unclipped; what syncnet_python's tracking reads."""
        frames = [np.ascontiguousarray(frame) for frame in frames_rgb]
        for frame in frames:
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(f"expected RGB uint8 (H, W, 3) frames, got {frame.dtype} {frame.shape}")
        if not frames:
            return []
        threshold = self.min_confidence if threshold is None else threshold
        scale = self.scale if scale is None else scale
        return self.detector.detect_faces(frames, scales=None if scale is None else [scale], threshold=threshold,
                                          batch_size=self.batch_size)

    def detect_batch(self, frames_rgb, landmarks: bool = True) -> list[list[FaceDetection]]:
        if landmarks:
            raise TalkFaceUserError(
                "the s3fd face backend finds face boxes only, no landmarks; use --face-backend mediapipe (or dlib, "
                "face_alignment) where landmarks are needed")
        results = []
        for frame, rows in zip(frames_rgb, self.scored_boxes(frames_rgb)):
            height, width = frame.shape[:2]
            faces = [FaceDetection(box=_clip_box(row[:4], width, height), landmarks=None, score=float(row[4]))
                     for row in rows]
            faces = [face for face in faces if face.box[2] - face.box[0] >= 2 and face.box[3] - face.box[1] >= 2]
            results.append(sorted(faces, key=lambda d: d.area, reverse=True))
        return results

    def _detect(self, frame_rgb, landmarks):
        return self.detect_batch([frame_rgb], landmarks=landmarks)[0]


def get_face_backend(name: str = "mediapipe", **kwargs) -> FaceBackend:
    """Build a face backend by name ("mediapipe", "dlib", "face_alignment", "s3fd"); kwargs go to its constructor.
    A `FaceBackend` instance is returned as it is."""
    if isinstance(name, FaceBackend):
        return name
    if name not in FACE_BACKENDS:
        raise TalkFaceUserError(f"unknown face backend {name!r}; use one of: {', '.join(FACE_BACKENDS)}")
    return FACE_BACKENDS[name](**kwargs)
