"""The web demo through its HTTP API (gradio_client), and its page handlers called directly, with tiny random
models written to tmp folders.

The app runs in this process on a free port; the tests call its `generate` and `score` endpoints the way a script
would, and check what comes back (a real H.264/AAC mp4 of the right length, tables, error messages). The page's
own handlers (`PageActions`) are called as the page calls them: failures come back as one status line, uploads
get browser-playable previews, and progress reports an ETA.
"""

import os
import re
import socket
import tempfile
import threading
import time
import wave
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

gradio = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

import app  # noqa: E402  (the repository root is on sys.path under pytest)
from talkface import media  # noqa: E402
from talkface.demo import (  # noqa: E402
    DemoConfig,
    LazyModelCache,
    TalkFaceDemo,
    check_ffmpeg,
    config_from_args,
    create_tiny_random_models,
    parse_generator_specs,
)
from talkface.errors import ModelLoadError, TalkFaceUserError  # noqa: E402
from tests.utils import data_file  # noqa: E402

FPS = 25
SR = 16000
MAX_SECONDS = 3.0


def write_wav(path, waveform):
    pcm = (np.clip(waveform, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(SR)
        handle.writeframes(pcm.tobytes())
    return path


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


def generate(client, face=None, photo=None, audio=None, generator="tiny", enhance=False, **options):
    handle = gradio_client.handle_file
    face = face or photo
    return client.predict(face=handle(str(face)) if face else None,
                          speech=handle(str(audio)) if audio else None, recording=None, generator=generator,
                          face_index=options.get("face_index", 0), pad_top=0, pad_bottom=10, pad_left=0, pad_right=0,
                          duration_policy=options.get("duration_policy", "pingpong"), blend="feather", feather=0.15,
                          enhance=enhance, api_name="/generate")


def score(client, videos, audios=None, references=None, face_mode="track", lse_protocol="default", box=""):
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


# ------------------------------------------------------------------------------------------------------- Generate


def test_generate_video_returns_mp4_with_audio_scores_and_mark(served, files):
    from talkface.pipelines.lipsync.watermark import Watermarker, read_metadata, talkface_metadata

    video, message, scores, note = generate(served.client, face=files["face"], audio=files["speech"])
    # the 1.2 s video is extended (pingpong) to the 1.6 s of speech
    check_mp4(video, 1.6)
    assert "40 frames at 25 fps (1.60 s) with tiny" in message
    names = [row[0] for row in scores["data"]]
    assert names[:3] == ["lse_d", "lse_c", "offset"] and "avs_u" in names
    assert all(np.isfinite(float(row[1])) for row in scores["data"])
    assert "mean nothing" in note  # the tiny models are labelled as such
    # generated videos are marked as such
    assert talkface_metadata(read_metadata(video))
    assert Watermarker().detect_video(video).found
    # the request's own temporary folder is gone; the output lives in the demo's cache
    assert not list(served.work_tmp.glob("talkface-demo-*"))
    assert len(list((served.demo.config.cache_dir / "outputs").glob("*/*.mp4"))) >= 1


def test_generate_photo_and_models_are_loaded_once(served, files):
    video, message, _, _ = generate(served.client, photo=files["photo"], audio=files["speech_1s"])
    check_mp4(video, 1.0)
    assert "25 frames" in message
    counts = served.demo.models.load_counts
    assert counts[f"generator:{served.demo.config.generators['tiny']}"] == 1
    assert counts[f"syncnet:{served.demo.config.syncnet}"] == 1


@pytest.mark.parametrize("case, needle", [
    ("not_video", "'notes.mp4' is not a video or photo that can be read"),
    ("no_audio", "no audio given"),
    ("no_face_input", "no face given"),
    ("silent_audio", "'silent.mp4' has no sound"),
    ("audio_too_long", "lasts 4.0 s; this demo accepts at most 3 s"),
    ("no_face", "no face found in 'grey.mp4'"),
    ("missing_generator", "talkface convert wav2lip --checkpoint wav2lip_gan.pth --out models/wav2lip"),
    ("enhance_without_gfpgan", "talkface convert gfpgan --checkpoint GFPGANv1.4.pth"),
])
def test_bad_generate_inputs_show_a_message(served, files, case, needle):
    arguments = {
        "not_video": dict(face=files["not_video"], audio=files["speech"]),
        "no_audio": dict(face=files["face"]),
        "no_face_input": dict(audio=files["speech"]),
        "silent_audio": dict(face=files["face"], audio=files["silent"]),
        "audio_too_long": dict(face=files["face"], audio=files["long_speech"]),
        "no_face": dict(face=files["no_face"], audio=files["speech_1s"]),
        "missing_generator": dict(face=files["face"], audio=files["speech"], generator="missing"),
        "enhance_without_gfpgan": dict(face=files["face"], audio=files["speech"], enhance=True),
    }[case]
    with pytest.raises(gradio_client.exceptions.AppError) as info:
        generate(served.client, **arguments)
    assert needle in str(info.value)
    assert "/tmp" not in str(info.value).split("talkface convert")[0]  # names the upload, not a server path
    assert not list(served.work_tmp.glob("talkface-demo-*"))


def test_oversized_upload_is_refused_and_the_app_keeps_answering(served, files, tmp_path):
    big = tmp_path / "big.wav"
    write_wav(big, np.zeros(SR * 40, np.float32))  # 1.3 MB > max_file_size 1mb
    with pytest.raises(Exception, match="(?i)(too large|size|413)"):
        generate(served.client, face=files["face"], audio=big)
    table, *_ = score(served.client, [files["face"]], face_mode="precropped")
    assert table["data"][0][0] == "face"


# ---------------------------------------------------------------------------------------------------------- Score


def test_score_several_videos_with_ground_truth(served, files, tmp_path):
    other = write_clip(tmp_path / "other.mp4", media.read_frames(files["face"])[::-1].copy(),
                       media.read_audio(files["face"], SR))
    table, note, plots, downloads = score(served.client, [files["face"], other], references=[files["face"]],
                                          face_mode="precropped")
    headers, rows = table["headers"], table["data"]
    assert headers[0] == "file" and headers[-1] == "notes"
    for field in ("lse_d", "lse_c", "avs_u", "avs_m", "avs_v", "ssim", "psnr", "lmd"):
        assert field in headers
    assert [row[0] for row in rows] == ["face", "other", "mean"]
    column = dict(zip(headers, zip(*rows)))
    assert float(column["ssim"][0]) == pytest.approx(1.0)  # the video against itself
    assert float(column["ssim"][1]) < 0.99
    assert float(column["lmd"][0]) == pytest.approx(0.0, abs=1e-6)
    assert "**Columns**" in note
    assert len(plots) == 2 and all(Path(p["image"]).read_bytes()[:4] == b"\x89PNG" for p in plots)
    assert sorted(Path(p).name for p in downloads) == ["results.csv", "results.json"]
    assert "face" in Path([p for p in downloads if p.endswith(".csv")][0]).read_text()


def test_score_errors(served, files):
    with pytest.raises(gradio_client.exceptions.AppError, match="'notes.mp4' cannot be read as a video"):
        score(served.client, [files["not_video"]])
    # a photo gets the demo's own line, not Gradio's list of file types
    with pytest.raises(gradio_client.exceptions.AppError, match="'photo01_sadtalker_people_0.png' is not a video;"):
        score(served.client, [files["photo"]])
    with pytest.raises(gradio_client.exceptions.AppError, match="at most 3 at once"):
        score(served.client, [files["face"]] * 4)
    with pytest.raises(gradio_client.exceptions.AppError, match="none is named like"):
        score(served.client, [files["face"], files["no_face"]], audios=[files["speech"], files["speech_1s"]])


def test_score_with_the_syncnet_python_protocol(served, files):
    """The page's protocol choice reaches the LSE metric: a short clip is too short for syncnet_python's tracks
    (more than 100 frames), which the row's notes say; a box without the protocol is refused."""
    table, note, _, _ = score(served.client, [files["face"]], face_mode="precropped", lse_protocol="syncnet_python",
                              box="0 0 40 40")
    notes = dict(zip(table["headers"], table["data"][0]))["notes"]
    assert "lse_d" not in table["headers"] and "lse: no face track" in notes and "min_track=100" in notes
    with pytest.raises(gradio_client.exceptions.AppError, match="syncnet_python LSE protocol only"):
        score(served.client, [files["face"]], box="0 0 40 40")
    with pytest.raises(gradio_client.exceptions.AppError, match="four numbers"):
        score(served.client, [files["face"]], lse_protocol="syncnet_python", box="1 2 3")


def test_demo_scores_lse_as_syncnet_python_prints_it(tmp_path, tiny_models):
    """TalkFaceDemo.score with syncnet_python's procedure and the golden box on clip05 (4.9 s): the LSE of
    `talkface score --lse-protocol syncnet_python` with the same SyncNet."""
    from talkface.metrics.sync import LSEScorer
    from talkface.metrics.syncnet_protocol import SyncNetPythonProtocol

    clip = data_file("clip05_retalking_face5_woman_glasses.mp4")
    config = DemoConfig(syncnet=str(tiny_models["syncnet"]), max_video_seconds=10, cache_dir=tmp_path / "cache",
                        score_metrics=("lse",), tiny_random=True)
    result = TalkFaceDemo(config).score([clip], face_mode="precropped", lse_protocol="syncnet_python",
                                        box="140 160 400 450")
    column = dict(zip(result.headers, zip(*result.rows)))
    expected = SyncNetPythonProtocol(LSEScorer.from_pretrained(tiny_models["syncnet"])).score_video(
        clip, box=(140, 160, 400, 450))
    assert float(column["lse_d"][0]) == pytest.approx(expected.lse_d, rel=1e-3)
    assert int(float(column["offset"][0])) == expected.offset


# ---------------------------------------------------------------------------------- without models (offline)


def test_page_loads_and_explains_when_no_model_is_configured(tmp_path, files):
    import httpx

    demo = TalkFaceDemo(DemoConfig(cache_dir=tmp_path / "cache"))
    statuses = {s.role: s for s in demo.model_status()}
    assert "talkface convert wav2lip" in statuses["generator"].missing
    assert "talkface convert syncnet-lse" in statuses["lip-sync scorer (LSE)"].missing
    assert "talkface convert avhubert" in statuses["lip-sync scorer (AVS)"].missing
    assert "talkface convert gfpgan" in statuses["face enhancer"].missing
    with pytest.raises(ModelLoadError, match="talkface convert wav2lip"):
        demo.generate(face_video=files["face"], audio=files["speech"])
    # nothing can be scored without models or a ground truth: one line saying what each metric lacks
    blocks = app.build_demo(demo)
    url = launch(blocks, demo.config.cache_dir)
    try:
        page = httpx.get(url, timeout=30)
        assert page.status_code == 200 and "talkface" in page.text
        # metrics that need no model still work; the others say what is missing
        client = gradio_client.Client(url, verbose=False)
        # (a faceless clip keeps this fast: SSIM and PSNR are computed, LMD says why not)
        table, note, _, _ = score(client, [files["no_face"]], references=[files["no_face"]])
    finally:
        blocks.close()
    assert table["headers"] == ["file", "ssim", "psnr", "notes"]
    (row,) = table["data"]
    assert float(row[1]) == pytest.approx(1.0) and "lmd:" in row[3] and "face" in row[3]
    assert "talkface convert syncnet-lse" in note and "talkface convert avhubert" in note


# ------------------------------------------------------------------------------------- the page's own handlers


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
    assert status == ("⚠️ **Error**: the face file 'notes.mp4' is not a video or photo that can be read; upload a "
                      "video (mp4, mov, webm, mkv, ...) or a photo (png, jpg)")
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


# ----------------------------------------------------------------------------------------------- configuration


def test_lazy_model_cache_loads_once_across_threads():
    cache = LazyModelCache()
    calls = []

    def load():
        calls.append(1)
        time.sleep(0.05)
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("model", load))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1 and cache.load_counts["model"] == 1

    def fail():
        raise ModelLoadError("missing")

    for _ in range(2):  # a failed load is not kept
        with pytest.raises(ModelLoadError):
            cache.get("broken", fail)


def test_generator_specs():
    assert parse_generator_specs(["wav2lip=models/wav2lip", "models/talklip/", " "]) == {
        "wav2lip": "models/wav2lip", "talklip": "models/talklip/"}
    with pytest.raises(TalkFaceUserError, match="two generators"):
        parse_generator_specs(["a=x", "a=y"])
    with pytest.raises(TalkFaceUserError, match="NAME=FOLDER"):
        parse_generator_specs(["a="])


def test_config_from_flags_environment_and_tiny_models(tmp_path, tiny_models, monkeypatch):
    parser = app.build_parser()
    environ = {"TALKFACE_GENERATOR": "w=models/w,t=org/talklip", "TALKFACE_SYNCNET_LSE": "s", "TALKFACE_GFPGAN": "g"}
    config = config_from_args(parser.parse_args(["--avhubert", "a", "--cache-dir", str(tmp_path)]), environ)
    assert config.generators == {"w": "models/w", "t": "org/talklip"}
    assert (config.syncnet, config.avhubert, config.gfpgan) == ("s", "a", "g")
    flags = ["--generator", "x=y", "--syncnet", "z", "--cache-dir", str(tmp_path)]
    config = config_from_args(parser.parse_args(flags), environ)
    assert config.generators == {"x": "y"} and config.syncnet == "z"
    # default folders of the convert commands are used when they exist
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "wav2lip").mkdir(parents=True)
    (tmp_path / "models" / "wav2lip" / "config.json").write_text("{}")
    config = config_from_args(parser.parse_args([]), {})
    # the folder wins; the other roles get their registry names (downloaded from the Models tab)
    assert config.generators == {"wav2lip": "models/wav2lip", "wav2lip-gan": "wav2lip-gan"}
    assert config.syncnet == "syncnet-lse"
    # docs/models.md and the model cards write models/wav2lip-gan: picked up too
    (tmp_path / "models" / "wav2lip-gan").mkdir()
    (tmp_path / "models" / "wav2lip-gan" / "config.json").write_text("{}")
    config = config_from_args(parser.parse_args([]), {})
    assert config.generators == {"wav2lip-gan": "models/wav2lip-gan", "wav2lip": "models/wav2lip"}
    # examples: a flag or a variable, and a folder that is not there is refused at start
    (tmp_path / "examples").mkdir()
    assert config_from_args(parser.parse_args(["--examples", "examples"]), {}).examples_dir == Path("examples")
    assert config_from_args(parser.parse_args([]), {"TALKFACE_DEMO_EXAMPLES": str(tmp_path / "examples")}
                            ).examples_dir == tmp_path / "examples"
    with pytest.raises(TalkFaceUserError, match="examples folder nowhere not found"):
        config_from_args(parser.parse_args(["--examples", "nowhere"]), {})
    # --demo-tiny-models fills every role not given (the models already exist in the cache: not rebuilt)
    cache = tiny_models["generator"].parent.parent
    config = config_from_args(parser.parse_args(["--demo-tiny-models", "--cache-dir", str(cache)]), {})
    (name, source), = config.generators.items()
    assert "random weights" in name and Path(source) == tiny_models["generator"]
    assert config.syncnet == str(tiny_models["syncnet"]) and config.gfpgan is None and config.tiny_random
    config = config_from_args(parser.parse_args(["--s3fd", "models/x", "--cache-dir", str(tmp_path)]), {})
    assert config.s3fd == "models/x"
    assert config_from_args(parser.parse_args(["--cache-dir", str(tmp_path)]), {"TALKFACE_S3FD": "e"}).s3fd == "e"


