"""The execution structure of `LipSyncPipeline` (execution.py): the produce / compute / finish stages overlapped
in threads write the same video bit for bit as one thread; an error or a stop in any thread ends the call as
without threads (the same exception, nothing left at `out`, no temporary, the signal handlers restored);
cross-file batching (`generate_many`) writes every file as one call does, one bad file never stops the others."""

import signal
import threading

import numpy as np
import pytest
import torch

from talkface import media
from talkface.errors import InvalidInputError, MediaError, NoFaceError, TalkFaceUserError
from talkface.faces.backends import FaceBackend, FaceDetection
from talkface.pipelines.lipsync.adapters.wav2lip import Wav2LipGenerator
from talkface.pipelines.lipsync.execution import resolve_batch_files, resolve_overlap
from talkface.pipelines.lipsync.pipeline import FIRST_BATCH_SIZE, LipSyncPipeline
from talkface.utils import io as safe_io
from tests.pipelines.pipeline_helpers import make_clip
from tests.utils import data_file

BOX = (60, 60, 200, 220)


def tiny_wav2lip(seed=0) -> Wav2LipGenerator:
    """A real Wav2Lip network, tiny and random (fp32 on the CPU: real arithmetic, fast)."""
    from talkface.models.wav2lip import Wav2LipConfig, Wav2LipModel

    torch.manual_seed(seed)
    config = Wav2LipConfig(
        img_size=24, hidden_size=16,
        face_encoder_channels=[4, 8, 8, 16], face_encoder_kernel_sizes=[7, 3, 3, 3],
        face_encoder_strides=[1, 2, 2, 2], face_encoder_residual_layers=[0, 1, 1, 0],
        audio_encoder_channels=[4, 8, 8, 16], audio_encoder_residual_layers=[1, 0, 1, 0],
        decoder_channels=[16, 8, 8, 4], decoder_residual_layers=[1, 0, 1, 1], output_hidden_channels=4,
    )
    generator = Wav2LipGenerator(Wav2LipModel(config))
    generator.optimize_for_inference()
    return generator


class Boxes(FaceBackend):
    """The same box in every frame (no detector: fast); records the thread it runs in; can fail at a frame."""

    def __init__(self, fail_at=None, error=None):
        self.threads, self.calls, self.fail_at, self.error = set(), 0, fail_at, error

    def _detect(self, frame_rgb, landmarks):
        self.threads.add(threading.current_thread().name)
        self.calls += 1
        if self.calls == self.fail_at:
            raise self.error
        return [FaceDetection(box=np.asarray(BOX, np.float32), landmarks=None, score=1.0)]


class Hook:
    """A watermarker hook that records its thread and can fail at a frame."""

    def __init__(self, fail_at=None, error=None):
        self.threads, self.calls, self.fail_at, self.error = set(), 0, fail_at, error

    def __call__(self, frame, index):
        self.threads.add(threading.current_thread().name)
        self.calls += 1
        if self.calls == self.fail_at:
            raise self.error
        return frame


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return {"short": make_clip(folder / "short.mp4", 20), "eight": make_clip(folder / "eight.mp4", 8)}


def frames(path) -> np.ndarray:
    return media.read_frames(path)


def left_behind(folder) -> list:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


def test_auto_modes():
    assert resolve_overlap("auto", "cuda") and not resolve_overlap("off", "cuda") and resolve_overlap("on", "cpu")
    assert resolve_batch_files("auto", "cuda") > 1 and resolve_batch_files("auto", "cpu") == 1
    assert resolve_batch_files("3", "cpu") == 3
    for bad in ("0", "-1", "1.5", "many", True):
        with pytest.raises(InvalidInputError, match="--batch-files"):
            resolve_batch_files(bad, "cpu")
    with pytest.raises(InvalidInputError, match="overlap must be one of auto, on, off"):
        LipSyncPipeline(tiny_wav2lip(), overlap="sometimes")


