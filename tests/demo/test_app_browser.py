"""The web demo end to end in a real browser: Debian's chromium driven by Playwright.

Launches `app.py`'s page in this process with `--demo-tiny-models` (tiny random models) and `--examples
../shared/data`, then, as a user would: uploads a real face clip and a speech excerpt, generates, and checks that a
playable video comes back; uploads a file that is not a video and reads the one-line error beside the result (no
toast, no empty "Error" panel) and generates again; uploads an MPEG-4 Part 2 clip (which Chromium cannot decode) and
sees its preview play; uses a video as the speech; loads examples; scores a clip and reads the table. Screenshots go
to test-artifacts/demo/ (look at them when changing the page).
"""

import socket
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.utils import data_file

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "demo"
SR = 16000
TIMEOUT_MS = 240_000  # generation and scoring on a busy 2-core CI machine


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def media_files(tmp_path_factory):
    from talkface import media

    clip = data_file("clip05_retalking_face5_woman_glasses.mp4")
    speech = data_file("speech04_retalking_audio1.wav")
    folder = tmp_path_factory.mktemp("browser_media")
    # a 2.4 s speech excerpt and a 2 s cut of a real clip keep the run short
    waveform = media.read_audio(speech, SR)[SR // 2 : SR // 2 + int(2.4 * SR)]
    excerpt = folder / "speech_excerpt.wav"
    with wave.open(str(excerpt), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(SR)
        handle.writeframes((np.clip(waveform, -1, 1) * 32767).astype("<i2").tobytes())
    frames = media.read_frames(clip, fps=25, max_frames=50)
    cut = folder / "clip05_2s.mp4"
    with media.VideoWriter(cut, fps=25, width=frames.shape[2], height=frames.shape[1],
                           audio=media.read_audio(clip, SR)[: 2 * SR]) as writer:
        for frame in frames:
            writer.write(frame)
    not_video = folder / "notes.mp4"
    not_video.write_text("this is not a video\n")
    # the shared clip01 is MPEG-4 Part 2 in .mp4; a 3 s cut of it, stream-copied (no re-encode)
    clip01 = data_file("clip01_sadtalker_WDA_AlexandriaOcasioCortez_000.mp4")
    mpeg4 = _stream_copy(clip01, folder / "clip01_3s.mp4", 3.0)
    return {"clip": clip, "speech": excerpt, "clip_2s": cut, "not_video": not_video, "mpeg4": mpeg4}


def _stream_copy(source, target, seconds):
    """The first `seconds` of `source`, its packets copied as they are (the codecs stay those of the source)."""
    import av

    with av.open(str(source)) as src, av.open(str(target), "w") as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in (src.streams.video[0], src.streams.audio[0])}
        for packet in src.demux(*[src.streams[i] for i in streams]):
            if packet.dts is None or packet.pts is None or packet.pts * packet.time_base > seconds:
                continue
            packet.stream = streams[packet.stream.index]
            dst.mux(packet)
    return target


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed (tools/install.sh installs it)")
    pytest.importorskip("playwright.sync_api")
    pytest.importorskip("gradio")
    import app
    from talkface.demo.demo import config_from_args

    cache = tmp_path_factory.mktemp("browser_cache")
    examples = data_file("MANIFEST.md").parent
    config = config_from_args(app.build_parser().parse_args(["--demo-tiny-models", "--cache-dir", str(cache),
                                                             "--examples", str(examples)]), {})
    blocks = app.build_demo(config)
    blocks.queue(default_concurrency_limit=1, max_size=8)
    _, url, _ = blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=_free_port(),
                              quiet=True, allowed_paths=app.allowed_paths(config), max_file_size="50mb")
    yield url
    blocks.close()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def _new_page(browser, url):
    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    tab.set_default_timeout(60_000)
    tab.goto(url)
    tab.wait_for_selector("#generate-button")
    return tab


@pytest.fixture(scope="module")
def page(browser, server):
    tab = _new_page(browser, server)
    yield tab
    tab.close()


def _shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _wait_for_status(status, text):
    """Wait for `text` in a status area; on a timeout fail with what the area says instead (a run that ended
    with another line, or one still going)."""
    try:
        status.get_by_text(text).wait_for(timeout=TIMEOUT_MS)
    except Exception as err:  # playwright's TimeoutError
        raise AssertionError(f"waited {TIMEOUT_MS / 1000:.0f} s for {text!r}; the status says "
                             f"{status.inner_text()!r}") from err


