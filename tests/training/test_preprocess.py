"""train/preprocess.py on a real clip and a broken file: layout, manifest, failure reporting, resuming."""

import importlib.util
import json

import numpy as np
import pytest

from talkface.training.data.dataset import TalkFaceDataset
from talkface.training.data.layout import FaceFrames, read_manifest, read_wav
from talkface.training.data.preprocessing import _interpolate_rows, _smooth_boxes, frame_to_crop_points
from tests.utils import REPO_ROOT, data_file

spec = importlib.util.spec_from_file_location("talkface_preprocess_script", REPO_ROOT / "train" / "preprocess.py")
preprocess = importlib.util.module_from_spec(spec)
spec.loader.exec_module(preprocess)


def test_helpers():
    values = np.array([[0.0], [0.0], [4.0], [0.0]])
    present = np.array([True, False, True, False])
    assert _interpolate_rows(values, present)[:, 0].tolist() == [0.0, 2.0, 4.0, 4.0]
    boxes = np.array([[0, 0, 10, 10], [3, 3, 13, 13], [6, 6, 16, 16]], dtype=float)
    assert _smooth_boxes(boxes, 3)[1].tolist() == [3, 3, 13, 13]
    assert _smooth_boxes(boxes, 3)[0].tolist() == [1.5, 1.5, 11.5, 11.5]
    # a box of 200 px resized to 100: frame x = x1 + 0.5 maps to crop 0.25 - 0.5 + ... (cv2 pixel centres)
    points = np.array([[[10.0, 20.0], [209.0, 219.0]]])
    crop = frame_to_crop_points(points, np.array([[10.0, 20.0, 210.0, 220.0]]), 100)
    np.testing.assert_allclose(crop[0], [[-0.25, -0.25], [99.25, 99.25]])


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory):
    pytest.importorskip("mediapipe")
    clip = data_file("clip07_edtalk_mouth_source_muxed.mkv")
    root = tmp_path_factory.mktemp("videos")
    (root / "speaker1").mkdir()
    (root / "speaker1" / "00001.mkv").symlink_to(clip)
    (root / "broken.mp4").write_bytes(b"this is not a video")
    (root / "notes.txt").write_text("ignored: not a video")
    out = tmp_path_factory.mktemp("preprocessed")
    code = preprocess.main(["--input-dir", str(root), "--output-dir", str(out), "--max-frames", "30",
                            "--workers", "2", "--quiet"])
    return root, out, code


def test_layout_and_manifest(preprocessed):
    root, out, code = preprocessed
    assert code == 1  # one video failed
    records = {r.id: r for r in read_manifest(out)}
    assert set(records) == {"speaker1/00001", "broken"}
    good, bad = records["speaker1/00001"], records["broken"]
    assert good.status == "ok" and good.num_frames == 30 and good.error is None
    assert bad.status == "failed" and "broken.mp4" in bad.error
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [f["id"] for f in failures] == ["broken"]
    assert json.loads((out / "preprocess_config.json").read_text())["face_size"] == 96

    folder = out / "videos" / "speaker1" / "00001"
    faces = FaceFrames(folder)
    assert len(faces) == 30 and faces[0].shape == (96, 96, 3) and faces[0].dtype == np.uint8
    affines = np.load(folder / "mouth_affines.npy")
    landmarks = np.load(folder / "landmarks.npy")
    assert affines.shape == (30, 2, 3) and landmarks.shape == (30, 68, 2)
    # the mouth patch is centred on the mouth: its centre maps near the mean lip landmark, inside the face crop
    centre = affines @ np.array([47.5, 47.5, 1.0])
    mouth = landmarks[:, 48:68].mean(axis=1)
    assert np.abs(centre - mouth).max() < 2.0
    assert (mouth[:, 1] > 48).all() and (mouth[:, 0] > 24).all() and (mouth[:, 0] < 72).all()
    waveform, rate = read_wav(folder / "audio.wav")
    assert rate == 16000 and abs(len(waveform) - 30 / 25 * 16000) <= 1
    assert (out / "videos" / "broken" / "error.json").is_file()


def test_dataset_reads_the_layout(preprocessed):
    _, out, _ = preprocessed
    dataset = TalkFaceDataset(out, split="all", context=True, context_frames=12,
                              avhubert_audio_features=lambda wav, n: np.zeros((n, 104), np.float32))
    assert len(dataset) == 1
    item = dataset[0]
    assert item["target_frames"].shape == (5, 3, 96, 96) and item["mel_chunks"].shape == (5, 1, 80, 16)
    assert (item["masked_frames"][:, :, 48:] == 0).all()
    assert item["context_frames"].shape == (12, 3, 96, 96) and item["context_affines"].shape == (12, 2, 3)
    start = item["window_start"]
    assert 0 <= start <= 12 - 5
    context_target = item["context_frames"][start:start + 5].float() / 255
    assert np.allclose(context_target.numpy(), item["target_frames"].numpy(), atol=1e-6)
    reference_start = dataset._window_starts(np.random.default_rng([0, 0, 0]), 30)[1]
    target_start = item["frame_start"]
    assert abs(reference_start - target_start) >= 5  # identity frames come from another part of the video
    # deterministic by (seed, epoch, index), different across epochs
    again = dataset[0]
    assert again["frame_start"] == item["frame_start"]
    starts = set()
    for epoch in range(6):
        dataset.set_epoch(epoch)
        starts.add(dataset[0]["frame_start"])
    assert len(starts) > 1


def test_resume_skips_done_and_failed_unless_retried(preprocessed):
    root, out, _ = preprocessed
    meta = out / "videos" / "speaker1" / "00001" / "meta.json"
    error = out / "videos" / "broken" / "error.json"
    meta_time, error_time = meta.stat().st_mtime_ns, error.stat().st_mtime_ns
    assert preprocess.main(["--input-dir", str(root), "--output-dir", str(out), "--max-frames", "30", "--quiet"]) == 1
    assert meta.stat().st_mtime_ns == meta_time and error.stat().st_mtime_ns == error_time
    assert len(read_manifest(out)) == 2
    assert preprocess.main(["--input-dir", str(root), "--output-dir", str(out), "--max-frames", "30", "--quiet",
                            "--retry-failed"]) == 1
    assert meta.stat().st_mtime_ns == meta_time and error.stat().st_mtime_ns != error_time


def test_usage_errors(tmp_path, capsys):
    assert preprocess.main(["--input-dir", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "o")]) == 2
    (tmp_path / "empty").mkdir()
    assert preprocess.main(["--input-dir", str(tmp_path / "empty"), "--output-dir", str(tmp_path / "o")]) == 2
    listing = tmp_path / "list.txt"
    listing.write_text("speaker9/00001\n")
    assert preprocess.main(["--input-dir", str(tmp_path / "empty"), "--output-dir", str(tmp_path / "o"),
                            "--file-list", str(listing)]) == 2
    assert "speaker9/00001" in capsys.readouterr().err
    assert preprocess.main(["--input-dir", str(tmp_path / "empty"), "--output-dir", str(tmp_path / "o"),
                            "--face-size", "64"]) == 2
