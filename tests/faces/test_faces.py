"""Face backends (mediapipe on real photos/clips), the 68-point mapping, tracking, crops and paste-back."""

import numpy as np
import pytest

from talkface import media
from talkface.errors import InvalidInputError, MissingDependencyError, TalkFaceUserError
from talkface.faces import (
    MEDIAPIPE_TO_IBUG68,
    FaceBackend,
    FaceDetection,
    FaceTracker,
    box_iou,
    crop_face,
    get_face_backend,
    lower_face_mask,
    paste_face,
)
from tests.utils import data_file

PHOTOS = ["photo01_sadtalker_people_0.png", "photo02_hallo_ref6.jpg", "photo04_edtalk_leijun.png"]
CLIPS = [
    "clip01_sadtalker_WDA_AlexandriaOcasioCortez_000.mp4",
    "clip03_retalking_face1_man_suit.mp4",
    "clip04_retalking_face2_man_map.mp4",
    "clip05_retalking_face5_woman_glasses.mp4",
    "clip07_edtalk_mouth_source_muxed.mkv",
    "clip09_styletalk_feifeili_clip1_muxed.mkv",
]


# ---------------------------------------------------------------------------------------------- backends


def test_mapping_table_is_a_valid_subset_of_the_mesh():
    assert MEDIAPIPE_TO_IBUG68.shape == (68,)
    assert len(set(MEDIAPIPE_TO_IBUG68.tolist())) == 68
    assert MEDIAPIPE_TO_IBUG68.min() >= 0 and MEDIAPIPE_TO_IBUG68.max() < 468
    assert MEDIAPIPE_TO_IBUG68[8] == 152  # chin
    assert MEDIAPIPE_TO_IBUG68[30] == 4  # nose tip


def _check_face_geometry(det: FaceDetection, frame_shape):
    height, width = frame_shape[:2]
    x1, y1, x2, y2 = det.box
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    assert 0.5 <= det.score <= 1.0
    points = det.landmarks
    assert points.shape == (68, 2) and points.dtype == np.float32
    # all points inside the box grown by 20% (the jaw and brows may touch or cross the detector's box)
    margin_x, margin_y = 0.2 * (x2 - x1), 0.2 * (y2 - y1)
    assert (points[:, 0] >= x1 - margin_x).all() and (points[:, 0] <= x2 + margin_x).all()
    assert (points[:, 1] >= y1 - margin_y).all() and (points[:, 1] <= y2 + margin_y).all()
    eyes_y = points[36:48, 1].mean()
    brows_y = points[17:27, 1].mean()
    nose_tip_y = points[30, 1]
    mouth_y = points[48:68, 1].mean()
    chin_y = points[8, 1]
    assert brows_y < eyes_y < nose_tip_y < mouth_y < chin_y
    # the subject's right (image left for a frontal face) comes first
    assert points[0, 0] < points[16, 0] and points[36, 0] < points[45, 0] and points[48, 0] < points[54, 0]
    # the inner mouth sits within the outer one
    assert points[48, 0] <= points[60, 0] and points[64, 0] <= points[54, 0]


@pytest.mark.parametrize("name", PHOTOS)
def test_mediapipe_finds_the_face_on_photos(mediapipe_backend, name):
    image = media.read_frames(data_file(name))[0]
    detections = mediapipe_backend.detect(image)
    assert len(detections) == 1
    _check_face_geometry(detections[0], image.shape)


@pytest.mark.parametrize("name", CLIPS)
def test_mediapipe_finds_the_face_on_clip_frames(mediapipe_backend, name):
    frames = media.read_frames(data_file(name), max_frames=30)
    for frame in frames[::15]:
        detections = mediapipe_backend.detect(frame)
        assert len(detections) >= 1
        _check_face_geometry(detections[0], frame.shape)


