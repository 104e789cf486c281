"""The web demo end to end in a real browser: Debian's chromium driven by Playwright.

Launches `app.py`'s page in this process with `--demo-tiny-models` (tiny random models), then, as a user would:
uploads a real face clip and a speech excerpt, generates, and checks that a playable video comes back; uploads a
file that is not a video and reads the error; scores a clip and reads the table. Screenshots go to
test-artifacts/demo/ (look at them when changing the page).
"""

import socket
import wave
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "demo"
SR = 16000
TIMEOUT_MS = 240_000  # generation and scoring on a busy 2-core CI machine


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def media_files(tmp_path_factory):
    from talkface import media
    from tests.utils import data_file

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
    return {"clip": clip, "speech": excerpt, "clip_2s": cut, "not_video": not_video}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed (tools/install.sh installs it)")
    pytest.importorskip("playwright.sync_api")
    pytest.importorskip("gradio")
    import app
    from talkface.demo.demo import config_from_args

    cache = tmp_path_factory.mktemp("browser_cache")
    config = config_from_args(app.build_parser().parse_args(["--demo-tiny-models", "--cache-dir", str(cache)]), {})
    blocks = app.build_demo(config)
    blocks.queue(default_concurrency_limit=1, max_size=8)
    _, url, _ = blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=_free_port(),
                              quiet=True, allowed_paths=[str(config.cache_dir)], max_file_size="50mb")
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


def test_generate_in_the_browser(page, media_files, tmp_path):
    from talkface import media

    _shot(page, "01_start")
    assert page.get_by_text("random weights").first.is_visible()  # the tiny models are labelled
    # enhancement is offered but disabled, with the reason (no GFPGAN here)
    page.get_by_text("Options").click()
    assert page.locator("#enhance input[type=checkbox]").is_disabled()
    assert page.get_by_text("talkface convert gfpgan").first.is_visible()

    page.set_input_files("#face-video input[type=file]", str(media_files["clip"]))
    page.set_input_files("#speech input[type=file]", str(media_files["speech"]))
    page.wait_for_selector("#face-video video")  # the upload is shown before we go on
    page.click("#generate-button")
    video = page.wait_for_selector("#result-video video[src]", timeout=TIMEOUT_MS)
    page.wait_for_function("el => el.readyState >= 1 && el.duration > 0", arg=video, timeout=30_000)
    duration = page.evaluate("el => el.duration", video)
    assert duration == pytest.approx(2.4, abs=0.1)
    page.wait_for_selector("#result-scores :text('lse_d')")
    _shot(page, "02_generated")

    # the file behind the player is a real mp4 with sound
    response = page.request.get(video.get_attribute("src"))
    assert response.ok
    result = tmp_path / "result.mp4"
    result.write_bytes(response.body())
    info = media.probe(result)
    assert info.has_video and info.has_audio and info.duration == pytest.approx(2.4, abs=0.05)


def test_a_non_video_shows_an_error(page, media_files):
    page.reload()  # empty inputs again
    page.wait_for_selector("#generate-button")
    page.set_input_files("#speech input[type=file]", str(media_files["speech"]))
    page.set_input_files("#face-video input[type=file]", str(media_files["not_video"]))
    page.click("#generate-button")
    message = page.get_by_text("is not a video or photo that can be read").first
    message.wait_for(timeout=60_000)
    _shot(page, "03_error")
    assert "notes.mp4" in message.inner_text()


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
    _shot(page, "04_scored")


def test_models_tab_says_what_is_missing(page):
    page.get_by_role("tab", name="Models").click()
    table = page.locator("#model-table")
    table.get_by_text("GFPGAN").first.wait_for()
    assert "talkface convert gfpgan --checkpoint GFPGANv1.4.pth" in table.inner_text()
    assert "random weights" in table.inner_text()
    _shot(page, "05_models")


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
        page.set_input_files("#face-video input[type=file]", str(media_files["clip_2s"]))
        page.set_input_files("#speech input[type=file]", str(media_files["speech"]))
        page.wait_for_selector("#face-video video")
        page.click("#generate-button")
        page.get_by_text("no generator model is configured").first.wait_for()
        _shot(page, "06_no_models")
    finally:
        page.close()
        blocks.close()