def test_server_name_ffmpeg_check_and_bad_flags(monkeypatch, capsys):
    assert app.server_name(None, {}) == "127.0.0.1"
    assert app.server_name(None, {"SPACE_ID": "user/space"}) == "0.0.0.0"
    assert app.server_name("192.168.1.5", {"SPACE_ID": "x"}) == "192.168.1.5"
    assert check_ffmpeg() is None if __import__("shutil").which("ffmpeg") else "ffmpeg" in check_ffmpeg()
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert "apt install ffmpeg" in check_ffmpeg()
    assert app.main(["--max-files", "0"]) == 2  # refused before anything is launched
    assert "max-files must be > 0" in capsys.readouterr().err


def test_old_outputs_are_pruned(tmp_path):
    demo = TalkFaceDemo(DemoConfig(cache_dir=tmp_path, cache_max_age=60))
    old, new = demo.outputs_dir / "old", demo.outputs_dir / "new"
    old.mkdir()
    new.mkdir()
    (old / "result.mp4").write_bytes(b"x")
    past = time.time() - 120
    os.utime(old, (past, past))
    demo.prune_outputs()
    assert not old.exists() and new.exists()


def test_videos_too_large_to_score_are_refused(tmp_path, files, monkeypatch):
    import talkface.demo.uploads

    demo = TalkFaceDemo(DemoConfig(cache_dir=tmp_path))
    assert demo.check_video(files["face"]).num_frames == 30
    monkeypatch.setattr(talkface.demo.uploads, "MAX_SCORE_DECODED_BYTES", 1_000_000)  # 30 frames of 256x256 are 5.9 MB
    with pytest.raises(TalkFaceUserError, match="'face.mp4' .*too large to score here"):
        demo.check_video(files["face"])