def _no_toasts(page):
    """Nothing of Gradio's own pop-ups: every message of the demo is a line on the page."""
    toasts = page.locator(".toast-body").all_inner_texts()
    assert not toasts, toasts


def _wait_playing_picture(page, selector, timeout=60_000):
    """The <video> under `selector` has decoded its picture (readyState >= 2, HAVE_CURRENT_DATA, with a width)."""
    video = page.wait_for_selector(f"{selector} video[src]", timeout=timeout)
    page.wait_for_function("el => el.readyState >= 2 && el.videoWidth > 0", arg=video, timeout=timeout)
    return video


def _upload(page, target, path):
    """Upload `path` into the file box `#target` (clearing what it holds first, as a user would) and wait for it."""
    clear = page.locator(f"#{target} button[aria-label=Clear]")
    if clear.count():
        clear.first.click()
    page.set_input_files(f"#{target} input[type=file]", str(path))
    page.locator(f"#{target} .file-preview").get_by_text(Path(path).stem).first.wait_for()


def test_generate_in_the_browser(page, media_files, tmp_path):
    from talkface import media

    _shot(page, "01_start")
    assert page.get_by_text("random weights").first.is_visible()  # the tiny models are labelled
    assert "Runs on the CPU" in page.locator("#speed-note").inner_text()  # what a run costs, how to use a GPU
    # enhancement is offered but disabled, with the reason (no GFPGAN here); the blend modes say what they do
    page.get_by_text("Options").click()
    assert page.locator("#enhance input[type=checkbox]").is_disabled()
    assert page.get_by_text("talkface convert gfpgan").first.is_visible()
    assert "none: nothing is pasted" in page.locator("#blend").inner_text()

    _upload(page, "face-file", media_files["clip"])
    _upload(page, "speech-file", media_files["speech"])
    _wait_playing_picture(page, "#face-preview")  # an H.264 mp4 plays as it is
    page.locator("#speech audio, #speech [data-testid='waveform-Speech']").first.wait_for(state="attached")
    page.click("#generate-button")
    video = page.wait_for_selector("#result-video video[src]", timeout=TIMEOUT_MS)
    page.wait_for_function("el => el.readyState >= 1 && el.duration > 0", arg=video, timeout=30_000)
    duration = page.evaluate("el => el.duration", video)
    assert duration == pytest.approx(2.4, abs=0.1)
    page.wait_for_selector("#result-scores :text('lse_d')")
    status = page.locator("#result-status").inner_text()
    assert status.startswith("Done: 60 frames at 25 fps (2.40 s)") and " on cpu (" in status
    _shot(page, "02_generated")
    _no_toasts(page)

    # the file behind the player is a real mp4 with sound
    response = page.request.get(video.get_attribute("src"))
    assert response.ok
    result = tmp_path / "result.mp4"
    result.write_bytes(response.body())
    info = media.probe(result)
    assert info.has_video and info.has_audio and info.duration == pytest.approx(2.4, abs=0.05)


def test_a_failed_run_shows_its_line_in_the_output_area(page, media_files):
    page.reload()  # empty inputs again
    page.wait_for_selector("#generate-button")
    _upload(page, "speech-file", media_files["speech"])
    _upload(page, "face-file", media_files["not_video"])
    page.click("#generate-button")
    status = page.locator("#result-status")
    status.get_by_text("is not a video or photo that can be read").wait_for(timeout=60_000)
    _shot(page, "03_error")
    assert status.inner_text() == ("⚠️ Error: the face file 'notes.mp4' is not a video or photo that can be read "
                                   "(it looks like a text file); upload a video (mp4, mov, webm, mkv, ...) or a photo "
                                   "(png, jpg)")
    assert "notes.mp4" in page.locator("#face-note").inner_text()  # said at upload too
    # no empty red "Error" in the output panels, no toast
    for panel in ("#result-video", "#result-scores"):
        assert "Error" not in page.locator(panel).inner_text()
    _no_toasts(page)
    # the page stays usable: a good face now generates
    _upload(page, "face-file", media_files["clip_2s"])
    _wait_playing_picture(page, "#face-preview")
    page.click("#generate-button")
    _wait_for_status(status, "Done: 60 frames")
    _wait_playing_picture(page, "#result-video")


