"""Stream start times (issue 13): a file whose video starts later than its sound (or the other way round) is read on
one timeline, so its frames and its own sound track stay in sync."""

import math
from fractions import Fraction

import av
import numpy as np
import pytest

from talkface import media

FPS = 25
SAMPLING_RATE = 16000
FLASH_FRAME = 20  # the video frame (counted in the video stream) that is white, the others are dark
SECONDS = 2.0


def make_offset_file(path, container_format, video_start=0.5, audio_start=0.0):
    """A 2 s clip: a white video frame FLASH_FRAME and, at the same moment of the file's timeline, a click in the
    sound. The video stream starts at `video_start` s, the audio stream at `audio_start` s (stream start pts)."""
    container = av.open(str(path), "w", format=container_format)
    video = container.add_stream("libx264", rate=FPS)
    video.width = video.height = 32
    video.pix_fmt = "yuv420p"
    video_base = Fraction(1, 2 * FPS)  # 0.5 s is a whole number of ticks
    video.codec_context.time_base = video_base
    audio = container.add_stream("aac", rate=SAMPLING_RATE)
    audio.layout = "mono"
    for index in range(int(SECONDS * FPS)):
        frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 250 if index == FLASH_FRAME else 20, np.uint8),
                                           format="rgb24")
        frame.pts, frame.time_base = int(video_start / video_base) + 2 * index, video_base
        container.mux(video.encode(frame))
    container.mux(video.encode(None))
    # the click sits where the flash is on the timeline: video_start + FLASH_FRAME / FPS
    wave = np.zeros(int(SECONDS * SAMPLING_RATE), np.float32)
    click = int(round((video_start + FLASH_FRAME / FPS - audio_start) * SAMPLING_RATE))
    wave[click: click + 160] = 0.9
    for first in range(0, len(wave), 1024):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[first: first + 1024].reshape(1, -1)),
                                           format="fltp", layout="mono")
        frame.sample_rate = SAMPLING_RATE
        frame.pts, frame.time_base = int(audio_start * SAMPLING_RATE) + first, Fraction(1, SAMPLING_RATE)
        container.mux(audio.encode(frame))
    container.mux(audio.encode(None))
    container.close()
    return path


def flash_index(frames) -> int:
    brightness = frames.reshape(len(frames), -1).mean(axis=1)
    assert brightness.max() > 200, "no flash frame"
    return int(np.argmax(brightness))


def click_frame(audio) -> float:
    """The grid frame (at FPS) where the click starts."""
    return int(np.argmax(np.abs(audio) > 0.3)) / SAMPLING_RATE * FPS


@pytest.mark.parametrize("container_format,suffix", [("mp4", ".mp4"), ("matroska", ".mkv")])
def test_video_starting_after_its_sound_is_read_with_the_offset(tmp_path, container_format, suffix):
    path = make_offset_file(tmp_path / f"late_video{suffix}", container_format, video_start=0.5)
    with av.open(str(path)) as container:  # the file really has the offset
        assert container.streams.video[0].start_time * container.streams.video[0].time_base == Fraction(1, 2)
    frames = media.read_frames(path, fps=FPS)
    audio = media.read_audio(path, sampling_rate=SAMPLING_RATE)
    # 0.5 s before the first video frame: 12 grid frames repeat it (grid frame 12 is at 0.48 s)
    assert len(frames) == 12 + SECONDS * FPS + 1 or len(frames) == 12 + SECONDS * FPS
    assert all(np.array_equal(frames[0], frames[i]) for i in range(13))
    # the flash is at 1.3 s on the timeline: grid frame 33 (1.32 s) is the first one at or after it
    assert flash_index(frames) == math.ceil((0.5 + FLASH_FRAME / FPS) * FPS) == 33
    # in sync with the file's own sound: the click starts on the flash frame (within a frame)
    assert abs(click_frame(audio) - flash_index(frames)) < 1
    # the rest of the reading functions agree with the frames
    assert media.count_grid_frames(path, fps=FPS) == len(frames)
    assert media.probe(path).duration == pytest.approx(len(frames) / FPS, abs=1 / FPS)
    later = list(media.iter_frames(path, fps=FPS, start=30))
    assert len(later) == len(frames) - 30
    assert all(np.array_equal(a, b) for a, b in zip(later, frames[30:]))


def test_sound_starting_after_its_video_gets_silence_in_front(tmp_path):
    path = make_offset_file(tmp_path / "late_sound.mkv", "matroska", video_start=0.0, audio_start=0.5)
    frames = media.read_frames(path, fps=FPS)
    audio = media.read_audio(path, sampling_rate=SAMPLING_RATE)
    assert len(frames) == SECONDS * FPS  # the video starts the timeline: read as it is
    assert np.abs(audio[: int(0.5 * SAMPLING_RATE) - 200]).max() == 0  # 0.5 s of silence in front
    assert abs(click_frame(audio) - flash_index(frames)) < 1
    assert media.probe(path).audio_duration == pytest.approx(len(audio) / SAMPLING_RATE, abs=0.01)


def test_streams_starting_together_are_read_as_before(tmp_path):
    path = make_offset_file(tmp_path / "together.mp4", "mp4", video_start=0.0)
    frames = media.read_frames(path, fps=FPS)
    assert len(frames) == SECONDS * FPS and flash_index(frames) == FLASH_FRAME
    assert abs(click_frame(media.read_audio(path)) - FLASH_FRAME) < 1
