"""Adding a metric is one class: a toy metric defined here runs through evaluate(), `talkface evaluate` and the
demo's scorer with no other edit."""

import json

import numpy as np
import pytest

from talkface.cli import main
from talkface.errors import TalkFaceUserError
from talkface.evaluation.evaluate import EvaluationOptions, evaluate
from talkface.metrics import METRICS, Metric, get_metric, register_metric, unregister_metric
from tests.evaluation.test_evaluate import make_dirs, write_clip
from tests.utils import data_file

CALLS = []  # stems the toy metric computed


class ToyBrightness(Metric):
    """Mean grey level of the generated frames, and the darkest frame's; needs only the generated video."""

    name = "toybright"
    fields = ("brightness", "darkest")
    higher_is_better = {"brightness": True, "darkest": None}
    aggregate = "dataset"
    description = "mean grey level"
    field_help = {"brightness": "mean grey level of the frames", "darkest": "grey level of the darkest frame"}
    curve_labels = {"brightness_curve": "grey level"}

    def settings(self, options):
        return {"face_backend": options.face_backend}  # any option may key the cache

    def compute(self, media, context):
        CALLS.append(media.pair.stem)
        per_frame = media.generated_frames.reshape(len(media.generated_frames), -1).mean(axis=1)
        artifact = context.save_arrays(media.pair.stem, self.name, per_frame=per_frame)
        return {"values": {"brightness": float(per_frame.mean()), "darkest": float(per_frame.min())},
                "num_frames": len(per_frame), "details": {"frames": artifact},
                "curves": {"brightness_curve": per_frame.tolist()}}

    def artifacts(self, result):
        return [result["details"]["frames"]] if result.get("details", {}).get("frames") else []

    def summarise(self, results, context):
        # data-set values of its own: the mean over all frames of all files (from the kept per-frame values) and
        # the darkest frame of all
        frames = np.concatenate([context.load_arrays(r["stem"], self.name, r["details"]["frames"])["per_frame"]
                                 for r in results])
        return {"brightness": self.entry("brightness", float(frames.mean()), len(results)),
                "darkest": self.entry("darkest", min(r["values"]["darkest"] for r in results), len(results))}


@pytest.fixture
def toy():
    register_metric(ToyBrightness)
    CALLS.clear()
    yield get_metric("toybright")
    unregister_metric("toybright")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two real clips of different lengths (20 and 30 frames) with their sound."""
    from talkface.media import read_audio, read_frames

    source = data_file("clip07_edtalk_mouth_source_muxed.mkv")
    frames = read_frames(source, fps=25, max_frames=30)
    audio = read_audio(source, 16000)[: 30 * 640]
    root = tmp_path_factory.mktemp("toy")
    return {"long": write_clip(root / "long.mp4", frames, audio),
            "short": write_clip(root / "short.mp4", frames[10:] // 2, audio[: 20 * 640])}


def expected_values(path):
    """Each frame's mean grey level, computed here from the decoded file."""
    from talkface.media import read_frames

    frames = read_frames(path, fps=25)
    return frames.reshape(len(frames), -1).mean(axis=1)


def test_registration_checks_the_declaration(toy):
    assert METRICS["toybright"] is toy and list(METRICS)[-1] == "toybright"

    class NoFields(Metric):
        name = "nofields"

    class Clash(Metric):
        name = "clash"
        fields = ("ssim",)

    with pytest.raises(ValueError, match="fields is empty"):
        register_metric(NoFields)
    with pytest.raises(ValueError, match="already reported by ssim"):
        register_metric(Clash)
    assert "nofields" not in METRICS and "clash" not in METRICS
    with pytest.raises(TalkFaceUserError, match="unknown metric 'nofields'"):
        get_metric("nofields")


def test_toy_metric_through_evaluate(toy, videos, tmp_path):
    generated, _ = make_dirs(tmp_path, videos, {})
    options = EvaluationOptions(plots=True)
    report = evaluate(generated, metrics="toybright", output=tmp_path / "r", options=options, progress=False)
    assert sorted(CALLS) == ["long", "short"]
    long_frames, short_frames = expected_values(generated / "long.mp4"), expected_values(generated / "short.mp4")
    values = {row["stem"]: row["values"] for row in report.files}
    assert values["long"]["brightness"] == pytest.approx(long_frames.mean())
    assert values["short"]["darkest"] == pytest.approx(short_frames.min())
    # the class's own summarise: over all 50 frames (not the mean of the two files' means), and the darkest frame
    all_frames = np.concatenate([long_frames, short_frames])
    assert report.summary["brightness"]["value"] == pytest.approx(all_frames.mean())
    assert report.summary["brightness"]["value"] != pytest.approx((long_frames.mean() + short_frames.mean()) / 2)
    assert report.summary["darkest"] == {"value": pytest.approx(all_frames.min()), "files": 2,
                                         "metric": "toybright", "higher_is_better": None}
    written = tmp_path / "r"
    assert (written / "results.csv").read_text().splitlines()[0] == "stem,brightness,darkest,generated,reference," \
                                                                      "audio,skipped"
    assert "| brightness ↑ |" in (written / "report.md").read_text()
    assert (written / "plots" / "distribution_darkest.png").is_file()
    assert (written / "plots" / "sync_curves" / "long.png").is_file()
    assert {p.name for p in (written / "cache").iterdir()} == {
        "long.toybright.json", "long.toybright.npz", "short.toybright.json", "short.toybright.npz"}

    # a rerun reads the cache; a changed setting of the metric recomputes; a lost artifact recomputes that file
    CALLS.clear()
    again = evaluate(generated, metrics="toybright", output=written, options=options, progress=False)
    assert CALLS == [] and again.summary == report.summary
    evaluate(generated, metrics="toybright", output=written, options=EvaluationOptions(face_backend="dlib"),
             progress=False)
    assert sorted(CALLS) == ["long", "short"]
    CALLS.clear()
    (written / "cache" / "short.toybright.npz").unlink()
    evaluate(generated, metrics="toybright", output=written, options=EvaluationOptions(face_backend="dlib"),
             progress=False)
    assert CALLS == ["short"]

    # without an output folder the arrays stay in memory
    report = evaluate(generated, metrics="toybright", options=options, progress=False)
    assert report.summary["brightness"]["value"] == pytest.approx(all_frames.mean())


