"""The pipeline's paste-back on real clips: the face-shaped mask leaves everything outside the face alone, and a
head turned sideways gets its mouth redrawn in place (roll alignment), with a test-only painting generator."""

import logging

import cv2
import numpy as np
import pytest

from talkface import media
from talkface.faces.roll import roll_angle
from talkface.pipelines.lipsync.options import LipSyncOptions
from talkface.pipelines.lipsync.pipeline import LipSyncPipeline
from tests.pipelines.pipeline_helpers import PaintingGenerator
from tests.utils import data_file

CLIP = "clip05_retalking_face5_woman_glasses.mp4"  # 524x524; red jacket and lips, so the paint is green
GREEN = (0.0, 1.0, 0.0)
NUM_FRAMES = 12


def write_clip(path, frames):
    with media.VideoWriter(path, fps=25, width=frames.shape[2], height=frames.shape[1]) as writer:
        for frame in frames:
            writer.write(frame)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """The first frames of a real clip, upright and turned a quarter turn (the head lies on its left side)."""
    frames = media.read_frames(data_file(CLIP), max_frames=NUM_FRAMES)
    folder = tmp_path_factory.mktemp("paste_clips")
    upright = write_clip(folder / "upright.mp4", frames)
    turned = write_clip(folder / "turned.mp4", np.ascontiguousarray(np.rot90(frames, 1, axes=(1, 2))))
    return {"upright": upright, "turned": turned}


def run(clip, audio, backend, **options):
    """Run the pipeline; return (output frames decoded, [(pasted frame before encoding, face)], source frames)."""
    tapped = []

    def tap(frame, face):  # the enhancer hook sees each pasted frame and its tracked face, before the encoder
        tapped.append((frame.copy(), face))
        return frame

    out = clip.parent / f"out_{clip.stem}_{'_'.join(f'{k}{v}' for k, v in options.items())}.mp4"
    pipeline = LipSyncPipeline(PaintingGenerator(colour=GREEN), enhancer=tap,
                               **({} if backend is None else {"face_backend": backend}))
    result = pipeline(face=clip, audio=audio, out=out, progress=False, duration_policy="cut", **options)
    assert result.frames_without_face == 0
    return media.read_frames(out), tapped, media.read_frames(clip)


def hull_mask(landmarks, shape, grow=0):
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(landmarks).astype(np.int32)), 1)
    if grow:
        mask = cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    return mask.astype(bool)


def green(frame):
    frame = frame.astype(int)
    return frame[..., 1] - (frame[..., 0] + frame[..., 2]) / 2 > 80


def test_face_mask_leaves_everything_outside_the_face_unchanged(clips, speech, mediapipe_backend):  # noqa: F811
    output, tapped, source = run(clips["upright"], speech[0.8], mediapipe_backend)
    untouched, _, _ = run(clips["upright"], speech[0.8], mediapipe_backend, blend="none")  # the codec's own noise
    assert len(tapped) == len(source) == NUM_FRAMES
    for index, (pasted, face) in enumerate(tapped):
        assert face.landmarks is not None
        changed = np.abs(pasted.astype(int) - source[index].astype(int)).max(axis=2) > 0
        hull = cv2.convexHull(face.landmarks.astype(np.float32))
        # before encoding: exactly the source outside the landmarks' hull; the mouth was redrawn
        assert changed.sum() > 5000
        assert all(cv2.pointPolygonTest(hull, (float(x), float(y)), False) >= 0 for y, x in np.argwhere(changed))
        mouth = np.round(face.landmarks[48:60].mean(axis=0)).astype(int)
        assert green(pasted)[mouth[1], mouth[0]]
        # after encoding: outside the hull (grown by 8 px for the codec's blocks) only codec noise
        outside = ~hull_mask(face.landmarks, pasted.shape, grow=8)
        difference = np.abs(output[index].astype(int) - source[index].astype(int)).max(axis=2)[outside]
        noise = np.abs(untouched[index].astype(int) - source[index].astype(int)).max(axis=2)[outside]
        assert difference.mean() < noise.mean() + 0.25
        assert np.percentile(difference, 99.9) <= np.percentile(noise, 99.9) + 6
    # the box-shaped mask (the former default) does spill outside the face: what the test would catch
    _, box_tapped, _ = run(clips["upright"], speech[0.8], mediapipe_backend, blend="box")
    pasted, face = box_tapped[0]
    spilled = (np.abs(pasted.astype(int) - source[0].astype(int)).max(axis=2) > 8) & ~hull_mask(face.landmarks,
                                                                                               pasted.shape)
    assert spilled.sum() > 500