def test_mediapipe_no_face_and_boxes_only(mediapipe_backend):
    assert mediapipe_backend.detect(np.zeros((240, 320, 3), np.uint8)) == []
    image = media.read_frames(data_file(PHOTOS[1]))[0]
    (with_landmarks,) = mediapipe_backend.detect(image)
    (boxes_only,) = mediapipe_backend.detect(image, landmarks=False)
    assert boxes_only.landmarks is None
    assert np.allclose(boxes_only.box, with_landmarks.box)
    with pytest.raises(ValueError, match="RGB uint8"):
        mediapipe_backend.detect(image.astype(np.float32))


def test_mediapipe_sorts_faces_by_size(mediapipe_backend):
    big = media.read_frames(data_file(PHOTOS[1]))[0]  # 624x624
    import cv2

    small = cv2.resize(big, (312, 312))
    canvas = np.full((700, 1100, 3), 128, np.uint8)
    canvas[40:40 + 312, 20:20 + 312] = small
    canvas[40:40 + 624, 400:400 + 624] = big
    detections = mediapipe_backend.detect(canvas)
    assert len(detections) == 2
    assert detections[0].area > detections[1].area
    assert detections[0].box[0] > 380 and detections[1].box[2] < 340


def test_unknown_and_missing_backends():
    with pytest.raises(TalkFaceUserError, match="unknown face backend"):
        get_face_backend("nope")
    for name, module in (("dlib", "dlib"), ("face_alignment", "face_alignment")):
        try:
            __import__(module)
        except ImportError:
            with pytest.raises(MissingDependencyError, match="pip install"):
                get_face_backend(name)


def test_library_imports_without_mediapipe():
    import subprocess
    import sys

    code = ("import sys; sys.modules['mediapipe'] = None; import talkface.faces, talkface.media, "
            "talkface.pipelines.lipsync.pipeline; assert sys.modules['mediapipe'] is None")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------- tracking


class ScriptedBackend(FaceBackend):
    """Boxes looked up by the frame number written in pixel (0, 0, 0); counts its calls."""

    def __init__(self, script):
        self.script = script  # frame number -> list of boxes
        self.calls = []

    def _detect(self, frame_rgb, landmarks):
        number = int(frame_rgb[0, 0, 0])
        self.calls.append(number)
        return [FaceDetection(box=np.asarray(b, np.float32), landmarks=None, score=0.9)
                for b in self.script.get(number, [])]


def numbered_frames(count, height=200, width=300):
    frames = []
    for i in range(count):
        frame = np.full((height, width, 3), 100, np.uint8)
        frame[0, 0, 0] = i
        frames.append(frame)
    return frames


def track(backend, frames, **kwargs):
    tracker = FaceTracker(backend, detection_max_side=None, **kwargs)
    out = list(tracker.track(iter(frames)))
    assert [f is g for (f, _), g in zip(out, frames)] == [True] * len(frames)  # frames pass through untouched
    return tracker, [None if face is None else face.box for _, face in out]


def test_tracker_smooths_pads_and_counts_missing_frames():
    jitter = [0, 4, -4, 2, -2, 0, 4, -4, 2, -2]
    script = {i: [[100 + jitter[i], 50, 150 + jitter[i], 110]] for i in range(10)}
    del script[7]  # no face in frame 7
    tracker, boxes = track(ScriptedBackend(script), numbered_frames(10), pads=(1, 10, 2, 3), smooth_window=5)
    assert boxes[7] is None and tracker.frames_without_face == 1 and tracker.num_frames == 10
    # frame 2: mean over frames 0..4 of the padded boxes (x1 - 2, y1 - 1, x2 + 3, y2 + 10)
    expected_x1 = np.mean([100 + j for j in jitter[0:5]]) - 2
    assert boxes[2] == pytest.approx([expected_x1, 49, expected_x1 + 55, 120])
    # smoothing does not reach across the face-less frame: frame 6 averages frames 4..6 only
    assert boxes[6][0] == pytest.approx(np.mean([100 + j for j in jitter[4:7]]) - 2)
    # clipping to the frame (height 200)
    script = {i: [[10, 150, 60, 195]] for i in range(3)}
    _, boxes = track(ScriptedBackend(script), numbered_frames(3), pads=(0, 10, 20, 0))
    assert boxes[0].tolist() == [0, 150, 60, 200]


