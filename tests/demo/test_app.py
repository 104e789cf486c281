"""The web demo through its HTTP API (gradio_client), with tiny random models written to tmp folders.

The app runs in this process on a free port; the tests call its `generate` and `score` endpoints the way a script
would, and check what comes back (a real H.264/AAC mp4 of the right length, tables, error messages); then how the
demo is configured (flags, environment, model folders). The page's own handlers are in test_app_page.py.
"""

import os
import threading
import time
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
    parse_generator_specs,
)
from talkface.errors import ModelLoadError, TalkFaceUserError  # noqa: E402
from tests.demo.app_helpers import SR, check_mp4, generate, launch, score, write_clip, write_wav  # noqa: E402
from tests.utils import data_file  # noqa: E402


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