def test_toy_metric_through_the_command(toy, videos, tmp_path, capsys):
    generated, _ = make_dirs(tmp_path, videos, {})
    # ssim needs references: asking for it without --reference cannot be answered (exit 2, the flag named)
    code = main(["evaluate", "--generated", str(generated), "--metrics", "toybright,ssim", "--output",
                 str(tmp_path / "r"), "--quiet", "--no-plots"])
    assert code == 2 and "ssim needs --reference" in capsys.readouterr().err
    code = main(["evaluate", "--generated", str(generated), "--metrics", "toybright", "--output",
                 str(tmp_path / "r"), "--quiet", "--no-plots"])
    out = capsys.readouterr().out
    assert code == 0
    expected = np.concatenate([expected_values(generated / "long.mp4"), expected_values(generated / "short.mp4")])
    assert f"brightness: {expected.mean():.4f} (2 files)" in out
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert data["metrics"] == ["toybright"] and data["summary"]["darkest"]["files"] == 2


def test_toy_metric_through_the_demo_scorer(toy, videos, tmp_path):
    from talkface.demo import DemoConfig, TalkFaceDemo

    demo = TalkFaceDemo(DemoConfig(cache_dir=tmp_path / "cache", score_metrics=("toybright", "psnr")))
    result = demo.score([videos["long"], videos["short"]], face_mode="precropped")
    assert result.headers == ["file", "brightness", "darkest", "notes"]
    long_frames = expected_values(videos["long"])
    rows = {row[0]: row for row in result.rows}
    assert float(rows["long"][1]) == pytest.approx(long_frames.mean(), abs=1e-3)
    assert "mean grey level of the frames" in result.note  # the column legend comes from the class
    assert "**PSNR** not computed: needs a ground-truth video" in result.note
    all_frames = np.concatenate([long_frames, expected_values(videos["short"])])
    assert float(rows["mean"][1]) == pytest.approx(all_frames.mean(), abs=1e-3)  # the metric's own summary
    # the generated video's scores are those metrics that need no ground truth
    score_rows, note = demo.score_generated(videos["long"])
    assert [row[0] for row in score_rows] == ["brightness", "darkest"] and note == ""
    assert score_rows[0][2] == "mean grey level of the frames"


def test_missing_requirements_come_from_needs_field_needs_and_the_model(monkeypatch):
    from talkface.evaluation.evaluate import EvaluationOptions
    from talkface.metrics import ALWAYS_AVAILABLE, REFERENCE, TEXT, missing_requirements

    for metric in METRICS.values():
        if metric.model_env:
            monkeypatch.delenv(metric.model_env, raising=False)
    bare = EvaluationOptions()
    everything = ALWAYS_AVAILABLE | {REFERENCE, TEXT}
    assert missing_requirements(["lse", "ssim", "fid", "wer"], bare, ALWAYS_AVAILABLE) == {
        "ssim": ["reference"], "fid": ["reference"], "wer": ["text"]}  # lse, wer: registry default models
    # FID has a default model folder; AVS as a whole only uses the reference, its fields avs_m/avs_v need it
    assert missing_requirements(["fid", "ssim"], bare, everything) == {}
    with_models = EvaluationOptions(syncnet="s", avhubert="a")
    assert missing_requirements(["lse", "avs"], with_models, ALWAYS_AVAILABLE) == {}
    assert missing_requirements(["avs"], with_models, ALWAYS_AVAILABLE, fields=["avs_u"]) == {}
    assert missing_requirements(["avs"], with_models, ALWAYS_AVAILABLE, fields=["avs_v"]) == {"avs": ["reference"]}
    # the lip reader falls back on the AV-HuBERT folder; an environment variable names a model too
    assert missing_requirements(["wer"], with_models, everything) == {}


def test_a_field_need_must_name_a_reported_field():
    from talkface.metrics import REFERENCE, Metric, register_metric

    class Broken(Metric):
        name = "broken"
        fields = ("a",)
        field_needs = {"b": frozenset({REFERENCE})}

    with pytest.raises(ValueError, match="field_needs names fields it does not report"):
        register_metric(Broken)
    assert "broken" not in METRICS
