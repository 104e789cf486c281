"""Helpers of the demo's tests (tests/demo/test_app.py, test_app_page.py): media writers, the app launched on a
free port, the `generate` / `score` endpoints called as a script would, and the checks of a returned mp4."""

import socket
from pathlib import Path

import pytest

from talkface import media
from tests.utils import write_wav  # noqa: F401 (the demo tests import it from here)

FPS = 25
SR = 16000
MAX_SECONDS = 3.0


def write_clip(path, frames, audio=None):
    with media.VideoWriter(path, fps=FPS, width=frames.shape[2], height=frames.shape[1], audio=audio) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(blocks, blocks_cache_dir, **kwargs):
    blocks.queue(default_concurrency_limit=1, max_size=8)
    _, url, _ = blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                              allowed_paths=[str(blocks_cache_dir)], **kwargs)
    return url


def generate(client, face=None, photo=None, audio=None, generator="tiny", enhance=False, **options):
    import gradio_client

    handle = gradio_client.handle_file
    face = face or photo
    return client.predict(face=handle(str(face)) if face else None,
                          speech=handle(str(audio)) if audio else None, recording=None, generator=generator,
                          face_index=options.get("face_index", 0), pad_top=0, pad_bottom=10, pad_left=0, pad_right=0,
                          duration_policy=options.get("duration_policy", "pingpong"), blend="feather", feather=0.15,
                          enhance=enhance, api_name="/generate")


def score(client, videos, audios=None, references=None, face_mode="track", lse_protocol="default", box=""):
    import gradio_client

    handle = gradio_client.handle_file
    return client.predict(videos=[handle(str(v)) for v in videos],
                          audios=[handle(str(a)) for a in audios] if audios else None,
                          references=[handle(str(r)) for r in references] if references else None,
                          face_mode=face_mode, lse_protocol=lse_protocol, box=box, api_name="/score")


def check_mp4(path, seconds):
    import av

    info = media.probe(path)
    assert Path(path).suffix == ".mp4" and info.has_video and info.has_audio
    assert info.duration == pytest.approx(seconds, abs=1.01 / FPS)
    assert info.audio_duration == pytest.approx(seconds, abs=0.1)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"
    frames = media.read_frames(path)
    assert frames.std() > 5  # real pictures, not a blank stream
