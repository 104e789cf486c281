"""--lse-protocol syncnet_python against the goldens of syncnet_python's whole procedure (syncnet_protocol.npz).

The goldens ran run_pipeline.py (fixed box instead of S3FD) and run_syncnet.py unmodified on clip05 and clip07, with
ffmpeg 5.1 and OpenCV 4.14's bundled FFmpeg. Every stage is compared (frame counts, JPEG checksums, scenes, the
track, the crop trajectory, the pre-XVID crops, the XVID decode, the frames SyncNet saw, the audio, MFCCs, features,
distances) and then LSE-D, LSE-C and the offset. The bit-exact stages need the same encoder builds; with others the
end-to-end test is skipped, naming the versions.
"""

import wave

import numpy as np
import pytest

from talkface.errors import MediaError, NoFaceError, TalkFaceUserError
from talkface.faces.syncnet_tracks import (
    ContentSceneDetector,
    crop_face,
    crop_trajectory,
    crop_window,
    scene_downscale_factor,
    track_shot,
)
from talkface.metrics import syncnet_protocol_media as steps
from talkface.metrics.sync import LSEScorer
from talkface.metrics.syncnet_protocol import SyncNetPythonOptions, SyncNetPythonProtocol, track_audio
from talkface.models.syncnet_lse import SyncNetLSEConfig, SyncNetLSEModel
from tests.utils import data_file, formula_state_dict, load_golden

CLIPS = {"c05": "clip05_retalking_face5_woman_glasses.mp4", "c07": "clip07_edtalk_mouth_source_muxed.mkv"}
GOLDEN_FFMPEG_LIBAVCODEC = "59.37.100"  # ffmpeg 5.1.9 of the golden runs
GOLDEN_OPENCV_LIBAVCODEC = (62, 28, 102)  # the FFmpeg OpenCV 4.14 bundles for its VideoWriter (= PyAV 18.1's)


@pytest.fixture(scope="module")
def golden():
    return load_golden("syncnet_protocol.npz")


@pytest.fixture(scope="module")
def scorer():
    model = SyncNetLSEModel(SyncNetLSEConfig()).eval()
    model.load_state_dict(formula_state_dict("syncnet_S_keys.json"))
    return LSEScorer(model, batch_size=20)


def _require_golden_builds():
    import av

    try:
        versions = steps.check_encoders()
    except TalkFaceUserError as err:
        pytest.skip(str(err))
    pyav = tuple(av.library_versions["libavcodec"])
    if versions["libavcodec"] != GOLDEN_FFMPEG_LIBAVCODEC or pyav != GOLDEN_OPENCV_LIBAVCODEC:
        pytest.skip(f"bit-exact stages need ffmpeg with libavcodec {GOLDEN_FFMPEG_LIBAVCODEC} and PyAV with "
                    f"libavcodec {GOLDEN_OPENCV_LIBAVCODEC}; found {versions['libavcodec']} and {pyav}")


@pytest.fixture(scope="module")
def protocol_runs(golden, scorer):
    _require_golden_builds()
    protocol = SyncNetPythonProtocol(scorer, options=SyncNetPythonOptions(keep_stages=True))
    return {tag: protocol.score_video(data_file(name), box=tuple(golden[f"{tag}_box"])) for tag, name in CLIPS.items()}


