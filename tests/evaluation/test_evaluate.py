"""`talkface evaluate` / talkface.evaluation.evaluate.evaluate on real clips with tiny random models."""

import json
import shutil

import numpy as np
import pytest
import torch

from talkface.cli import main
from talkface.errors import TalkFaceUserError
from talkface.evaluation.evaluate import EvaluationOptions, evaluate, pair_files
from talkface.metrics import METRICS, get_metric, parse_metric_names
from tests.utils import data_file

NUM_FRAMES = 30  # 1.2 s: enough for LSE windows, short enough for landmark detection in a test
SAMPLES_PER_FRAME = 640


def write_clip(path, frames, audio=None):
    from talkface.media import VideoWriter

    with VideoWriter(path, fps=25, width=frames.shape[2], height=frames.shape[1], audio=audio) as writer:
        for frame in frames:
            writer.write(frame)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A real talking face (clip07, 1.2 s) as generated = reference, a shifted copy, and a faceless clip."""
    from talkface.media import read_audio, read_frames

    source = data_file("clip07_edtalk_mouth_source_muxed.mkv")
    frames = read_frames(source, fps=25, max_frames=NUM_FRAMES)
    audio = read_audio(source, 16000)[: NUM_FRAMES * SAMPLES_PER_FRAME]
    root = tmp_path_factory.mktemp("evaluate")
    originals = root / "originals"
    originals.mkdir()
    real = write_clip(originals / "real.mp4", frames, audio)
    moved = write_clip(originals / "moved.mp4", np.roll(frames, 6, axis=2), audio)  # same face, 6 px to the right
    blank = write_clip(originals / "blank.mp4", np.full_like(frames, 128), audio)
    return {"root": root, "real": real, "moved": moved, "blank": blank, "frames": frames}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny random SyncNet LSE, AV-HuBERT and FID Inception folders."""
    from talkface.models.fid_inception import FIDInceptionConfig, FIDInceptionModel
    from talkface.models.syncnet_lse import SyncNetLSEConfig, SyncNetLSEFeatureExtractor, SyncNetLSEModel

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    SyncNetLSEModel(SyncNetLSEConfig(audio_channels=[4, 4, 8, 8, 8, 8], video_channels=[4, 4, 8, 8, 8, 8],
                                     fc_hidden_size=8, embedding_size=6)).save_pretrained(root / "syncnet")
    SyncNetLSEFeatureExtractor().save_pretrained(root / "syncnet")
    fid_config = FIDInceptionConfig(channel_divisor=16, input_size=75, num_classes=12)
    FIDInceptionModel(fid_config).save_pretrained(root / "fid")
    folders = {"syncnet": root / "syncnet", "fid": root / "fid", "avhubert": None}
    try:
        from talkface.models.avhubert import AVHubertConfig, AVHubertModel
        from talkface.models.avhubert.feature_extraction_avhubert import AVHubertFeatureExtractor
    except ImportError:
        return folders
    config = AVHubertConfig(encoder_layers=1, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
                            encoder_attention_heads=4, conv_pos=8, conv_pos_groups=4, video_frontend_channels=8,
                            resnet_channels=(8, 8, 16, 16), resnet_blocks=(1, 1, 1, 1))
    AVHubertModel(config).eval().save_pretrained(root / "avhubert")
    AVHubertFeatureExtractor().save_pretrained(root / "avhubert")
    folders["avhubert"] = root / "avhubert"
    return folders


def make_dirs(root, generated: dict, reference: dict):
    """generated/ and reference/ folders holding copies of the given clips under the given names."""
    for name, files in (("generated", generated), ("reference", reference)):
        folder = root / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        for stem, source in files.items():
            shutil.copy(source, folder / f"{stem}{source.suffix}")
    return root / "generated", root / "reference"


@pytest.fixture(autouse=True)
def _no_model_env(monkeypatch):
    for spec in METRICS.values():
        if spec.model_env:
            monkeypatch.delenv(spec.model_env, raising=False)