def test_overlap_on_writes_the_same_video_as_off(tmp_path, clips, speech, mediapipe_backend):
    """Real detection + landmarks, a real (tiny) network, feather paste-back, the watermark, a pingpong past the
    video's end, batches of 4: the file overlap on writes equals overlap off's byte for byte."""
    from talkface.pipelines.lipsync.watermark import Watermarker

    embed = Watermarker().embed
    threads = []

    def watermark(frame, index):
        threads.append(threading.current_thread().name)
        return embed(frame, index)

    pipeline = LipSyncPipeline(tiny_wav2lip(), face_backend=mediapipe_backend, watermarker=watermark, batch_size=4)
    written = {}
    for mode in ("off", "on", "off", "on"):  # interleaved, twice each
        out = tmp_path / f"{mode}_{len(written)}.mp4"
        threads.clear()
        result = pipeline(face=clips["eight"], audio=speech[1.0], out=out, overlap=mode, progress=False)
        assert result.num_frames == 25 and result.frames_without_face == 0
        assert set(threads) == ({"talkface-finish"} if mode == "on" else {threading.current_thread().name})
        written[out.name] = out.read_bytes()
    assert len(set(written.values())) == 1, "overlap on and off wrote different files"
    assert left_behind(tmp_path) == []


def test_the_stages_run_in_their_own_threads(tmp_path, clips, speech):
    backend, hook = Boxes(), Hook()
    pipeline = LipSyncPipeline(tiny_wav2lip(), face_backend=backend, watermarker=hook, batch_size=4, overlap="on")
    pipeline(face=clips["short"], audio=speech[0.8], out=tmp_path / "on.mp4", progress=False)
    assert backend.threads == {"talkface-produce"} and hook.threads == {"talkface-finish"}
    assert threading.active_count() == 1 or not any(t.name.startswith("talkface-") for t in threading.enumerate())


@pytest.mark.parametrize("overlap", ["on", "off"])
@pytest.mark.parametrize("stage", ["produce", "compute", "finish"])
def test_an_error_in_any_stage_ends_the_call_with_it_and_leaves_nothing(tmp_path, clips, speech, stage, overlap):
    error = MediaError(f"broken in the {stage} stage")
    backend = Boxes(fail_at=7, error=error) if stage == "produce" else Boxes()
    hook = Hook(fail_at=6, error=error) if stage == "finish" else Hook()
    generator = tiny_wav2lip()
    if stage == "compute":
        calls = []

        def generate(*args, _generate=generator.generate):
            calls.append(1)
            if len(calls) == 2:
                raise error
            return _generate(*args)

        generator.generate = generate
    handlers = {s: signal.getsignal(s) for s in safe_io.CLEANUP_SIGNALS}
    out = tmp_path / "out.mp4"
    pipeline = LipSyncPipeline(generator, face_backend=backend, watermarker=hook, batch_size=4, overlap=overlap)
    with pytest.raises(MediaError) as raised:
        pipeline(face=clips["short"], audio=speech[0.8], out=out, progress=False)
    assert raised.value is error
    assert not out.exists() and left_behind(tmp_path) == [] and safe_io.registered_temporaries() == []
    assert {s: signal.getsignal(s) for s in safe_io.CLEANUP_SIGNALS} == handlers
    assert not any(t.name.startswith("talkface-") for t in threading.enumerate())
    # the pipeline still works afterwards
    result = LipSyncPipeline(tiny_wav2lip(), face_backend=Boxes(), batch_size=4, overlap=overlap)(
        face=clips["short"], audio=speech[0.8], out=out, progress=False)
    assert result.num_frames == 20 and out.exists()


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_a_stop_in_the_finish_thread_ends_the_call_with_it(tmp_path, clips, speech, stop):
    out = tmp_path / "out.mp4"
    pipeline = LipSyncPipeline(tiny_wav2lip(), face_backend=Boxes(), watermarker=Hook(fail_at=5, error=stop()),
                               batch_size=4, overlap="on")
    with pytest.raises(stop):
        pipeline(face=clips["short"], audio=speech[0.8], out=out, progress=False)
    assert not out.exists() and left_behind(tmp_path) == [] and safe_io.registered_temporaries() == []


