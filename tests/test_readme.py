"""The README's Python snippets work: every import line runs for real, and the first snippet runs end to end with
tiny random models standing in for the names and folders it uses (a tiny Wav2Lip as `wav2lip-gan`, a tiny
AV-HuBERT as `avhubert-base` and as the folder `models/avhubert`) on a real clip and a real recording."""

import ast
import contextlib
import io
import re

import pytest
import torch

from tests.utils import REPO_ROOT, data_file, write_wav

README = REPO_ROOT / "README.md"
CLIP = "clip07_edtalk_mouth_source_muxed.mkv"  # 256x256, 25 fps, tight face
SPEECH = "speech04_retalking_audio1.wav"


def python_blocks(text: str) -> list:
    """The source of every ```python block of a markdown text, in order."""
    return [match.group(1) for match in re.finditer(r"^```python[ \t]*\n(.*?)^```", text, re.M | re.S)]


def import_statements(source: str) -> list:
    """The import statements of a snippet (as source text), at any depth."""
    tree = ast.parse(source)
    return [ast.get_source_segment(source, node) for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_python_blocks_are_found():
    blocks = python_blocks("text\n```python\nimport os\n```\n```bash\nls\n```\n```python\nx = 1\n```\n")
    assert blocks == ["import os\n", "x = 1\n"]


def test_every_readme_import_runs():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "README.md has no ```python block"
    statements = [statement for block in blocks for statement in import_statements(block)]
    assert statements, "the README's Python snippets import nothing"
    for statement in statements:
        exec(compile(statement, "README.md", "exec"), {})  # an ImportError here is a broken README


@pytest.fixture
def readme_workspace(tmp_path, monkeypatch):
    """A working directory holding what the first snippet names: face.mp4, speech.wav, models/avhubert, and a
    models dir in which wav2lip-gan and avhubert-base are 'downloaded' (tiny random models)."""
    from talkface import media
    from talkface.models import (
        AVHubertConfig,
        AVHubertFeatureExtractor,
        AVHubertModel,
        TalkingFaceAudioFeatureExtractor,
        Wav2LipConfig,
        Wav2LipModel,
    )

    frames = media.read_frames(data_file(CLIP), max_frames=20)
    with media.VideoWriter(tmp_path / "face.mp4", fps=25, width=frames.shape[2], height=frames.shape[1]) as writer:
        for frame in frames:
            writer.write(frame)
    write_wav(tmp_path / "speech.wav", media.read_audio(data_file(SPEECH))[16000:28800])  # 0.8 s

    torch.manual_seed(0)
    models_dir = tmp_path / "models-dir"
    wav2lip = Wav2LipModel(Wav2LipConfig(
        img_size=24, hidden_size=16, face_encoder_channels=[4, 8, 8, 16], face_encoder_kernel_sizes=[7, 3, 3, 3],
        face_encoder_strides=[1, 2, 2, 2], face_encoder_residual_layers=[0, 1, 1, 0],
        audio_encoder_channels=[4, 8, 8, 16], audio_encoder_residual_layers=[1, 0, 1, 0],
        decoder_channels=[16, 8, 8, 4], decoder_residual_layers=[1, 0, 1, 1], output_hidden_channels=4))
    wav2lip.save_pretrained(models_dir / "wav2lip-gan")
    TalkingFaceAudioFeatureExtractor().save_pretrained(models_dir / "wav2lip-gan")
    avhubert = AVHubertModel(AVHubertConfig(
        encoder_layers=1, encoder_embed_dim=16, encoder_ffn_embed_dim=32, encoder_attention_heads=2, conv_pos=4,
        conv_pos_groups=2, video_frontend_channels=4, resnet_channels=[4, 4, 8, 8], resnet_blocks=[1, 1, 1, 1]))
    for folder in (models_dir / "avhubert-base", tmp_path / "models" / "avhubert"):
        avhubert.save_pretrained(folder)
        AVHubertFeatureExtractor().save_pretrained(folder)
    monkeypatch.setenv("TALKFACE_MODELS_DIR", str(models_dir))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_first_readme_snippet_runs_end_to_end(readme_workspace):
    pytest.importorskip("mediapipe")  # the pipeline's and the scorer's default face backend
    snippet = python_blocks(README.read_text(encoding="utf-8"))[0]
    output = io.StringIO()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(output):
            exec(compile(snippet, "README.md", "exec"), {"__name__": "readme"})
    finally:
        torch.set_num_threads(previous_threads)
    assert (readme_workspace / "result.mp4").is_file()
    lines = output.getvalue().splitlines()
    assert len(lines) == 3, lines
    num_frames, frames_without_face = (int(value) for value in lines[0].split())
    assert num_frames == 20 and frames_without_face == 0
    scores = [ast.literal_eval(line) for line in lines[1:]]
    assert set(scores[0]) == {"avs_u"} and -1.0 <= scores[0]["avs_u"] <= 1.0
    assert "avs_u" in scores[1] and all(-1.0 <= value <= 1.0 for value in scores[1].values())
    # the same tiny AV-HuBERT behind the folder and the name: the same AVS_u
    assert scores[1]["avs_u"] == pytest.approx(scores[0]["avs_u"], abs=1e-6)