class TestRegistry:
    def test_every_metric_is_a_registered_class(self):
        from talkface.metrics import Metric

        assert list(METRICS) == ["lse", "avs", "lmd", "ssim", "psnr", "fid", "wer"]
        for name, spec in METRICS.items():
            assert isinstance(spec, Metric) and spec.name == name
            assert type(spec).compute is not Metric.compute, name  # each class scores files itself
            assert spec.fields and set(spec.higher_is_better) == set(spec.fields)
            assert spec.aggregate in ("mean", "frame_mean", "corpus", "dataset")
            if spec.model_option:
                assert spec.model_env and "talkface convert" in spec.model_hint
        assert METRICS["lse"].fields == ("lse_d", "lse_c", "offset")
        assert METRICS["ssim"].needs == {"generated", "reference"}

    def test_parse_metric_names(self):
        assert parse_metric_names("lse, SSIM,lse") == ["lse", "ssim"]
        with pytest.raises(TalkFaceUserError, match="unknown metric 'foo'"):
            parse_metric_names("lse,foo")
        with pytest.raises(TalkFaceUserError, match="no metric"):
            parse_metric_names(" , ")
        assert get_metric("lmd").higher_is_better == {"lmd": False}


class TestPairing:
    def test_pairs_by_stem_and_lists_unpaired(self, clips, tmp_path):
        generated, reference = make_dirs(tmp_path, {"a": clips["real"], "b": clips["moved"]},
                                         {"a": clips["real"], "z": clips["blank"]})
        (reference / "a.txt").write_text("hello world")
        pairs, unpaired = pair_files(generated, reference)
        assert [(p.stem, p.reference.name if p.reference else None, p.text.name if p.text else None)
                for p in pairs] == [("a", "a.mp4", "a.txt"), ("b", None, None)]
        assert [p.endswith("z.mp4") for p in unpaired] == [True]

    def test_bad_inputs(self, clips, tmp_path):
        with pytest.raises(TalkFaceUserError, match="does not exist"):
            pair_files(tmp_path / "missing")
        (tmp_path / "empty").mkdir()
        with pytest.raises(TalkFaceUserError, match="no videos"):
            pair_files(tmp_path / "empty")
        generated, reference = make_dirs(tmp_path, {"a": clips["real"]}, {"b": clips["real"]})
        with pytest.raises(TalkFaceUserError, match="paired by name"):
            pair_files(generated, reference)
        shutil.copy(clips["real"], generated / "a.mkv")
        with pytest.raises(TalkFaceUserError, match="two files named 'a'"):
            pair_files(generated)