def test_tracker_follows_the_same_face_and_face_index():
    # two faces; the bigger one (A) moves right slowly, B stays put
    script = {i: [[20 + 2 * i, 20, 120 + 2 * i, 120], [200, 40, 260, 100]] for i in range(6)}
    _, boxes = track(ScriptedBackend(script), numbered_frames(6), pads=(0, 0, 0, 0), smooth_window=1)
    assert [b[0] for b in boxes] == [20 + 2 * i for i in range(6)]
    _, boxes = track(ScriptedBackend(script), numbered_frames(6), pads=(0, 0, 0, 0), smooth_window=1, face_index=1)
    assert all(b[0] == 200 for b in boxes)
    # association by overlap, not by size: B grows bigger than A from frame 3 on, we stay with A
    script = {i: [[20, 20, 120, 120], [180, 40, 180 + (60 if i < 3 else 120), 160]] for i in range(6)}
    _, boxes = track(ScriptedBackend(script), numbered_frames(6), pads=(0, 0, 0, 0), smooth_window=1)
    assert all(b[0] == 20 for b in boxes)
    # a face index beyond the faces present: refused at the first frame with faces, with the count
    backend = ScriptedBackend(script)
    with pytest.raises(InvalidInputError, match=r"--face-index 5 but only 2 faces were found in the first frame; "
                                                r"use 0\.\.1"):
        track(backend, numbered_frames(6), face_index=5)
    assert backend.calls == [0]
    # faces appearing only from frame 2 on: checked there
    late = {i: v for i, v in script.items() if i >= 2}
    with pytest.raises(InvalidInputError, match="only 2 faces were found in the first frame where faces were found"):
        track(ScriptedBackend(late), numbered_frames(6), face_index=2)
    # fewer faces later on (the second face leaves): that frame has no tracked face, nothing is raised
    leaving = {i: v[:1] if i >= 3 else v for i, v in script.items()}
    tracker, boxes = track(ScriptedBackend(leaving), numbered_frames(6), pads=(0, 0, 0, 0), smooth_window=1,
                           face_index=1)
    assert [b is None for b in boxes] == [False] * 3 + [True] * 3 and tracker.frames_without_face == 3


def test_tracker_refuses_pads_that_leave_no_face():
    script = {i: [[20, 20, 120, 120]] for i in range(4)}
    backend = ScriptedBackend(script)
    with pytest.raises(InvalidInputError, match=r"--pads -100 0 0 0 .* leave no face region around the 100x100 face"):
        track(backend, numbered_frames(4), pads=(-100, 0, 0, 0))
    assert backend.calls == [0]
    _, boxes = track(ScriptedBackend(script), numbered_frames(4), pads=(-90, 0, 0, 0), smooth_window=1)
    assert all(b[3] - b[1] == pytest.approx(10) for b in boxes)


def test_tracker_detection_stride_interpolates_and_refines():
    moving = {i: [[10 + 3 * i, 20, 110 + 3 * i, 120]] for i in range(12)}
    backend = ScriptedBackend(moving)
    _, boxes = track(backend, numbered_frames(12), pads=(0, 0, 0, 0), smooth_window=1, detect_every=4)
    assert backend.calls == [0, 4, 8, 11]  # key frames + the last frame
    assert [round(float(b[0]), 4) for b in boxes] == [10 + 3 * i for i in range(12)]  # linear motion: exact
    # a face missing between key frames 4 and 8 (frames 5, 6): those frames are detected one by one
    gap = {i: v for i, v in moving.items() if i not in (5, 6)}
    backend = ScriptedBackend(gap)
    frames = numbered_frames(12)
    for i in (5, 6):
        frames[i][1:] = 0  # a black frame: the picture jumps
    tracker, boxes = track(backend, frames, pads=(0, 0, 0, 0), smooth_window=1, detect_every=4)
    assert [i for i, b in enumerate(boxes) if b is None] == [5, 6]
    assert {5, 6, 7} <= set(backend.calls) and tracker.frames_without_face == 2


