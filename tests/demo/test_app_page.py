"""The demo page's own handlers (`app.PageActions`), called as the page calls them, on the app of conftest.py.

Failures come back as one status line, uploads get browser-playable previews, a video is accepted as speech,
progress reports an ETA, and examples are paired from a folder.
"""

import re
from pathlib import Path

import numpy as np
import pytest

gradio = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

import app  # noqa: E402  (the repository root is on sys.path under pytest)
from talkface import media  # noqa: E402
from talkface.demo import DemoConfig, TalkFaceDemo  # noqa: E402
from talkface.errors import TalkFaceUserError  # noqa: E402
from tests.demo.app_helpers import FPS, SR, check_mp4, generate  # noqa: E402
from tests.utils import data_file  # noqa: E402


def no_progress(*args, **kwargs):
    pass


def page_generate(actions, face=None, speech=None, recording=None, generator="tiny", progress=no_progress):
    return actions.generate(face and str(face), speech and str(speech), recording and str(recording), generator,
                            0, 0, 10, 0, 0, "pingpong", "feather", 0.15, False, progress=progress)


def write_mpeg4_part2(path, frames, audio):
    """An .mp4 with MPEG-4 Part 2 video (what Chromium cannot decode, as the shared clip01) and AAC sound."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=FPS)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        sound = container.add_stream("aac", rate=SR)
        sound.layout = "mono"
        for frame in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode(None))
        for start in range(0, len(audio), 1024):
            chunk = av.AudioFrame.from_ndarray(audio[None, start:start + 1024].astype(np.float32), format="fltp",
                                               layout="mono")
            chunk.sample_rate, chunk.pts = SR, start
            container.mux(sound.encode(chunk))
        container.mux(sound.encode(None))
    return path


@pytest.fixture(scope="module")
def actions(served):
    return app.PageActions(served.demo)


def test_page_shows_a_failed_run_as_one_status_line_and_stays_usable(actions, files):
    video, status, scores, note = page_generate(actions, face=files["not_video"], speech=files["speech"])
    assert video is None and scores.empty and note == ""  # the earlier result is cleared
    assert status == ("⚠️ **Error**: the face file 'notes.mp4' is not a video or photo that can be read (it looks "
                      "like a text file); upload a video (mp4, mov, webm, mkv, ...) or a photo (png, jpg)")
    _, status, _, _ = page_generate(actions, face=files["face"])
    assert status.startswith("⚠️ **Error**: no audio given")
    # a model that is not there: the command that provides it, as a code span (rendered, not raw backticks)
    _, status, _, _ = page_generate(actions, face=files["face"], speech=files["speech"], generator="missing")
    assert "`talkface convert wav2lip --checkpoint wav2lip_gan.pth --out models/wav2lip`" in status
    # the page keeps working: the next run succeeds
    video, status, scores, _ = page_generate(actions, face=files["face"], speech=files["speech_1s"])
    check_mp4(video, 1.0)
    assert status.startswith("**Done**: 25 frames at 25 fps (1.00 s) with tiny, made in ")
    assert list(scores["score"])[:2] == ["lse_d", "lse_c"]


def test_page_reports_a_bug_as_a_status_line(actions, files, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(actions.demo, "generate", broken)
    video, status, _, _ = page_generate(actions, face=files["face"], speech=files["speech"])
    assert video is None
    assert status == ("⚠️ **Error**: unexpected error while generating (RuntimeError: disk on fire); this is a "
                      "bug, please report it with the server log")
    monkeypatch.setattr(actions.demo, "score", broken)
    table, status, *_ = actions.score([str(files["face"])], None, None, "track", progress=no_progress)
    assert table.empty and "unexpected error while scoring (RuntimeError: disk on fire)" in status


def test_status_lines_show_file_names_as_written():
    from talkface.demo.page import plain_markdown, status_line

    assert plain_markdown("the file '*take_1*.mp4' [draft] #2") == r"the file '\*take\_1\*.mp4' \[draft\] \#2"
    assert plain_markdown("run `talkface convert a_b` then retry_it") == r"run `talkface convert a_b` then retry\_it"
    assert plain_markdown("one ` backtick") == r"one \` backtick"
    assert status_line("info", "first line\nsecond line") == "ℹ️ first line"


def test_progress_has_frames_elapsed_and_time_left(actions, files):
    seen = []
    page_generate(actions, face=files["face"], speech=files["speech"], progress=lambda f, desc: seen.append(desc))
    frames = [d for d in seen if d.startswith("lip-sync: frame")]
    assert frames and all(re.fullmatch(r"lip-sync: frame \d+ of 40 \([\d.]+ s elapsed(, about [\d.]+ s left)?\)", d)
                          for d in frames)
    assert frames[-1].startswith("lip-sync: frame 40 of 40")
    if len(frames) > 1:  # batches of 16 on a CPU: the first ones say how long the rest takes
        assert "left" in frames[0]
    assert any(d.startswith("scoring the result: LSE") for d in seen)


def test_eta_and_durations():
    from talkface.demo.generate import Eta, format_seconds, speed_note

    now = [100.0]
    eta = Eta(clock=lambda: now[0])
    assert eta.describe(0, 200) == "0.0 s elapsed"
    now[0] = 112.0
    assert eta.remaining(60, 200) == pytest.approx(28.0)
    assert eta.describe(60, 200) == "12 s elapsed, about 28 s left"
    assert eta.describe(200, 200) == "12 s elapsed"
    assert [format_seconds(s) for s in (0.42, 59.6, 125, 3725)] == ["0.4 s", "1 min 00 s", "2 min 05 s", "1 h 02 min"]
    import torch

    note = speed_note(torch.device("cpu"), cpu_count=2)
    assert "Runs on the CPU (2 cores)" in note and "12 frames a second" in note and "CUDA build of torch" in note


def test_face_preview_transcodes_what_browsers_cannot_play(actions, files, tmp_path):
    from talkface.demo.preview import browser_can_play, stream_codecs

    frames = media.read_frames(files["face"])
    mpeg4 = write_mpeg4_part2(tmp_path / "mpeg4.mp4", frames, media.read_audio(files["face"], SR))
    assert stream_codecs(mpeg4) == ("mpeg4", "aac") and not browser_can_play(mpeg4)
    original = mpeg4.read_bytes()
    video, photo, note = actions.face_changed(str(mpeg4))
    preview = Path(video["value"])
    assert video["visible"] and not photo["visible"] and preview != mpeg4
    assert stream_codecs(preview) == ("h264", "aac") and browser_can_play(preview)
    assert media.probe(preview).duration == pytest.approx(1.2, abs=0.05)
    assert np.abs(media.read_frames(preview).astype(float) - frames).mean() < 8  # the same pictures
    assert "MPEG-4 Part 2 video with AAC sound in .mp4" in note and "uses your original file" in note
    # H.264 in mp4 plays as it is; a .mkv (PCM sound) gets a copy; a photo is shown as a picture
    video, _, note = actions.face_changed(str(files["face"]))
    assert video["value"] == str(files["face"]) and note == ""
    mkv = data_file("clip07_edtalk_mouth_source_muxed.mkv")  # 10 s: over this server's limit, not the default's
    video, _, note = app.PageActions(TalkFaceDemo(DemoConfig(cache_dir=tmp_path / "cache"))).face_changed(str(mkv))
    assert not browser_can_play(mkv) and stream_codecs(video["value"]) == ("h264", "aac")
    assert "H.264 video with PCM sound in .mkv" in note
    video, photo, note = actions.face_changed(str(files["photo"]))
    assert not video["visible"] and photo["visible"] and photo["value"].shape == (474, 474, 3)
    video, photo, note = actions.face_changed(str(files["not_video"]))
    assert not video["visible"] and note.startswith("⚠️ **Error**: the face file 'notes.mp4' is not a video")
    # generation reads the original upload, never the preview
    seen = []
    real_generate = actions.demo.generate

    def spy(**kwargs):
        seen.append(kwargs["face"])
        return real_generate(**kwargs)

    actions.demo.generate = spy
    try:
        result, status, _, _ = page_generate(actions, face=mpeg4, speech=files["speech_1s"])
    finally:
        del actions.demo.generate
    assert seen == [str(mpeg4)] and status.startswith("**Done**: 25 frames")
    check_mp4(result, 1.0)
    assert mpeg4.read_bytes() == original  # the upload is only ever read


def test_a_video_is_accepted_as_speech(served, actions, files):
    recording, note = actions.speech_changed(str(files["face"]))
    heard = Path(recording["value"])
    assert heard.suffix == ".wav" and media.probe(heard).audio_duration == pytest.approx(1.2, abs=0.01)
    np.testing.assert_allclose(media.read_audio(heard, SR), media.read_audio(files["face"], SR), atol=2e-4)
    assert note == "ℹ️ The sound track of the video 'face.mp4' (1.2 s) is the speech."
    recording, note = actions.speech_changed(str(files["silent"]))
    assert recording["value"] is None and "'silent.mp4' has no sound" in note
    # the video's sound drives the photo, through the page and through the API
    video, _, _, _ = page_generate(actions, face=files["photo"], speech=files["face"])
    check_mp4(video, 1.2)
    video, *_ = generate(served.client, photo=files["photo"], audio=files["face"])
    check_mp4(video, 1.2)


def test_examples_pair_faces_with_speech_by_name_then_in_turn(tmp_path, actions):
    from talkface.demo.examples import find_examples, pair_example_files

    folder = tmp_path / "examples"
    folder.mkdir()
    for name in ("b.mp4", "a.png", "c.mkv", "c.wav", "x.flac", "y.mp3", "notes.txt", ".hidden.mp4"):
        (folder / name).write_bytes(b"")
    pairs = [(e.face.name, e.speech.name) for e in pair_example_files(folder)]
    assert pairs == [("a.png", "x.flac"), ("b.mp4", "y.mp3"), ("c.mkv", "c.wav")]
    for name in ("c.wav", "x.flac", "y.mp3"):
        (folder / name).unlink()
    assert [(e.face.name, e.speech.name) for e in pair_example_files(folder)] == [("b.mp4", "b.mp4"),
                                                                                 ("c.mkv", "c.mkv")]
    with pytest.raises(TalkFaceUserError, match="examples folder .* not found"):
        pair_example_files(tmp_path / "nowhere")
    # the shared media: 9 faces, 3 speech files in turn; every one passes the demo's checks (limit 3 s here: none)
    data = data_file("MANIFEST.md").parent
    pairs = [(e.face.name[:6], e.speech.name[:8]) for e in pair_example_files(data)]
    assert pairs[:4] == [("clip01", "speech01"), ("clip03", "speech02"), ("clip04", "speech04"),
                         ("clip05", "speech01")] and len(pairs) == 9
    assert find_examples(data, actions.demo) == []  # every shared clip is longer than this server's 3 s limit
    assert len(find_examples(data, TalkFaceDemo(DemoConfig(cache_dir=tmp_path / "cache")), limit=5)) == 5