class TestEvaluate:
    def test_ground_truth_against_itself_gives_ideal_values(self, clips, models, tmp_path):
        generated, reference = make_dirs(tmp_path, {"real": clips["real"]}, {"real": clips["real"]})
        metrics = ["lse", "ssim", "psnr", "lmd", "fid"] + (["avs"] if models["avhubert"] else [])
        options = EvaluationOptions(syncnet=str(models["syncnet"]), fid_inception=str(models["fid"]),
                                    avhubert=str(models["avhubert"]) if models["avhubert"] else None)
        report = evaluate(generated, reference, metrics=metrics, output=tmp_path / "report", options=options,
                          progress=False)
        assert report.unavailable == {} and report.skipped == []
        values = report.files[0]["values"]
        assert values["ssim"] == pytest.approx(1.0, abs=1e-12)
        assert values["psnr"] == 100.0  # +inf per frame, capped
        assert report.files[0]["details"]["psnr"]["identical_frames"] == NUM_FRAMES
        assert values["lmd"] == 0.0
        assert report.files[0]["num_frames"]["lmd"] == NUM_FRAMES
        assert report.summary["fid"]["value"] == pytest.approx(0.0, abs=1e-3)
        if models["avhubert"]:
            assert values["avs_m"] == pytest.approx(1.0, abs=1e-5)
            assert values["avs_v"] == pytest.approx(1.0, abs=1e-5)
        assert np.isfinite(values["lse_d"]) and np.isfinite(values["lse_c"])
        assert report.files[0]["details"]["lse"]["num_windows"] == NUM_FRAMES - 5
        written = tmp_path / "report"
        data = json.loads((written / "results.json").read_text())
        assert data["summary"]["ssim"]["value"] == pytest.approx(1.0)
        assert (written / "results.csv").read_text().splitlines()[0].startswith("stem,lse_d,lse_c,offset,ssim,psnr")
        assert "| ssim ↑ | 1.0000 | 1 |" in (written / "report.md").read_text()
        assert (written / "plots" / "distribution_ssim.png").stat().st_size > 1000
        assert (written / "plots" / "sync_curves" / "real.png").stat().st_size > 1000

    def test_rerun_resumes_from_the_cache(self, clips, models, tmp_path, monkeypatch):
        generated, reference = make_dirs(tmp_path, {"a": clips["real"], "b": clips["moved"]},
                                         {"a": clips["real"], "b": clips["real"]})
        options = EvaluationOptions(syncnet=str(models["syncnet"]), plots=False)
        first = evaluate(generated, reference, metrics="lse,ssim,psnr", output=tmp_path / "r", options=options,
                         progress=False)
        assert 0.5 < first.files[1]["values"]["ssim"] < 1.0  # a moved face is not identical

        def fail(*args, **kwargs):
            raise AssertionError("recomputed a cached result")

        monkeypatch.setattr(get_metric("lse"), "compute", fail)
        monkeypatch.setattr(get_metric("ssim"), "compute", fail)
        again = evaluate(generated, reference, metrics="lse,ssim,psnr", output=tmp_path / "r",
                         options=EvaluationOptions(syncnet=str(models["syncnet"]), plots=False, psnr_cap_db=50.0),
                         progress=False)
        assert again.files[1]["values"]["ssim"] == first.files[1]["values"]["ssim"]
        assert again.files[1]["values"]["lse_d"] == first.files[1]["values"]["lse_d"]
        assert again.files[0]["values"]["psnr"] == 50.0  # the changed setting was recomputed
        # a changed input file is recomputed too
        shutil.copy(clips["real"], generated / "b.mp4")
        with pytest.raises(AssertionError, match="recomputed"):
            evaluate(generated, reference, metrics="ssim", output=tmp_path / "r", options=options, progress=False)

    def test_rerun_with_fid_and_a_file_skipped_for_it(self, clips, models, tmp_path, monkeypatch):
        # b has no reference: its cached fid entry is "skipped" (a rerun used to fail reading it)
        generated, reference = make_dirs(tmp_path, {"a": clips["real"], "b": clips["moved"], "c": clips["blank"]},
                                         {"a": clips["real"], "c": clips["real"]})
        options = EvaluationOptions(fid_inception=str(models["fid"]), plots=False)
        first = evaluate(generated, reference, metrics="fid", output=tmp_path / "r", options=options, progress=False)
        assert [(s["stem"], s["metric"]) for s in first.skipped] == [("b", "fid")]
        assert first.summary["fid"]["files"] == 2 and first.summary["fid"]["value"] > 0

        def fail(*args, **kwargs):
            raise AssertionError("recomputed a cached result")

        monkeypatch.setattr(get_metric("fid"), "compute", fail)
        again = evaluate(generated, reference, metrics="fid", output=tmp_path / "r", options=options, progress=False)
        assert again.summary == first.summary and again.skipped == first.skipped

    def test_the_loop_with_an_already_loaded_model_and_a_progress_callback(self, clips, models, tmp_path):
        from talkface.evaluation.evaluate import EvaluationContext, evaluate_pairs
        from talkface.metrics.sync import LSEScorer

        generated, reference = make_dirs(tmp_path, {"a": clips["real"], "b": clips["moved"]},
                                         {"a": clips["real"], "b": clips["real"]})
        pairs, _ = pair_files(generated, reference)
        options = EvaluationOptions(plots=False)  # names no SyncNet: the context holds it
        context = EvaluationContext(options, models={"lse": LSEScorer.from_pretrained(models["syncnet"])})
        calls = []
        try:
            report = evaluate_pairs(pairs, "lse,ssim", options, context=context,
                                    progress=lambda fraction, text: calls.append((fraction, text)))
        finally:
            context.close()
        expected = evaluate(generated, reference, metrics="lse,ssim", progress=False,
                            options=EvaluationOptions(syncnet=str(models["syncnet"]), plots=False))
        assert report.unavailable == {} and report.summary == expected.summary
        assert json.dumps(report.files) == json.dumps(expected.files)  # (the curves hold NaN, which != itself)
        assert calls == [(0.0, "LSE of a"), (0.25, "SSIM of a"), (0.5, "LSE of b"), (0.75, "SSIM of b"),
                         (1.0, "scored")]

    def test_missing_model_is_reported_and_the_others_run(self, clips, tmp_path):
        generated, reference = make_dirs(tmp_path, {"a": clips["real"]}, {"a": clips["real"]})
        report = evaluate(generated, reference, metrics="lse,psnr,fid", output=tmp_path / "r",
                          options=EvaluationOptions(plots=False, fid_inception=str(tmp_path / "nowhere")),
                          progress=False)
        # the default SyncNet is the registry name syncnet-lse, not downloaded in the tests' models dir
        assert "run: talkface download syncnet-lse" in report.unavailable["lse"]
        assert "talkface convert fid-inception" in report.unavailable["fid"]
        assert report.files[0]["values"] == {"psnr": 100.0}
        assert "**lse**" in (tmp_path / "r" / "report.md").read_text()

    def test_unreadable_and_faceless_files_are_listed(self, clips, models, tmp_path):
        generated, reference = make_dirs(tmp_path, {"real": clips["real"], "blank": clips["blank"]},
                                         {"real": clips["real"], "blank": clips["blank"], "junk": clips["real"]})
        (generated / "junk.mp4").write_bytes(b"not a video")
        report = evaluate(generated, reference, metrics="lmd,psnr", output=tmp_path / "r",
                          options=EvaluationOptions(plots=False), progress=False)
        skipped = {(s["stem"], s["metric"]): s["reason"] for s in report.skipped}
        assert "no face" in skipped[("blank", "lmd")]
        assert "cannot read" in skipped[("junk", "lmd")] and ("junk", "psnr") in skipped
        assert [f["stem"] for f in report.files] == ["blank", "junk", "real"]  # every file has a row
        assert report.files[0]["values"] == {"psnr": 100.0}
        markdown = (tmp_path / "r" / "report.md").read_text()
        assert "| junk | lmd, psnr | cannot read" in markdown

    def test_face_region_and_track_mode(self, clips, models, tmp_path):
        pytest.importorskip("mediapipe")
        generated, reference = make_dirs(tmp_path, {"a": clips["real"], "b": clips["moved"]},
                                         {"a": clips["real"], "b": clips["real"]})
        options = EvaluationOptions(syncnet=str(models["syncnet"]), face_mode="track", image_region="face",
                                    plots=False)
        report = evaluate(generated, reference, metrics="lse,ssim,psnr", options=options, progress=False)
        assert report.skipped == []
        identical, moved = report.files[0]["values"], report.files[1]["values"]
        assert identical["ssim"] == pytest.approx(1.0, abs=1e-12) and identical["psnr"] == 100.0
        assert moved["ssim"] < 0.99  # the reference's face box cut from a moved face
        tracks = report.files[0]["details"]["lse"]["tracks"]
        assert len(tracks) == 1 and tracks[0]["num_windows"] == NUM_FRAMES - 5

    def test_python_api_without_output(self, clips, tmp_path):
        generated, reference = make_dirs(tmp_path, {"a": clips["moved"]}, {"a": clips["real"]})
        report = evaluate(generated, reference, metrics=["psnr", "ssim"], progress=False,
                          options=EvaluationOptions(ssim_window="uniform", psnr_cap_db=None))
        assert report.output_dir is None and not (tmp_path / "cache").exists()
        from talkface.media import read_frames
        from skimage.metrics import structural_similarity

        moved, real = read_frames(generated / "a.mp4"), read_frames(reference / "a.mp4")
        expected = np.mean([structural_similarity(m, r, channel_axis=-1, data_range=255) for m, r in zip(moved, real)])
        assert report.files[0]["values"]["ssim"] == pytest.approx(expected, abs=1e-6)