@pytest.mark.parametrize("tag", sorted(CLIPS))
def test_every_stage_equals_the_reference(protocol_runs, golden, tag):
    result = protocol_runs[tag]
    stages, g = result.stages, (lambda name: golden[f"{tag}_{name}"])
    # steps 1-3: re-encode (timestamp gap -> duplicated JPEG), JPEG frames at q 2, MP3-decoded 16 kHz audio
    assert stages["n_avi_frames"] == g("n_avi_frames") and stages["n_pyframes"] == g("n_pyframes")
    np.testing.assert_array_equal(stages["pyframes_sum"], g("pyframes_sum"))
    assert stages["n_audio_avi_16k"] == g("n_audio_avi_16k")
    # steps 5-6: one scene, one track over the scene's frames (the extra duplicated JPEGs are never used)
    assert [list(s) for s in stages["scenes"]] == [list(g("scene"))]
    assert len(stages["tracks"]) == 1 and not result.skipped_tracks
    track = stages["tracks"][0]
    assert list(track["first_last_len"]) == list(g("track_first_last_len"))
    np.testing.assert_array_equal(track["bbox"], g("track_bbox"))
    for name in ("x", "y", "s"):
        np.testing.assert_array_equal(track[f"crop_{name}"], g(f"crop_track_{name}"))
    windows = np.array([crop_window(x, y, s)[1] for x, y, s in zip(track["crop_x"], track["crop_y"], track["crop_s"])])
    np.testing.assert_array_equal(windows, g("derived_crop_window_padded_y0y1x0x1"))
    # step 7: the crops, then OpenCV's XVID encode (decoded to raw yuv420p)
    np.testing.assert_array_equal(track["crops_prexvid_sum"], g("crops_prexvid_sum"))
    np.testing.assert_array_equal(track["xvid_yuv_sum"], g("xvid_yuv_sum"))
    # step 10: the frames SyncNet saw after run_syncnet's default-quality JPEG round trip
    np.testing.assert_array_equal(track["frames_sum"], g("frames_sum"))
    np.testing.assert_array_equal(track["frames_bgr"][:60], g("frames_bgr"))
    # steps 8, 11, 12: the track's audio, MFCCs, features, distances
    np.testing.assert_array_equal(track["audio_int16"], g("audio_int16"))
    np.testing.assert_allclose(track["mfcc"], g("mfcc"), atol=1e-5, rtol=0)
    np.testing.assert_allclose(track["video_feat"], g("video_feat"), atol=1e-3, rtol=1e-5)
    np.testing.assert_allclose(track["audio_feat"], g("audio_feat"), atol=1e-3, rtol=1e-5)
    np.testing.assert_allclose(track["dists"], g("dists"), atol=1e-3, rtol=0)
    score = result.tracks[0]
    np.testing.assert_allclose(score.mean_distances, g("mean_dist"), atol=1e-3, rtol=0)
    assert score.num_windows == g("n_windows") and score.start_frame == 0


@pytest.mark.parametrize("tag", sorted(CLIPS))
def test_lse_equals_syncnet_python(protocol_runs, golden, tag):
    result = protocol_runs[tag]
    assert result.offset == golden[f"{tag}_offset"]
    assert abs(result.lse_d - golden[f"{tag}_min_dist"]) <= 1e-3 * golden[f"{tag}_min_dist"]
    assert abs(result.lse_c - golden[f"{tag}_conf"]) <= 1e-3 * golden[f"{tag}_conf"]
    # what run_syncnet printed, to its 3 decimals
    printed = golden[f"{tag}_printed_offset_mindist_conf"]
    assert (result.tracks[0].offset, round(result.lse_d, 3), round(result.lse_c, 3)) == tuple(printed)
    assert result.to_dict(curves=False)["protocol"] == "syncnet_python"
    assert result.versions["libavcodec"] == GOLDEN_FFMPEG_LIBAVCODEC


def test_an_s3fd_backend_sees_rgb_pyframes_at_the_reference_scale(golden, scorer):
    """Detection path: every JPEG goes to the backend in RGB with run_pipeline's scale and threshold; here the
    backend answers with the golden box, so the result must equal the fixed-box run."""
    _require_golden_builds()
    box = np.array([*golden["c05_box"], 0.99])

    class RecordingS3FD:
        calls = []

        def scored_boxes(self, frames, scale=None, threshold=None):
            self.calls.append((len(frames), scale, threshold, frames[0].copy()))
            return [box[None].copy() for _ in frames]

    backend = RecordingS3FD()
    result = SyncNetPythonProtocol(scorer, face_backend=backend).score_video(data_file(CLIPS["c05"]))
    # S3FD runs once per distinct JPEG of the tracked scene (the duplicate of step 2 and the JPEG past the scene
    # would give the same / unused faces)
    scene_end = golden["c05_scene"][1]
    assert sum(n for n, *_ in backend.calls) == len(set(golden["c05_derived_pyframes_src_index"][:scene_end]))
    assert {(scale, threshold) for _, scale, threshold, _ in backend.calls} == {(0.25, 0.9)}
    np.testing.assert_array_equal(backend.calls[0][3], golden["c05_pyframes_bgr"][0][..., ::-1])  # RGB
    assert result.offset == golden["c05_offset"]
    assert abs(result.lse_d - golden["c05_min_dist"]) <= 1e-3 * golden["c05_min_dist"]


