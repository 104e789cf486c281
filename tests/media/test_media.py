"""Media I/O: audio decoding/resampling, constant-grid frame reading (VFR included), the streaming mp4 writer."""

import math

import av
import numpy as np
import pytest

from talkface import media
from talkface.errors import MediaError
from tests.utils import data_file, write_wav

CLIPS = [
    "clip01_sadtalker_WDA_AlexandriaOcasioCortez_000.mp4",
    "clip03_retalking_face1_man_suit.mp4",
    "clip04_retalking_face2_man_map.mp4",
    "clip05_retalking_face5_woman_glasses.mp4",
    "clip07_edtalk_mouth_source_muxed.mkv",
    "clip09_styletalk_feifeili_clip1_muxed.mkv",
]
SPEECH = [
    "speech01_whisper_jfk.flac",
    "speech02_sadtalker_RD_Radio31_000.wav",
    "speech04_retalking_audio1.wav",
]
PHOTOS = ["photo01_sadtalker_people_0.png", "photo02_hallo_ref6.jpg", "photo04_edtalk_leijun.png"]


# ---------------------------------------------------------------------------------------------- audio


@pytest.mark.parametrize("name", SPEECH + CLIPS)
def test_read_audio_of_every_file(name):
    path = data_file(name)
    waveform = media.read_audio(path)
    info = media.probe(path)
    assert waveform.dtype == np.float32 and waveform.ndim == 1
    assert np.abs(waveform).max() <= 1.0
    assert np.abs(waveform).max() > 0.05  # real speech, not silence or a mis-scaled integer format
    assert len(waveform) / 16000 == pytest.approx(info.audio_duration, abs=0.03)


def test_resampling_keeps_frequency_and_amplitude(tmp_path):
    rate, seconds = 44100, 1.0
    t = np.arange(int(rate * seconds)) / rate
    tone = 0.5 * np.sin(2 * np.pi * 1000.0 * t)
    stereo = np.stack([tone, tone], axis=1)  # dual mono: averaging must keep the amplitude
    write_wav(tmp_path / "tone.wav", stereo, rate, channels=2)
    waveform = media.read_audio(tmp_path / "tone.wav", sampling_rate=16000)
    assert len(waveform) == 16000
    middle = waveform[2000:-2000]  # away from the filter's edge effects
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle))))
    peak_hz = np.argmax(spectrum) * 16000 / len(middle)
    assert peak_hz == pytest.approx(1000.0, abs=2.0)
    assert np.sqrt(np.mean(middle ** 2)) == pytest.approx(0.5 / math.sqrt(2), rel=0.01)