class LandmarkedBackend(ScriptedBackend):
    """A scripted backend whose faces carry 68 landmarks: the box's corners and centre, spread over the points."""

    def __init__(self, script):
        super().__init__(script)
        self.landmark_requests = []

    def _detect(self, frame_rgb, landmarks):
        self.landmark_requests.append(landmarks)
        faces = super()._detect(frame_rgb, landmarks)
        for face in faces:
            x1, y1, x2, y2 = face.box
            face.landmarks = np.stack([np.linspace(x1, x2, 68), np.linspace(y1, y2, 68)], axis=1).astype(np.float32)
        return faces


def test_tracker_hands_on_landmarks_smoothed_and_interpolated():
    moving = {i: [[10 + 3 * i, 20, 110 + 3 * i, 120]] for i in range(12)}
    backend = LandmarkedBackend(moving)
    tracker = FaceTracker(backend, detection_max_side=None, landmarks=True, pads=(0, 10, 0, 0), smooth_window=3,
                          detect_every=4)
    faces = [face for _, face in tracker.track(iter(numbered_frames(12)))]
    assert backend.calls == [0, 4, 8, 11] and all(backend.landmark_requests)
    assert all(face.landmarks.shape == (68, 2) for face in faces)
    for i, face in enumerate(faces[1:-1], start=1):
        # linear motion: interpolation and (centred) smoothing both give the exact points; pads move the box only
        expected_x = np.linspace(10 + 3 * i, 110 + 3 * i, 68)
        assert face.landmarks.shape == (68, 2) and face.landmarks[:, 0] == pytest.approx(expected_x, abs=1e-4)
        assert face.landmarks[:, 1] == pytest.approx(np.linspace(20, 120, 68), abs=1e-4)
        assert face.box[3] == pytest.approx(130)
    # frames shrunk for detection: the landmarks are scaled back with the boxes
    class OneFace(LandmarkedBackend):  # the same face whatever the frame (shrinking blurs the frame numbers)
        def _detect(self, frame_rgb, landmarks):
            self.script = {int(frame_rgb[0, 0, 0]): [[50, 20, 150, 90]]}
            return super()._detect(frame_rgb, landmarks)

    tracker = FaceTracker(OneFace({}), detection_max_side=150, landmarks=True, pads=(0, 0, 0, 0))
    faces = [face for _, face in tracker.track(iter(numbered_frames(2)))]  # 300x200 frames shrunk to 150x100
    assert faces[0].box == pytest.approx([100, 40, 300, 180]) and faces[0].landmarks[-1] == pytest.approx([300, 180])
    # without landmarks=True the backend is not asked for them
    backend = LandmarkedBackend(moving)
    faces = [face for _, face in FaceTracker(backend, detection_max_side=None).track(iter(numbered_frames(3)))]
    assert not any(backend.landmark_requests)


def test_tracker_forced_box_skips_detection():
    class Exploding(FaceBackend):
        def _detect(self, frame_rgb, landmarks):
            raise AssertionError("detection must not run with a forced box")

    tracker, boxes = track(Exploding(), numbered_frames(3), box=(10, 20, 250, 260))
    assert all(b.tolist() == [10, 20, 250, 200] for b in boxes)  # clipped to the 300x200 frame, no pads
    with pytest.raises(ValueError, match="x2 > x1"):
        FaceTracker(None, box=(50, 50, 40, 60))
    with pytest.raises(ValueError, match="pads"):
        FaceTracker(Exploding(), pads=(1, 2, 3))


def test_tracker_on_a_real_clip_with_black_frames(mediapipe_backend):
    frames = list(media.read_frames(data_file("clip03_retalking_face1_man_suit.mp4"), max_frames=24))
    frames[8] = np.zeros_like(frames[8])
    frames[9] = np.zeros_like(frames[9])
    for stride in (1, 4):
        tracker = FaceTracker(mediapipe_backend, detect_every=stride)
        boxes = [None if face is None else face.box for _, face in tracker.track(iter(frames))]
        assert [i for i, b in enumerate(boxes) if b is None] == [8, 9]
        # the face box is stable (a talking head): every box overlaps the first one
        assert all(box_iou(b, boxes[0]) > 0.7 for b in boxes if b is not None)
        # the bottom pad reaches below the chin: box bottom below the detector's box
        raw = mediapipe_backend.detect(frames[0], landmarks=False)[0].box
        assert boxes[0][3] > raw[3]


