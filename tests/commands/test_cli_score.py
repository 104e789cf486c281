"""`talkface score` and `talkface lipread` end to end with tiny random AV-HuBERT folders the tests write."""

import json

import numpy as np
import pytest
import torch

from talkface.cli import main
from tests.metrics.test_avs import SAMPLES_PER_FRAME, make_offline_hub_cache, tiny_config, write_clip
from tests.utils import data_file, shared_file

NUM_FRAMES = 24  # short clips keep the face-landmark passes cheap


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from talkface.media import read_audio, read_frames

    source = data_file("clip07_edtalk_mouth_source_muxed.mkv")
    frames = read_frames(source, fps=25, max_frames=NUM_FRAMES)
    audio = read_audio(source, 16000)[: NUM_FRAMES * SAMPLES_PER_FRAME]
    folder = tmp_path_factory.mktemp("cli_clips")
    return {
        "talking": write_clip(folder / "talking.mp4", frames, audio),
        "other": write_clip(folder / "other.mp4", frames[::-1].copy(), audio),
        "silent": write_clip(folder / "silent.mp4", frames[:12]),
        "no_face": write_clip(folder / "no_face.mp4", np.full((10, 64, 64, 3), 90, np.uint8),
                              audio[: 10 * SAMPLES_PER_FRAME]),
        "speech": write_clip(folder / "speech_only.mp4", frames[:NUM_FRAMES], audio[::-1].copy()),
    }


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory):
    from talkface.models.avhubert import AVHubertModel
    from talkface.models.avhubert.feature_extraction_avhubert import AVHubertFeatureExtractor

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("avhubert_encoder")
    AVHubertModel(tiny_config()).save_pretrained(folder)
    AVHubertFeatureExtractor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lip_reading_folder(tmp_path_factory):
    from talkface.models.avhubert import AVHubertForLipReading
    from talkface.models.avhubert.feature_extraction_avhubert import AVHubertFeatureExtractor
    from talkface.models.avhubert.tokenization_avhubert import AVHubertTokenizer

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("avhubert_lip_reader")
    AVHubertForLipReading(tiny_config()).save_pretrained(folder)
    AVHubertFeatureExtractor().save_pretrained(folder)
    tokenizer_file = shared_file("reference", "avhubert_spm_unigram1000.model")
    AVHubertTokenizer.from_model_file(tokenizer_file).save_pretrained(folder)
    return folder


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------------------------------------------------------------
# talkface score
# ----------------------------------------------------------------------------------------------------------------


def test_score_one_video_writes_table_and_json(capsys, tmp_path, clips, encoder_folder):
    out = tmp_path / "scores.json"
    code, stdout, stderr = run_cli(capsys, "score", clips["talking"], "--avhubert", encoder_folder, "--output", out)
    assert code == 0, stderr
    header, _, row = stdout.splitlines()[:3]
    assert header.split() == ["video", "frames", "avs_u"]
    assert row.split()[:2] == ["talking.mp4", str(NUM_FRAMES)]
    assert "note: avs_m skipped" in stdout and "note: avs_v skipped" in stdout
    data = json.loads(out.read_text())
    video = data["videos"][0]
    assert video["num_frames"] == NUM_FRAMES and set(video["scores"]) == {"avs_u"}
    assert float(row.split()[2]) == pytest.approx(video["scores"]["avs_u"], abs=1e-4)
    assert len(video["curves"]["avs_u"]) == NUM_FRAMES
    assert set(video["skipped"]) == {"avs_m", "avs_v"}
    assert not list(tmp_path.glob(".*partial"))


def test_score_many_videos_with_reference(capsys, tmp_path, clips, encoder_folder):
    out = tmp_path / "scores.json"
    code, stdout, stderr = run_cli(capsys, "score", clips["talking"], clips["other"], "--reference", clips["talking"],
                                   "--avhubert", encoder_folder, "--metrics", "avs_v,avs_m", "--output", out)
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].split() == ["video", "frames", "avs_m", "avs_v"]
    talking, other, mean = (line.split() for line in lines[2:5])
    assert talking[0] == "talking.mp4" and float(talking[2]) == pytest.approx(1.0, abs=1e-3)  # itself
    assert float(talking[3]) == pytest.approx(1.0, abs=1e-3)
    assert other[0] == "other.mp4" and float(other[3]) < 0.999
    assert mean[0] == "mean"
    data = json.loads(out.read_text())
    assert [v["reference"] for v in data["videos"]] == [str(clips["talking"])] * 2
    assert data["mean"]["avs_v"] == pytest.approx((float(talking[3]) + float(other[3])) / 2, abs=1e-3)


