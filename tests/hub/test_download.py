"""`talkface.hub.download` against a real HTTP server on 127.0.0.1 (no network).

The served files are original-format checkpoints with formula weights: a tiny syncnet_python `syncnet_v2.model`
(the SyncNet-LSE converter reads its widths from the tensors) for the failure paths, served under the registry's
name through `TALKFACE_DOWNLOAD_MIRROR`. Registry entries are narrowed per test (sources pointed at the server,
size ranges that fit the tiny file) with `use_entry`; nothing reaches a public host.
"""

import dataclasses
import hashlib
import json

import pytest
import torch

from talkface.hub import download as downloads
from talkface.hub import registry
from talkface.models.converters import CONVERTERS
from talkface.models.syncnet_lse import SyncNetLSEConfig, SyncNetLSEModel
from tests.hub.file_server import FileServer
from tests.utils import formula_tensor

TINY_SYNCNET = dict(audio_channels=[4, 6, 8, 8, 8, 12], video_channels=[4, 6, 8, 8, 8, 12], fc_hidden_size=10,
                    embedding_size=7, image_size=224)
MIRROR_PATH = "/mirror/syncnet-lse/syncnet_v2.model"


def tiny_syncnet_checkpoint_bytes(path) -> bytes:
    """A syncnet_v2.model-layout state dict (no num_batches_tracked) with formula weights, saved with torch.save."""
    model = SyncNetLSEModel(SyncNetLSEConfig(**TINY_SYNCNET))
    original = {key: formula_tensor(key, tensor.shape) for key, tensor in model.state_dict().items()
                if not key.endswith("num_batches_tracked")}
    torch.save(original, path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_syncnet_checkpoint_bytes(tmp_path_factory.mktemp("served") / "syncnet_v2.model")


@pytest.fixture
def server(checkpoint):
    with FileServer() as running:
        running.files[MIRROR_PATH] = checkpoint
        yield running


@pytest.fixture
def models(tmp_path, monkeypatch, server):
    """An empty models dir, the mirror pointed at the server, and no public source in the syncnet-lse entry."""
    root = tmp_path / "models"
    monkeypatch.setenv(downloads.MODELS_DIR_ENV, str(root))
    monkeypatch.setenv(downloads.MIRROR_ENV, server.url + "/mirror")
    use_entry(monkeypatch, "syncnet-lse", sources=(), size_range=(1000, 10_000_000))
    return root


def use_entry(monkeypatch, name, **changes):
    entry = dataclasses.replace(registry.REGISTRY[name], **changes)
    monkeypatch.setitem(registry.REGISTRY, name, entry)
    return entry


def leftovers(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


# --- the registry -------------------------------------------------------------------------------------------------


def test_registry_entries_are_complete():
    assert len(registry.NAMES) == len(set(registry.NAMES)) == len(registry.ENTRIES)
    for entry in registry.ENTRIES:
        assert entry.converter in CONVERTERS, entry.name
        assert entry.license.name and entry.license.url.startswith("https://") and entry.license.summary
        assert bool(entry.manual_page) != bool(entry.sources), entry.name  # scriptable, or a page for a person
        for source in entry.sources:
            assert source.startswith(("https://", registry.HUB_SCHEME)), source
            assert source.endswith(entry.file_name), source
        if entry.size_range:
            assert 0 < entry.size_range[0] < entry.size_range[1]
    for name in ("wav2lip-gan", "wav2lip", "wav2lip-expert", "wav2lip-discriminator", "syncnet-lse", "s3fd",
                 "avhubert-base", "avhubert-large", "avhubert-base-lipreading", "avhubert-large-lipreading",
                 "gfpgan-v1.4", "vgg19", "fid-inception", "talklip"):
        assert registry.is_name(name), name
    assert registry.get("s3fd").file_name == "sfd_face.pth" and registry.get("s3fd").converter == "s3fd"
    assert registry.get("s3fd").sources == ("https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/sfd_face.pth",)
    assert registry.get("vgg19").sha256_prefix == "dcbb9e9d"
    assert registry.get("fid-inception").sha256_prefix == "6726825d"
    assert registry.get("wav2lip-gan").sha256_prefix == ""
    assert registry.get("wav2lip-gan").license.must_accept and not registry.get("syncnet-lse").license.must_accept


def test_the_mirror_comes_first(monkeypatch):
    entry = registry.get("wav2lip-gan")
    monkeypatch.delenv(downloads.MIRROR_ENV, raising=False)
    assert downloads.source_urls(entry) == list(entry.sources)
    monkeypatch.setenv(downloads.MIRROR_ENV, "http://mirror.example/models/")
    assert downloads.source_urls(entry) == ["http://mirror.example/models/wav2lip-gan/wav2lip_gan.pth",
                                            *entry.sources]


def test_models_dir_default_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv(downloads.MODELS_DIR_ENV, raising=False)
    assert downloads.models_dir() == downloads.DEFAULT_MODELS_DIR.expanduser()
    monkeypatch.setenv(downloads.MODELS_DIR_ENV, str(tmp_path))
    assert downloads.models_dir() == tmp_path
    assert downloads.models_dir(tmp_path / "x") == tmp_path / "x"


# --- downloads ----------------------------------------------------------------------------------------------------


def test_download_converts_and_records(models, server, checkpoint):
    folder = downloads.download("syncnet-lse")
    assert folder == models / "syncnet-lse" and downloads.is_downloaded("syncnet-lse")
    record = json.loads((folder / downloads.RECORD_FILE).read_text())
    assert record["sha256"] == hashlib.sha256(checkpoint).hexdigest()
    assert record["size"] == len(checkpoint) and record["source"] == server.url + MIRROR_PATH
    model = SyncNetLSEModel.from_pretrained(folder)
    assert model.config.video_channels == TINY_SYNCNET["video_channels"]
    assert torch.equal(model.netcnnlip[8].weight, formula_tensor("netcnnlip.8.weight", model.netcnnlip[8].weight.shape))
    assert [p.name for p in models.iterdir()] == ["syncnet-lse"]  # no .incomplete left


def test_already_downloaded_is_not_fetched_again_unless_forced(models, server):
    downloads.download("syncnet-lse")
    first = json.loads((models / "syncnet-lse" / downloads.RECORD_FILE).read_text())
    downloads.download("syncnet-lse")
    assert len(server.gets(MIRROR_PATH)) == 1
    downloads.download("syncnet-lse", force=True)
    assert len(server.gets(MIRROR_PATH)) == 2
    assert json.loads((models / "syncnet-lse" / downloads.RECORD_FILE).read_text())["sha256"] == first["sha256"]


def test_a_404_then_the_next_source(models, server, monkeypatch, checkpoint):
    server.files["/public/syncnet_v2.model"] = checkpoint
    use_entry(monkeypatch, "syncnet-lse", sources=(server.url + "/public/syncnet_v2.model",))
    server.faults[MIRROR_PATH] = ["404"]
    messages = []
    folder = downloads.download("syncnet-lse", status=messages.append)
    assert json.loads((folder / downloads.RECORD_FILE).read_text())["source"].endswith("/public/syncnet_v2.model")
    assert any("HTTP 404" in m for m in messages)
    assert server.gets(MIRROR_PATH) == [None] and server.gets("/public/syncnet_v2.model") == [None]


def test_a_dropped_connection_resumes_with_a_range_request(models, server, checkpoint):
    half = len(checkpoint) // 2
    server.faults[MIRROR_PATH] = [f"drop:{half}"]
    seen = []
    folder = downloads.download("syncnet-lse", progress=lambda done, total: seen.append((done, total)))
    assert server.gets(MIRROR_PATH) == [None, f"bytes={half}-"]
    record = json.loads((folder / downloads.RECORD_FILE).read_text())
    assert record["sha256"] == hashlib.sha256(checkpoint).hexdigest()
    assert seen[-1] == (len(checkpoint), len(checkpoint)) and all(t == len(checkpoint) for _, t in seen)


def test_an_interrupted_run_is_resumed_by_the_next(models, server, checkpoint, monkeypatch):
    monkeypatch.setattr(downloads, "ATTEMPTS_PER_SOURCE", 1)
    half = len(checkpoint) // 2
    server.faults[MIRROR_PATH] = [f"drop:{half}"]
    with pytest.raises(downloads.DownloadError, match="the next run resumes it") as failure:
        downloads.download("syncnet-lse")
    assert "\n" not in str(failure.value)
    part = models / ".incomplete" / "syncnet-lse" / "syncnet_v2.model.part"
    assert part.stat().st_size == half and not downloads.is_downloaded("syncnet-lse")
    downloads.download("syncnet-lse")
    assert server.gets(MIRROR_PATH) == [None, f"bytes={half}-"]
    assert not (models / ".incomplete").exists()


def test_a_truncated_file_is_refused_and_nothing_is_kept(models, server, checkpoint, monkeypatch):
    use_entry(monkeypatch, "syncnet-lse", size_range=(len(checkpoint) - 10, len(checkpoint) + 10))
    server.faults[MIRROR_PATH] = [f"short:{len(checkpoint) // 3}"]
    with pytest.raises(downloads.DownloadError, match="truncated or another file"):
        downloads.download("syncnet-lse")
    assert leftovers(models) == []


def test_a_truncated_file_without_a_known_size_fails_in_the_converter(models, server, checkpoint, monkeypatch):
    use_entry(monkeypatch, "syncnet-lse", size_range=())
    server.faults[MIRROR_PATH] = [f"short:{len(checkpoint) // 3}"]
    with pytest.raises(downloads.DownloadError, match="does not convert as syncnet_v2.model.*nothing was kept"):
        downloads.download("syncnet-lse")
    assert leftovers(models) == []


def test_a_file_of_the_wrong_kind_is_refused_and_nothing_is_kept(models, server, checkpoint, monkeypatch):
    use_entry(monkeypatch, "wav2lip-gan", sources=(), size_range=(1000, 10_000_000))
    server.files["/mirror/wav2lip-gan/wav2lip_gan.pth"] = checkpoint  # a SyncNet where the generator should be
    with pytest.raises(downloads.DownloadError, match=r"does not convert as wav2lip_gan.pth.*Wav2Lip generator"):
        downloads.download("wav2lip-gan", accept_license=True)
    assert leftovers(models) == []


def test_the_hash_in_the_file_name_is_checked(models, server, checkpoint, monkeypatch):
    sha = hashlib.sha256(checkpoint).hexdigest()
    good = f"syncnet_v2-{sha[:8]}.model"
    bad = f"syncnet_v2-{'0' * 8 if sha[:8] != '0' * 8 else '1' * 8}.model"
    for name in (good, bad):
        server.files[f"/mirror/syncnet-lse/{name}"] = checkpoint
    use_entry(monkeypatch, "syncnet-lse", file_name=bad)
    with pytest.raises(downloads.DownloadError, match="does not start with"):
        downloads.download("syncnet-lse")
    assert leftovers(models) == []
    use_entry(monkeypatch, "syncnet-lse", file_name=good)
    assert downloads.download("syncnet-lse").is_dir()


def test_a_non_commercial_licence_must_be_accepted(models, server, monkeypatch):
    use_entry(monkeypatch, "wav2lip-gan", sources=())
    with pytest.raises(downloads.LicenseNotAcceptedError) as refused:
        downloads.download("wav2lip-gan")
    assert "talkface download wav2lip-gan --accept-license" in str(refused.value)
    assert "non-commercial" in str(refused.value) and "\n" not in str(refused.value)
    asked = []
    with pytest.raises(downloads.LicenseNotAcceptedError):
        downloads.download("wav2lip-gan", confirm=lambda text: asked.append(text) or False)
    assert asked and "https://github.com/Rudrabha/Wav2Lip" in asked[0]
    assert server.requests == [] and leftovers(models) == []


def test_no_source_answers(models, server, monkeypatch):
    server.faults[MIRROR_PATH] = ["500"] * 10
    use_entry(monkeypatch, "syncnet-lse", sources=("http://127.0.0.1:9/nothing/syncnet_v2.model",))
    with pytest.raises(downloads.DownloadError, match="could not download syncnet-lse: .*HTTP 500.*127.0.0.1:9"):
        downloads.download("syncnet-lse")
    assert leftovers(models) == []


def test_a_manual_release_names_its_page_and_the_convert_command(models):
    with pytest.raises(downloads.DownloadError, match=r"github.com/Sxjdwang/TalkLip.*talkface convert talklip"):
        downloads.download("talklip", accept_license=True)


def test_unknown_name(models):
    with pytest.raises(downloads.TalkFaceUserError, match="unknown model name 'wav2lip-ganx'.*--list"):
        downloads.download("wav2lip-ganx")


def test_a_hub_source_goes_through_huggingface_hub(models, server, checkpoint, monkeypatch, tmp_path):
    """hf://OWNER/REPO/PATH is fetched by hf_hub_download, here with its endpoint on the test server."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv(downloads.MIRROR_ENV)
    server.files["/hub/someone/syncnet/weights/syncnet_v2.model"] = checkpoint
    use_entry(monkeypatch, "syncnet-lse", sources=(registry.HUB_SCHEME + "someone/syncnet/weights/syncnet_v2.model",))
    folder = downloads.download("syncnet-lse")
    assert json.loads((folder / downloads.RECORD_FILE).read_text())["sha256"] == hashlib.sha256(checkpoint).hexdigest()
    assert any(p == "/someone/syncnet/resolve/main/weights/syncnet_v2.model" for _, p, _ in server.requests)
    assert list((tmp_path / "hf-cache").rglob("syncnet_v2.model"))  # huggingface_hub's own cache

    # the Hub unreachable: at once (no retries), the cached file still converts; a file not cached is one line
    dead = "http://127.0.0.1:9"
    monkeypatch.setattr(constants, "ENDPOINT", dead)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", dead + "/{repo_id}/resolve/{revision}/{filename}")
    requests = len(server.requests)
    assert downloads.download("syncnet-lse", force=True).is_dir() and len(server.requests) == requests
    use_entry(monkeypatch, "syncnet-lse", sources=(registry.HUB_SCHEME + "someone/other/syncnet_v2.model",))
    with pytest.raises(downloads.DownloadError, match="cannot be reached and the file is not in huggingface_hub"):
        downloads.download("syncnet-lse", force=True)


def test_list_models_before_and_after(models):
    before = {row["name"]: row for row in downloads.list_models()}
    assert set(before) == set(registry.NAMES) and not before["syncnet-lse"]["downloaded"]
    assert before["syncnet-lse"]["size"].startswith("~") and before["wav2lip-gan"]["must_accept"]
    downloads.download("syncnet-lse")
    after = {row["name"]: row for row in downloads.list_models()}
    assert after["syncnet-lse"]["downloaded"] and after["syncnet-lse"]["path"] == str(models / "syncnet-lse")
    assert not after["wav2lip-gan"]["downloaded"]


# --- names where a model is taken ---------------------------------------------------------------------------------


def test_a_name_not_downloaded_is_one_line_at_once(models, server, monkeypatch):
    from talkface.errors import ModelNotDownloadedError
    from talkface.utils.sources import resolve_source

    monkeypatch.delenv(registry.AUTO_DOWNLOAD_ENV, raising=False)
    with pytest.raises(ModelNotDownloadedError) as missing:
        resolve_source("syncnet-lse", what="SyncNet")
    assert "run: talkface download syncnet-lse " in str(missing.value) and "\n" not in str(missing.value)
    with pytest.raises(ModelNotDownloadedError, match="talkface download wav2lip-gan --accept-license"):
        resolve_source("wav2lip-gan")
    assert server.requests == []


def test_auto_download_on_first_use(models, server, monkeypatch):
    from talkface.utils.sources import resolve_source

    monkeypatch.setenv(registry.AUTO_DOWNLOAD_ENV, "1")
    source = resolve_source("syncnet-lse")
    assert source.is_local and source.name == "syncnet-lse" and source.path == models / "syncnet-lse"
    assert resolve_source("syncnet-lse").path == models / "syncnet-lse"
    assert len(server.gets(MIRROR_PATH)) == 1  # the second use finds the folder
    # a non-commercial licence is still asked (no terminal here: refused, with the command that accepts it)
    use_entry(monkeypatch, "wav2lip-gan", sources=())
    with pytest.raises(downloads.LicenseNotAcceptedError, match="talkface download wav2lip-gan --accept-license"):
        resolve_source("wav2lip-gan")


def test_the_lse_scorer_takes_a_name(models):
    from talkface.metrics.sync import LSEScorer

    downloads.download("syncnet-lse")
    scorer = LSEScorer.from_pretrained("syncnet-lse")
    assert scorer.model.config.video_channels == TINY_SYNCNET["video_channels"]