def lips_turned(source_frames, backend):
    """The outer-lip landmarks (12, 2) of each upright frame, carried through the quarter turn of the clip."""
    lips = []
    width = source_frames.shape[2]
    for frame in source_frames:
        x, y = backend.detect(frame, landmarks=True)[0].landmarks[48:60].T
        lips.append(np.stack([y, width - 1 - x], axis=1))  # (x, y) after np.rot90 (counter-clockwise)
    return np.array(lips)


def test_a_sideways_head_gets_its_mouth_redrawn_in_place(clips, speech, mediapipe_backend):  # noqa: F811
    lips = lips_turned(media.read_frames(clips["upright"]), mediapipe_backend)
    aligned, tapped, source = run(clips["turned"], speech[0.8], mediapipe_backend)
    plain, _, _ = run(clips["turned"], speech[0.8], mediapipe_backend, align_roll=False)
    # the tracker saw a head lying sideways
    assert all(abs(roll_angle(face.landmarks) + 90) < 15 for _, face in tapped)
    coverage, offsets = {"aligned": [], "plain": []}, {"aligned": [], "plain": []}
    for index in range(NUM_FRAMES):
        mouth = lips[index].mean(axis=0)
        lip_pixels = np.round(lips[index]).astype(int)
        for name, output in (("aligned", aligned), ("plain", plain)):
            painted = green(output[index]) & ~green(source[index])
            ys, xs = np.nonzero(painted)
            assert len(xs) > 2000, name
            coverage[name].append(painted[lip_pixels[:, 1], lip_pixels[:, 0]].mean())
            # the head lies sideways: the eye line runs along the picture's y axis; the painted region should be
            # centred on the mouth across the face
            offsets[name].append(abs(ys.mean() - mouth[1]))
    # aligned: the redrawn pixels lie around the mouth, every lip landmark inside them
    # (measured: all lips covered, centred within 11-16 px; the region is not symmetric about the mouth)
    assert min(coverage["aligned"]) == 1.0 and max(offsets["aligned"]) < 22
    # axis-aligned crops put the generated "lower half" on one side of the face: half the mouth, off centre
    # (measured: 50-58 % of the lips, 33-39 px off centre)
    assert np.mean(coverage["plain"]) < 0.8 and min(offsets["plain"]) > 28
    assert np.mean(offsets["plain"]) > 2 * np.mean(offsets["aligned"])


def test_without_landmarks_the_box_mask_is_used_and_said(clips, speech, caplog):  # noqa: F811
    box = (140, 220, 390, 480)
    with caplog.at_level(logging.INFO, logger="talkface.pipelines.lipsync.pipeline"):
        output, tapped, source = run(clips["upright"], speech[0.8], None, box=box)
    assert "box-shaped mask" in caplog.text and "not roll-aligned" in caplog.text
    assert all(face.landmarks is None for _, face in tapped)
    # the same pixels as blend="box" (the box mask, axis-aligned)
    _, box_tapped, _ = run(clips["upright"], speech[0.8], None, box=box, blend="box")
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(tapped, box_tapped))


def test_align_roll_option_and_flag():
    import argparse

    from talkface.commands import generate

    assert LipSyncOptions().align_roll is True
    with pytest.raises(ValueError, match="align_roll"):
        LipSyncOptions(align_roll="no")
    parser = generate.register(argparse.ArgumentParser().add_subparsers())
    args = parser.parse_args(["--face", "f.mp4", "--audio", "a.wav", "--model", "m", "--out", "o.mp4",
                              "--no-align-roll", "--blend", "box"])
    assert generate.options_from_args(args) == LipSyncOptions(align_roll=False, blend="box")
