"""`talkface download`: the whole first run against a local server standing in for the internet.

The server holds a full-size Wav2Lip generator with formula weights in the released `wav2lip_gan.pth` layout
(`{"state_dict", "optimizer", ...}`, DataParallel prefix) and a tiny `syncnet_v2.model`; `TALKFACE_DOWNLOAD_MIRROR`
and `TALKFACE_MODELS_DIR` point at the server and a temporary models dir. The registry entries keep their public
sources out of reach (none is tried) and get size ranges that fit the formula files.
"""

import json

import numpy as np
import pytest
import torch

from talkface import media
from talkface.cli import main
from talkface.hub import download as downloads
from talkface.models.wav2lip import Wav2LipModel
from tests.commands.test_cli_generate import CLIP, write_wav
from tests.hub.file_server import FileServer
from tests.hub.test_download import tiny_syncnet_checkpoint_bytes, use_entry
from tests.models.test_convert_wav2lip import GOLDEN_ATOL, released_layout
from tests.utils import data_file, formula_state_dict, load_golden


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    generator = folder / "wav2lip_gan.pth"
    torch.save(released_layout(formula_state_dict("wav2lip_generator_keys.json"), module_prefix=True), generator)
    return {"/wav2lip-gan/wav2lip_gan.pth": generator,
            "/syncnet-lse/syncnet_v2.model": tiny_syncnet_checkpoint_bytes(folder / "syncnet_v2.model")}


@pytest.fixture
def mirror(served, tmp_path, monkeypatch):
    with FileServer() as server:
        server.files.update(served)
        monkeypatch.setenv(downloads.MIRROR_ENV, server.url)
        monkeypatch.setenv(downloads.MODELS_DIR_ENV, str(tmp_path / "models"))
        generator_size = served["/wav2lip-gan/wav2lip_gan.pth"].stat().st_size
        use_entry(monkeypatch, "wav2lip-gan", sources=(), size_range=(generator_size - 1000, generator_size + 1000))
        use_entry(monkeypatch, "syncnet-lse", sources=(), size_range=(1000, 10_000_000))
        yield server


def run(capsys, *argv):
    code = main(["download", "--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("talkface: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_list_before_and_after(mirror, tmp_path, capsys):
    code, out, _ = run(capsys, "--list")
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:-1]}
    assert "not downloaded" in rows["syncnet-lse"] and "MIT" in rows["syncnet-lse"]
    assert "manual download" in rows["talklip"] and "*" in rows["wav2lip-gan"]
    assert str(tmp_path / "models") in out.splitlines()[-1]
    assert run(capsys, "syncnet-lse")[0] == 0
    code, out, _ = run(capsys, "--list")
    rows = {line.split()[0]: line for line in out.splitlines()[1:-1]}
    assert rows["syncnet-lse"].rstrip().endswith(str(tmp_path / "models" / "syncnet-lse"))
    assert "not downloaded" in rows["wav2lip-gan"]


def test_download_then_generate_with_golden_parity(mirror, tmp_path, capsys):
    code, out, err = run(capsys, "wav2lip-gan", "--accept-license")
    assert code == 0, err
    folder = tmp_path / "models" / "wav2lip-gan"
    assert out.strip() == f"wav2lip-gan: {folder}"
    assert "fetching wav2lip_gan.pth from " + mirror.url in err
    record = json.loads((folder / downloads.RECORD_FILE).read_text())
    assert record["name"] == "wav2lip-gan" and len(record["sha256"]) == 64
    assert "wav2lip_gan.pth" in (folder / "README.md").read_text()

    golden = load_golden("wav2lip.npz")  # the downloaded-and-converted model still matches the reference
    model = Wav2LipModel.from_pretrained(folder).eval()
    with torch.no_grad():
        generated = model(torch.from_numpy(golden["gen_face_in"]), torch.from_numpy(golden["gen_mel_in"]))
    np.testing.assert_allclose(generated.generated_faces.numpy(), golden["gen_out"], rtol=0, atol=GOLDEN_ATOL)

    pytest.importorskip("mediapipe")
    face, speech, result = tmp_path / "face.mp4", tmp_path / "speech.wav", tmp_path / "result.mp4"
    with media.VideoWriter(face, fps=25, width=256, height=256) as writer:
        for frame in media.read_frames(data_file(CLIP), max_frames=10):
            writer.write(frame)
    write_wav(speech, media.read_audio(data_file("speech04_retalking_audio1.wav"))[16000:16000 + 6400])
    assert main(["generate", "--no-progress", "--device", "cpu", "--face", str(face), "--audio", str(speech),
                 "--out", str(result)]) == 0  # no --model: the name wav2lip-gan, found in the models dir
    info = media.probe(result)
    assert info.has_audio and info.num_frames == 10