def test_score_with_separate_audio(capsys, clips, encoder_folder):
    code, stdout, stderr = run_cli(capsys, "score", clips["silent"], "--audio", clips["speech"], "--avhubert",
                                   encoder_folder, "--metrics", "avs_u")
    assert code == 0, stderr
    assert stdout.splitlines()[2].split()[:2] == ["silent.mp4", "12"]


def test_avs_u_on_a_tenth_of_a_second_of_speech_warns(capsys, tmp_path, clips, encoder_folder):
    """Issue 13: 0.1 s of speech for a ~1 s video gave a confident AVS_u over the silence padding, with no word."""
    from talkface.media import read_audio
    from tests.commands.test_cli_generate import write_wav

    short = write_wav(tmp_path / "short.wav", read_audio(clips["talking"])[:1600])
    out = tmp_path / "scores.json"
    code, _, stderr = run_cli(capsys, "score", clips["talking"], "--audio", short, "--avhubert", encoder_folder,
                              "--metrics", "avs_u", "--output", out)
    assert code == 0, stderr
    warnings = [line for line in stderr.splitlines() if line.startswith("talkface: warning:")]
    assert len(warnings) == 1 and "talking.mp4: the audio short.wav covers only 10% of the video" in warnings[0]
    assert json.loads(out.read_text())["videos"][0]["audio_coverage"] == pytest.approx(0.1 / (NUM_FRAMES / 25),
                                                                                       abs=0.01)


@pytest.mark.parametrize("case, needle", [
    ("missing_video", "file not found"),
    ("missing_model", "talkface convert avhubert --checkpoint"),
    ("wrong_kind", "not AV-HuBERT"),
    ("silent", "--audio"),
    ("no_face", "no face"),
    ("audio_count", "--audio was given 2 times for 3 videos"),
    ("bad_metric", "unknown metric 'avs_q'"),
    ("field_needs_reference", "score cannot compute what was asked: avs_m needs --reference"),
])
def test_score_errors_are_one_line_exit_2(capsys, tmp_path, clips, encoder_folder, case, needle, monkeypatch):
    monkeypatch.delenv("TALKFACE_SYNCNET_LSE", raising=False)
    model = encoder_folder
    argv = [clips["talking"]]
    if case == "missing_video":
        argv = [tmp_path / "nope.mp4"]
    elif case == "missing_model":
        model = tmp_path / "avhubert-base"
    elif case == "wrong_kind":
        (tmp_path / "config.json").write_text(json.dumps({"model_type": "syncnet"}))
        model = tmp_path
    elif case == "silent":
        argv = [clips["silent"]]
    elif case == "no_face":
        argv = [clips["no_face"]]
    elif case == "audio_count":
        argv = [clips["talking"]] * 3 + ["--audio", clips["speech"], "--audio", clips["speech"]]
    elif case == "bad_metric":
        argv += ["--metrics", "avs_q"]
    elif case == "field_needs_reference":
        argv += ["--metrics", "avs_u,avs_m"]
    elif case == "lse_without_syncnet":
        argv += ["--metrics", "lse,avs"]
    out = tmp_path / "scores.json"
    code, stdout, stderr = run_cli(capsys, "score", *argv, "--avhubert", model, "--output", out)
    assert code == 2
    assert needle in stderr and len(stderr.strip().splitlines()) == 1
    assert not out.exists()


@pytest.fixture(scope="module")
def syncnet_folder(tmp_path_factory):
    from talkface.models.syncnet_lse import SyncNetLSEConfig, SyncNetLSEFeatureExtractor, SyncNetLSEModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("syncnet")
    SyncNetLSEModel(SyncNetLSEConfig(audio_channels=[4, 4, 8, 8, 8, 8], video_channels=[4, 4, 8, 8, 8, 8],
                                     fc_hidden_size=8, embedding_size=6)).save_pretrained(folder)
    SyncNetLSEFeatureExtractor().save_pretrained(folder)
    return folder