def test_an_mpeg4_part2_upload_previews_and_a_video_is_the_speech(page, media_files, tmp_path):
    from talkface.demo.preview import stream_codecs

    page.reload()
    page.wait_for_selector("#generate-button")
    _upload(page, "face-file", media_files["mpeg4"])
    # Chromium cannot decode the original: its picture stays blank (sound only) ...
    original = page.locator("#face-file a[download]").first.get_attribute("href")
    blank = page.evaluate("""async (src) => { const v = document.createElement('video'); v.muted = true;
        v.src = src; await new Promise(r => { v.onloadeddata = r; v.onerror = r; setTimeout(r, 20000); });
        return v.videoWidth; }""", original)
    assert blank == 0
    # ... while the page shows an H.264 copy that plays, and says so
    preview = _wait_playing_picture(page, "#face-preview")
    copy = tmp_path / "preview.mp4"
    assert preview.get_attribute("src") != original
    copy.write_bytes(page.request.get(preview.get_attribute("src")).body())
    assert stream_codecs(copy)[0] == "h264" and stream_codecs(media_files["mpeg4"])[0] == "mpeg4"
    assert "MPEG-4 Part 2 video with AAC sound in .mp4" in page.locator("#face-note").inner_text()
    # a video as the speech: its sound track, without Gradio's file-type warning
    _upload(page, "speech-file", media_files["clip_2s"])
    page.locator("#speech-note").get_by_text("The sound track of the video 'clip05_2s.mp4'").wait_for()
    _shot(page, "04_mpeg4_preview_video_speech")
    _no_toasts(page)
    page.click("#generate-button")
    _wait_for_status(page.locator("#result-status"), "Done: 50 frames at 25 fps (2.00 s)")
    video = _wait_playing_picture(page, "#result-video")
    assert page.evaluate("el => el.duration", video) == pytest.approx(2.0, abs=0.1)


def test_examples_load(page):
    page.reload()
    page.wait_for_selector("#generate-button")
    examples = page.locator("#examples")
    examples.get_by_text("photo01_sadtalker_people_0.png").first.click()
    page.wait_for_selector("#face-photo img")
    page.locator("#speech-file .file-preview").get_by_text("speech01_whisper_jfk").wait_for()
    examples.get_by_text("clip07_edtalk_mouth_source_muxed.mkv").first.click()
    _wait_playing_picture(page, "#face-preview")  # a .mkv with PCM sound: previewed as H.264
    page.locator("#speech-file .file-preview").get_by_text("speech02_sadtalker_RD_Radio31_000").wait_for()
    assert not page.locator("#face-photo img").is_visible()  # one face at a time
    _shot(page, "05_examples")
    _no_toasts(page)


def test_score_in_the_browser(page, media_files):
    page.get_by_role("tab", name="Score").click()
    page.set_input_files("#score-videos input[type=file]", str(media_files["clip_2s"]))
    page.click("#score-button")
    page.wait_for_selector("#score-table :text('clip05_2s')", timeout=TIMEOUT_MS)
    page.wait_for_selector("#score-plots img", timeout=30_000)
    headers = page.locator("#score-table th").all_inner_texts()
    assert any("lse_c" in h for h in headers) and any("avs_u" in h for h in headers)
    # metrics that need a ground truth say so
    assert page.get_by_text("needs a ground-truth video").first.is_visible()
    assert page.locator("#score-status").inner_text().startswith("Done: 1 video scored in ")
    _shot(page, "06_scored")
    _no_toasts(page)


def test_models_tab_says_what_is_missing(page):
    page.get_by_role("tab", name="Models").click()
    table = page.locator("#model-table")
    table.get_by_text("GFPGAN").first.wait_for()
    assert "talkface convert gfpgan --checkpoint GFPGANv1.4.pth" in table.inner_text()
    assert "random weights" in table.inner_text()
    _shot(page, "07_models")


def test_fresh_machine_without_models(browser, media_files, tmp_path):
    """No model anywhere (a fresh install): the page loads, says what to convert, and generation explains."""
    import app
    from talkface.demo.demo import DemoConfig

    blocks = app.build_demo(DemoConfig(cache_dir=tmp_path / "cache"))
    blocks.queue(default_concurrency_limit=1, max_size=8)
    _, url, _ = blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=_free_port(), quiet=True,
                              allowed_paths=[str(tmp_path / "cache")])
    page = _new_page(browser, url)
    try:
        banner = page.locator("#banner")
        banner.get_by_text("No usable generator").wait_for()
        assert "talkface convert wav2lip --checkpoint wav2lip_gan.pth --out models/wav2lip" in banner.inner_text()
        _upload(page, "face-file", media_files["clip_2s"])
        _upload(page, "speech-file", media_files["speech"])
        _wait_playing_picture(page, "#face-preview")
        page.click("#generate-button")
        status = page.locator("#result-status")
        status.get_by_text("⚠️ Error: no generator model is configured").wait_for()
        # rendered, not raw markdown: the commands are code spans, no backticks, asterisks or escapes show
        text = status.inner_text()
        assert not any(mark in text for mark in ("`", "**", "\\")) and "wav2lip_gan.pth" in text
        assert "talkface download wav2lip-gan --accept-license" in status.locator("code").all_inner_texts()
        _shot(page, "08_no_models")
        _no_toasts(page)
    finally:
        page.close()
        blocks.close()


