"""Audio much shorter than the video (issue 13): score, evaluate and the demo's scorer report the covered fraction
(`audio_coverage`) and warn below SHORT_AUDIO_COVERAGE, instead of a confident score over silence padding."""

import json

import numpy as np
import pytest
import torch

from talkface.cli import main
from talkface.evaluation.report import SHORT_AUDIO_COVERAGE
from tests.commands.test_cli_generate import write_wav

SECONDS = 4.0
SHORT = 1.6  # seconds of speech for the 4 s video: 40 % covered (LSE still has windows to score)


def tone(seconds, sampling_rate=16000):
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from talkface import media
    from talkface.models.syncnet_lse import SyncNetLSEConfig, SyncNetLSEFeatureExtractor, SyncNetLSEModel

    folder = tmp_path_factory.mktemp("short_audio")
    y, x = np.mgrid[0:48, 0:48]
    with media.VideoWriter(folder / "talk.mp4", fps=25, width=48, height=48, audio=tone(SECONDS)) as writer:
        for t in range(int(SECONDS * 25)):
            writer.write(np.stack([(x * 5 + t * 7) % 256, (y * 5) % 256, (x + y + t) % 256], -1).astype(np.uint8))
    write_wav(folder / "short.wav", tone(SHORT))
    write_wav(folder / "whole.wav", tone(SECONDS))
    torch.manual_seed(0)
    syncnet = folder / "syncnet"
    SyncNetLSEModel(SyncNetLSEConfig(audio_channels=[4, 4, 8, 8, 8, 8], video_channels=[4, 4, 8, 8, 8, 8],
                                     fc_hidden_size=8, embedding_size=6)).save_pretrained(syncnet)
    SyncNetLSEFeatureExtractor().save_pretrained(syncnet)
    return folder


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def warnings(stderr):
    return [line for line in stderr.splitlines() if line.startswith("talkface: warning:")]


def test_score_on_short_audio_warns_and_reports_the_covered_fraction(capsys, tmp_path, files):
    out = tmp_path / "scores.json"
    code, stdout, stderr = run(capsys, "score", files / "talk.mp4", "--audio", files / "short.wav", "--syncnet",
                               files / "syncnet", "--metrics", "lse", "--output", out)
    assert code == 0, stderr
    [line] = warnings(stderr)
    assert "talk.mp4: the audio short.wav covers only 40% of the video (audio_coverage 0.40" in line
    video = json.loads(out.read_text())["videos"][0]
    assert video["audio_coverage"] == pytest.approx(0.4, abs=0.002)
    assert "lse_d" in video["scores"]  # still scored: a warning, not an error


def test_score_with_the_whole_audio_does_not_warn(capsys, tmp_path, files):
    out = tmp_path / "scores.json"
    for audio in (["--audio", files / "whole.wav"], []):  # a separate file, and the video's own track
        code, _, stderr = run(capsys, "score", files / "talk.mp4", *audio, "--syncnet", files / "syncnet",
                              "--metrics", "lse", "--output", out)
        assert code == 0, stderr
        assert warnings(stderr) == []
        assert json.loads(out.read_text())["videos"][0]["audio_coverage"] >= SHORT_AUDIO_COVERAGE
        out.unlink()


def test_evaluate_on_short_audio_warns_in_stderr_results_and_report(capsys, tmp_path, files):
    import shutil

    generated, audio = tmp_path / "generated", tmp_path / "audio"
    generated.mkdir(), audio.mkdir()
    shutil.copy(files / "talk.mp4", generated / "talk.mp4")
    shutil.copy(files / "short.wav", audio / "talk.wav")
    report = tmp_path / "report"
    code, _, stderr = run(capsys, "evaluate", "--generated", generated, "--audio", audio, "--metrics", "lse",
                          "--syncnet", files / "syncnet", "--output", report, "--quiet", "--no-plots")
    assert code == 0, stderr
    [line] = warnings(stderr)
    assert "audio_coverage 0.40" in line
    row = json.loads((report / "results.json").read_text())["files"][0]
    assert row["audio_coverage"] == pytest.approx(0.4, abs=0.002)
    assert "## Short audio" in (report / "report.md").read_text()
    # evaluate ssim-only runs use no audio: no coverage, no warning
    code, _, stderr = run(capsys, "evaluate", "--generated", generated, "--reference", generated, "--metrics",
                          "psnr", "--output", tmp_path / "psnr", "--quiet", "--no-plots")
    assert code == 0 and warnings(stderr) == []
    assert json.loads((tmp_path / "psnr" / "results.json").read_text())["files"][0]["audio_coverage"] is None


def test_the_demo_scorer_notes_short_audio(tmp_path, files):
    from talkface.demo import DemoConfig, TalkFaceDemo

    demo = TalkFaceDemo(DemoConfig(syncnet=str(files / "syncnet"), device="cpu", score_metrics=("lse",),
                                   cache_dir=tmp_path / "cache"))
    result = demo.score([str(files / "talk.mp4")], audios=[str(files / "short.wav")])
    assert "**Short audio**: talk.mp4: the audio short.wav covers only 40% of the video" in result.note
    result = demo.score([str(files / "talk.mp4")], audios=[str(files / "whole.wav")])
    assert "Short audio" not in result.note
