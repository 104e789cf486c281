"""Start-up stays light (issue 14): importing talkface, the CLI module and `--help` pull in no heavy dependency.

Each check runs in a fresh interpreter (this test process has long imported torch and the rest) and reads the
child's `sys.modules` after the step, so a module imported at any depth, lazily or not, is seen.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.utils import REPO_ROOT

#: modules that cost seconds to import (or are optional) and that no start-up step below may need
HEAVY = ("torch", "transformers", "mediapipe", "gradio", "matplotlib", "accelerate", "cv2")

# A step is Python run in the child; `python -m talkface ARGS` is run through runpy exactly as `-m` runs it.
_RUN_MAIN = ("import contextlib, io, runpy\n"
             "sys.argv = ['talkface', *{args!r}]\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    try:\n"
             "        runpy.run_module('talkface', run_name='__main__', alter_sys=True)\n"
             "    except SystemExit as exit:\n"
             "        assert exit.code in (0, None), exit.code\n")


def heavy_modules_after(step: str) -> list[str]:
    """The HEAVY modules a fresh interpreter holds after running `step` (Python source)."""
    code = f"import json, sys\n{step}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, env=env,
                               timeout=120)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("step", [
    "import talkface",
    "import talkface.cli",
    "import talkface.errors, talkface.hub.registry",
    _RUN_MAIN.format(args=["--help"]),
    _RUN_MAIN.format(args=["generate", "--help"]),
    _RUN_MAIN.format(args=["lipread", "--help"]),
    _RUN_MAIN.format(args=["detect", "--help"]),
    _RUN_MAIN.format(args=["download", "--help"]),
], ids=["import talkface", "import talkface.cli", "errors+registry", "--help", "generate --help", "lipread --help",
        "detect --help", "download --help"])
def test_start_up_imports_nothing_heavy(step):
    assert heavy_modules_after(step) == []


def test_the_probe_sees_heavy_imports():
    """The check above can fail: loading the pipeline module does import torch (and cv2), and the probe says so."""
    found = heavy_modules_after("import talkface.pipelines.lipsync.pipeline")
    assert "torch" in found and "cv2" in found


def test_help_runs_as_a_command():
    """`python -m talkface --help` and `generate --help` themselves (not through runpy) exit 0 with their usage."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for args, expected in ((["--help"], "generate"), (["generate", "--help"], "--precision")):
        completed = subprocess.run([sys.executable, "-m", "talkface", *args], capture_output=True, text=True,
                                   cwd=REPO_ROOT, env=env, timeout=120)
        assert completed.returncode == 0, completed.stderr
        assert expected in completed.stdout


# --- the generation path (issue 14: first frame in <= 3 s) --------------------------------------------------------
#: modules the generation path from a converted Wav2Lip folder must not import: transformers' modeling stack (it
#: pulls in torch.distributed.tensor, torch._dynamo, sympy, scipy.optimize, ...), every other model folder and
#: matplotlib (mediapipe imports it for drawing; talkface.utils.imports defers it)
GENERATION_HEAVY = ("transformers", "talkface.models", "torch._dynamo", "sympy", "matplotlib")


@pytest.fixture(scope="module")
def generation_inputs(tmp_path_factory):
    """A tiny converted Wav2Lip folder and a 10-frame clip with its sound (../shared's clip07 and speech04)."""
    import numpy as np

    from talkface import media
    from talkface.models.wav2lip import TalkingFaceAudioFeatureExtractor, Wav2LipConfig, Wav2LipModel
    from tests.utils import data_file

    folder = tmp_path_factory.mktemp("generation")
    frames = media.read_frames(data_file("clip07_edtalk_mouth_source_muxed.mkv"), max_frames=10)
    audio = media.read_audio(data_file("speech04_retalking_audio1.wav"))[:6400]
    with media.VideoWriter(folder / "face.mp4", fps=25, width=256, height=256, audio=audio) as writer:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame))
    config = Wav2LipConfig(
        img_size=24, hidden_size=16, face_encoder_channels=[4, 8, 8, 16], face_encoder_kernel_sizes=[7, 3, 3, 3],
        face_encoder_strides=[1, 2, 2, 2], face_encoder_residual_layers=[0, 1, 1, 0],
        audio_encoder_channels=[4, 8, 8, 16], audio_encoder_residual_layers=[1, 0, 1, 0],
        decoder_channels=[16, 8, 8, 4], decoder_residual_layers=[1, 0, 1, 1], output_hidden_channels=4)
    Wav2LipModel(config).save_pretrained(folder / "tiny")
    TalkingFaceAudioFeatureExtractor().save_pretrained(folder / "tiny")
    return folder


def generation_modules_after(args: list[str]) -> list[str]:
    """The GENERATION_HEAVY modules a fresh `talkface ARGS` process holds when it is done (it must exit 0)."""
    code = (f"import json, sys\n{_RUN_MAIN.format(args=args)}\n"
            f"print(json.dumps([m for m in {GENERATION_HEAVY!r} if m in sys.modules]))")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, env=env,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_generate_from_a_converted_folder_imports_neither_transformers_nor_the_model_registry(generation_inputs,
                                                                                           tmp_path):
    """`talkface generate --model FOLDER` runs Wav2Lip without transformers and without `talkface.models`; the same
    command on a folder without preprocessor_config.json falls back to transformers, and the probe sees it."""
    import shutil

    out = tmp_path / "out.mp4"
    face = str(generation_inputs / "face.mp4")
    args = ["generate", "--no-progress", "--device", "cpu", "--face", face, "--audio", face, "--box", "40", "30",
            "220", "250", "--precision", "fp32", "--out", str(out)]
    assert generation_modules_after([*args, "--model", str(generation_inputs / "tiny")]) == []
    assert out.is_file()
    fallback = tmp_path / "no_preprocessor"
    shutil.copytree(generation_inputs / "tiny", fallback)
    (fallback / "preprocessor_config.json").unlink()
    out.unlink()
    found = generation_modules_after([*args, "--model", str(fallback)])
    assert "transformers" in found and "talkface.models" in found
