"""How much the face backend changes AV-HuBERT's mouth crops: mediapipe (our default) vs dlib (the reference).

dlib is not needed: ../shared/reference/golden/avhubert_roi.npz stores dlib's 68 landmarks for clip05 frames 0-29
(the av_hubert reference detector) and the reference crops made from them. This script

  1. runs the mediapipe backend on the same 30 frames and compares its landmarks with dlib's
     (mean point distance in pixels, per face region, and normalised by the inter-ocular distance);
  2. crops mouth ROIs from both sets of landmarks with the reference method and compares them
     (mean absolute difference of the 96x96 grey crops, in grey levels, and of the 88x88 model input);
  3. puts the numbers in context: the same comparison for dlib landmarks shifted by 1 and 2 pixels, and for
     mediapipe landmarks found on every 2nd / 3rd frame only (`--landmark-stride`);
  4. with --clips, also measures the stride effect on whole real clips (no dlib there).

    python benchmarks/compare_landmark_backends.py [--clips]
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
SHARED = REPO_ROOT.parent / "shared"
GOLDEN = SHARED / "reference" / "golden" / "avhubert_roi.npz"
CLIPS = ("clip01_sadtalker_WDA_AlexandriaOcasioCortez_000.mp4", "clip05_retalking_face5_woman_glasses.mp4",
         "clip07_edtalk_mouth_source_muxed.mkv")

REGIONS = {"jaw": slice(0, 17), "brows": slice(17, 27), "nose": slice(27, 36), "eyes": slice(36, 48),
           "mouth": slice(48, 68)}


def gray_crops(frames_rgb, landmarks):
    from talkface.faces import mouth_roi

    return mouth_roi.rois_to_gray(mouth_roi.crop_mouth_rois(frames_rgb, landmarks), "rgb").astype(np.float64)


def crop_difference(frames_rgb, landmarks_a, landmarks_b):
    """(MAD of 96x96 grey crops, MAD of the 88x88 centre) in grey levels."""
    a, b = gray_crops(frames_rgb, landmarks_a), gray_crops(frames_rgb, landmarks_b)
    difference = np.abs(a - b)
    return difference.mean(), difference[:, 4:92, 4:92].mean()


def strided(landmarks, stride):
    return [points if index % stride == 0 or index == len(landmarks) - 1 else None
            for index, points in enumerate(landmarks)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", action="store_true", help="also measure landmark strides on whole clips")
    args = parser.parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    if not GOLDEN.is_file():
        sys.exit(f"{GOLDEN} not found (needs ../shared)")

    from talkface.faces import mouth_roi
    from talkface.faces.backends import get_face_backend

    golden = np.load(GOLDEN)
    frames_rgb = np.ascontiguousarray(golden["frames_bgr"][..., ::-1])
    dlib_landmarks = golden["landmarks"].astype(np.float64)
    backend = get_face_backend("mediapipe")
    mediapipe_landmarks = mouth_roi.detect_landmarks(frames_rgb, backend)
    found = sum(points is not None for points in mediapipe_landmarks)
    mediapipe_filled = mouth_roi.interpolate_landmarks(mediapipe_landmarks)

    print(f"clip05 frames 0-{len(frames_rgb) - 1} ({frames_rgb.shape[2]}x{frames_rgb.shape[1]}); mediapipe found a "
          f"face in {found}/{len(frames_rgb)} frames; dlib landmarks from the golden file")
    reference_rois = golden["mouth_rois_bgr"]
    own_rois = mouth_roi.crop_mouth_rois(golden["frames_bgr"], golden["landmarks"])
    parity = np.abs(own_rois.astype(int) - reference_rois.astype(int))
    print(f"parity with the reference crops (dlib landmarks): max |diff| {parity.max()}, "
          f"{(parity > 0).mean() * 100:.3f}% of pixels differ")

    distances = np.linalg.norm(mediapipe_filled - dlib_landmarks, axis=-1)  # (T, 68)
    interocular = np.linalg.norm(dlib_landmarks[:, 36] - dlib_landmarks[:, 45], axis=-1).mean()
    print("\nlandmarks, mediapipe vs dlib: mean point distance in pixels (and / inter-ocular distance "
          f"{interocular:.1f} px)")
    for name, region in [("all 68", slice(0, 68))] + list(REGIONS.items()) + [
            ("stable 5 (33,36,39,42,45)", list(mouth_roi.STABLE_POINT_IDS))]:
        value = distances[:, region].mean()
        print(f"  {name:<26}{value:6.2f} px  ({value / interocular * 100:5.2f} %)")
    plan_mediapipe = mouth_roi.plan_mouth_crops(mediapipe_filled)
    plan_dlib = mouth_roi.plan_mouth_crops(dlib_landmarks)
    scale = lambda plan: np.sqrt(np.abs(np.linalg.det(plan.inverse_transforms[:, :2, :2])))  # noqa: E731
    shift = np.abs(plan_mediapipe.origins - plan_dlib.origins).mean(0)
    print(f"  crop origin shift in the 256x256 aligned frame: {shift} px (x, y); alignment scale ratio "
          f"{np.mean(scale(plan_mediapipe) / scale(plan_dlib)):.4f}")

    print("\nmouth crops: mean |grey difference| (0-255) of 96x96 crops / 88x88 model input")
    rows = [("mediapipe vs dlib landmarks", dlib_landmarks, mediapipe_filled)]
    for shift in (1, 2):
        rows.append((f"dlib shifted by {shift} px (context)", dlib_landmarks, dlib_landmarks + np.array([shift, 0.0])))
    for stride in (2, 3):
        rows.append((f"mediapipe stride {stride} vs stride 1", mediapipe_filled,
                     mouth_roi.interpolate_landmarks(strided(mediapipe_landmarks, stride))))
    for name, landmarks_a, landmarks_b in rows:
        full, centre = crop_difference(frames_rgb, landmarks_a, landmarks_b)
        print(f"  {name:<38}{full:6.2f} / {centre:6.2f}")

    if args.clips:
        from talkface.media import read_frames

        print("\nwhole clips, mediapipe stride 2 / 3 vs stride 1 (grey MAD of 88x88 crops; landmark shift in px)")
        for clip in CLIPS:
            path = SHARED / "data" / clip
            if not path.is_file():
                continue
            frames = read_frames(path, fps=25)
            landmarks = mouth_roi.detect_landmarks(frames, backend)
            every = mouth_roi.interpolate_landmarks(landmarks)
            cells = []
            for stride in (2, 3):
                sparse = mouth_roi.interpolate_landmarks(strided(landmarks, stride))
                _, centre = crop_difference(frames, every, sparse)
                moved = np.linalg.norm(sparse - every, axis=-1).mean()
                cells.append(f"stride {stride}: {centre:5.2f} grey, {moved:4.2f} px")
            print(f"  {clip[:40]:<42}{len(frames):>4} frames  " + "   ".join(cells))


if __name__ == "__main__":
    main()
