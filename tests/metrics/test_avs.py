"""AVS_u / AVS_m / AVS_v with a tiny random AV-HuBERT on a real clip, and the AV-HuBERT folder loader."""

import json

import numpy as np
import pytest
import torch

from talkface.errors import MediaError, ModelLoadError, TalkFaceUserError
from talkface.faces.mouth_roi import MouthVideo, prepare_mouth_video
from talkface.metrics import avs
from tests.utils import data_file, formula_state_dict, golden_file, load_golden

CLIP = "clip07_edtalk_mouth_source_muxed.mkv"
NUM_FRAMES = 40
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps


def tiny_config(**overrides):
    from talkface.models.avhubert import AVHubertConfig

    options = dict(encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=4,
                   conv_pos=8, conv_pos_groups=4, video_frontend_channels=8, resnet_channels=(8, 8, 16, 16),
                   resnet_blocks=(1, 1, 1, 1), decoder_layers=1, decoder_embed_dim=32, decoder_ffn_embed_dim=64,
                   decoder_attention_heads=4)
    options.update(overrides)
    return AVHubertConfig(**options)


def write_clip(path, frames, audio=None):
    from talkface.media import VideoWriter

    with VideoWriter(path, fps=25, width=frames.shape[2], height=frames.shape[1], audio=audio) as writer:
        for frame in frames:
            writer.write(frame)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The first 40 frames (1.6 s) of a real talking-face clip, as frames, audio and a written mp4."""
    from talkface.media import read_audio, read_frames

    source = data_file(CLIP)
    frames = read_frames(source, fps=25, max_frames=NUM_FRAMES)
    audio = read_audio(source, 16000)[: NUM_FRAMES * SAMPLES_PER_FRAME]
    folder = tmp_path_factory.mktemp("avs_clip")
    path = write_clip(folder / "clip.mp4", frames, audio)
    silent = write_clip(folder / "silent.mp4", frames[:20])
    return {"frames": frames, "audio": audio, "path": path, "silent": silent}


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    from talkface.models.avhubert import AVHubertModel
    from talkface.models.avhubert.feature_extraction_avhubert import AVHubertFeatureExtractor

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("avhubert_tiny")
    AVHubertModel(tiny_config()).eval().save_pretrained(folder)
    AVHubertFeatureExtractor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def face_backend():
    from talkface.faces.backends import get_face_backend

    return get_face_backend("mediapipe")  # one set of mediapipe graphs for the whole module


@pytest.fixture(scope="module")
def scorer(model_folder, face_backend):
    return avs.AVSScorer.from_pretrained(model_folder, face_backend=face_backend)


@pytest.fixture(scope="module")
def mouth_video(clip, scorer):
    return scorer.prepare_video(clip["frames"])


def test_identical_reference_gives_one(clip, model_folder, face_backend):
    result = avs.score_avs(clip["path"], reference=clip["path"], model=str(model_folder), face_backend=face_backend)
    assert result.num_frames == NUM_FRAMES
    assert set(result.scores) == set(avs.AVS_METRICS) and not result.skipped
    assert result.scores["avs_m"] == pytest.approx(1.0, abs=1e-5)
    assert result.scores["avs_v"] == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= result.scores["avs_u"] < 0.9999
    for metric, curve in result.curves.items():
        assert curve.shape == (NUM_FRAMES,)
        assert result.scores[metric] == pytest.approx(float(curve.mean()), abs=1e-6)
    assert {"decode", "landmarks", "roi", "audio", "encoder"} <= set(result.timings)


def test_scores_equal_direct_model_calls(clip, scorer, mouth_video):
    """Shared front ends and batched views give what separate reference-style forward calls give."""
    model = scorer.encoder
    video = torch.from_numpy(mouth_video.mouths)[None, None]  # (1, 1, T, 88, 88)
    shuffled = torch.from_numpy(mouth_video.mouths[::-1].copy())[None, None]
    audio_features = scorer.feature_extractor(clip["audio"], sampling_rate=16000,
                                              num_video_frames=NUM_FRAMES)["audio_features"]
    reference = MouthVideo(mouths=mouth_video.mouths[::-1].copy(), landmarks=None,
                           detected=np.ones(NUM_FRAMES, bool))
    result = scorer.score(mouth_video, audio=clip["audio"], reference=reference)
    with torch.no_grad():
        te_v = model(video=video).last_hidden_state[0]
        te_a = model(audio_features=audio_features).last_hidden_state[0]
        te_va = model(audio_features=audio_features, video=video).last_hidden_state[0]
        te_ref_a = model(audio_features=audio_features, video=shuffled).last_hidden_state[0]
        te_ref = model(video=shuffled).last_hidden_state[0]
    expected = {
        "avs_u": torch.nn.functional.cosine_similarity(te_v, te_a, dim=-1),
        "avs_m": torch.nn.functional.cosine_similarity(te_va, te_ref_a, dim=-1),
        "avs_v": torch.nn.functional.cosine_similarity(te_v, te_ref, dim=-1),
    }
    for metric, curve in expected.items():
        np.testing.assert_allclose(result.curves[metric], curve.numpy(), atol=1e-5)
    # a time-reversed reference is not the same video
    assert result.scores["avs_v"] < 0.999 and result.scores["avs_m"] < 0.999


def test_output_layer(clip, model_folder, mouth_video, scorer):
    last = scorer.score(mouth_video, audio=clip["audio"], metrics="avs_u")
    layer1 = avs.AVSScorer.from_pretrained(model_folder, output_layer=1)
    result = layer1.score(mouth_video, audio=clip["audio"], metrics="avs_u")
    video = torch.from_numpy(mouth_video.mouths)[None, None]
    audio_features = layer1.feature_extractor(clip["audio"], sampling_rate=16000,
                                              num_video_frames=NUM_FRAMES)["audio_features"]
    with torch.no_grad():
        te_v = layer1.encoder(video=video, output_layer=1).last_hidden_state[0]
        te_a = layer1.encoder(audio_features=audio_features, output_layer=1).last_hidden_state[0]
    np.testing.assert_allclose(result.curves["avs_u"],
                               torch.nn.functional.cosine_similarity(te_v, te_a, dim=-1).numpy(), atol=1e-5)
    assert abs(result.scores["avs_u"] - last.scores["avs_u"]) > 1e-4
    with pytest.raises(TalkFaceUserError, match="output layer 3"):
        avs.AVSScorer.from_pretrained(model_folder, output_layer=3)


def test_chunked_video_frontend_is_exact(scorer, mouth_video):
    whole = scorer.encoder.forward_video_frontend(torch.from_numpy(mouth_video.mouths)[None, None])
    scorer_chunks = avs.AVSScorer(scorer.encoder, scorer.feature_extractor, frontend_chunk_frames=7)
    chunked = scorer_chunks.video_embeddings(mouth_video.mouths)
    assert chunked.shape == whole.shape == (1, 32, NUM_FRAMES)
    torch.testing.assert_close(chunked, whole.detach(), atol=1e-5, rtol=1e-5)


def test_fast_video_frontend_matches_the_golden_and_leaves_the_model_alone():
    """The scorer's folded, channels-last copy of the front end against avhubert.npz (tolerance as the model's
    golden test); the encoder it was given keeps its BatchNorms."""
    from talkface.models.avhubert.convert_avhubert_fairseq_checkpoint import convert_fairseq_checkpoint

    golden_cfg = json.loads(golden_file("avhubert_cfg.json").read_text())
    checkpoint = {"cfg": {"model": golden_cfg["model"], "task": golden_cfg["task"]},
                  "model": formula_state_dict("avhubert_pretrain_keys.json")}
    model, _ = convert_fairseq_checkpoint(checkpoint)
    golden = load_golden("avhubert.npz")
    scorer = avs.AVSScorer(model.eval(), face_backend=None, frontend_chunk_frames=7)
    fast = scorer._inference_video_frontend()
    batch_norms = (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
    assert fast is not model.feature_extractor_video
    assert not any(isinstance(m, batch_norms) for m in fast.modules())
    assert any(isinstance(m, batch_norms) for m in model.feature_extractor_video.modules())
    embeddings = scorer.video_embeddings(golden["video_in"])
    np.testing.assert_allclose(embeddings[0].numpy(), golden["frontend_video"], atol=1e-4, rtol=0)
    plain = avs.AVSScorer(model, face_backend=None, fuse_video_frontend=False)
    assert plain._inference_video_frontend() is model.feature_extractor_video


def test_long_clips_are_encoded_in_windows(clip, scorer, mouth_video):
    windowed = avs.AVSScorer(scorer.encoder, scorer.feature_extractor, max_window_frames=16)
    result = windowed.score(mouth_video, audio=clip["audio"], metrics=["avs_u"])
    whole = scorer.score(mouth_video, audio=clip["audio"], metrics=["avs_u"])
    assert result.curves["avs_u"].shape == (NUM_FRAMES,)
    # 40 frames -> 3 windows of 13-14 frames; the first window sees less context than the whole clip
    assert not np.allclose(result.curves["avs_u"], whole.curves["avs_u"])


def test_metrics_needing_a_reference_are_skipped(clip, scorer, mouth_video):
    result = scorer.score(mouth_video, audio=clip["audio"])
    assert list(result.scores) == ["avs_u"]
    assert set(result.skipped) == {"avs_m", "avs_v"} and "reference" in result.skipped["avs_v"]
    data = result.to_dict(curves=True)
    assert json.loads(json.dumps(data))["scores"]["avs_u"] == pytest.approx(result.scores["avs_u"])
    assert len(data["curves"]["avs_u"]) == NUM_FRAMES


def test_reference_of_other_length_is_cut(clip, scorer, mouth_video):
    reference = MouthVideo(mouths=mouth_video.mouths[:30], landmarks=None, detected=np.ones(30, bool))
    result = scorer.score(mouth_video, audio=clip["audio"], reference=reference, metrics="avs_v,avs_m")
    assert result.num_frames == 30
    assert result.scores["avs_v"] == pytest.approx(1.0, abs=1e-4)  # same first 30 frames
    assert result.curves["avs_m"].shape == (30,)


def test_audio_is_aligned_to_the_video_length(clip, scorer, mouth_video):
    """A shorter audio track is zero-padded at the end (reference rule), so scoring still covers every frame."""
    short_audio = clip["audio"][: 20 * SAMPLES_PER_FRAME]
    result = scorer.score(mouth_video, audio=short_audio, metrics="avs_u")
    assert result.curves["avs_u"].shape == (NUM_FRAMES,)
    features = scorer.audio_features(short_audio, NUM_FRAMES)
    assert features.shape == (1, 104, NUM_FRAMES) and torch.all(features[0, :, 21:] == 0)


def test_input_errors(clip, scorer, mouth_video):
    with pytest.raises(TalkFaceUserError, match="unknown AVS metric"):
        scorer.score(mouth_video, audio=clip["audio"], metrics="avs_x")
    with pytest.raises(TalkFaceUserError, match="no audio given"):
        scorer.score(clip["frames"][:5])
    with pytest.raises(MediaError, match="--audio"):
        scorer.score(clip["silent"], metrics="avs_u")
    with pytest.raises(MediaError, match="not found"):
        scorer.score("/nonexistent/video.mp4")
    # a silent video is fine for AVS_v, which needs no audio
    result = scorer.score(clip["silent"], reference=clip["silent"], metrics="avs_v")
    assert result.scores["avs_v"] == pytest.approx(1.0, abs=1e-5)


def test_no_face_raises(scorer):
    from talkface.errors import NoFaceError

    with pytest.raises(NoFaceError, match="no face"):
        scorer.prepare_video(np.full((3, 64, 64, 3), 127, np.uint8))


def test_prepare_mouth_video_stride(clip, face_backend):
    every = prepare_mouth_video(clip["frames"][:20], face_backend, landmark_stride=1)
    strided = prepare_mouth_video(clip["frames"][:20], face_backend, landmark_stride=2)
    assert every.detected.all() and strided.detected.sum() == 11  # frames 0, 2, ..., 18 and the last one, 19
    # interpolating every other frame moves the crops by about a grey level (normalised units: /255/0.165)
    assert np.abs(every.mouths - strided.mouths).mean() < 4 / 255 / 0.165


# ----------------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------------


def test_load_missing_folder_says_how_to_convert(tmp_path):
    with pytest.raises(ModelLoadError, match="talkface convert avhubert --checkpoint"):
        avs.load_avhubert(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        avs.load_avhubert(tmp_path / "empty")


def test_load_wrong_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2lip"}))
    with pytest.raises(ModelLoadError, match="wav2lip model, not AV-HuBERT"):
        avs.load_avhubert(tmp_path)


def make_offline_hub_cache(monkeypatch, tmp_path):
    """An offline Hugging Face cache in tmp_path: `add(repo_id, folder)` makes `repo_id` resolvable from it."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))

    def add(repo_id, folder):
        repo = tmp_path / ("models--" + repo_id.replace("/", "--"))
        commit = "0123456789abcdef0123456789abcdef01234567"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True)
        for file in folder.iterdir():
            (snapshot / file.name).write_bytes(file.read_bytes())

    return add