@pytest.mark.parametrize("face_mode", [None, "track"], ids=["default", "track"])
def test_score_and_evaluate_give_the_same_lse(capsys, tmp_path, clips, syncnet_folder, face_mode):
    if face_mode == "track":
        pytest.importorskip("mediapipe")
    flags = ["--syncnet", syncnet_folder] + (["--face-mode", face_mode, "--min-track-frames", "12"] if face_mode
                                             else [])
    out = tmp_path / "scores.json"
    code, stdout, stderr = run_cli(capsys, "score", clips["talking"], *flags, "--output", out)
    assert code == 0, stderr
    assert stdout.splitlines()[0].split() == ["video", "frames", "lse_d", "lse_c", "offset"]
    scored = json.loads(out.read_text())
    (generated := tmp_path / "generated").mkdir()
    (generated / "talking.mp4").write_bytes(clips["talking"].read_bytes())
    code, _, stderr = run_cli(capsys, "evaluate", "--generated", generated, "--metrics", "lse", *flags, "--output",
                              tmp_path / "report", "--quiet", "--no-plots")
    assert code == 0, stderr
    evaluated = json.loads((tmp_path / "report" / "results.json").read_text())
    values = evaluated["files"][0]["values"]
    assert scored["videos"][0]["scores"] == {name: values[name] for name in ("lse_d", "lse_c", "offset")}
    assert scored["face_mode"] == evaluated["settings"]["face_mode"] == (face_mode or "precropped")
    assert scored["settings"] == {**evaluated["settings"], "use_cache": False, "plots": False}  # same defaults
    assert scored["syncnet"] == syncnet_folder.name and len(scored["videos"][0]["curves"]["lse_confidence"]) == \
        NUM_FRAMES


def test_score_lse_and_avs_together(capsys, tmp_path, clips, syncnet_folder, encoder_folder):
    out = tmp_path / "scores.json"
    code, stdout, stderr = run_cli(capsys, "score", clips["talking"], clips["other"], "--syncnet", syncnet_folder,
                                   "--avhubert", encoder_folder, "--metrics", "lse_c,avs", "--output", out)
    assert code == 0, stderr
    assert stdout.splitlines()[0].split() == ["video", "frames", "lse_c", "avs_u"]
    data = json.loads(out.read_text())
    assert data["metrics"] == ["lse_c", "avs_u", "avs_m", "avs_v"] and set(data["mean"]) == {"lse_c", "avs_u"}
    # the models by their folders' names, never their full local paths (issue 13)
    assert data["avhubert"] == encoder_folder.name and data["syncnet"] == syncnet_folder.name
    assert str(syncnet_folder.parent) not in json.dumps(data["settings"])
    assert set(data["videos"][0]["scores"]) == {"lse_c", "avs_u"}
    assert data["mean"]["lse_c"] == pytest.approx(sum(v["scores"]["lse_c"] for v in data["videos"]) / 2)


def test_score_needs_a_model_and_names_a_missing_one(capsys, tmp_path, clips, monkeypatch, encoder_folder):
    for name in ("TALKFACE_SYNCNET_LSE", "TALKFACE_AVHUBERT", "TALKFACE_AUTO_DOWNLOAD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TALKFACE_MODELS_DIR", str(tmp_path / "models"))  # nothing downloaded
    code, _, stderr = run_cli(capsys, "score", clips["talking"])
    assert code == 2 and "run `talkface download syncnet-lse` for LSE" in stderr
    # the default --syncnet is the name syncnet-lse: not downloaded, so the one line says how to get it
    code, _, stderr = run_cli(capsys, "score", clips["talking"], "--avhubert", encoder_folder, "--metrics", "lse")
    assert code == 2 and "run: talkface download syncnet-lse" in stderr and len(stderr.strip().splitlines()) == 1


def test_score_and_evaluate_share_their_defaults():
    from talkface.cli import build_parser
    from talkface.commands.scoring_flags import options_from_args
    from talkface.evaluation.evaluate import EvaluationOptions

    score = options_from_args(build_parser(["score"]).parse_args(["score", "x.mp4"]))
    evaluate = options_from_args(build_parser(["evaluate"]).parse_args(["evaluate", "--generated", "g", "--output",
                                                                        "o"]))
    assert score == evaluate == EvaluationOptions()


# ----------------------------------------------------------------------------------------------------------------
# talkface lipread
# ----------------------------------------------------------------------------------------------------------------


def test_lipread_prints_transcripts(capsys, tmp_path, clips, lip_reading_folder):
    out = tmp_path / "transcripts.json"
    code, stdout, stderr = run_cli(capsys, "lipread", clips["talking"], clips["other"], "--avhubert",
                                   lip_reading_folder, "--beam", "2", "--output", out)
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].startswith("talking.mp4\t") and lines[1].startswith("other.mp4\t")
    data = json.loads(out.read_text())
    assert [v["text"] for v in data["videos"]] == [line.split("\t", 1)[1] for line in lines[:2]]
    assert data["beam"] == 2