def test_enhancement_with_a_configured_gfpgan(tmp_path, tiny_models, files):
    from talkface.models.gfpgan import GFPGANConfig, GFPGANModel

    gfpgan = tmp_path / "gfpgan"
    GFPGANModel(GFPGANConfig(out_size=64, num_style_feat=16, num_mlp=2, channel_multiplier=1, narrow=0.125)
                ).save_pretrained(gfpgan)
    demo = TalkFaceDemo(DemoConfig(generators={"tiny": str(tiny_models["generator"])}, gfpgan=str(gfpgan),
                                   cache_dir=tmp_path / "cache"))
    assert demo.enhancer_missing is None  # the page's checkbox is enabled
    result = demo.generate(face_photo=files["photo"], audio=files["speech_1s"], enhance=True, score=False)
    check_mp4(result.video, 1.0)
    assert demo.models.load_counts[f"gfpgan:{gfpgan}"] == 1 and result.score_rows == []


def test_the_page_scores_with_the_defaults_of_the_commands(tmp_path):
    """The Score tab's face mode (and the demo's scoring settings) are those of `talkface evaluate` / `score`."""
    import inspect

    from talkface.cli import build_parser
    from talkface.commands.scoring_flags import options_from_args
    from talkface.demo.score import score as demo_score

    cli = options_from_args(build_parser(["score"]).parse_args(["score", "x.mp4"]))
    blocks = app.build_demo(TalkFaceDemo(DemoConfig(cache_dir=tmp_path)))
    radios = [block for block in blocks.blocks.values() if getattr(block, "label", None) == "Faces for LSE"]
    assert [radio.value for radio in radios] == [cli.face_mode]
    assert inspect.signature(demo_score).parameters["face_mode"].default == cli.face_mode
