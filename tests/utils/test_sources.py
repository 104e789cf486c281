"""The one rule for where a model comes from (talkface.utils.sources)."""

import sys
import types

import pytest

from talkface.errors import ModelLoadError, TalkFaceUserError
from talkface.utils import sources
from talkface.utils.sources import HUB, LOCAL, is_hub_id, looks_local, resolve_source


@pytest.fixture
def no_hub(monkeypatch):
    """Fail the test if anything asks the Hub."""
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise AssertionError(f"the Hub was asked: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)


@pytest.mark.parametrize("spec", ["owner/name", "Org-1/model_v2.0", "a/b"])
def test_hub_ids(spec):
    assert is_hub_id(spec) and not looks_local(spec)
    source = resolve_source(spec)
    assert (source.kind, source.location, source.spec, source.path) == (HUB, spec, spec, None)
    assert source.is_hub and not source.is_local and not source.is_file


@pytest.mark.parametrize("spec", [
    "/abs/model", "./model", "../up/model", "~/model", "models/a/b", "model-folder", "C:\\models\\x",
    "dir\\model", "owner/weights.pth", "owner/model.safetensors", "owner/with space", "a--b/c", "a/b..c", "/x/",
])
def test_local_looking_specs_that_do_not_exist_fail_at_once(spec, no_hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert looks_local(spec)
    with pytest.raises(ModelLoadError, match="SyncNet LSE model not found at .*; convert it first") as info:
        resolve_source(spec, what="SyncNet LSE model", hint="convert it first")
    assert isinstance(info.value, TalkFaceUserError)


def test_existing_paths_are_local_whatever_their_form(tmp_path, monkeypatch, no_hub):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner" / "name").mkdir(parents=True)  # would be a Hub id if it did not exist
    (tmp_path / "weights.pth").write_bytes(b"x")
    source = resolve_source("owner/name")
    assert source.kind == LOCAL and source.path.resolve() == (tmp_path / "owner" / "name").resolve()
    assert not source.is_file
    file_source = resolve_source(tmp_path / "weights.pth")  # a Path works as well as a str
    assert file_source.is_local and file_source.is_file and file_source.location == str(tmp_path / "weights.pth")
    home = tmp_path / "home"
    (home / "m").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    assert resolve_source("~/m").path == home / "m"  # ~ is expanded


def test_allow_hub_false_makes_a_default_folder_local_only(tmp_path, monkeypatch, no_hub):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError, match="not found at models/fid_inception"):
        resolve_source("models/fid_inception", what="FID", allow_hub=False)
    (tmp_path / "models" / "fid_inception").mkdir(parents=True)
    assert resolve_source("models/fid_inception", allow_hub=False).is_local


@pytest.mark.parametrize("spec", [None, "", "   "])
def test_empty_specs(spec):
    with pytest.raises(ModelLoadError, match="no GFPGAN weights given; download them"):
        resolve_source(spec, what="GFPGAN weights", hint="download them")


def test_a_resolved_source_passes_through():
    source = resolve_source("owner/name")
    assert resolve_source(source) is source


def test_local_config_reading(tmp_path, no_hub):
    folder = tmp_path / "m"
    folder.mkdir()
    source = resolve_source(folder)
    with pytest.raises(ModelLoadError, match="has no config.json, so it is not a generator folder; run convert"):
        source.config_file(what="generator", hint="run convert")
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelLoadError, match="not a valid config.json"):
        source.read_config()
    (folder / "config.json").write_text('{"hidden": 3}')
    with pytest.raises(ModelLoadError, match="no valid model_type"):
        source.model_type()
    (folder / "config.json").write_text('{"model_type": "wav2lip"}')
    assert source.config_file() == folder / "config.json"
    assert source.model_type() == "wav2lip"


def test_hub_config_goes_through_huggingface_hub(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs))
        if repo_id == "owner/missing":
            raise OSError("404 Client Error")
        path = tmp_path / filename
        path.write_text('{"model_type": "syncnet_lse"}')
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert resolve_source("owner/name").model_type() == "syncnet_lse"
    assert resolve_source("owner/name").file("x.json", revision="abc") == tmp_path / "x.json"
    assert calls[-1] == ("owner/name", "x.json", {"revision": "abc"})
    with pytest.raises(ModelLoadError, match=r"'owner/missing' is neither a local folder nor a reachable Hub "
                                             r"repository with config.json \(OSError\).*; see the docs"):
        resolve_source("owner/missing").config_file(hint="see the docs")


def test_without_a_registry_no_spec_is_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "talkface.hub.registry", None)  # the module cannot be imported
    assert sources.lookup_registry_name("wav2lip-gan") is None
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_source("wav2lip-gan")


def test_a_name_the_registry_does_not_know_is_a_missing_local_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sources.lookup_registry_name("surely-not-a-registry-name-xyz") is None
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_source("surely-not-a-registry-name-xyz")