class TestWER:
    def test_corpus_wer_of_the_lip_reader(self, clips, tmp_path):
        pytest.importorskip("sentencepiece")
        from talkface.pipelines.lip_reading.pipeline import LipReader
        from talkface.metrics.wer import word_error_counts
        from talkface.models.avhubert import AVHubertConfig, AVHubertForLipReading
        from talkface.models.avhubert.feature_extraction_avhubert import AVHubertFeatureExtractor
        from talkface.models.avhubert.tokenization_avhubert import AVHubertTokenizer
        from tests.utils import shared_file

        folder = tmp_path / "lip_reader"
        torch.manual_seed(0)
        config = AVHubertConfig(encoder_layers=1, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
                                encoder_attention_heads=4, conv_pos=8, conv_pos_groups=4, video_frontend_channels=8,
                                resnet_channels=(8, 8, 16, 16), resnet_blocks=(1, 1, 1, 1), decoder_layers=1,
                                decoder_embed_dim=32, decoder_ffn_embed_dim=64, decoder_attention_heads=4)
        AVHubertForLipReading(config).save_pretrained(folder)
        AVHubertFeatureExtractor().save_pretrained(folder)
        AVHubertTokenizer.from_model_file(shared_file("reference", "avhubert_spm_unigram1000.model")).save_pretrained(
            folder)
        generated, reference = make_dirs(tmp_path, {"a": clips["real"], "b": clips["moved"]},
                                         {"a": clips["real"], "b": clips["real"]})
        (reference / "a.txt").write_text("Text:  HELLO WORLD\nConf:  5\n")  # LRS2 layout
        report = evaluate(generated, reference, metrics="wer", output=tmp_path / "r",
                          options=EvaluationOptions(lip_reader=str(folder), plots=False), progress=False)
        assert report.unavailable == {}
        assert [(s["stem"], s["metric"]) for s in report.skipped] == [("b", "wer")]  # no transcript for b
        assert "b.txt" in report.skipped[0]["reason"]
        hypothesis = report.files[0]["details"]["wer"]["hypothesis"]
        assert hypothesis == LipReader.from_pretrained(folder).normalize_reference(hypothesis)  # tokenizer text
        expected = word_error_counts("hello world", hypothesis)
        assert report.files[0]["counts"]["wer"] == {"errors": expected["errors"], "words": 2}
        assert report.summary["wer"]["value"] == pytest.approx(expected["errors"] / 2)