def test_track_audio_is_ffmpeg_trim(tmp_path):
    """Step 8 in memory equals the reference's `ffmpeg -i audio.wav -ss %.3f -to %.3f` on PCM."""
    _require_golden_builds()
    rng = np.random.default_rng(0)
    audio = rng.integers(-20000, 20000, size=16000 * 6, dtype=np.int16)
    source = tmp_path / "audio.wav"
    with wave.open(str(source), "wb") as handle:
        handle.setnchannels(1), handle.setsampwidth(2), handle.setframerate(16000)
        handle.writeframes(audio.tobytes())
    for first, last in ((0, 121), (31, 74), (7, 149)):
        out = tmp_path / f"cut_{first}.wav"
        steps.run_ffmpeg(["-y", "-i", str(source), "-ss", f"{first / 25:.3f}", "-to", f"{(last + 1) / 25:.3f}",
                          str(out)], "cut", capture=False)
        with wave.open(str(out), "rb") as handle:
            expected = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
        np.testing.assert_array_equal(track_audio(audio, first, last), expected)


def test_jpeg_pipe_gives_the_image2_files(tmp_path):
    _require_golden_builds()
    clip = data_file(CLIPS["c07"])
    short = tmp_path / "short.avi"
    steps.run_ffmpeg(["-y", "-i", str(clip), "-t", "0.6", "-qscale:v", "2", str(short)], "cut", capture=False)
    (tmp_path / "jpg").mkdir()
    for qscale in (2, None):
        extra = ["-qscale:v", str(qscale)] if qscale else []
        steps.run_ffmpeg(["-y", "-i", str(short), *extra, "-threads", "1", "-f", "image2",
                          str(tmp_path / "jpg" / f"q{qscale}_%06d.jpg")], "write JPEGs", capture=False)
        files = sorted((tmp_path / "jpg").glob(f"q{qscale}_*.jpg"))
        assert steps.extract_jpegs(short, qscale, "pipe") == [f.read_bytes() for f in files]
    with pytest.raises(MediaError, match="truncated"):
        steps.split_jpeg_stream(files[0].read_bytes()[:-40])


def test_track_shot_follows_the_reference_rules():
    def faces(frames, box=(0, 0, 150, 150)):
        return [[{"frame": i, "bbox": list(box)}] if i in frames else [] for i in range(max(frames) + 1)]

    # more than min_track=100 detections: 101 kept, 100 dropped
    assert len(track_shot(faces(range(101)))[0]) == 1
    tracks, dropped = track_shot(faces(range(100)))
    assert not tracks and "100 detections" in dropped[0][2]
    # a gap of 26 frames ends the track (25 is allowed); interpolation fills the allowed gaps
    tracks, dropped = track_shot(faces(set(range(60)) | set(range(86, 201))))
    assert [(t.start, t.end) for t in tracks] == [(86, 200)] and dropped[0][:2] == (0, 59)
    tracks, _ = track_shot(faces(set(range(0, 200, 25)) | set(range(50, 150))))
    assert [(t.start, t.end, len(t.frames)) for t in tracks] == [(0, 175, 176)]
    # mean box side must exceed min_face_size
    assert not track_shot(faces(range(150), box=(0, 0, 100, 100)))[0]
    assert len(track_shot(faces(range(150), box=(0, 0, 100.5, 50)))[0]) == 1
    # the reference removes faces from a frame's list while iterating it: the face after a taken one is skipped,
    # so two overlapping faces per frame give two tracks (upstream run_pipeline.track_shot gives the same)
    quirk = [[{"frame": i, "bbox": [10 + i * 0.1, 10, 210 + i * 0.1, 210]},
              {"frame": i, "bbox": [20 + i * 0.1, 10, 220 + i * 0.1, 210]}] for i in range(120)]
    tracks, _ = track_shot(quirk)
    assert [(t.start, t.end, len(t.frames)) for t in tracks] == [(0, 119, 120)] * 2
    assert [t.boxes[0, 0] for t in tracks] == [10.0, 20.0]


def test_scene_detector_is_content_detector_0_5_1():
    rng = np.random.default_rng(1)
    scene_a, scene_b = rng.integers(0, 255, (2, 120, 420, 3), dtype=np.uint8)
    detector = ContentSceneDetector()
    for index in range(60):
        frame = scene_a if index < 20 or 30 <= index < 35 else scene_b
        detector.push(frame)  # a cut at 20 (the first may be anywhere), none at 30 (10 frames later), one at 35
    assert detector.cuts == [20, 35]
    assert detector.scenes()[0] == (0, 20) and detector.scenes()[-1][1] == 60
    assert [scene_downscale_factor(w) for w in (256, 399, 400, 524, 640, 1280, 1920, 3840)] == [1, 1, 2, 2, 3, 5, 6, 12]


