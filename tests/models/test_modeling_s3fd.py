"""S3FD: keys, golden parity of the network and of the reference post-processing, batching, converter, face backend.

The golden file (../shared/reference/golden/s3fd.npz) holds syncnet_python's own `S3FD.detect_faces` run on three
real frames at scales 0.25 and 1 with formula weights (conf_th 0.5, since formula weights never reach 0.9).
"""

import json

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoModel

from talkface.cli import main as talkface_main
from talkface.errors import ModelLoadError, TalkFaceUserError
from talkface.faces.backends import S3FDFaceBackend, get_face_backend
from talkface.models.s3fd import S3FDConfig, S3FDDetector, S3FDFeatureExtractor, S3FDModel
from talkface.models.s3fd.convert_s3fd_original_checkpoint import convert_checkpoint
from talkface.models.s3fd.feature_extraction_s3fd import greedy_nms, numpy_nms
from tests.models.model_tester import ModelTesterMixin
from tests.utils import formula_state_dict, golden_file, load_golden

MAP_ATOL = 1e-5  # s3fd_keys README: maps/output atol 1e-5 (the issue asks 1e-4), boxes 1e-3 px, same box count
BOX_ATOL = 1e-3
TAGS = ("c05f000", "c05f060", "c07f100")
RUNS = [(tag, 0.25, "s025") for tag in TAGS] + [("c07f100", 1.0, "s100"),
                                                 pytest.param("c05f000", 1.0, "s100", marks=pytest.mark.slow),
                                                 pytest.param("c05f060", 1.0, "s100", marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def golden():
    return load_golden("s3fd.npz")


@pytest.fixture(scope="module")
def model():
    model = S3FDModel(S3FDConfig()).eval()
    model.load_state_dict(formula_state_dict("s3fd_keys.json"), strict=True)
    return model


class TestS3FDModel(ModelTesterMixin):
    """The full-size network (its VGG-16 trunk has no width settings) on 64x64 inputs."""

    model_class = S3FDModel
    output_names = ("box_offsets", "scores", "boxes")
    bad_configs = (
        ({"anchor_sizes": [16, 32, 64]}, "anchor_sizes"),
        ({"anchor_strides": [4, 8, 16, 32, 64, 0]}, "anchor_strides"),
        ({"box_variances": [0.1, 0.0]}, "box_variances"),
        ({"l2_norm_scales": [10.0, 8.0]}, "l2_norm_scales"),
        ({"max_out_background": 0}, "max_out_background"),
        ({"l2_norm_eps": 0.0}, "l2_norm_eps"),
    )
    batch_size = 2

    def get_config(self, **overrides):
        return S3FDConfig(**overrides)

    def get_inputs(self, batch_size, seed=0):
        generator = torch.Generator().manual_seed(seed)
        return {"pixel_values": torch.rand(batch_size, 3, 64, 64, generator=generator) * 255 - 117}

    def expected_shapes(self, batch_size):
        # anchors of a 64x64 input: 16x16 + 8x8 + 4x4 + 2x2 + 1x1 + 1x1 cells (strides 4 ... 128) = 342
        return {"box_offsets": (batch_size, 342, 4), "scores": (batch_size, 342, 2), "boxes": (batch_size, 342, 4)}


def test_keys_and_shapes_match_the_original():
    with torch.device("meta"):
        model = S3FDModel(S3FDConfig())
    expected = json.loads(golden_file("s3fd_keys.json").read_text())
    state = model.state_dict()
    assert [k for k, _ in expected] == list(state)
    assert all(list(state[k].shape) == shape for k, shape in expected)


def test_fresh_l2_norm_scales_are_the_reference_init():
    model = S3FDModel(S3FDConfig())
    assert torch.all(model.L2Norm3_3.weight == 10) and torch.all(model.L2Norm5_3.weight == 5)



def assert_same_detections(found, expected, atol):
    """Detect's (classes, top_k, 5) rows equal: scores in the same order; rows equal where their neighbours' scores
    are farther apart than `atol`, and within a run of near-tied scores equal as a set."""
    assert found.shape == expected.shape
    np.testing.assert_allclose(found[..., 0], expected[..., 0], atol=atol, rtol=0)
    for cls in range(expected.shape[0]):
        rows, want = found[cls], expected[cls]
        start = 0
        while start < len(want):  # runs of consecutive rows whose golden scores are within atol of each other
            stop = start + 1
            while stop < len(want) and abs(want[stop, 0] - want[stop - 1, 0]) < atol:
                stop += 1
            got_run, want_run = rows[start:stop], want[start:stop]
            distance = np.abs(got_run[:, None, :] - want_run[None, :, :]).max(axis=2)
            assert (distance.min(axis=0) <= atol).all() and (distance.min(axis=1) <= atol).all(), \
                f"class {cls} rows {start}..{stop - 1} differ"
            start = stop


@pytest.mark.parametrize("tag,scale,name", RUNS)
def test_golden_parity(golden, model, tag, scale, name):
    prefix = f"{tag}_{name}_"
    extractor = S3FDFeatureExtractor()
    pixel_values = extractor(golden[f"{tag}_image_rgb"], scale=scale)["pixel_values"]
    np.testing.assert_array_equal(pixel_values[0].numpy(), golden[prefix + "input"])  # resize + means, exact
    with torch.no_grad():
        outputs = model(pixel_values)
    for level in range(6):
        np.testing.assert_allclose(outputs.loc_maps[level][0].numpy(), golden[prefix + f"loc{level}"], atol=MAP_ATOL,
                                   rtol=0)
        np.testing.assert_allclose(outputs.conf_maps[level][0].numpy(), golden[prefix + f"conf{level}"],
                                   atol=MAP_ATOL, rtol=0)
    np.testing.assert_array_equal(outputs.anchors.numpy(), golden[prefix + "priors"])
    np.testing.assert_allclose(outputs.box_offsets[0].numpy(), golden[prefix + "det_loc"], atol=MAP_ATOL, rtol=0)
    np.testing.assert_allclose(outputs.scores[0].numpy(), golden[prefix + "det_conf_softmax"], atol=1e-6, rtol=0)
    # Detect: the same rows in the same order, except that rows whose scores differ by less than float32 round-off
    # may swap places (two anchors 3e-8 apart swap on some CPUs: the sort sees the round-off of the conv kernels)
    detections = extractor.post_process(outputs)[0].numpy()
    assert_same_detections(detections, golden[prefix + "output"], atol=MAP_ATOL)
    faces = extractor.merge_faces([extractor.face_rows(torch.from_numpy(detections), golden[f"{tag}_image_rgb"].shape[:2],
                                                       threshold=float(golden["conf_th_used"]))])
    expected = golden[prefix + "bboxes"]
    assert faces.shape == expected.shape and faces.dtype == np.float64
    np.testing.assert_allclose(faces, expected, atol=BOX_ATOL, rtol=0)


def test_detect_faces_batched_equals_the_reference_per_image(golden, model):
    images = [golden[f"{tag}_image_rgb"] for tag in TAGS]  # two 524 px frames and one 256 px frame: two batches
    detector = S3FDDetector(model)
    faces = detector.detect_faces(images, scales=[0.25], threshold=0.5, batch_size=2)
    for tag, found in zip(TAGS, faces):
        expected = golden[f"{tag}_s025_bboxes"]
        assert found.shape == expected.shape
        np.testing.assert_allclose(found, expected, atol=BOX_ATOL, rtol=0)
    # every box above the threshold, in the final NMS's order (descending score)
    assert all((f[:, 4] > 0.5).all() and np.all(np.diff(f[:, 4]) <= 0) for f in faces)
    assert [len(f) for f in detector.detect_faces(images, scales=[0.25], threshold=0.99)] == [0, 0, 0]


def test_two_scales_merge_through_the_final_nms(golden, model):
    image = golden["c07f100_image_rgb"]
    detector = S3FDDetector(model)
    merged = detector.detect_faces([image], scales=[0.25, 1.0], threshold=0.5)[0]
    both = np.concatenate([golden["c07f100_s025_bboxes"], golden["c07f100_s100_bboxes"]])
    expected = both[numpy_nms(both, 0.1)]
    np.testing.assert_allclose(merged, expected, atol=BOX_ATOL, rtol=0)
    assert len(merged) < len(both)


def test_greedy_nms_keeps_the_best_and_drops_overlaps():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.5]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert greedy_nms(boxes, scores, overlap=0.3, top_k=5000, max_keep=750).tolist() == [3, 2]
    assert greedy_nms(boxes, scores, overlap=0.3, top_k=2, max_keep=750).tolist() == [3]  # only the 2 best
    assert greedy_nms(boxes, scores, overlap=0.99, top_k=5000, max_keep=2).tolist() == [3, 0]
    assert greedy_nms(boxes[:0], scores[:0], 0.3, 10, 10).tolist() == []
    rows = np.concatenate([boxes.numpy(), scores.numpy()[:, None]], axis=1).astype(np.float64)
    assert numpy_nms(rows, 0.1).tolist() == [3, 2]


def test_feature_extractor_checks_its_input():
    extractor = S3FDFeatureExtractor()
    with pytest.raises(ValueError, match="same size"):
        extractor([np.zeros((32, 32, 3), np.uint8), np.zeros((40, 32, 3), np.uint8)])
    with pytest.raises(ValueError, match="RGB"):
        extractor([np.zeros((32, 32), np.uint8)])
    with pytest.raises(ValueError, match="scales"):
        S3FDFeatureExtractor(scales=[0])


def test_save_load_round_trip(tmp_path, model):
    model.save_pretrained(tmp_path)
    S3FDFeatureExtractor(scales=[0.25], face_threshold=0.9).save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    extractor = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(loaded, S3FDModel) and isinstance(extractor, S3FDFeatureExtractor)
    assert extractor.scales == [0.25] and extractor.face_threshold == 0.9
    pixels = torch.rand(1, 3, 64, 64) * 255 - 117
    with torch.no_grad():
        assert torch.equal(model(pixels).scores, loaded(pixels).scores)


def test_converter_through_the_cli(tmp_path, golden):
    original = formula_state_dict("s3fd_keys.json")
    checkpoint = tmp_path / "sfd_face.pth"
    torch.save(original, checkpoint)
    out = tmp_path / "s3fd"
    assert talkface_main(["convert", "s3fd", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= {p.name for p in out.iterdir()}
    detector = S3FDDetector.from_pretrained(out)
    for key, tensor in detector.model.state_dict().items():
        assert torch.equal(tensor, original[key]), key
    found = detector.detect_faces([golden["c07f100_image_rgb"]], scales=[0.25], threshold=0.5)[0]
    np.testing.assert_allclose(found, golden["c07f100_s025_bboxes"], atol=BOX_ATOL, rtol=0)


def test_converter_strips_wrappers_and_refuses_other_files(tmp_path):
    original = formula_state_dict("s3fd_keys.json")
    wrapped = tmp_path / "wrapped.pth"
    torch.save({f"module.{k}": v for k, v in original.items()}, wrapped)
    model, extractor = convert_checkpoint(wrapped)
    assert torch.equal(model.conf[5].weight, original["conf.5.weight"])
    face_alignment_like = tmp_path / "s3fd-619a316812.pth"
    torch.save({"conv1_1.weight": torch.zeros(64, 3, 3, 3), "conv1_1.bias": torch.zeros(64)}, face_alignment_like)
    with pytest.raises(ModelLoadError, match="face_alignment"):
        convert_checkpoint(face_alignment_like)
    missing = dict(original)
    missing.pop("loc.3.bias")
    partial = tmp_path / "partial.pth"
    torch.save(missing, partial)
    with pytest.raises(ModelLoadError, match="1 missing"):
        convert_checkpoint(partial)
    not_a_checkpoint = tmp_path / "notes.pth"
    not_a_checkpoint.write_text("hello")
    with pytest.raises(ModelLoadError, match="not a PyTorch checkpoint"):
        convert_checkpoint(not_a_checkpoint)


def test_face_backend_boxes_only_and_batched(golden, model):
    backend = S3FDFaceBackend(detector=S3FDDetector(model), scale=0.25, min_confidence=0.5)
    frames = [golden["c05f000_image_rgb"], golden["c05f060_image_rgb"]]
    batch = backend.detect_batch(frames, landmarks=False)
    for frame, tag, faces in zip(frames, ("c05f000", "c05f060"), batch):
        expected = golden[f"{tag}_s025_bboxes"]
        assert len(faces) == len(expected)
        height, width = frame.shape[:2]
        assert all(f.landmarks is None and 0 <= f.box[0] < f.box[2] <= width and 0 <= f.box[1] < f.box[3] <= height
                   for f in faces)
        areas = [f.area for f in faces]
        assert areas == sorted(areas, reverse=True)  # the FaceBackend contract: largest first
        np.testing.assert_allclose(sorted(f.score for f in faces), sorted(expected[:, 4]), atol=1e-6)
    single = backend.detect(frames[0], landmarks=False)
    np.testing.assert_allclose([f.score for f in single], [f.score for f in batch[0]], atol=1e-6)  # batch of 1
    raw = backend.scored_boxes(frames[:1])[0]  # the reference's own rows and order
    np.testing.assert_allclose(raw, golden["c05f000_s025_bboxes"], atol=BOX_ATOL, rtol=0)
    with pytest.raises(TalkFaceUserError, match="no landmarks"):
        backend.detect(frames[0])


def test_face_backend_by_name(tmp_path, model, monkeypatch):
    monkeypatch.delenv("TALKFACE_S3FD", raising=False)
    with pytest.raises(TalkFaceUserError, match="run: talkface download s3fd"):  # the default: the name s3fd
        get_face_backend("s3fd")
    model.save_pretrained(tmp_path / "s3fd")
    backend = get_face_backend("s3fd", model=str(tmp_path / "s3fd"), min_confidence=0.5)
    assert isinstance(backend, S3FDFaceBackend) and isinstance(backend.detector, S3FDDetector)
    monkeypatch.setenv("TALKFACE_S3FD", str(tmp_path / "s3fd"))
    assert isinstance(get_face_backend("s3fd").detector.model, S3FDModel)
    with pytest.raises(ModelLoadError, match="talkface convert s3fd"):
        get_face_backend("s3fd", model=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="min_confidence"):
        S3FDFaceBackend(detector=S3FDDetector(model), min_confidence=1.5)