# ---------------------------------------------------------------------------------------------- crops and paste


def test_crop_face():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[20:60, 50:90] = 255
    crop = crop_face(frame, (50, 20, 90, 60), size=16)
    assert crop.shape == (16, 16, 3) and crop.min() == 255


def test_hard_paste_is_wav2lip_paste():
    import cv2

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    face = rng.random((96, 96, 3)).astype(np.float32)
    out = paste_face(frame, face, (30, 10, 90, 80), blend="hard")
    expected = frame.copy()
    expected[10:80, 30:90] = cv2.resize((face * 255).astype(np.uint8), (60, 70))
    assert np.array_equal(out, expected)
    assert not np.shares_memory(out, frame)


def test_feather_paste_has_no_seam_and_keeps_the_upper_face():
    frame = np.zeros((200, 200, 3), np.uint8)
    face = np.ones((96, 96, 3), np.float32)  # white: maximal contrast with the black frame
    box = (40, 40, 160, 160)
    out = paste_face(frame, face, box, blend="feather", feather=0.15)
    assert out[:40].max() == 0 and out[160:].max() == 0 and out[:, :40].max() == 0 and out[:, 160:].max() == 0
    assert out[40:100].max() <= 3  # upper half of the box: the original frame
    assert out[125:135, 90:110].min() >= 250  # the mouth region: the generated face
    # no seam: along every edge of the box the pasted values start from ~0 and rise gradually
    rows = out[:, 100, 0].astype(int)
    cols = out[140, :, 0].astype(int)
    assert rows[159] <= 10 and cols[40] <= 10 and cols[159] <= 10
    assert np.abs(np.diff(rows)).max() <= 40 and np.abs(np.diff(cols)).max() <= 40
    mask = lower_face_mask(96, 0.15)
    assert mask.max() == pytest.approx(1.0, abs=0.01) and mask[:48].max() == 0.0


def test_poisson_and_none_blends():
    frame = np.full((200, 200, 3), 90, np.uint8)
    face = np.full((96, 96, 3), 0.6, np.float32)
    out = paste_face(frame, face, (40, 40, 160, 160), blend="poisson")
    assert out.shape == frame.shape and out[:40].tolist() == frame[:40].tolist()
    assert paste_face(frame, face, (40, 40, 160, 160), blend="none") is frame
    with pytest.raises(ValueError, match="blend"):
        paste_face(frame, face, (40, 40, 160, 160), blend="alpha")


def test_mediapipe_landmarks_agree_with_dlib(mediapipe_backend):
    """The 68-point mapping against dlib's landmarks stored in the AV-HuBERT golden (clip05, 30 frames)."""
    from tests.utils import golden_file

    golden = np.load(golden_file("avhubert_roi.npz"))
    frames = np.ascontiguousarray(golden["frames_bgr"][::3, :, :, ::-1])  # every 3rd frame, BGR -> RGB
    dlib_points = golden["landmarks"][::3]
    ours = np.stack([mediapipe_backend.detect(frame)[0].landmarks for frame in frames])
    distances = np.linalg.norm(ours - dlib_points, axis=2)  # (frames, 68) pixels
    inter_ocular = np.linalg.norm(dlib_points[:, 36] - dlib_points[:, 45], axis=1).mean()  # ~139 px
    assert distances.mean() < 0.04 * inter_ocular  # measured 5.0 px = 0.036
    assert distances[:, 48:68].mean() < 0.035 * inter_ocular  # lips, measured 3.8 px
    mouth_centre_error = np.linalg.norm(ours[:, 48:68].mean(1) - dlib_points[:, 48:68].mean(1), axis=1)
    assert mouth_centre_error.mean() < 4.0