def test_crop_face_equals_padding_the_whole_frame():
    import cv2

    rng = np.random.default_rng(2)
    frame = rng.integers(0, 255, (180, 240, 3), dtype=np.uint8)
    for box in ([60, 40, 160, 150], [-30, -20, 80, 90], [150, 100, 300, 260], [5, 5, 40, 30]):
        trajectory = crop_trajectory(np.array([box] * 13, dtype=np.float64))
        x, y, s = trajectory.x[6], trajectory.y[6], trajectory.s[6]
        pad, (y0, y1, x0, x1) = crop_window(x, y, s)
        padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), "constant", constant_values=(110, 110))
        np.testing.assert_array_equal(crop_face(frame, x, y, s), cv2.resize(padded[y0:y1, x0:x1], (224, 224)))


def test_protocol_errors(tmp_path, scorer, monkeypatch):
    silent = tmp_path / "silent.mp4"
    from talkface import media

    with media.VideoWriter(silent, fps=25, width=64, height=64) as writer:
        for _ in range(10):
            writer.write(np.zeros((64, 64, 3), np.uint8))
    protocol = SyncNetPythonProtocol(scorer)
    with pytest.raises(MediaError, match="no audio"):
        protocol.score_video(silent, box=(0, 0, 60, 60))
    clip = data_file(CLIPS["c07"])
    short = tmp_path / "short.mp4"
    steps.run_ffmpeg(["-y", "-i", str(clip), "-t", "2", str(short)], "cut", capture=False)
    with pytest.raises(NoFaceError, match="min_track=100"):
        protocol.score_video(short, box=(60, 40, 200, 200))
    with pytest.raises(TalkFaceUserError, match="--box"):
        protocol.score_video(short)  # no S3FD and no box
    with pytest.raises(TalkFaceUserError, match="X2 > X1"):
        protocol.score_video(short, box=(10, 10, 5, 20))
    with pytest.raises(MediaError, match="not found"):
        protocol.score_video(tmp_path / "missing.mp4", box=(0, 0, 10, 10))
    monkeypatch.setenv("TALKFACE_FFMPEG", str(tmp_path / "no-ffmpeg"))
    steps.ffmpeg_versions.cache_clear()
    with pytest.raises(TalkFaceUserError, match="TALKFACE_FFMPEG"):
        protocol.score_video(short, box=(60, 40, 200, 200))
    steps.ffmpeg_versions.cache_clear()


def test_opencv_xvid_settings():
    settings = steps.opencv_xvid_settings(224, 224, 25)
    assert settings["bit_rate"] == 2 * 25 * 224 * 224 and settings["qmin"] == 3 and settings["gop_size"] == 12
    assert settings["codec_tag"] == "XVID" and settings["thread_count"] == 1


@pytest.fixture(scope="module")
def syncnet_folder(tmp_path_factory, scorer):
    from talkface.models.syncnet_lse import SyncNetLSEFeatureExtractor

    folder = tmp_path_factory.mktemp("syncnet_lse")
    scorer.model.save_pretrained(folder)
    SyncNetLSEFeatureExtractor().save_pretrained(folder)
    return folder