def test_download_button_then_generate(browser, media_files, tmp_path, monkeypatch):
    """The first run on a fresh machine: Models tab, Download wav2lip-gan (from a local server standing in for the
    internet, through TALKFACE_DOWNLOAD_MIRROR), then Generate works without restarting; offline, one line."""
    import torch

    import app
    from talkface.demo.demo import config_from_args
    from talkface.hub import download as downloads
    from tests.hub.file_server import FileServer
    from tests.hub.test_download import use_entry
    from tests.models.test_convert_wav2lip import released_layout
    from tests.utils import formula_state_dict

    checkpoint = tmp_path / "wav2lip_gan.pth"  # full size, formula weights, the released file's layout
    torch.save(released_layout(formula_state_dict("wav2lip_generator_keys.json"), module_prefix=True), checkpoint)
    size = checkpoint.stat().st_size
    monkeypatch.chdir(tmp_path)  # no models/ folders
    monkeypatch.setenv(downloads.MODELS_DIR_ENV, str(tmp_path / "models"))
    use_entry(monkeypatch, "wav2lip-gan", sources=(), size_range=(size - 1000, size + 1000))
    use_entry(monkeypatch, "syncnet-lse", sources=("http://127.0.0.1:9/syncnet_v2.model",))
    with FileServer() as mirror:
        mirror.files["/wav2lip-gan/wav2lip_gan.pth"] = checkpoint
        monkeypatch.setenv(downloads.MIRROR_ENV, mirror.url)
        config = config_from_args(app.build_parser().parse_args(["--cache-dir", str(tmp_path / "cache"),
                                                                 "--device", "cpu"]), {})
        blocks = app.build_demo(config)
        blocks.queue(default_concurrency_limit=1, max_size=8)
        _, url, _ = blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=_free_port(),
                                  quiet=True, allowed_paths=app.allowed_paths(config))
        page = _new_page(browser, url)
        try:
            page.locator("#banner").get_by_text("download wav2lip-gan on the Models tab").wait_for()
            page.get_by_role("tab", name="Models").click()
            registry_table = page.locator("#registry-table")
            registry_table.get_by_text("GFPGAN v1.4 face restoration").wait_for()
            assert "not downloaded" in registry_table.inner_text()
            assert "Wav2Lip (non-commercial)" in page.locator("#download-licence").inner_text()
            status = page.locator("#download-status")
            page.click("#download-button")  # the licence box is not ticked
            status.get_by_text("tick the box to accept it").wait_for()
            assert mirror.requests == []
            page.locator("#download-accept input[type=checkbox]").check()
            page.click("#download-button")
            status.get_by_text("wav2lip-gan is ready in").wait_for(timeout=TIMEOUT_MS)
            assert status.inner_text().startswith("Done: ")
            registry_table.get_by_text(str(tmp_path / "models" / "wav2lip-gan")).wait_for()
            page.wait_for_selector("#banner", state="hidden")
            _shot(page, "09_downloaded")
            _no_toasts(page)

            # offline (nothing answers): one line, and the page stays usable
            page.locator("#download-name input").fill("syncnet-lse")
            page.locator("#download-name input").press("Enter")
            page.locator("#download-licence").get_by_text("no acceptance needed").wait_for()
            monkeypatch.setenv(downloads.MIRROR_ENV, "http://127.0.0.1:9")
            page.click("#download-button")
            status.get_by_text("could not download syncnet-lse").wait_for(timeout=60_000)
            assert status.inner_text().startswith("⚠️ Error: ") and "\n" not in status.inner_text().strip()
            _no_toasts(page)

            # Generate with the downloaded generator, no restart
            page.get_by_role("tab", name="Generate").click()
            _upload(page, "face-file", media_files["clip_2s"])
            _upload(page, "speech-file", media_files["speech"])
            _wait_playing_picture(page, "#face-preview")
            page.click("#generate-button")
            _wait_for_status(page.locator("#result-status"), "Done: 60 frames")
            _wait_playing_picture(page, "#result-video")
            _shot(page, "10_generated_after_download")
            _no_toasts(page)
        finally:
            page.close()
            blocks.close()