def test_generate_before_the_download_names_the_command(mirror, tmp_path, capsys):
    code = main(["generate", "--no-progress", "--face", str(data_file(CLIP)), "--audio",
                 str(data_file("speech04_retalking_audio1.wav")), "--out", str(tmp_path / "out.mp4")])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2 and "wav2lip-gan (wav2lip_gan.pth) is not downloaded yet" in line
    assert "run: talkface download wav2lip-gan --accept-license" in line
    assert mirror.requests == [] and not (tmp_path / "out.mp4").exists()


def test_score_with_download_on_first_use(mirror, tmp_path, capsys, monkeypatch):
    """--download fetches the default --syncnet name (syncnet-lse) the first time it is needed."""
    from talkface.hub import registry

    monkeypatch.setattr(registry, "_auto_download", {**registry._auto_download, "enabled": False})
    video = tmp_path / "face.mp4"
    with media.VideoWriter(video, fps=25, width=224, height=224, audio=None) as writer:
        for frame in media.read_frames(data_file(CLIP), max_frames=12):
            writer.write(frame[:224, :224])
    speech = write_wav(tmp_path / "speech.wav", media.read_audio(data_file("speech04_retalking_audio1.wav"))[:7680])
    argv = ["score", str(video), "--audio", str(speech), "--metrics", "lse", "--vshift", "2", "--device", "cpu"]
    assert main(argv) == 2
    assert "syncnet-lse (syncnet_v2.model) is not downloaded yet" in one_error_line(capsys.readouterr().err)
    assert main([*argv, "--download"]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.splitlines()[0].split()[:3] == ["video", "frames", "lse_d"]
    assert downloads.is_downloaded("syncnet-lse") and len(mirror.gets("/syncnet-lse/syncnet_v2.model")) == 1


def test_licence_refused_is_exit_2(mirror, tmp_path, capsys):
    code, out, err = run(capsys, "wav2lip-gan")
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert "non-commercial" in line and "talkface download wav2lip-gan --accept-license" in line
    assert mirror.requests == [] and not (tmp_path / "models" / "wav2lip-gan").exists()


def test_wrong_kind_is_exit_2_and_nothing_is_kept(mirror, tmp_path, capsys, served, monkeypatch):
    mirror.files["/wav2lip-gan/wav2lip_gan.pth"] = served["/syncnet-lse/syncnet_v2.model"]
    use_entry(monkeypatch, "wav2lip-gan", sources=(), size_range=(1000, 10_000_000))
    code, _, err = run(capsys, "wav2lip-gan", "--accept-license")
    assert code == 2 and "does not convert as wav2lip_gan.pth" in one_error_line(err)
    models = tmp_path / "models"
    assert not models.exists() or list(models.iterdir()) == []


def test_force_downloads_again(mirror, capsys):
    assert run(capsys, "syncnet-lse")[0] == 0
    code, _, err = run(capsys, "syncnet-lse")
    assert code == 0 and "already downloaded" in err
    assert len(mirror.gets("/syncnet-lse/syncnet_v2.model")) == 1
    assert run(capsys, "syncnet-lse", "--force")[0] == 0
    assert len(mirror.gets("/syncnet-lse/syncnet_v2.model")) == 2


def test_unknown_names_and_bad_combinations_are_exit_2(mirror, capsys):
    for argv, expected in ((["syncnet-lse", "nope"], "unknown model name 'nope'"),
                           ([], "name the models"),
                           (["--list", "syncnet-lse"], "either --list"),
                           (["syncnet-lse", "wav2lip-gan", "--push-to-hub", "me/x"], "one NAME")):
        code, _, err = run(capsys, *argv)
        assert code == 2 and expected in one_error_line(err)
    assert mirror.requests == []  # the bad name stopped the run before syncnet-lse was fetched


# --- --push-to-hub -------------------------------------------------------------------------------------------------


@pytest.fixture
def hub(mirror, monkeypatch):
    """The Hub as far as an upload goes: a token in HF_TOKEN, the endpoint at the local server (so the reachability
    check connects for real), and HfApi's create_repo / create_commit / upload_folder replaced by a recorder."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.hf_api import RepoUrl

    monkeypatch.setenv("HF_TOKEN", "hf_test_token_not_real")
    monkeypatch.setattr(constants, "ENDPOINT", mirror.url)
    calls = []

    def create_repo(self, repo_id, *, private=None, exist_ok=False, **kwargs):
        calls.append({"call": "create_repo", "repo_id": repo_id, "private": private, "exist_ok": exist_ok})
        return RepoUrl(f"{mirror.url}/{repo_id}", endpoint=mirror.url)

    def create_commit(self, repo_id, operations, *, commit_message, **kwargs):
        files = {}
        for operation in operations:
            content = operation.path_or_fileobj
            files[operation.path_in_repo] = content if isinstance(content, bytes) else open(content, "rb").read()
        calls.append({"call": "create_commit", "repo_id": repo_id, "files": files, "message": commit_message})

    def upload_folder(self, *args, **kwargs):
        calls.append({"call": "upload_folder"})

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


def card_header(readme: str) -> dict:
    import yaml

    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n")[1])


def test_push_to_hub_uploads_weights_config_and_the_card_with_the_licence(hub, mirror, tmp_path, capsys):
    from talkface.hub import registry
    from talkface.hub.cards import MODEL_FACTS

    code, out, err = run(capsys, "wav2lip-gan", "--accept-license", "--push-to-hub", "someone/wav2lip-gan")
    assert code == 0, err
    folder = tmp_path / "models" / "wav2lip-gan"
    assert out.strip() == f"wav2lip-gan: {folder}" and "pushed" in err and "someone/wav2lip-gan" in err
    (create, commit) = hub
    assert create == {"call": "create_repo", "repo_id": "someone/wav2lip-gan", "private": False, "exist_ok": True}
    assert commit["call"] == "create_commit" and commit["repo_id"] == "someone/wav2lip-gan"
    files = commit["files"]
    assert {"config.json", "model.safetensors", "preprocessor_config.json", downloads.RECORD_FILE,
            "README.md"} <= set(files)
    for name in set(files) - {"README.md"}:  # the converted folder's own bytes
        assert files[name] == (folder / name).read_bytes(), name
    readme = files["README.md"].decode()
    header = card_header(readme)
    licence = registry.get("wav2lip-gan").license
    assert header["license"] == "other" and header["license_link"] == licence.url
    assert header["license_name"] == MODEL_FACTS["wav2lip"]["license_name"] and header["library_name"] == "talkface"
    assert MODEL_FACTS["wav2lip"]["license_note"][:60] in readme
    assert 'from_pretrained("someone/wav2lip-gan")' in readme and "converted from | `wav2lip_gan.pth` |" in readme
    assert "`Wav2LipModel`" in readme and "`model.safetensors`" in readme
    # what was uploaded loads back as the downloaded model
    uploaded = tmp_path / "uploaded"
    for name, content in files.items():
        (uploaded / name).parent.mkdir(parents=True, exist_ok=True)
        (uploaded / name).write_bytes(content)
    local, remote = Wav2LipModel.from_pretrained(folder), Wav2LipModel.from_pretrained(uploaded)
    assert all(torch.equal(a, b) for a, b in zip(local.state_dict().values(), remote.state_dict().values()))


def test_push_of_a_downloaded_folder_uploads_only_with_a_card_for_that_repo(hub, mirror, tmp_path, capsys):
    assert run(capsys, "syncnet-lse")[0] == 0  # downloaded without --push-to-hub: the local card names no repo
    folder = tmp_path / "models" / "syncnet-lse"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert "someone/" not in before["README.md"].decode()
    code, _, err = run(capsys, "syncnet-lse", "--push-to-hub", "someone/syncnet-lse", "--private")
    assert code == 0, err
    assert len(mirror.gets("/syncnet-lse/syncnet_v2.model")) == 1  # not fetched again
    create, commit = hub
    assert create["private"] is True and commit["repo_id"] == "someone/syncnet-lse"
    readme = commit["files"]["README.md"].decode()
    assert 'from_pretrained("someone/syncnet-lse")' in readme and card_header(readme)["license"] == "mit"
    assert "`SyncNetLSEModel`" in readme and "converted from | `syncnet_v2.model` |" in readme
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # the local folder is left as it was


def test_push_without_a_token_stops_before_the_download(hub, mirror, tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    code, out, err = run(capsys, "syncnet-lse", "--push-to-hub", "someone/syncnet-lse")
    line = one_error_line(err)
    assert code == 2 and out == "" and "no Hugging Face token" in line and "hf auth login" in line
    assert mirror.requests == [] and hub == [] and not (tmp_path / "models" / "syncnet-lse").exists()
    code, _, err = run(capsys, "syncnet-lse", "--push-to-hub", "not a repo")
    assert code == 2 and "is not a Hub repository id" in one_error_line(err) and mirror.requests == []


def test_a_failed_upload_is_one_line_and_keeps_the_folder(mirror, tmp_path, capsys, monkeypatch):
    """No recorder: huggingface_hub's own create_repo posts to the local server, which refuses the POST (501)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_TOKEN", "hf_test_token_not_real")
    monkeypatch.setattr(constants, "ENDPOINT", mirror.url)
    code, out, err = run(capsys, "syncnet-lse", "--push-to-hub", "someone/syncnet-lse")
    folder = tmp_path / "models" / "syncnet-lse"
    line = one_error_line(err)
    assert code == 2 and out == ""
    assert "could not push syncnet-lse to someone/syncnet-lse" in line and f"stays at {folder}" in line
    assert "HfHubHTTPError" in line and "501" in line  # the server's answer to the POST that creates the repository
    assert downloads.is_downloaded("syncnet-lse") and (folder / "model.safetensors").is_file()
    assert not list((tmp_path / "models").glob(".*"))  # no temporary or incomplete folder left