def test_evaluate_and_score_commands(golden, syncnet_folder, tmp_path, capsys, monkeypatch):
    import json
    import shutil

    from talkface.cli import main

    _require_golden_builds()
    monkeypatch.delenv("TALKFACE_S3FD", raising=False)
    generated = tmp_path / "generated"
    generated.mkdir()
    shutil.copy(data_file(CLIPS["c05"]), generated / "clip05.mp4")
    box = [str(v) for v in golden["c05_box"]]
    argv = ["evaluate", "--generated", str(generated), "--metrics", "lse", "--syncnet", str(syncnet_folder),
            "--lse-protocol", "syncnet_python", "--box", *box, "--output", str(tmp_path / "report"), "--quiet",
            "--no-plots"]
    assert main(argv) == 0
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    values = results["files"][0]["values"]
    assert values["offset"] == golden["c05_offset"]
    assert values["lse_d"] == pytest.approx(float(golden["c05_min_dist"]), rel=1e-3)
    assert values["lse_c"] == pytest.approx(float(golden["c05_conf"]), rel=1e-3)
    assert results["files"][0]["details"]["lse"]["protocol"] == "syncnet_python"
    # the same command again reads the cache; another box is another cache key
    cached = tmp_path / "report" / "cache"
    before = {p.name: p.stat().st_mtime_ns for p in cached.iterdir()}
    assert main(argv) == 0
    assert {p.name: p.stat().st_mtime_ns for p in cached.iterdir()} == before
    capsys.readouterr()

    out = tmp_path / "scores.json"
    assert main(["score", str(generated / "clip05.mp4"), "--metrics", "lse", "--syncnet", str(syncnet_folder),
                 "--lse-protocol", "syncnet_python", "--box", *box, "--output", str(out)]) == 0
    assert "lse_d" in capsys.readouterr().out
    scores = json.loads(out.read_text())["videos"][0]["scores"]
    assert scores["lse_d"] == pytest.approx(values["lse_d"], rel=1e-6) and scores["offset"] == values["offset"]

    # without a box, the protocol needs S3FD: lse cannot be computed, exit 2 saying how to get it
    assert main(argv[:argv.index("--box")] + ["--output", str(tmp_path / "report2"), "--quiet"]) == 2
    assert "sfd_face.pth" in capsys.readouterr().err and not (tmp_path / "report2").exists()


@pytest.mark.parametrize("argv,needle", [
    (["score", "{clip}", "--metrics", "lse", "--syncnet", "{syncnet}", "--box", "1", "2", "30", "40"],
     "--lse-protocol syncnet_python"),
    (["score", "{clip}", "--metrics", "lsd", "--syncnet", "{syncnet}"], "unknown metric"),
    (["score", "{clip}", "--metrics", "lse", "--lse-protocol", "syncnet_python", "--syncnet", "{syncnet}", "--box",
      "5", "5", "1", "1"], "X2 > X1"),
    (["evaluate", "--generated", "{folder}", "--metrics", "lse", "--syncnet", "{syncnet}", "--box", "1", "2", "3",
      "4", "--output", "{tmp}/r"], "--lse-protocol syncnet_python"),
])
def test_protocol_flag_errors_are_one_line(argv, needle, syncnet_folder, tmp_path, capsys):
    from talkface.cli import main

    names = {"clip": data_file(CLIPS["c07"]), "syncnet": syncnet_folder, "folder": data_file(CLIPS["c07"]).parent,
             "tmp": tmp_path}
    assert main([a.format(**names) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_score_lse_without_a_syncnet(tmp_path, capsys, monkeypatch):
    from talkface.cli import main

    monkeypatch.delenv("TALKFACE_SYNCNET_LSE", raising=False)
    assert main(["score", str(data_file(CLIPS["c07"])), "--metrics", "lse"]) == 2
    assert "syncnet_v2.model" in capsys.readouterr().err


def test_score_finds_faces_with_the_s3fd_folder(syncnet_folder, tmp_path, capsys, monkeypatch):
    """Without --box, `score` loads the --s3fd folder and runs it at run_pipeline's threshold 0.9 (not the folder's
    0.5): formula weights score every anchor below 0.61, so S3FD finds no face and lse is skipped, saying why."""
    from talkface.cli import main
    from talkface.models.s3fd import S3FDConfig, S3FDFeatureExtractor, S3FDModel

    _require_golden_builds()
    monkeypatch.delenv("TALKFACE_S3FD", raising=False)
    folder = tmp_path / "s3fd"
    model = S3FDModel(S3FDConfig())
    model.load_state_dict(formula_state_dict("s3fd_keys.json"))
    model.save_pretrained(folder)
    S3FDFeatureExtractor(scales=[0.25], face_threshold=0.5).save_pretrained(folder)
    clip = data_file(CLIPS["c05"])
    argv = ["score", str(clip), "--metrics", "lse", "--syncnet", str(syncnet_folder), "--lse-protocol",
            "syncnet_python"]
    assert main(argv) == 2  # no S3FD: unavailable, with the way to get it
    assert "sfd_face.pth" in capsys.readouterr().err
    assert main(argv + ["--s3fd", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (transformers' loading progress bars come before)
    assert err.startswith("talkface: error: lse of") and "no face track" in err and "syncnet_python's rules" in err