def test_no_face_with_overlap_is_the_same_one_error(tmp_path, speech):
    black = tmp_path / "black.mp4"
    with media.VideoWriter(black, fps=25, width=64, height=64) as writer:
        for _ in range(5):
            writer.write(np.zeros((64, 64, 3), np.uint8))

    class NoFaces(FaceBackend):
        def _detect(self, frame_rgb, landmarks):
            return []

    out = tmp_path / "out.mp4"
    with pytest.raises(NoFaceError, match="no face found in"):
        LipSyncPipeline(tiny_wav2lip(), face_backend=NoFaces(), overlap="on")(
            face=black, audio=speech[0.8], out=out, progress=False)
    assert not out.exists() and left_behind(tmp_path) == []


# ----------------------------------------------------------------------------------------------------------------
# cross-file batching
# ----------------------------------------------------------------------------------------------------------------


def counting(generator):
    """Wrap generate to record the faces of every call."""
    sizes = []

    def generate(masked, reference, audio, frame_indices, _generate=generator.generate):
        sizes.append(len(masked))
        return _generate(masked, reference, audio, frame_indices)

    generator.generate = generate
    return sizes


@pytest.mark.parametrize("overlap", ["off", "on"])
def test_files_batched_together_equal_the_files_one_by_one(tmp_path, clips, speech, overlap):
    """Three files (two clips, a photo; two audio lengths, one pingpong) in flight two at a time: every output
    equals the one-at-a-time output (fp32 on the CPU; the tolerance is stated in docs/generation.md: observed 0)."""
    photo = data_file("photo02_hallo_ref6.jpg")
    requests = [dict(face=clips["short"], audio=speech[0.8]), dict(face=photo, audio=speech[1.0]),
                dict(face=clips["eight"], audio=speech[1.0])]
    written = {}
    for files in (1, 2):
        generator = tiny_wav2lip()
        sizes = counting(generator)
        pipeline = LipSyncPipeline(generator, face_backend=Boxes(), batch_size=4)
        batch = [dict(r, out=tmp_path / f"{files}_{i}.mp4") for i, r in enumerate(requests)]
        outcomes = pipeline.generate_many(batch, batch_files=files, overlap=overlap)
        assert [o.error for o in outcomes] == [None] * 3
        assert [o.result.num_frames for o in outcomes] == [20, 25, 25]
        assert all(o.seconds > 0 for o in outcomes)
        written[files] = [frames(r["out"]) for r in batch]
        if files == 1:
            assert max(sizes) == 4
        else:
            assert max(sizes) == 8  # two files' batches of 4 in one call
            assert sum(sizes) == 20 + 25 + 25
    for one, together in zip(written[1], written[2]):
        assert np.array_equal(one, together)


def test_a_bad_file_never_stops_the_others(tmp_path, clips, speech):
    generator = tiny_wav2lip()
    pipeline = LipSyncPipeline(generator, face_backend=Boxes(), batch_size=4)
    requests = [dict(face=clips["short"], audio=speech[0.8], out=tmp_path / "a.mp4"),
                dict(face=tmp_path / "missing.mp4", audio=speech[0.8], out=tmp_path / "b.mp4"),
                dict(face=clips["eight"], audio=speech[1.0], out=tmp_path / "c.mp4", options=pipeline.options.replace(
                    face_backend=Boxes(fail_at=6, error=MediaError("decoding broke")))),
                dict(face=clips["short"], audio=speech[1.0], out=tmp_path / "d.mp4")]
    outcomes = pipeline.generate_many(requests, batch_files=2, overlap="on")
    assert isinstance(outcomes[1].error, TalkFaceUserError) and "missing.mp4" in str(outcomes[1].error)
    assert str(outcomes[2].error) == "decoding broke"
    assert [o.result.num_frames if o.result else None for o in outcomes] == [20, None, None, 25]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "d.mp4"]
    alone = LipSyncPipeline(tiny_wav2lip(), face_backend=Boxes(), batch_size=4)(
        face=clips["short"], audio=speech[1.0], out=tmp_path / "alone.mp4", progress=False)
    assert alone.num_frames == 25 and np.array_equal(frames(tmp_path / "d.mp4"), frames(tmp_path / "alone.mp4"))


