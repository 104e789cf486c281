"""LSE-D / LSE-C (talkface.metrics.sync): golden parity with syncnet_python, the vectorised math, face tracks."""

import numpy as np
import pytest
import torch

from talkface.errors import MediaError, NoFaceError
from talkface.faces.backends import FaceBackend, FaceDetection
from talkface.metrics.sync import (
    FaceTrack,
    LSEScorer,
    TrackingOptions,
    aggregate_lse,
    audio_to_int16_scale,
    crop_track,
    find_face_tracks,
    lse_from_distances,
    lse_from_embeddings,
    scene_cuts,
    sync_distances,
    track_faces,
)
from talkface.models.syncnet_lse import SyncNetLSEConfig, SyncNetLSEModel
from talkface.models.syncnet_lse.convert_syncnet_lse_original_checkpoint import convert_syncnet_lse_state_dict
from tests.utils import data_file, formula_state_dict, load_golden


def reference_pdist(video, audio, vshift):
    """syncnet_python's calc_pdist, re-written as the plain loop it is (for checking the vectorised version)."""
    padded = torch.nn.functional.pad(audio, (0, 0, vshift, vshift))
    rows = []
    for i in range(len(video)):
        rows.append(torch.nn.functional.pairwise_distance(video[[i], :].repeat(2 * vshift + 1, 1),
                                                          padded[i : i + 2 * vshift + 1, :]))
    return torch.stack(rows)


def tiny_scorer(**kwargs):
    torch.manual_seed(0)
    config = SyncNetLSEConfig(audio_channels=[4, 4, 8, 8, 8, 8], video_channels=[4, 4, 8, 8, 8, 8],
                              fc_hidden_size=8, embedding_size=6)
    return LSEScorer(SyncNetLSEModel(config).eval(), **kwargs)


class TestLSEMath:
    @pytest.mark.parametrize("num_windows,vshift", [(45, 15), (7, 15), (1, 15), (40, 3), (600, 15)])
    def test_vectorised_distances_equal_the_reference_loop(self, num_windows, vshift):
        video, audio = torch.randn(num_windows, 16) * 5, torch.randn(num_windows, 16) * 5
        expected = reference_pdist(video, audio, vshift)
        torch.testing.assert_close(sync_distances(video, audio, vshift), expected, atol=1e-5, rtol=1e-6)

    def test_offset_sign_and_values(self):
        # audio window i carries the content of video window i + 3: the audio leads by 3 frames -> offset +3
        content = torch.randn(60, 8)
        video, audio = content[:50], content[3:53]
        score = lse_from_embeddings(video, audio, vshift=15)
        assert score.offset == 3
        mean = reference_pdist(video, audio, 15).mean(0)
        assert score.lse_d == pytest.approx(float(mean.min()), abs=1e-5)
        assert score.lse_c == pytest.approx(float(mean.median() - mean.min()), abs=1e-5)
        # the matching windows are 1e-6 * sqrt(dim) apart
        assert score.lse_d < float(mean.median()) and score.lse_c > 0
        assert score.framewise_distance.shape == score.framewise_confidence.shape == (50,)
        np.testing.assert_allclose(score.framewise_confidence, float(mean.median()) - score.framewise_distance,
                                   atol=1e-5)

    def test_aggregate_is_the_mean_over_videos(self):
        scores = [lse_from_distances(torch.rand(10, 31) + i) for i in range(3)]
        agg = aggregate_lse(scores)
        assert agg["lse_d"] == pytest.approx(np.mean([s.lse_d for s in scores]))
        assert agg["lse_c"] == pytest.approx(np.mean([s.lse_c for s in scores]))
        assert agg["num_videos"] == 3

    def test_int16_conversion(self):
        ints = np.array([-32768, -1, 0, 1, 32767], dtype=np.int16)
        assert np.array_equal(audio_to_int16_scale(ints.astype(np.float32) / 32768), ints)
        assert np.array_equal(audio_to_int16_scale(ints), ints)
        assert audio_to_int16_scale(np.array([1.5, -1.5]))[0] == 32767

    def test_score_round_trips_through_dict(self):
        score = lse_from_distances(torch.rand(12, 31))
        again = type(score).from_dict(score.to_dict())
        assert again.lse_d == score.lse_d and again.offset == score.offset
        np.testing.assert_array_equal(again.framewise_confidence, score.framewise_confidence)