def test_registry_hook(tmp_path, monkeypatch, no_hub):
    """The name step asks talkface.hub.registry.resolve_name, only for specs that could be names."""
    downloaded = tmp_path / "cache" / "wav2lip-gan"
    downloaded.mkdir(parents=True)
    asked = []

    def resolve_name(spec):
        asked.append(spec)
        if spec == "wav2lip-gan":
            return downloaded
        if spec == "syncnet-lse":
            raise TalkFaceUserError("syncnet-lse is not downloaded; run: talkface download syncnet-lse")
        if spec == "gone":
            return tmp_path / "cache" / "gone"
        return None

    fake = types.ModuleType("talkface.hub.registry")
    fake.resolve_name = resolve_name
    monkeypatch.setitem(sys.modules, "talkface.hub.registry", fake)
    monkeypatch.chdir(tmp_path)
    source = resolve_source("wav2lip-gan")
    assert (source.kind, source.path, source.name, source.spec) == (LOCAL, downloaded, "wav2lip-gan", "wav2lip-gan")
    with pytest.raises(TalkFaceUserError, match="talkface download syncnet-lse"):
        resolve_source("syncnet-lse")
    with pytest.raises(ModelLoadError, match="its folder .*gone does not exist"):
        resolve_source("gone")
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_source("unknown-name")
    assert resolve_source("owner/name").is_hub  # Hub ids and paths never reach the name step
    with pytest.raises(ModelLoadError):
        resolve_source("./wav2lip-gan")
    (tmp_path / "wav2lip-gan").mkdir()
    assert resolve_source("wav2lip-gan").name is None  # an existing folder comes first
    assert asked == ["wav2lip-gan", "syncnet-lse", "gone", "unknown-name"]


def test_a_registry_without_resolve_name_names_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "talkface.hub.registry", types.ModuleType("talkface.hub.registry"))
    assert sources.lookup_registry_name("wav2lip-gan") is None


def _safetensors_folder(folder):
    from safetensors.torch import save_file
    import torch

    folder.mkdir()
    save_file({"weight": torch.arange(64, dtype=torch.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"model_type": "wav2lip"}')
    return folder


def test_a_damaged_local_folder_is_one_line_naming_the_folder_and_the_fix(tmp_path):
    folder = _safetensors_folder(tmp_path / "model")
    assert resolve_source(folder).is_local  # intact: accepted
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    for cut in (len(data) - 1, 12, 3, 0):
        weights.write_bytes(data[:cut])
        with pytest.raises(ModelLoadError, match=r"model folder .*model is damaged: model.safetensors is truncated.*"
                                                 r"convert the original checkpoint again"):
            resolve_source(folder)
    weights.write_bytes(data)
    (folder / "config.json").write_text('{"model_type": ')
    with pytest.raises(ModelLoadError, match="config.json is not valid JSON"):
        resolve_source(folder)


def test_a_damaged_registry_folder_says_download_again(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    folder = _safetensors_folder(tmp_path / "models" / "wav2lip-gan")
    (folder / "model.safetensors").write_bytes(b"\x10\x00")
    registry = types.ModuleType("talkface.hub.registry")
    registry.resolve_name = lambda spec: folder if spec == "wav2lip-gan" else None
    monkeypatch.setitem(sys.modules, "talkface.hub.registry", registry)
    with pytest.raises(ModelLoadError, match="talkface download wav2lip-gan --force"):
        resolve_source("wav2lip-gan")


def test_outputs_name_a_model_never_by_its_full_local_path(tmp_path, monkeypatch, no_hub):
    from talkface.utils.sources import ModelSource, model_display_name

    folder = tmp_path / "home" / "alice" / "private" / "wav2lip-gan"
    folder.mkdir(parents=True)
    (tmp_path / "weights.pth").write_bytes(b"x")
    monkeypatch.chdir(folder)
    assert model_display_name(folder) == model_display_name(str(folder)) == "wav2lip-gan"
    assert model_display_name(".") == "wav2lip-gan"  # the current folder by its own name
    assert model_display_name(f"{folder}/") == "wav2lip-gan"
    assert model_display_name(tmp_path / "weights.pth") == "weights.pth"
    assert model_display_name("/gone/alice/models/syncnet") == "syncnet"  # a path that no longer exists
    assert model_display_name("Rudrabha/Wav2Lip") == "Rudrabha/Wav2Lip"  # a Hub id stays whole
    assert model_display_name("syncnet-lse") == "syncnet-lse"  # a registry name
    assert model_display_name(None) is None
    assert model_display_name(ModelSource("wav2lip-gan", LOCAL, str(folder), name="wav2lip-gan")) == "wav2lip-gan"
    assert model_display_name(ModelSource(str(folder), LOCAL, str(folder))) == "wav2lip-gan"
    assert model_display_name(ModelSource("owner/name", HUB, "owner/name")) == "owner/name"
    for spec in (folder, tmp_path / "weights.pth", "/gone/alice/models/syncnet"):
        assert "alice" not in model_display_name(spec) and "/" not in model_display_name(spec)
