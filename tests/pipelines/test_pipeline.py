"""LipSyncPipeline end to end on real clips, with a test-only generator and with a tiny random Wav2Lip.

Options, the frame-count rule and adding a generator are in test_pipeline_options.py; helpers in pipeline_helpers.py,
fixtures in conftest.py.
"""

import av
import numpy as np
import pytest
import torch

from talkface import media
from talkface.errors import MediaError, ModelLoadError, NoFaceError
from talkface.faces import FaceBackend
from talkface.pipelines.lipsync.options import InvalidInputError, LipSyncOptions
from talkface.pipelines.lipsync.frames import _monotonic_runs
from talkface.pipelines.lipsync import pipeline as pipeline_module
from talkface.pipelines.lipsync.pipeline import LipSyncPipeline, frame_schedule
from tests.pipelines.pipeline_helpers import PaintingGenerator, check_output, make_clip, red_excess
from tests.utils import data_file


# ---------------------------------------------------------------------------------------------- scheduling


def test_frame_schedule_policies():
    assert list(frame_schedule(10, 4, "pingpong")) == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert list(frame_schedule(9, 4, "loop")) == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    assert list(frame_schedule(3, 5, "cut")) == [0, 1, 2]
    assert list(frame_schedule(4, 1, "pingpong")) == [0, 0, 0, 0]
    assert list(frame_schedule(5, 2, "pingpong")) == [0, 1, 0, 1, 0]
    with pytest.raises(ValueError):
        list(frame_schedule(6, 4, "cut"))
    assert list(_monotonic_runs(iter([4, 5, 6, 5, 4, 3, 0, 1, 7]))) == [(4, 6, 1), (5, 3, -1), (0, 1, 1), (7, 7, 1)]


# ---------------------------------------------------------------------------------------------- end to end


