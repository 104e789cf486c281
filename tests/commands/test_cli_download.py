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
