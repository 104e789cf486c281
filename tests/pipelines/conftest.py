"""Fixtures of the pipeline tests: real speech cut to 0.8 s and 1.0 s, a 20-frame real clip, a mediapipe backend."""

import pytest

from talkface import media
from tests.pipelines.pipeline_helpers import SPEECH, make_clip, write_wav
from tests.utils import data_file


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """Real speech cut to 0.8 s (20 frames at 25 fps) and 1.0 s."""
    waveform = media.read_audio(data_file(SPEECH))
    folder = tmp_path_factory.mktemp("speech")
    return {
        0.8: write_wav(folder / "speech_0.8s.wav", waveform[16000:16000 + 12800]),
        1.0: write_wav(folder / "speech_1.0s.wav", waveform[16000:32000]),
    }


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clips") / "short.mp4", 20)
