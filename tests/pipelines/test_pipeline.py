"""LipSyncPipeline end to end on real clips, with a test-only generator and with a tiny random Wav2Lip."""

import math
import wave

import av
import numpy as np
import pytest
import torch

from talkface import media
from talkface.errors import MediaError, ModelLoadError, NoFaceError
from talkface.faces import FaceBackend
from talkface.models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor
from talkface.pipelines.lipsync.generator import GENERATOR_ADAPTERS, LipSyncGenerator, PreparedAudio, register_generator
from talkface.pipelines.lipsync.options import InvalidInputError, LipSyncOptions
from talkface.pipelines.lipsync.pipeline import LipSyncPipeline, _monotonic_runs, frame_schedule
from tests.utils import data_file

CLIP = "clip07_edtalk_mouth_source_muxed.mkv"  # 256x256, 25 fps, tight face
SPEECH = "speech04_retalking_audio1.wav"
RED = (1.0, 0.0, 0.0)


class PaintingGenerator(LipSyncGenerator):
    """Test-only generator: returns the reference face with its lower half painted one colour.

    It records what the pipeline hands it and checks the interface contract on every call.
    """

    img_size = 32

    def __init__(self, colour=RED):
        super().__init__(torch.nn.Linear(1, 1), TalkingFaceAudioFeatureExtractor())
        self.colour = torch.tensor(colour).view(1, 3, 1, 1)
        self.frame_indices = []
        self.reference_means = []
        self.calls = 0

    @classmethod
    def from_pretrained(cls, path_or_repo_id, **kwargs):
        return cls()

    def prepare_audio(self, waveform, sampling_rate, fps):
        assert sampling_rate == self.sampling_rate == 16000 and waveform.dtype == np.float32
        num_frames = self.num_video_frames(len(waveform), fps)
        return PreparedAudio(per_frame=torch.arange(num_frames).float()[:, None], num_frames=num_frames, fps=fps)

    def generate(self, masked_faces, reference_faces, audio, frame_indices):
        size = self.img_size
        assert masked_faces.shape == reference_faces.shape and masked_faces.shape[1:] == (3, size, size)
        assert masked_faces.dtype == torch.float32 and 0.0 <= reference_faces.min() <= reference_faces.max() <= 1.0
        assert masked_faces[:, :, size // 2:].abs().max() == 0  # lower half masked
        assert torch.equal(masked_faces[:, :, : size // 2], reference_faces[:, :, : size // 2])
        assert frame_indices.dtype == torch.long and (frame_indices < audio.num_frames).all()
        self.calls += 1
        self.frame_indices += frame_indices.tolist()
        self.reference_means += reference_faces.mean(dim=(1, 2, 3)).tolist()
        generated = reference_faces.clone()
        generated[:, :, size // 2:] = self.colour
        return generated


def write_wav(path, waveform, sampling_rate=16000):
    pcm = (np.clip(waveform, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sampling_rate)
        wav.writeframes(pcm.tobytes())
    return path


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """Real speech cut to 0.8 s (20 frames at 25 fps) and 1.0 s."""
    waveform = media.read_audio(data_file(SPEECH))
    folder = tmp_path_factory.mktemp("speech")
    return {
        0.8: write_wav(folder / "speech_0.8s.wav", waveform[16000:16000 + 12800]),
        1.0: write_wav(folder / "speech_1.0s.wav", waveform[16000:32000]),
    }


def make_clip(path, num_frames, black=(), source=CLIP):
    """The first `num_frames` frames of a real clip (25 fps, no audio), with some frames replaced by black."""
    frames = media.read_frames(data_file(source), max_frames=num_frames)
    with media.VideoWriter(path, fps=25, width=frames.shape[2], height=frames.shape[1]) as writer:
        for i, frame in enumerate(frames):
            writer.write(np.zeros_like(frame) if i in black else frame)
    return path


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clips") / "short.mp4", 20)


@pytest.fixture(scope="module")
def mediapipe_backend():
    pytest.importorskip("mediapipe")
    from talkface.faces import get_face_backend

    backend = get_face_backend("mediapipe")
    yield backend
    backend.close()


def check_output(result, out, audio_seconds, fps=25.0):
    info = media.probe(out)
    assert info.has_video and info.has_audio
    assert info.fps == pytest.approx(fps)
    assert info.num_frames == result.num_frames == math.ceil(audio_seconds * fps - 1e-9)
    assert abs(info.duration - audio_seconds) <= 1 / fps
    assert abs(info.audio_duration - audio_seconds) <= 1 / fps
    assert result.out_path == out and result.fps == fps
    return info


def red_excess(frame, box):
    """How much redder than green/blue the box's lower-middle region is (0 for a natural face, ~200 painted)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    h, w = y2 - y1, x2 - x1
    region = frame[y1 + int(0.7 * h): y1 + int(0.8 * h), x1 + int(0.4 * w): x1 + int(0.6 * w)].astype(float)
    return region[..., 0].mean() - region[..., 1:].mean()


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
    assert generator.frame_indices == list(range(20)) and generator.calls == 3  # batches of 8, 8, 4
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
    assert result.source_frames == 153 and result.frames_without_face == 0
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
    assert str(tiny_wav2lip_folder) in pipeline.model_name
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
    assert "talkface" in read_metadata(out)["comment"] and str(tiny_wav2lip_folder) in read_metadata(out)["comment"]
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


# ---------------------------------------------------------------------------------------------- options


def test_options_defaults_validation_and_replace():
    options = LipSyncOptions()
    assert options.fps is None and options.batch_size is None and options.pads == (0, 10, 0, 0)
    assert options.duration_policy == "pingpong" and options.blend == "feather" and options.detect_every == 1
    changed = options.replace(pads=[1, 2, 3, 4], box=np.array([1, 2, 30, 40]), fps="30")
    assert changed.pads == (1, 2, 3, 4) and changed.box == (1.0, 2.0, 30.0, 40.0) and changed.fps == 30.0
    assert options.pads == (0, 10, 0, 0)  # replace makes a copy
    bad = {"fps": (0, "fps must be a number > 0"), "batch_size": (0, "batch size"), "face_index": (-1, "face index"),
           "box": ((5, 5, 1, 1), "x2 > x1"), "pads": ((1, 2, 3), "pads must be 4"),
           "duration_policy": ("stretch", "duration_policy must be one of pingpong, loop, cut"),
           "blend": ("alpha", "blend must be one of"), "feather": (0.0, "feather"), "detect_every": (0, "detect_every"),
           "face_backend": ("opencv", "face backend must be one of"), "batch_size ": (2.5, "whole number")}
    for name, (value, message) in bad.items():
        with pytest.raises(InvalidInputError, match=message):
            LipSyncOptions(**{name.strip(): value})
    with pytest.raises(TypeError, match="unknown lip-sync option.*the options are: fps, batch_size"):
        options.replace(speed=2)


def test_cli_flags_take_their_defaults_from_the_options():
    import argparse

    from talkface.commands import generate

    subparsers = argparse.ArgumentParser().add_subparsers()
    parser = generate.register(subparsers)
    args = parser.parse_args(["--face", "f.mp4", "--audio", "a.wav", "--model", "m", "--out", "o.mp4"])
    assert generate.options_from_args(args) == LipSyncOptions()
    args = parser.parse_args(["--face", "f.mp4", "--audio", "a.wav", "--model", "m", "--out", "o.mp4", "--pads",
                              "1", "2", "3", "4", "--detect-every", "3", "--duration-policy", "cut"])
    assert generate.options_from_args(args) == LipSyncOptions(pads=(1, 2, 3, 4), detect_every=3,
                                                              duration_policy="cut")


def test_pipeline_options_object_and_keyword_overrides(tmp_path, short_clip, speech):
    generator = PaintingGenerator()
    pipeline = LipSyncPipeline(generator, options=LipSyncOptions(box=(60, 100, 200, 240), blend="hard"), fps=20)
    assert pipeline.options.fps == 20 and pipeline.options.blend == "hard"
    out = tmp_path / "out.mp4"
    result = pipeline(face=short_clip, audio=speech[0.8], out=out, options=LipSyncOptions(box=(60, 100, 200, 240)),
                      duration_policy="cut", progress=False)
    # the call's options replace the pipeline's (fps back to the generator's 25), then the keyword overrides apply
    assert result.options == LipSyncOptions(box=(60, 100, 200, 240), duration_policy="cut")
    assert result.fps == generator.fps == 25.0 and result.num_frames == 20
    with pytest.raises(TypeError, match="unknown lip-sync option"):
        pipeline(face=short_clip, audio=speech[0.8], out=out, speed=2)


# ---------------------------------------------------------------------------------------------- frame count


def test_frame_count_is_the_generators_rule(tmp_path, short_clip, speech):
    """0.81 s at 25 fps needs 20.25 frames: the generator's rule rounds up (the audio is never without a frame)."""
    waveform = media.read_audio(speech[1.0])[:12960]  # 0.81 s
    audio = write_wav(tmp_path / "speech_0.81s.wav", waveform)
    generator = PaintingGenerator()
    assert generator.num_video_frames(12960, 25.0) == 21 == generator.feature_extractor.num_video_frames(12960, 25)
    out = tmp_path / "out.mp4"
    result = LipSyncPipeline(generator)(face=short_clip, audio=audio, out=out, box=(60, 100, 200, 240),
                                        progress=False)
    assert result.num_frames == 21 == media.probe(out).num_frames and generator.frame_indices == list(range(21))
    # at 30 fps the 0.8 s clip has 24 grid frames and the audio needs 25: "cut" stops at 24 and cuts the audio to
    # the longest length that needs exactly 24 frames
    out = tmp_path / "cut.mp4"
    result = LipSyncPipeline(PaintingGenerator())(face=short_clip, audio=audio, out=out, box=(60, 100, 200, 240),
                                                  duration_policy="cut", fps=30, progress=False)
    assert result.num_frames == 24 and result.audio_duration == pytest.approx(24 / 30, abs=1 / 16000)

    class Inconsistent(PaintingGenerator):
        def prepare_audio(self, waveform, sampling_rate, fps):
            prepared = super().prepare_audio(waveform, sampling_rate, fps)
            return PreparedAudio(prepared.per_frame[:-1], prepared.num_frames - 1, fps)

    with pytest.raises(RuntimeError, match="must agree with itself"):
        LipSyncPipeline(Inconsistent())(face=short_clip, audio=audio, out=tmp_path / "bad.mp4",
                                        box=(60, 100, 200, 240), progress=False)
    assert not (tmp_path / "bad.mp4").exists()


# ---------------------------------------------------------------------------------------------- a new generator


@pytest.fixture
def toy_generator_folder(tmp_path):
    """A toy generator: a one-parameter model that paints the mouth region its `tint`, and its adapter."""
    from transformers import PretrainedConfig, PreTrainedModel

    class ToyTintConfig(PretrainedConfig):
        model_type = "toy_tint"

        def __init__(self, img_size=16, **kwargs):
            super().__init__(**kwargs)
            self.img_size = img_size

    class ToyTintModel(PreTrainedModel):
        config_class = ToyTintConfig

        def __init__(self, config):
            super().__init__(config)
            self.tint = torch.nn.Parameter(torch.tensor([0.0, 0.0, 1.0]))  # blue
            self.post_init()

        def _init_weights(self, module):
            pass

    # the whole integration of a new generator: one adapter class
    @register_generator("toy_tint")
    class ToyTintGenerator(LipSyncGenerator):
        def __init__(self, model, feature_extractor):
            super().__init__(model, feature_extractor)
            self.img_size = model.config.img_size

        @classmethod
        def from_pretrained(cls, path_or_repo_id, **kwargs):
            return cls(ToyTintModel.from_pretrained(path_or_repo_id),
                       TalkingFaceAudioFeatureExtractor.from_pretrained(path_or_repo_id))

        def prepare_audio(self, waveform, sampling_rate, fps):
            num_frames = self.num_video_frames(len(waveform), fps)
            return PreparedAudio(per_frame=torch.zeros(num_frames, 1), num_frames=num_frames, fps=fps)

        def generate(self, masked_faces, reference_faces, audio, frame_indices):
            generated = reference_faces.clone()
            generated[:, :, self.img_size // 2:] = self.model.tint.detach().view(1, 3, 1, 1)
            return generated

    torch.manual_seed(0)
    folder = tmp_path / "toy_tint"
    ToyTintModel(ToyTintConfig()).save_pretrained(folder)
    TalkingFaceAudioFeatureExtractor(fps=20.0).save_pretrained(folder)  # the model's native rate: 20 fps
    yield folder
    GENERATOR_ADAPTERS.pop("toy_tint")


def test_a_toy_generator_is_one_registered_class(tmp_path, toy_generator_folder, short_clip, speech):
    from talkface.pipelines.lipsync.generator import generator_adapters, load_generator

    assert {"wav2lip", "talklip", "talkface", "toy_tint"} <= set(generator_adapters())
    generator = load_generator(toy_generator_folder)
    assert type(generator).__name__ == "ToyTintGenerator" and generator.model_type == "toy_tint"
    pipeline = LipSyncPipeline.from_pretrained(toy_generator_folder, device="cpu", watermark=False)
    out = tmp_path / "toy.mp4"
    result = pipeline(face=short_clip, audio=speech[0.8], out=out, box=(60, 100, 200, 240), blend="hard",
                      progress=False)
    assert result.fps == 20.0 and result.num_frames == 16  # the generator's own rate and frame count
    frame = media.read_frames(out, fps=20, max_frames=1)[0].astype(int)
    assert frame[180:230, 80:180, 2].mean() > 200 and frame[180:230, 80:180, :2].mean() < 60  # blue mouth region
    with pytest.raises(ValueError, match="already has the generator adapter"):
        @register_generator("toy_tint")
        class Other(LipSyncGenerator):  # noqa: F841
            pass
    with pytest.raises(TypeError, match="LipSyncGenerator subclass"):
        register_generator("not_a_class")(object)


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
