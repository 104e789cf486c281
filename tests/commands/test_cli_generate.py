"""`talkface generate`: a successful run, and every user error as one line, exit code 2, no output file."""


import numpy as np
import pytest
import torch

from talkface import media
from talkface.cli import main
from tests.utils import data_file, write_wav

CLIP = "clip07_edtalk_mouth_source_muxed.mkv"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    pytest.importorskip("mediapipe")
    from talkface.models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor
    from talkface.models.wav2lip import Wav2LipConfig, Wav2LipModel

    folder = tmp_path_factory.mktemp("cli_inputs")
    frames = media.read_frames(data_file(CLIP), max_frames=15)
    with media.VideoWriter(folder / "face.mp4", fps=25, width=256, height=256) as writer:
        for frame in frames:
            writer.write(frame)
    with media.VideoWriter(folder / "black.mp4", fps=25, width=64, height=64) as writer:
        for _ in range(5):
            writer.write(np.zeros((64, 64, 3), np.uint8))
    speech = media.read_audio(data_file("speech04_retalking_audio1.wav"))
    write_wav(folder / "speech.wav", speech[16000:16000 + 9600])  # 0.6 s: 15 frames
    write_wav(folder / "empty.wav", np.zeros(0))
    model = folder / "tiny_wav2lip"
    config = Wav2LipConfig(
        img_size=24, hidden_size=16,
        face_encoder_channels=[4, 8, 8, 16], face_encoder_kernel_sizes=[7, 3, 3, 3],
        face_encoder_strides=[1, 2, 2, 2], face_encoder_residual_layers=[0, 1, 1, 0],
        audio_encoder_channels=[4, 8, 8, 16], audio_encoder_residual_layers=[1, 0, 1, 0],
        decoder_channels=[16, 8, 8, 4], decoder_residual_layers=[1, 0, 1, 1], output_hidden_channels=4,
    )
    Wav2LipModel(config).save_pretrained(model)
    TalkingFaceAudioFeatureExtractor().save_pretrained(model)
    wrong_kind = folder / "not_a_generator"
    wrong_kind.mkdir()
    (wrong_kind / "config.json").write_text('{"model_type": "syncnet"}')
    return folder


def args_for(inputs, out, **overrides):
    values = {"--face": inputs / "face.mp4", "--audio": inputs / "speech.wav", "--model": inputs / "tiny_wav2lip",
              "--out": out}
    values.update(overrides)
    argv = ["generate", "--no-progress", "--device", "cpu"]
    for key, value in values.items():
        argv += [key, *(str(v) for v in (value if isinstance(value, (list, tuple)) else [value]))]
    return argv


def test_generate_writes_a_video(inputs, tmp_path, capsys):
    out = tmp_path / "result.mp4"
    assert main(args_for(inputs, out, **{"--pads": [0, 12, 2, 2], "--blend": "hard"})) == 0
    assert "wrote" in capsys.readouterr().out
    info = media.probe(out)
    assert info.has_audio and info.num_frames == 15 and info.fps == 25.0
    assert abs(info.duration - 0.6) <= 0.04


def test_generate_with_box_photo_and_policy(inputs, tmp_path, capsys):
    out = tmp_path / "photo.mp4"
    argv = args_for(inputs, out, **{"--face": data_file("photo01_sadtalker_people_0.png"),
                                    "--box": [140, 80, 330, 300], "--fps": 20, "--duration-policy": "loop",
                                    "--batch-size": 4})
    assert main(argv) == 0
    info = media.probe(out)
    assert info.num_frames == 12 and info.fps == 20.0


