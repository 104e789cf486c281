"""The demo's Models tab downloads (talkface/demo/downloads.py and PageActions.download) against a local server.

The registry's public sources are replaced by nothing (or by a dead port, for "offline"); `TALKFACE_DOWNLOAD_MIRROR`
points at a server on 127.0.0.1 holding a tiny `syncnet_v2.model` in its original format.
"""

from argparse import Namespace

import pytest

from talkface.demo import TalkFaceDemo, config_from_args
from talkface.demo import downloads as demo_downloads
from talkface.errors import TalkFaceUserError
from talkface.hub import download as downloads
from tests.hub.file_server import FileServer
from tests.hub.test_download import tiny_syncnet_checkpoint_bytes, use_entry


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    with FileServer() as server:
        server.files["/syncnet-lse/syncnet_v2.model"] = tiny_syncnet_checkpoint_bytes(tmp_path / "syncnet_v2.model")
        monkeypatch.setenv(downloads.MIRROR_ENV, server.url)
        monkeypatch.setenv(downloads.MODELS_DIR_ENV, str(tmp_path / "models"))
        use_entry(monkeypatch, "syncnet-lse", sources=(), size_range=(1000, 10_000_000))
        use_entry(monkeypatch, "wav2lip-gan", sources=())
        yield server


def demo_args(tmp_path, **overrides):
    values = dict(generator=None, syncnet=None, avhubert=None, gfpgan=None, s3fd=None, device="cpu",
                  face_backend="mediapipe", max_video_seconds=10.0, max_audio_seconds=10.0, max_files=2,
                  cache_dir=tmp_path / "cache", cache_max_age=3600.0, demo_tiny_models=False, examples=None)
    values.update(overrides)
    return Namespace(**values)


def test_the_demo_defaults_to_registry_names(mirror, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no models/ folders here
    config = config_from_args(demo_args(tmp_path), {})
    assert config.generators == {"wav2lip-gan": "wav2lip-gan", "wav2lip": "wav2lip"}
    assert (config.syncnet, config.avhubert, config.gfpgan, config.s3fd) == ("syncnet-lse", "avhubert-base",
                                                                              "gfpgan-v1.4", "s3fd")
    demo = TalkFaceDemo(config)
    lse = {s.role: s for s in demo.model_status()}["lip-sync scorer (LSE)"]
    assert "not downloaded yet: download syncnet-lse on the Models tab" in lse.missing
    assert "`talkface download syncnet-lse`" in lse.missing
    assert mirror.requests == []  # the status is judged without downloading

    # the Download action: the page's status changes at once, without a new demo (no restart)
    steps = []
    message = demo_downloads.download("syncnet-lse", progress=lambda fraction, text: steps.append((fraction, text)))
    assert message.startswith("syncnet-lse is ready in ") and "no restart needed" in message
    assert steps[0] == (0.0, "downloading syncnet-lse") and steps[-1] == (1.0, "syncnet-lse ready")
    assert all(0.0 <= fraction <= 1.0 for fraction, _ in steps)
    assert {s.role: s for s in demo.model_status()}["lip-sync scorer (LSE)"].missing is None
    row = next(r for r in demo_downloads.registry_rows() if r["name"] == "syncnet-lse")
    assert row["downloaded"] and "downloaded: `" in demo_downloads.registry_table()


def test_a_non_commercial_licence_needs_the_tick_box(mirror):
    with pytest.raises(TalkFaceUserError, match="wav2lip-gan is under Wav2Lip .*tick the box"):
        demo_downloads.download("wav2lip-gan", accept_license=False)
    assert "accept it (tick the box)" in demo_downloads.licence_text("wav2lip-gan")
    assert "no acceptance needed" in demo_downloads.licence_text("syncnet-lse")
    assert "talklip" not in demo_downloads.downloadable_names()  # Google Drive only: listed, not offered
    assert "talklip" in demo_downloads.registry_table()
    assert mirror.requests == []


def test_the_page_action_reports_offline_in_one_line(mirror, tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    from talkface.demo.page import PageActions

    monkeypatch.setenv(downloads.MIRROR_ENV, "http://127.0.0.1:9")  # nothing listens there
    use_entry(monkeypatch, "syncnet-lse", sources=("http://127.0.0.1:9/syncnet_v2.model",))
    monkeypatch.chdir(tmp_path)
    actions = PageActions(TalkFaceDemo(config_from_args(demo_args(tmp_path), {})))
    status, roles, table, banner, enhance = actions.download("syncnet-lse", False, progress=lambda *a, **k: None)
    assert status.startswith("⚠️ **Error**: could not download syncnet") and "\n" not in status
    assert "not downloaded" in table and "not downloaded yet" in roles
    assert "No usable generator" in banner["value"] and enhance["interactive"] is False
    assert not (tmp_path / "models" / "syncnet-lse").exists()