class TestLSEGolden:
    """Golden outputs of the unmodified SyncNetInstance.evaluate (golden/README.md section 1)."""

    def test_matches_syncnet_python(self):
        golden = load_golden("syncnet_lse.npz")
        config = SyncNetLSEConfig()
        model = SyncNetLSEModel(config).eval()
        model.load_state_dict(convert_syncnet_lse_state_dict(formula_state_dict("syncnet_S_keys.json"), config))
        scorer = LSEScorer(model, vshift=15)
        video, audio = scorer.embed(golden["frames_bgr"], golden["audio_int16"], channel_order="bgr")
        assert video.shape == audio.shape == (45, 1024)
        np.testing.assert_allclose(video.numpy(), golden["video_feat"], atol=1e-3, rtol=1e-5)
        np.testing.assert_allclose(audio.numpy(), golden["audio_feat"], atol=1e-3, rtol=1e-5)
        np.testing.assert_allclose(sync_distances(video, audio).numpy(), golden["dists"], atol=1e-3, rtol=1e-5)
        score = lse_from_embeddings(video, audio, vshift=15)
        np.testing.assert_allclose(score.mean_distances, golden["mean_dist"], atol=1e-3, rtol=1e-5)
        assert score.offset == int(golden["offset"]) == -15
        assert score.lse_d == pytest.approx(float(golden["min_dist"]), abs=1e-3)
        assert score.lse_c == pytest.approx(float(golden["conf"]), abs=1e-3)

    def test_math_on_golden_features_is_exact(self):
        golden = load_golden("syncnet_lse.npz")
        video, audio = torch.from_numpy(golden["video_feat"]), torch.from_numpy(golden["audio_feat"])
        np.testing.assert_array_equal(sync_distances(video, audio).numpy(), golden["dists"])
        score = lse_from_embeddings(video, audio)
        assert score.offset == int(golden["offset"])
        assert score.lse_d == float(golden["min_dist"])
        assert score.lse_c == pytest.approx(float(golden["conf"]), abs=1e-6)


class TestLSEScorer:
    def test_window_count_and_batching(self):
        frames = np.random.randint(0, 255, (23, 64, 64, 3), dtype=np.uint8)
        audio = (np.random.randn(16000) * 3000).astype(np.int16)  # 1 s -> 25 frames of audio
        one = tiny_scorer(batch_size=64).score_frames(frames, audio)
        chunked = tiny_scorer(batch_size=4).score_frames(frames, audio)
        assert one.num_windows == 23 - 5
        np.testing.assert_allclose(one.mean_distances, chunked.mean_distances, atol=1e-5)

    def test_folded_video_stream_equals_the_model(self):
        torch.manual_seed(0)
        config = SyncNetLSEConfig(audio_channels=[4, 4, 8, 8, 8, 8], video_channels=[4, 4, 8, 8, 8, 8],
                                  fc_hidden_size=8, embedding_size=6)
        model = SyncNetLSEModel(config).eval()
        for module in model.modules():  # non-trivial batch-norm statistics, so folding matters
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 1.5)
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.normal_()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        scorer = LSEScorer(model)
        frames = np.random.randint(0, 255, (14, 224, 224, 3), dtype=np.uint8)
        audio = (np.random.randn(16000) * 3000).astype(np.int16)
        folded_video, folded_audio = scorer.embed(frames, audio)
        scorer.fold_batch_norm = False
        plain_video, plain_audio = scorer.embed(frames, audio)
        assert folded_video.shape == (9, 6)
        torch.testing.assert_close(folded_video, plain_video, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(folded_audio, plain_audio, atol=1e-4, rtol=1e-4)
        assert not torch.equal(folded_audio, plain_audio) or not torch.equal(folded_video, plain_video)
        # the scorer folded a copy: the model it was given keeps its batch norms and weights
        assert sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()) == 14
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        folded_model, _ = scorer._folded_streams()
        assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded_model.modules())

    def test_with_options_shares_the_inference_copy(self):
        scorer = tiny_scorer(vshift=3, batch_size=8)
        other = scorer.with_options(vshift=5, batch_size=2)
        assert (other.vshift, other.batch_size, scorer.vshift, scorer.batch_size) == (5, 2, 3, 8)
        assert other.model is scorer.model and other._folded_streams() is scorer._folded_streams()
        with pytest.raises(ValueError, match="vshift"):
            scorer.with_options(vshift=-1)

    def test_float_audio_is_scored_on_the_int16_scale(self):
        golden = load_golden("syncnet_lse.npz")
        scorer = tiny_scorer()
        as_int = scorer.score_frames(golden["frames_bgr"][:20], golden["audio_int16"], channel_order="bgr")
        as_float = scorer.score_frames(golden["frames_bgr"][:20], golden["audio_int16"] / 32768.0,
                                       channel_order="bgr")
        np.testing.assert_array_equal(as_int.mean_distances, as_float.mean_distances)

    def test_too_short_clip_is_a_user_error(self):
        with pytest.raises(MediaError, match="too short"):
            tiny_scorer().score_frames(np.zeros((5, 64, 64, 3), np.uint8), np.zeros(16000, np.int16))

    def test_wrong_sample_rate_is_refused(self):
        with pytest.raises(MediaError, match="16000"):
            tiny_scorer().score_frames(np.zeros((30, 64, 64, 3), np.uint8), np.zeros(44100, np.int16), 44100)

    def test_precropped_video_file(self):
        scorer = tiny_scorer()
        result = scorer.score_video(data_file("clip07_edtalk_mouth_source_muxed.mkv"), face_mode="precropped")
        assert len(result.tracks) == 1
        assert result.tracks[0].num_windows == 250 - 5
        assert np.isfinite(result.lse_d) and result.lse_c >= 0