ERROR_CASES = {
    "missing face": ({"--face": "nowhere/face.mp4"}, "not found"),
    "missing audio": ({"--audio": "nowhere/speech.wav"}, "not found"),
    "audio without sound": ({"--audio": "@face.mp4"}, "no audio stream"),
    "face without picture": ({"--face": "@speech.wav"}, "no video stream"),
    "empty audio": ({"--audio": "@empty.wav"}, "no audio samples"),
    "no face anywhere": ({"--face": "@black.mp4"}, "no face found"),
    "face index": ({"--face-index": 4}, "--face-index 4 but only 1 face was found in the first frame; use 0..0"),
    "missing model": ({"--model": "@missing_model"}, "not found"),
    "wrong model kind": ({"--model": "@not_a_generator"}, "not a generator"),
    "model is a file": ({"--model": "@speech.wav"}, "is a file"),
    "unwritable output": ({"--out": "/nonexistent_dir/out.mp4"}, "does not exist"),
    "output is a folder": ({"--out": "@"}, "folder"),
    "not mp4": ({"--out": "#out.avi"}, ".mp4"),
    "box outside": ({"--box": [0, 0, 999, 999]}, "outside"),
    "bad fps": ({"--fps": 0}, "fps"),
    "fps inf": ({"--fps": "inf"}, "fps must be a number > 0 and <= 240"),
    "fps nan": ({"--fps": "nan"}, "fps must be a number > 0 and <= 240"),
    "fps negative": ({"--fps": -1}, "fps must be"),
    "fps huge": ({"--fps": 1000}, "<= 240"),
    "pads beyond the frame": ({"--pads": [-500, 0, 0, 0]}, "leave no face region in a 256x256 frame"),
    "pads beyond the face": ({"--pads": [0, 0, -120, -120]}, "leave no face region around the"),
    "gfpgan weights missing": ({"--enhance": "gfpgan", "--enhance-model": "nowhere/gfpgan"}, "GFPGANv1.4.pth"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_user_errors_are_one_line_exit_2_and_no_output(inputs, tmp_path, capsys, case):
    overrides, expected = ERROR_CASES[case]
    resolved = {}
    for key, value in overrides.items():
        if isinstance(value, str) and value.startswith("@"):
            value = inputs / value[1:] if value != "@" else tmp_path
        elif isinstance(value, str) and value.startswith("#"):
            value = tmp_path / value[1:]
        resolved[key] = value
    out = resolved.get("--out", tmp_path / "out.mp4")
    resolved["--out"] = out
    code = main(args_for(inputs, out, **resolved))
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("talkface: error:")]
    assert len(lines) == 1 and expected in lines[0], err
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "out.avi").exists()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary files left either


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_gpu(inputs, tmp_path, capsys):
    argv = args_for(inputs, tmp_path / "out.mp4")
    argv[argv.index("cpu")] = "cuda"
    assert main(argv) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_enhance_gfpgan_changes_the_face(inputs, tmp_path):
    """--enhance gfpgan with a (tiny, random) GFPGAN folder restores the generated faces: output differs."""
    from talkface.models.gfpgan import GFPGANConfig, GFPGANModel

    torch.manual_seed(0)
    gfpgan = tmp_path / "gfpgan"
    GFPGANModel(GFPGANConfig(out_size=64, num_style_feat=16, num_mlp=2, channel_multiplier=1, narrow=0.125)).save_pretrained(gfpgan)
    plain, enhanced = tmp_path / "plain.mp4", tmp_path / "enhanced.mp4"
    assert main(args_for(inputs, plain)) == 0
    assert main(args_for(inputs, enhanced, **{"--enhance": "gfpgan", "--enhance-model": gfpgan})) == 0
    a, b = media.read_frames(plain).astype(int), media.read_frames(enhanced).astype(int)
    assert a.shape == b.shape
    assert np.abs(a - b).mean() > 1.0  # the enhancer redrew the face region


def test_generate_with_the_s3fd_face_backend(inputs, tmp_path, capsys, monkeypatch):
    """--face-backend s3fd: the converted S3FD (formula weights; its saved threshold 0.5 lets them find a box)."""
    from talkface.models.s3fd import S3FDConfig, S3FDFeatureExtractor, S3FDModel
    from tests.utils import formula_state_dict

    monkeypatch.delenv("TALKFACE_S3FD", raising=False)
    out = tmp_path / "s3fd.mp4"
    # no model given: the name s3fd, not downloaded in the tests' models dir: one line, no output
    assert main(args_for(inputs, out, **{"--face-backend": "s3fd"})) == 2
    assert "run: talkface download s3fd --accept-license" in capsys.readouterr().err and not out.exists()

    folder = tmp_path / "s3fd_model"
    model = S3FDModel(S3FDConfig())
    model.load_state_dict(formula_state_dict("s3fd_keys.json"))
    model.save_pretrained(folder)
    S3FDFeatureExtractor(scales=[0.25], face_threshold=0.5).save_pretrained(folder)
    assert main(args_for(inputs, out, **{"--face-backend": "s3fd", "--s3fd": folder, "--detect-every": 5})) == 0
    message = capsys.readouterr().out
    assert "wrote" in message and "without a detectable face" not in message
    assert media.probe(out).num_frames == 15