class TestCommand:
    def test_end_to_end(self, clips, tmp_path, capsys):
        generated, reference = make_dirs(tmp_path, {"a": clips["real"]}, {"a": clips["real"]})
        code = main(["evaluate", "--generated", str(generated), "--reference", str(reference), "--metrics",
                     "ssim,psnr", "--output", str(tmp_path / "r"), "--quiet", "--no-plots"])
        out = capsys.readouterr().out
        assert code == 0
        assert "ssim: 1.0000 (1 files)" in out and "unavailable" not in out
        assert {"results.json", "results.csv", "report.md", "cache"} <= {p.name for p in (tmp_path / "r").iterdir()}

    def test_default_metrics_run_what_the_flags_allow(self, clips, tmp_path, capsys):
        # without --metrics: lse, ssim, psnr, lmd; no --syncnet, so lse is reported unavailable and the rest run
        generated, reference = make_dirs(tmp_path, {"a": clips["real"]}, {"a": clips["real"]})
        code = main(["evaluate", "--generated", str(generated), "--reference", str(reference), "--output",
                     str(tmp_path / "r"), "--quiet", "--no-plots"])
        out = capsys.readouterr().out
        assert code == 0 and "ssim: 1.0000 (1 files)" in out and "lse: unavailable" in out

    @pytest.mark.parametrize("metrics,flags,needle", [
        ("ssim", [], "ssim needs --reference"),
        ("psnr,lmd", [], "psnr needs --reference; lmd needs --reference"),
        ("wer", [], "wer needs --text (or transcripts NAME.txt beside --reference)"),
    ])
    def test_what_cannot_be_computed_exits_2_naming_the_flag(self, clips, tmp_path, capsys, metrics, flags,
                                                              needle):
        generated, reference = make_dirs(tmp_path, {"a": clips["real"]}, {"a": clips["real"]})
        argv = ["evaluate", "--generated", str(generated), "--metrics", metrics, "--output", str(tmp_path / "r"),
                "--quiet", "--no-plots"]
        if "--reference" in flags:
            argv += ["--reference", str(reference)]
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.err.startswith("talkface: error: evaluate cannot compute what was asked: ")
        assert needle in captured.err and captured.err.count("\n") == 1 and captured.out == ""
        assert not (tmp_path / "r").exists()  # no report folder for a run that did nothing

    def test_a_model_that_fails_to_load_exits_2_before_anything_is_written(self, clips, tmp_path, capsys):
        generated, reference = make_dirs(tmp_path, {"a": clips["real"]}, {"a": clips["real"]})
        empty = tmp_path / "not_a_model"
        empty.mkdir()
        code = main(["evaluate", "--generated", str(generated), "--reference", str(reference), "--metrics",
                     "ssim,lse", "--syncnet", str(empty), "--output", str(tmp_path / "r"), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("talkface: error: cannot compute what was asked: lse: ")
        assert not (tmp_path / "r").exists()

    def test_generated_file_is_named_a_file(self, clips, tmp_path, capsys):
        code = main(["evaluate", "--generated", str(clips["real"]), "--metrics", "lse", "--syncnet", "x",
                     "--output", str(tmp_path / "r")])
        err = capsys.readouterr().err
        assert code == 2 and "is a file, not a folder; pass the folder that holds the generated videos" in err
        assert f"talkface score {clips['real']}" in err and "does not exist" not in err

    @pytest.mark.parametrize("extra,message", [
        (["--generated", "/nonexistent/x"], "does not exist"),
        (["--metrics", "ssim,nope"], "unknown metric"),
        (["--min-track-frames", "2"], "min_track_frames"),
    ])
    def test_bad_inputs_exit_2_with_one_line(self, clips, tmp_path, capsys, extra, message):
        generated, reference = make_dirs(tmp_path, {"a": clips["real"]}, {"a": clips["real"]})
        args = {"--generated": str(generated), "--reference": str(reference), "--output": str(tmp_path / "r"),
                "--metrics": "ssim"}
        for flag, value in zip(extra[::2], extra[1::2]):
            args[flag] = value
        code = main(["evaluate", *[x for item in args.items() for x in item], "--quiet"])
        err = capsys.readouterr().err
        assert code == 2
        assert message in err and err.count("\n") == 1

    def test_no_pairs_exit_2(self, clips, tmp_path, capsys):
        generated, reference = make_dirs(tmp_path, {"a": clips["real"]}, {"b": clips["real"]})
        code = main(["evaluate", "--generated", str(generated), "--reference", str(reference), "--output",
                     str(tmp_path / "r"), "--metrics", "ssim"])
        assert code == 2 and "paired by name" in capsys.readouterr().err