class FixedBackend(FaceBackend):
    """A stand-in face backend returning given boxes for every frame."""

    def __init__(self, boxes):
        self.boxes = [np.asarray(b, dtype=np.float32) for b in boxes]
        self.calls = 0

    def _detect(self, frame, landmarks):
        self.calls += 1
        scale = frame.shape[1] / 400  # boxes are given for 400-pixel-wide frames
        return [FaceDetection(box=b * scale, landmarks=None, score=1.0) for b in self.boxes]



class TestFaceTracks:
    def test_scene_cut_detection(self):
        frames = [np.full((90, 120, 3), 40, np.uint8)] * 30 + [np.full((90, 120, 3), 220, np.uint8)] * 30
        frames = [f.copy() for f in frames]
        for f in frames[30:]:
            f[..., 0] = 10  # a different colour: a cut at 30
        assert scene_cuts(frames) == [0, 30]
        assert scene_cuts(frames[:40], min_scene_frames=15) == [0, 30]
        assert scene_cuts(frames[:29]) == [0]

    def test_tracks_follow_overlap_and_split_on_jumps(self):
        options = TrackingOptions(min_track_frames=6, min_face_size=10)
        box_a, box_b = np.array([10.0, 10, 60, 60]), np.array([200.0, 10, 250, 60])
        detections = {i: [box_a + i] for i in range(0, 40, 5)}  # slowly moving face
        detections.update({i: [box_b] for i in range(40, 80, 5)})  # jumps elsewhere: new track
        tracks, dropped = track_faces(detections, 0, 80, options)
        assert [(t.start, t.end) for t in tracks] == [(0, 35), (40, 75)]
        np.testing.assert_allclose(tracks[0].boxes[7], box_a + 7)  # interpolated between detections 5 and 10
        assert not dropped
        short, dropped = track_faces({0: [box_a], 3: [box_a]}, 0, 4, options)
        assert short == [] and "min_track_frames" in dropped[0][2]

    def test_crop_matches_padding_the_whole_frame(self):
        options = TrackingOptions(smoothing_kernel=1)
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 255, (3, 120, 160, 3), dtype=np.uint8)
        boxes = np.array([[20.0, 30, 70, 90], [100, 70, 158, 119], [0, 0, 40, 40]])
        crops = crop_track(frames, FaceTrack(start=0, boxes=boxes), options, size=224)
        import cv2

        for k, (x1, y1, x2, y2) in enumerate(boxes):  # the reference's recipe, literally
            s = max(y2 - y1, x2 - x1) / 2
            y, x, cs = (y1 + y2) / 2, (x1 + x2) / 2, 0.4
            pad = int(s * (1 + 2 * cs))
            padded = np.pad(frames[k], ((pad, pad), (pad, pad), (0, 0)), "constant", constant_values=110)
            my, mx = y + pad, x + pad
            face = padded[int(my - s) : int(my + s * (1 + 2 * cs)), int(mx - s * (1 + cs)) : int(mx + s * (1 + cs))]
            np.testing.assert_array_equal(crops[k], cv2.resize(face, (224, 224)))

    def test_find_face_tracks_detects_on_a_stride_and_at_cuts(self):
        frames = np.zeros((60, 200, 400, 3), np.uint8)
        frames[30:] = 200
        backend = FixedBackend([[100, 40, 200, 150]])
        options = TrackingOptions(detect_every=5, detect_max_side=200, min_face_size=10)
        tracks, dropped = find_face_tracks(frames, options, backend=backend)
        assert [(t.start, t.end) for t in tracks] == [(0, 29), (30, 59)]  # split at the cut
        assert backend.calls == 14  # 0,5,..,25,29 and 30,..,55,59
        np.testing.assert_allclose(tracks[0].boxes[0], [100, 40, 200, 150], atol=1e-3)  # scaled back

    def test_track_mode_without_faces_is_reported(self, tmp_path):
        scorer = tiny_scorer()
        with pytest.raises(NoFaceError, match="no face track"):
            scorer.score_video(data_file("clip07_edtalk_mouth_source_muxed.mkv"), face_mode="track",
                               face_backend=FixedBackend([]))

    def test_track_mode_on_a_real_clip(self):
        pytest.importorskip("mediapipe")
        scorer = tiny_scorer()
        options = TrackingOptions(min_track_frames=25)
        result = scorer.score_video(data_file("clip05_retalking_face5_woman_glasses.mp4"), face_mode="track",
                                    tracking=options)
        assert len(result.tracks) >= 1
        longest = max(result.tracks, key=lambda t: t.num_windows)
        assert longest.num_windows >= 100  # 122 frames, one face throughout
        assert np.isfinite(result.lse_d)