def test_channels_are_averaged(tmp_path):
    rate = 16000
    left = np.full(rate // 10, 0.5)
    right = np.full(rate // 10, -0.1)
    write_wav(tmp_path / "lr.wav", np.stack([left, right], axis=1), rate, channels=2)
    waveform = media.read_audio(tmp_path / "lr.wav")
    assert np.allclose(waveform, 0.2, atol=1e-3)


def test_read_audio_errors(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        media.read_audio(tmp_path / "missing.wav")
    with pytest.raises(MediaError, match="no audio stream"):
        media.read_audio(data_file(PHOTOS[0]))
    write_wav(tmp_path / "empty.wav", np.zeros(0), 16000)
    with pytest.raises(MediaError, match="no audio"):
        media.read_audio(tmp_path / "empty.wav")
    (tmp_path / "junk.wav").write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(MediaError):
        media.read_audio(tmp_path / "junk.wav")


# ---------------------------------------------------------------------------------------------- frames


@pytest.mark.parametrize("name", CLIPS)
def test_every_clip_on_the_25fps_grid(name):
    path = data_file(name)
    info = media.probe(path)
    count = 0
    for frame in media.iter_frames(path, fps=25):
        assert frame.shape == (info.height, info.width, 3) and frame.dtype == np.uint8
        count += 1
    assert count == media.count_grid_frames(path, fps=25)
    assert abs(count - info.duration * 25) <= 1


def test_vfr_clip03_grid():
    path = data_file("clip03_retalking_face1_man_suit.mp4")
    info = media.probe(path)
    assert info.num_frames == 135 and info.fps == pytest.approx(22.13, abs=0.05)
    frames = media.read_frames(path, fps=25)
    # the video starts at pts 0.033, its sound at 0: the timeline starts with the sound, and the video spans
    # 6.1 s from 0.033 s, so 6.133 s: 154 grid frames at 25 fps
    assert len(frames) == 154
    assert media.probe(path).duration == pytest.approx(6.133, abs=1e-3)
    # grid frame 0 (0 s) comes before the first video frame: it shows that first frame, as grid frame 1 does
    first = next(media.iter_frames(path, fps=25))
    assert np.array_equal(frames[0], first) and np.array_equal(frames[0], frames[1])
    assert not np.array_equal(frames[0], frames[-1])
    # and a 30 fps grid repeats/drops differently but covers the same span
    assert len(media.read_frames(path, fps=30)) == math.ceil(6.133 * 30 - 1e-9)


def test_grid_resamples_30fps_clip():
    path = data_file("clip09_styletalk_feifeili_clip1_muxed.mkv")
    frames_30 = media.read_frames(path, fps=30, max_frames=12)
    frames_25 = media.read_frames(path, fps=25, max_frames=10)
    # 25 fps grid frame i shows source frame floor(i * 30 / 25)
    for i in range(10):
        assert np.array_equal(frames_25[i], frames_30[(i * 30) // 25])


def test_iter_frames_start_matches_full_decode():
    path = data_file("clip07_edtalk_mouth_source_muxed.mkv")
    full = media.read_frames(path, fps=25, max_frames=140)
    later = media.iter_frames(path, fps=25, start=130)
    for i in range(130, 140):
        assert np.array_equal(next(later), full[i])


@pytest.mark.parametrize("name", PHOTOS)
def test_photo_is_one_frame(name):
    path = data_file(name)
    frames = media.read_frames(path)
    info = media.probe(path)
    assert info.is_image and frames.shape == (1, info.height, info.width, 3)


def test_rotated_video_is_shown_upright(tmp_path):
    path = tmp_path / "rotated.mp4"
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
    stream.set_display_rotation(90)
    image = np.zeros((32, 64, 3), np.uint8)
    image[:8, :8] = 255  # a white square in the top-left corner
    for i in range(2):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = i
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
    container.close()
    frame = media.read_frames(path, max_frames=1)[0]
    assert frame.shape == (64, 32, 3)
    assert media.probe(path).width == 32
    # rotated a quarter turn counter-clockwise: the square is now bottom-left
    assert frame[-4, 4].mean() > 200 and frame[4, 4].mean() < 50


def test_iter_frames_errors(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        next(media.iter_frames(tmp_path / "missing.mp4"))
    with pytest.raises(MediaError, match="no video stream"):
        next(media.iter_frames(data_file("speech02_sadtalker_RD_Radio31_000.wav")))


# ---------------------------------------------------------------------------------------------- writing


def _noise_frames(count, height, width):
    rng = np.random.default_rng(0)
    for i in range(count):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[:] = rng.integers(0, 255, size=3, dtype=np.uint8)
        yield frame


@pytest.mark.parametrize("fps", [25.0, 30.0])
def test_writer_fps_duration_and_audio(tmp_path, fps):
    seconds = 1.3
    t = np.arange(int(16000 * seconds)) / 16000
    audio = (0.3 * np.sin(2 * np.pi * (100 + 1000 * t) * t)).astype(np.float32)  # a chirp: one best alignment
    num_frames = round(seconds * fps)
    out = tmp_path / "out.mp4"
    with media.VideoWriter(out, fps=fps, width=63, height=48, audio=audio,
                           metadata={"comment": "generated by talkface test"}) as writer:
        for frame in _noise_frames(num_frames, 48, 63):
            writer.write(frame)
    info = media.probe(out)
    assert info.has_audio and info.has_video
    assert info.fps == pytest.approx(fps)
    assert info.num_frames == num_frames
    assert (info.width, info.height) == (64, 48)  # odd width padded to even
    assert abs(info.duration - seconds) <= 1 / fps
    assert abs(info.audio_duration - seconds) <= 1 / fps
    # the audio comes back aligned (no offset) and as long as it went in
    decoded = media.read_audio(out)
    assert abs(len(decoded) - len(audio)) <= 16000 / fps
    n = min(len(audio), len(decoded)) - 2000
    correlation = np.correlate(decoded[:n + 400], audio[200:n], mode="valid")
    assert np.argmax(correlation) == 200
    with av.open(str(out)) as container:
        assert container.metadata.get("comment") == "generated by talkface test"
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"
        assert container.streams.audio[0].codec_context.name == "aac"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_writer_round_trip_content(tmp_path):
    frames = media.read_frames(data_file("clip07_edtalk_mouth_source_muxed.mkv"), max_frames=5)
    out = tmp_path / "copy.mp4"
    with media.VideoWriter(out, fps=25, width=256, height=256) as writer:
        for frame in frames:
            writer.write(frame)
    again = media.read_frames(out)
    assert again.shape == frames.shape
    assert np.abs(again.astype(int) - frames.astype(int)).mean() < 3  # crf 18: visually lossless
    assert not media.probe(out).has_audio


def test_writer_is_atomic_on_failure(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with media.VideoWriter(out, fps=25, width=32, height=32, audio=np.zeros(16000, np.float32)) as writer:
            for frame in _noise_frames(5, 32, 32):
                writer.write(frame)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="shape"):
        with media.VideoWriter(out, fps=25, width=32, height=32) as writer:
            writer.write(np.zeros((16, 32, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_unwritable_output(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        media.VideoWriter(tmp_path / "no" / "such" / "out.mp4", fps=25, width=32, height=32)
    with pytest.raises(MediaError, match="folder"):
        media.VideoWriter(tmp_path, fps=25, width=32, height=32)


def test_wrongly_named_files_say_what_they_look_like(tmp_path):
    pdf = tmp_path / "photo.png"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n")
    with pytest.raises(MediaError, match=r"photo.png is not an image that can be decoded \(it looks like a PDF "
                                         r"document\); pass a PNG or JPEG photo"):
        media.probe(pdf)
    text = tmp_path / "clip.mp4"
    text.write_text("these are my notes\n")
    with pytest.raises(MediaError, match=r"cannot read .*clip.mp4 as audio/video \(it looks like a text file\)"):
        media.probe(text)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert media.describe_content(empty) == "an empty file (0 bytes)"
    gif = tmp_path / "face.gif"
    gif.write_bytes(b"GIF89a" + bytes(20))
    assert media.describe_content(gif) == "a GIF image"
    assert media.describe_content(tmp_path / "missing") is None
    noise = tmp_path / "noise.bin"
    noise.write_bytes(bytes(range(256)) * 2)
    assert media.describe_content(noise) is None


def test_decoded_frames_are_pyav_rgb24():
    """iter_frames keeps one scaler for the stream; its frames are PyAV's own rgb24 conversion, pixel for pixel."""
    path = data_file("clip05_retalking_face5_woman_glasses.mp4")
    with av.open(str(path)) as container:
        expected = [frame.to_ndarray(format="rgb24") for _, frame in zip(range(12), container.decode(video=0))]
    frames = media.read_frames(path, fps=25, max_frames=12)
    assert len(frames) == 12 and all(np.array_equal(a, b) for a, b in zip(frames, expected))
    assert not np.shares_memory(frames[0], frames[1])  # every decoded frame has its own pixels


def test_writer_round_trip_of_a_real_clip(tmp_path):
    """The writer's own RGB -> yuv420p conversion: a real 512x512 clip comes back as close as crf 18 allows."""
    frames = media.read_frames(data_file("clip01_sadtalker_WDA_AlexandriaOcasioCortez_000.mp4"), max_frames=8)
    out = tmp_path / "copy.mp4"
    with media.VideoWriter(out, fps=25, width=512, height=512) as writer:
        for frame in frames:
            writer.write(frame)
    again = media.read_frames(out).astype(np.float64)
    psnr = 10 * np.log10(255.0**2 / np.mean((again - frames) ** 2))
    assert psnr > 37, psnr