def test_generates_on_a_real_clip(short_clip, speech, tmp_path, mediapipe_backend):
    generator = PaintingGenerator()
    pipeline = LipSyncPipeline(generator, face_backend=mediapipe_backend, model_name="painter")
    progress = []
    out = tmp_path / "out.mp4"
    result = pipeline(face=short_clip, audio=speech[0.8], out=out, batch_size=8,
                      progress=lambda done, total: progress.append((done, total)))
    check_output(result, out, 0.8)
    assert result.frames_without_face == 0 and result.source_frames == 20
    # a small first batch (FIRST_BATCH_SIZE frames), then batches of 8 and the rest: 2, 8, 8, 2
    assert generator.frame_indices == list(range(20))
    assert generator.calls == 1 + -(-(20 - pipeline_module.FIRST_BATCH_SIZE) // 8)
    assert progress[-1] == (20, 20)
    with av.open(str(out)) as container:
        assert container.metadata["comment"].startswith("AI-generated with talkface") and "painter" in container.metadata[
            "comment"]
    source = media.read_frames(short_clip)
    output = media.read_frames(out)
    box = mediapipe_backend.detect(source[0], landmarks=False)[0].box
    assert red_excess(output[0], box) > red_excess(source[0], box) + 100  # the mouth region was replaced
    # the eyes and the background are the original frame's (only re-encoded)
    assert np.abs(output[:, :int(box[1])].astype(int) - source[:, :int(box[1])].astype(int)).mean() < 3


def test_frames_without_a_face_pass_through_unchanged(tmp_path, speech, mediapipe_backend):
    clip = make_clip(tmp_path / "with_black.mp4", 20, black=(6, 7, 8))
    generator = PaintingGenerator()
    out = tmp_path / "out.mp4"
    result = LipSyncPipeline(generator, face_backend=mediapipe_backend)(face=clip, audio=speech[0.8], out=out,
                                                                        progress=False)
    check_output(result, out, 0.8)
    assert result.frames_without_face == 3
    assert generator.frame_indices == [i for i in range(20) if i not in (6, 7, 8)]
    source = media.read_frames(clip)
    output = media.read_frames(out)
    for i in (6, 7, 8):
        assert np.abs(output[i].astype(int) - source[i].astype(int)).max() <= 2  # still black
    assert np.abs(output[5].astype(int) - source[5].astype(int)).max() > 100  # painted


def test_vfr_clip03(tmp_path, speech, mediapipe_backend):
    generator = PaintingGenerator()
    out = tmp_path / "vfr.mp4"
    result = LipSyncPipeline(generator, face_backend=mediapipe_backend)(
        face=data_file("clip03_retalking_face1_man_suit.mp4"), audio=speech[0.8], out=out, progress=False)
    check_output(result, out, 0.8)
    assert result.source_frames == 154 and result.frames_without_face == 0
    assert media.probe(out).width == 700


def test_photo_follows_the_audio(tmp_path, speech, mediapipe_backend):
    generator = PaintingGenerator()
    out = tmp_path / "photo.mp4"
    result = LipSyncPipeline(generator, face_backend=mediapipe_backend)(
        face=data_file("photo02_hallo_ref6.jpg"), audio=speech[1.0], out=out, fps=30, progress=False)
    check_output(result, out, 1.0, fps=30.0)
    assert result.source_frames == 1 and result.frames_without_face == 0
    assert generator.frame_indices == list(range(30))


@pytest.mark.parametrize("policy, expected_frames", [("pingpong", 25), ("loop", 25), ("cut", 8)])
def test_duration_policies(tmp_path, speech, mediapipe_backend, policy, expected_frames):
    clip = make_clip(tmp_path / "eight.mp4", 8)
    results = []
    for cache_bytes in (512 * 2**20, 0):  # frames kept in memory / decoded again (backwards in chunks)
        generator = PaintingGenerator()
        pipeline = LipSyncPipeline(generator, face_backend=mediapipe_backend, frame_cache_bytes=cache_bytes)
        out = tmp_path / f"{policy}_{cache_bytes}.mp4"
        result = pipeline(face=clip, audio=speech[1.0], out=out, duration_policy=policy, progress=False)
        assert result.num_frames == expected_frames == media.probe(out).num_frames
        assert generator.frame_indices == list(range(expected_frames))
        results.append(generator.reference_means)
    # the source frame order: reference crops of output frame i are those of source frame schedule[i]
    schedule = list(frame_schedule(expected_frames, 8, policy))
    for means in results:
        assert means == pytest.approx([results[0][s] for s in schedule], abs=1e-6)
    if policy == "cut":
        assert media.probe(tmp_path / "cut_0.mp4").audio_duration == pytest.approx(8 / 25, abs=0.04)


def test_forced_box_pads_and_face_index(tmp_path, short_clip, speech):
    class Exploding(FaceBackend):
        def _detect(self, frame_rgb, landmarks):
            raise AssertionError("no detection with a forced box")

    generator = PaintingGenerator()
    out = tmp_path / "boxed.mp4"
    box = (60, 100, 200, 240)
    result = LipSyncPipeline(generator, face_backend=Exploding())(face=short_clip, audio=speech[0.8], out=out,
                                                                  box=box, progress=False, blend="hard")
    assert result.frames_without_face == 0
    frame = media.read_frames(out, max_frames=1)[0]
    assert frame[175:235, 70:190, 0].mean() > 200 and frame[175:235, 70:190, 1].mean() < 60  # painted lower half
    source = media.read_frames(short_clip, max_frames=1)[0]
    assert np.abs(frame[245:].astype(int) - source[245:].astype(int)).mean() < 3  # below the box: untouched


class FixedFaces(FaceBackend):
    """Test-only backend: the same boxes in every frame; counts the frames it was asked about."""

    def __init__(self, *boxes):
        self.boxes = [np.asarray(b, dtype=np.float32) for b in boxes]
        self.calls = 0

    def _detect(self, frame_rgb, landmarks):
        from talkface.faces.backends import FaceDetection

        self.calls += 1
        return [FaceDetection(box=box.copy(), landmarks=None, score=1.0) for box in self.boxes]


def test_face_index_beyond_the_faces_fails_early_with_the_count(tmp_path, short_clip, speech):
    out = tmp_path / "none.mp4"
    backend = FixedFaces((60, 60, 200, 220))
    with pytest.raises(InvalidInputError, match=r"--face-index 3 but only 1 face was found in the first frame; "
                                                r"use 0\.\.0"):
        LipSyncPipeline(PaintingGenerator(), face_backend=backend)(
            face=short_clip, audio=speech[0.8], out=out, face_index=3, progress=False)
    assert backend.calls == 1  # the first detection, not after the whole video
    assert list(tmp_path.iterdir()) == []
    backend = FixedFaces((60, 60, 200, 220), (10, 10, 40, 50))
    with pytest.raises(InvalidInputError, match=r"only 2 faces were found in the first frame; use 0\.\.1"):
        LipSyncPipeline(PaintingGenerator(), face_backend=backend)(
            face=short_clip, audio=speech[0.8], out=out, face_index=2, progress=False)
    result = LipSyncPipeline(PaintingGenerator(), face_backend=backend)(
        face=short_clip, audio=speech[0.8], out=out, face_index=1, progress=False)
    assert result.frames_without_face == 0  # the smaller face is followed


def test_face_index_with_a_real_detector(tmp_path, short_clip, speech, mediapipe_backend):
    with pytest.raises(InvalidInputError, match="--face-index 3 but only 1 face was found"):
        LipSyncPipeline(PaintingGenerator(), face_backend=mediapipe_backend)(
            face=short_clip, audio=speech[0.8], out=tmp_path / "o.mp4", face_index=3, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("pads,needle", [
    ((-500, 0, 0, 0), "in a 256x256 frame"),          # more than the frame: refused before anything is decoded
    ((-170, 0, 0, 0), "around the 140x160 face"),     # more than this face: refused at the first detection
    ((0, 0, -70, -70), "around the 140x160 face"),
])
def test_pads_that_leave_no_face_region_fail_instead_of_writing(tmp_path, short_clip, speech, pads, needle):
    backend = FixedFaces((60, 60, 200, 220))
    out = tmp_path / "out.mp4"
    pipeline = LipSyncPipeline(PaintingGenerator(), face_backend=backend)
    with pytest.raises(InvalidInputError, match=needle) as caught:
        pipeline(face=short_clip, audio=speech[0.8], out=out, pads=pads, progress=False)
    assert "--pads " + " ".join(map(str, pads)) in str(caught.value) and "\n" not in str(caught.value)
    assert backend.calls <= 1 and list(tmp_path.iterdir()) == []
    # pads that still leave a region are fine, also negative ones
    result = pipeline(face=short_clip, audio=speech[0.8], out=out, pads=(-20, 0, -10, -10), progress=False)
    assert result.frames_without_face == 0 and result.num_frames == 20


def test_fps_must_be_finite_positive_and_sane():
    for value in ("inf", float("nan"), 0, -1, 241, "-inf", "fast"):
        with pytest.raises(InvalidInputError, match="fps must be"):
            LipSyncOptions(fps=value)
    assert LipSyncOptions(fps=240).fps == 240.0 and LipSyncOptions(fps="29.97").fps == pytest.approx(29.97)


def test_no_face_anywhere(tmp_path, speech, mediapipe_backend):
    black_video = tmp_path / "black.mp4"
    with media.VideoWriter(black_video, fps=25, width=64, height=64) as writer:
        for _ in range(5):
            writer.write(np.zeros((64, 64, 3), np.uint8))
    black_photo = tmp_path / "black.png"
    import cv2

    cv2.imwrite(str(black_photo), np.zeros((64, 64, 3), np.uint8))
    pipeline = LipSyncPipeline(PaintingGenerator(), face_backend=mediapipe_backend)
    for face in (black_video, black_photo):
        out = tmp_path / "out.mp4"
        with pytest.raises(NoFaceError, match="--box"):
            pipeline(face=face, audio=speech[0.8], out=out, progress=False)
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["black.mp4", "black.png"]


def test_hooks_and_metadata(tmp_path, short_clip, speech, mediapipe_backend):
    enhanced, watermarked = [], []

    def enhancer(frame, detection):
        enhanced.append(detection.box.copy())
        return frame

    def watermarker(frame, index):
        watermarked.append(index)
        frame = frame.copy()
        frame[:8, :8] = 255
        return frame

    clip = make_clip(tmp_path / "black2.mp4", 12, black=(3,))
    out = tmp_path / "hooks.mp4"
    pipeline = LipSyncPipeline(PaintingGenerator(), face_backend=mediapipe_backend, enhancer=enhancer,
                               watermarker=watermarker)
    result = pipeline(face=clip, audio=speech[0.8], out=out, duration_policy="loop", progress=False,
                      metadata={"title": "demo"})
    # hooks run on the frames the generator redrew; face-less frames are the source's own pixels
    assert len(watermarked) == len(enhanced) == result.num_frames - result.frames_without_face > 0
    assert 3 not in watermarked
    assert media.read_frames(out, max_frames=1)[0][:6, :6].min() > 240
    with av.open(str(out)) as container:
        assert container.metadata["title"] == "demo" and "talkface" in container.metadata["comment"]


def test_failure_leaves_no_output(tmp_path, short_clip, speech, mediapipe_backend):
    class Failing(PaintingGenerator):
        def generate(self, *args):
            if self.calls == 1:
                raise RuntimeError("generator crashed")
            return super().generate(*args)

    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="crashed"):
        LipSyncPipeline(Failing(), face_backend=mediapipe_backend)(face=short_clip, audio=speech[0.8], out=out,
                                                                   batch_size=4, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_check_inputs(tmp_path, short_clip, speech):
    pipeline = LipSyncPipeline(PaintingGenerator())
    out = tmp_path / "out.mp4"
    with pytest.raises(MediaError, match="not found"):
        pipeline.check_inputs(tmp_path / "missing.mp4", speech[0.8], out)
    with pytest.raises(MediaError, match="no audio stream"):
        pipeline.check_inputs(short_clip, short_clip, out)  # the test clip has no sound
    with pytest.raises(MediaError, match="no video stream"):
        pipeline.check_inputs(speech[0.8], speech[0.8], out)
    with pytest.raises(MediaError, match="does not exist"):
        pipeline.check_inputs(short_clip, speech[0.8], tmp_path / "missing" / "out.mp4")
    with pytest.raises(MediaError, match=".mp4"):
        pipeline.check_inputs(short_clip, speech[0.8], tmp_path / "out.avi")
    with pytest.raises(ValueError, match="duration_policy"):
        pipeline.check_inputs(short_clip, speech[0.8], out, duration_policy="stretch")
    with pytest.raises(ValueError, match="outside"):
        pipeline.check_inputs(short_clip, speech[0.8], out, box=(0, 0, 300, 100))
    with pytest.raises(ValueError, match="blend"):
        pipeline.check_inputs(short_clip, speech[0.8], out, blend="alpha")
    with pytest.raises(InvalidInputError, match="feather"):
        pipeline.check_inputs(short_clip, speech[0.8], out, feather=0.9)
    with pytest.raises(TypeError, match="unknown lip-sync option.*colour"):
        pipeline.check_inputs(short_clip, speech[0.8], out, colour="red")
    face_info, audio_info, options = pipeline.check_inputs(short_clip, speech[0.8], out, fps=30)
    assert face_info.num_frames == 20 and audio_info.audio_duration == pytest.approx(0.8)
    assert options == LipSyncOptions(fps=30) and options.fps == 30.0


# ---------------------------------------------------------------------------------------------- tiny Wav2Lip


@pytest.fixture(scope="module")
def tiny_wav2lip_folder(tmp_path_factory):
    from talkface.models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor
    from talkface.models.wav2lip import Wav2LipConfig, Wav2LipModel

    config = Wav2LipConfig(
        img_size=24, hidden_size=16,
        face_encoder_channels=[4, 8, 8, 16], face_encoder_kernel_sizes=[7, 3, 3, 3],
        face_encoder_strides=[1, 2, 2, 2], face_encoder_residual_layers=[0, 1, 1, 0],
        audio_encoder_channels=[4, 8, 8, 16], audio_encoder_residual_layers=[1, 0, 1, 0],
        decoder_channels=[16, 8, 8, 4], decoder_residual_layers=[1, 0, 1, 1], output_hidden_channels=4,
    )
    folder = tmp_path_factory.mktemp("tiny_wav2lip")
    Wav2LipModel(config).save_pretrained(folder)
    TalkingFaceAudioFeatureExtractor().save_pretrained(folder)
    return folder


def test_tiny_wav2lip_end_to_end(tmp_path, tiny_wav2lip_folder, speech, mediapipe_backend):
    pipeline = LipSyncPipeline.from_pretrained(tiny_wav2lip_folder, device="cpu", face_backend=mediapipe_backend)
    assert pipeline.generator.img_size == 24 and pipeline.device.type == "cpu"
    assert pipeline.model_name == tiny_wav2lip_folder.name  # the folder by its base name, not its path
    clip = make_clip(tmp_path / "gap.mp4", 20, black=(10,))
    out = tmp_path / "wav2lip.mp4"
    result = pipeline(face=clip, audio=speech[0.8], out=out, progress=False)
    check_output(result, out, 0.8)
    assert result.frames_without_face == 1
    source, output = media.read_frames(clip), media.read_frames(out)
    assert np.abs(output[10].astype(int) - source[10].astype(int)).max() <= 2
    assert np.abs(output[0].astype(int) - source[0].astype(int)).max() > 30  # a (random) face was pasted
    # from_pretrained marks what it generates: invisible watermark + container tags (issue 8)
    from talkface.pipelines.lipsync.watermark import Watermarker, read_metadata

    assert Watermarker().detect_video(out).found
    assert not Watermarker().detect_video(clip).found
    tags = read_metadata(out)
    assert "talkface" in tags["comment"] and f"model: {tiny_wav2lip_folder.name};" in tags["comment"]
    # the model by its folder's name, never its full local path (issue 13: privacy)
    assert not any(str(tiny_wav2lip_folder.parent) in value for value in tags.values())
    # a photo through the same model, with a longer audio
    out = tmp_path / "photo.mp4"
    result = pipeline(face=data_file("photo01_sadtalker_people_0.png"), audio=speech[1.0], out=out, progress=False)
    check_output(result, out, 1.0)


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json"):
        LipSyncPipeline.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "syncnet"}')
    with pytest.raises(ModelLoadError, match="not a generator"):
        LipSyncPipeline.from_pretrained(tmp_path)


# ---------------------------------------------------------------------------------------------- landmarks


def test_the_enhancer_gets_the_trackers_landmarks(tmp_path, short_clip, speech, mediapipe_backend):
    """With an enhancer, the tracker fits landmarks once and hands them on; GFPGAN does not detect again."""
    from talkface.models.gfpgan import GFPGANConfig, GFPGANModel
    from talkface.pipelines.lipsync.enhancer import GFPGANEnhancer

    class Exploding(FaceBackend):
        def _detect(self, frame_rgb, landmarks):
            raise AssertionError("the enhancer must not detect faces again")

    torch.manual_seed(0)
    gfpgan = GFPGANModel(GFPGANConfig(out_size=64, num_style_feat=16, num_mlp=2, channel_multiplier=1,
                                      narrow=0.125))
    enhancer = GFPGANEnhancer(gfpgan, landmark_backend=Exploding())
    seen = []

    def recording_enhancer(frame, face):
        seen.append(face)
        return enhancer(frame, face)

    pipeline = LipSyncPipeline(PaintingGenerator(), face_backend=mediapipe_backend, enhancer=recording_enhancer)
    result = pipeline(face=short_clip, audio=speech[0.8], out=tmp_path / "out.mp4", progress=False)
    assert len(seen) == result.num_frames == 20 and enhancer.frames_without_landmarks == 0
    for face in seen:
        assert face.landmarks.shape == (68, 2)
        x1, y1, x2, y2 = face.box
        inside = (face.landmarks[:, 0] >= x1 - 2) & (face.landmarks[:, 0] <= x2 + 2) & (face.landmarks[:, 1] >= y1 - 2)
        assert inside.mean() > 0.9  # the landmarks belong to the tracked face
    # they are the detector's own landmarks (smoothed): close to a fresh detection on the first frame
    first = media.read_frames(short_clip, max_frames=1)[0]
    detected = mediapipe_backend.detect(first)[0].landmarks
    assert np.linalg.norm(seen[0].landmarks - detected, axis=1).mean() < 4.0