def test_lipread_with_reference_text_reports_corpus_wer(capsys, tmp_path, clips, lip_reading_folder):
    from talkface.metrics.wer import word_errors

    transcript_file = tmp_path / "talking.txt"
    transcript_file.write_text("Text:  HOLIDAYS ARE A TIME OF CELEBRATING\nConf:  5\n")
    out = tmp_path / "wer.json"
    code, stdout, stderr = run_cli(capsys, "lipread", clips["talking"], clips["other"], "--avhubert",
                                   lip_reading_folder, "--beam", "1", "--reference-text", transcript_file,
                                   "--reference-text", "with loved ones", "--output", out)
    assert code == 0, stderr
    data = json.loads(out.read_text())
    assert [v["reference"] for v in data["videos"]] == ["holidays are a time of celebrating", "with loved ones"]
    assert data["reference_words"] == 9
    # corpus WER = total errors / total reference words (not the mean of the per-video WERs)
    errors = [v["word_errors"] for v in data["videos"]]
    assert data["corpus_wer"] == pytest.approx(100.0 * sum(errors) / 9)
    assert f"WER (corpus): {data['corpus_wer']:.2f}%" in stdout
    # per-video WER with the library's alignment of the same texts
    first = data["videos"][0]
    assert first["word_errors"] == word_errors(first["text"], "holidays are a time of celebrating")[0]


@pytest.mark.parametrize("case, needle", [
    ("encoder_only", "without the lip-reading decoder"),
    ("missing_model", "talkface convert avhubert"),
    ("missing_video", "file not found"),
    ("reference_count", "--reference-text was given 1 times for 2 videos"),
    ("no_face", "no face"),
])
def test_lipread_errors_are_one_line_exit_2(capsys, tmp_path, clips, encoder_folder, lip_reading_folder, case,
                                            needle):
    model, argv = lip_reading_folder, [clips["talking"]]
    if case == "encoder_only":
        model = encoder_folder
    elif case == "missing_model":
        model = tmp_path / "missing"
    elif case == "missing_video":
        argv = [tmp_path / "nope.mp4"]
    elif case == "reference_count":
        argv = [clips["talking"], clips["other"], "--reference-text", "hello"]
    elif case == "no_face":
        argv = [clips["no_face"]]
    code, _, stderr = run_cli(capsys, "lipread", *argv, "--avhubert", model)
    assert code == 2
    assert needle in stderr and len(stderr.strip().splitlines()) == 1


def test_lipread_folder_without_tokenizer(capsys, tmp_path, clips):
    from talkface.models.avhubert import AVHubertForLipReading

    AVHubertForLipReading(tiny_config()).save_pretrained(tmp_path)
    code, _, stderr = run_cli(capsys, "lipread", clips["talking"], "--avhubert", tmp_path)
    assert code == 2 and "tokenizer" in stderr


def test_lip_reader_from_hub_id(monkeypatch, tmp_path, lip_reading_folder):
    from talkface.faces.mouth_roi import MouthVideo
    from talkface.pipelines.lip_reading.pipeline import LipReader

    make_offline_hub_cache(monkeypatch, tmp_path)("someone/avhubert-tiny-vsr", lip_reading_folder)
    reader = LipReader.from_pretrained("someone/avhubert-tiny-vsr")
    mouths = np.random.default_rng(0).normal(size=(12, 88, 88)).astype(np.float32)
    result = reader.transcribe(MouthVideo(mouths=mouths, landmarks=None, detected=np.ones(12, bool)), num_beams=2)
    assert isinstance(result.text, str) and result.num_frames == 12
    assert reader.tokenizer.decode(result.token_ids) == result.text
    local = LipReader.from_pretrained(lip_reading_folder).transcribe(
        MouthVideo(mouths=mouths, landmarks=None, detected=np.ones(12, bool)), num_beams=2)
    assert local.text == result.text and local.token_ids == result.token_ids


@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_score_device_auto_and_cpu(capsys, tmp_path, clips, encoder_folder, device):
    """--device auto is resolved by the one device rule (it used to reach torch as "auto": a traceback)."""
    code, stdout, stderr = run_cli(capsys, "score", clips["talking"], "--avhubert", encoder_folder, "--device", device)
    assert code == 0, stderr
    assert stdout.splitlines()[0].split() == ["video", "frames", "avs_u"]


def test_score_unknown_device_is_one_line(capsys, clips, encoder_folder):
    code, stdout, stderr = run_cli(capsys, "score", clips["talking"], "--avhubert", encoder_folder, "--device", "gpu")
    assert code == 2
    assert stderr.strip().count("\n") == 0 and "unknown device 'gpu'" in stderr and "cuda:N" in stderr
    assert "Traceback" not in stderr