def test_a_generator_without_per_frame_audio_runs_each_file_alone(tmp_path, clips, speech):
    generator = tiny_wav2lip()
    generator.per_frame_audio = False
    sizes = counting(generator)
    pipeline = LipSyncPipeline(generator, face_backend=Boxes(), batch_size=4)
    outcomes = pipeline.generate_many([dict(face=clips["short"], audio=speech[0.8], out=tmp_path / f"{i}.mp4")
                                       for i in range(2)], batch_files=2)
    per_file = 1 + -(-(20 - FIRST_BATCH_SIZE) // 4)  # a small first batch, then batches of 4 and the rest
    assert [o.error for o in outcomes] == [None, None] and max(sizes) == 4 and len(sizes) == 2 * per_file


def tiny_talkface():
    from talkface.pipelines.lipsync.adapters.talkface_gan import TalkFaceGenerator
    from tests.models.test_modeling_talkface import tiny_config

    torch.manual_seed(0)
    from talkface.models.talkface_gan.modeling_talkface_gan import TalkFaceModel

    return TalkFaceGenerator(TalkFaceModel(tiny_config()).eval())


def tiny_talklip():
    from talkface.models.talklip.modeling_talklip import TalkLipModel
    from talkface.pipelines.lipsync.adapters.talklip import TalkLipGenerator
    from tests.models.test_modeling_talklip import tiny_config

    torch.manual_seed(0)
    return TalkLipGenerator(TalkLipModel(tiny_config()).eval())


class SomeFaces(Boxes):
    """Boxes, but no face in about a third of the frames (by their pixels, so the same frames whatever the order
    of the calls): batches whose face count is not a whole k-frame group."""

    def _detect(self, frame_rgb, landmarks):
        import zlib

        found = super()._detect(frame_rgb, landmarks)
        return [] if zlib.crc32(frame_rgb.tobytes()) % 3 == 0 else found


@pytest.mark.parametrize("make", [tiny_talkface, tiny_talklip], ids=["talkface k=5", "talklip global audio"])
def test_our_generator_and_talklip_batch_across_files_as_one_by_one(tmp_path, clips, speech, make):
    """Our generator (k-frame groups, each file's part padded to whole groups) and TalkLip (its utterance-level
    audio encoder runs per file in prepare_audio): files in flight two at a time give the one-by-one frames."""
    requests = [dict(face=clips["short"], audio=speech[0.8]), dict(face=clips["eight"], audio=speech[1.0]),
                dict(face=clips["short"], audio=speech[1.0])]
    written = {}
    for files in (1, 2):
        generator = make()
        sizes = counting(generator)
        pipeline = LipSyncPipeline(generator, face_backend=SomeFaces(), batch_size=4, detect_every=1)
        batch = [dict(r, out=tmp_path / f"{files}_{i}.mp4") for i, r in enumerate(requests)]
        outcomes = [pipeline.generate_many([b], batch_files=1)[0] for b in batch] if files == 1 else \
            pipeline.generate_many(batch, batch_files=files)
        assert [o.error for o in outcomes] == [None] * 3
        assert all(o.result.frames_without_face > 0 for o in outcomes)
        written[files] = [frames(r["out"]) for r in batch]
        if files == 2:
            assert max(sizes) > max(alone)  # calls took faces of two files
        else:
            alone = list(sizes)
    for one, together in zip(written[1], written[2]):
        assert np.abs(one.astype(int) - together.astype(int)).max() == 0
