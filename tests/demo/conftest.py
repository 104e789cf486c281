"""Fixtures of the demo's tests: short real media, tiny random models and the app serving them on a free port.

Module-scoped: each test file that asks for `served` gets its own app (gradio is imported only then).
"""

import tempfile
from argparse import Namespace

import numpy as np
import pytest

from talkface import media
from talkface.demo import DemoConfig, TalkFaceDemo, create_tiny_random_models
from tests.demo.app_helpers import FPS, MAX_SECONDS, SR, launch, write_clip, write_wav
from tests.utils import data_file


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Short real media (a 1.2 s face clip with its sound, 1.6 s of speech) and bad uploads."""
    folder = tmp_path_factory.mktemp("app_media")
    source = data_file("clip07_edtalk_mouth_source_muxed.mkv")
    frames = media.read_frames(source, fps=FPS, max_frames=30)
    speech = media.read_audio(data_file("speech04_retalking_audio1.wav"), SR)
    return {
        "face": write_clip(folder / "face.mp4", frames, media.read_audio(source, SR)[: 30 * SR // FPS]),
        "speech": write_wav(folder / "speech.wav", speech[SR : SR + 40 * SR // FPS]),  # 1.6 s
        "speech_1s": write_wav(folder / "speech_1s.wav", speech[SR : 2 * SR]),
        "long_speech": write_wav(folder / "long_speech.wav", speech[: 4 * SR]),  # over MAX_SECONDS
        "silent": write_clip(folder / "silent.mp4", frames[:20]),
        "no_face": write_clip(folder / "grey.mp4", np.full((20, 64, 64, 3), 120, np.uint8), speech[: 20 * SR // FPS]),
        "not_video": _write_text(folder / "notes.mp4", "this is not a video\n"),
        "photo": data_file("photo01_sadtalker_people_0.png"),
    }


def _write_text(path, text):
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    # the folder `--demo-tiny-models --cache-dir CACHE` uses, so that the flag's test finds them made
    return create_tiny_random_models(tmp_path_factory.mktemp("cache") / "tiny-random-models")


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_models):
    """The app with a tiny generator (+ one that does not exist), SyncNet and AV-HuBERT; no GFPGAN."""
    import app  # the repository root is on sys.path under pytest
    import gradio_client

    work_tmp = tmp_path_factory.mktemp("request_tmp")
    saved_tempdir, tempfile.tempdir = tempfile.tempdir, str(work_tmp)  # request folders land here
    config = DemoConfig(generators={"tiny": str(tiny_models["generator"]), "missing": "/nonexistent/wav2lip"},
                        syncnet=str(tiny_models["syncnet"]), avhubert=str(tiny_models["avhubert"]),
                        max_video_seconds=MAX_SECONDS, max_audio_seconds=MAX_SECONDS, max_files=3,
                        cache_dir=tmp_path_factory.mktemp("demo_cache"), tiny_random=True)
    demo = TalkFaceDemo(config)
    blocks = app.build_demo(demo)
    url = launch(blocks, config.cache_dir, max_file_size="1mb")
    client = gradio_client.Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))
    try:
        yield Namespace(client=client, demo=demo, url=url, work_tmp=work_tmp)
    finally:
        blocks.close()
        tempfile.tempdir = saved_tempdir