@pytest.fixture
def offline_hub_cache(monkeypatch, tmp_path):
    return make_offline_hub_cache(monkeypatch, tmp_path)


def test_load_unreachable_hub_id(offline_hub_cache):
    with pytest.raises(ModelLoadError, match="neither a local folder nor a reachable Hub repository.*talkface convert"):
        avs.load_avhubert("nobody-has/this-avhubert-repo")


def test_load_from_hub_id(offline_hub_cache, model_folder):
    """A Hub id goes through huggingface_hub and from_pretrained (served here from an offline cache)."""
    offline_hub_cache("someone/avhubert-tiny", model_folder)
    model, extractor = avs.load_avhubert("someone/avhubert-tiny")
    assert type(model).__name__ == "AVHubertModel" and model.config.encoder_embed_dim == 32
    assert extractor.sampling_rate == 16000
    reference = avs.load_avhubert(model_folder)[0].state_dict()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=0)


def test_lip_reading_folder_works_for_scoring(tmp_path, clip, mouth_video):
    from talkface.models.avhubert import AVHubertForLipReading

    AVHubertForLipReading(tiny_config()).save_pretrained(tmp_path)
    model, _ = avs.load_avhubert(tmp_path)
    assert type(model).__name__ == "AVHubertModel"
    reader, _ = avs.load_avhubert(tmp_path, lip_reading=True)
    torch.testing.assert_close(model.state_dict()["encoder.layer_norm.weight"],
                               reader.avhubert.state_dict()["encoder.layer_norm.weight"])
    result = avs.score_avs(mouth_video, audio=clip["audio"], model=reader, metrics="avs_u")
    assert np.isfinite(result.scores["avs_u"])


def test_encoder_folder_is_refused_as_lip_reader(model_folder):
    with pytest.raises(ModelLoadError, match="without the lip-reading decoder"):
        avs.load_avhubert(model_folder, lip_reading=True)


def test_score_avs_needs_a_model(mouth_video):
    with pytest.raises(ModelLoadError, match="talkface convert avhubert"):
        avs.score_avs(mouth_video)
