"""Generator precision (issue 14): the exact fast path against the goldens, the auto rule, the CLI choices, the
metadata, and the drift of bf16 / int8 against fp32 on real face crops (within docs/generation.md's figures)."""

import copy
import json

import numpy as np
import pytest
import torch

from talkface import media
from talkface.cli import main as talkface_main
from talkface.models.optimization import fold_batch_norms, optimize_for_inference
from talkface.models.wav2lip import Wav2LipModel
from talkface.models.wav2lip import Wav2LipConfig
from talkface.models.wav2lip.convert_wav2lip_original_checkpoint import convert_wav2lip_state_dict
from talkface.pipelines.lipsync import precision as precision_module
from talkface.pipelines.lipsync.options import InvalidInputError
from talkface.pipelines.lipsync.pipeline import LipSyncPipeline
from talkface.pipelines.lipsync.precision import native_bf16_flags, resolve_precision
from talkface.pipelines.lipsync.watermark import read_metadata
from tests.utils import data_file, formula_state_dict, golden_file, load_golden

# docs/generation.md, "Precision": measured drift of the generated faces against fp32 (values in [0, 1]) on real
# crops of clip01 / clip05 with the formula weights; the bounds here leave a margin of about 2x
DRIFT_BOUNDS = {"bf16": {"max": 0.02, "mean": 0.003}, "int8": {"max": 0.06, "mean": 0.008}}


@pytest.fixture(scope="module")
def golden_wav2lip():
    """The full-size Wav2Lip with the golden formula weights (golden/README.md), through the converter."""
    model = Wav2LipModel(Wav2LipConfig()).eval()
    model.load_state_dict(convert_wav2lip_state_dict(formula_state_dict("wav2lip_generator_keys.json")))
    return model


def test_exact_path_matches_the_wav2lip_golden(golden_wav2lip):
    golden = load_golden("wav2lip.npz")
    optimized = optimize_for_inference(copy.deepcopy(golden_wav2lip))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in optimized.modules())
    assert optimized.face_encoder_blocks[1][0].conv_block[0].weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        generated = optimized(torch.from_numpy(golden["gen_face_in"]), torch.from_numpy(golden["gen_mel_in"]))
    np.testing.assert_allclose(generated.generated_faces.numpy(), golden["gen_out"], rtol=0, atol=1e-5)
    with pytest.raises(RuntimeError, match="optimised for inference"):
        optimized.save_pretrained("unused")


def test_exact_path_matches_the_syncnet_lse_golden():
    from talkface.models.syncnet_lse import SyncNetLSEConfig, SyncNetLSEFeatureExtractor, SyncNetLSEModel
    from talkface.models.syncnet_lse.convert_syncnet_lse_original_checkpoint import convert_syncnet_lse_state_dict

    config = SyncNetLSEConfig()
    model = SyncNetLSEModel(config).eval()
    model.load_state_dict(convert_syncnet_lse_state_dict(formula_state_dict("syncnet_S_keys.json"), config))
    model = optimize_for_inference(model)
    assert not any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d))
                   for m in model.modules())
    golden = load_golden("syncnet_lse.npz")
    extractor = SyncNetLSEFeatureExtractor()
    with torch.no_grad():
        audio = model.get_audio_embeddings(extractor.audio_windows(golden["mfcc"], 45))
        video = model.get_video_embeddings(extractor.pixel_values(golden["frames_bgr"][:8], channel_order="bgr"))[0]
    np.testing.assert_allclose(audio.numpy(), golden["audio_feat"], atol=1e-3, rtol=1e-5)
    np.testing.assert_allclose(video.numpy(), golden["video_feat"][:4], atol=1e-3, rtol=1e-5)


def test_exact_path_matches_the_avhubert_golden():
    from talkface.models.avhubert.convert_avhubert_fairseq_checkpoint import convert_fairseq_checkpoint

    golden_cfg = json.loads(golden_file("avhubert_cfg.json").read_text())
    checkpoint = {"cfg": {"model": golden_cfg["model"], "task": golden_cfg["task"]},
                  "model": formula_state_dict("avhubert_pretrain_keys.json")}
    model, _ = convert_fairseq_checkpoint(checkpoint)
    model = optimize_for_inference(model.eval())
    golden = load_golden("avhubert.npz")
    audio = torch.from_numpy(golden["audio_in"])[None]
    video = torch.from_numpy(golden["video_in"])[None, None]
    with torch.no_grad():
        np.testing.assert_allclose(model.forward_video_frontend(video)[0], golden["frontend_video"], atol=1e-4,
                                   rtol=0)
        output = model(audio_features=audio, video=video)
    np.testing.assert_allclose(output.last_hidden_state[0], golden["enc_av"], atol=1e-4, rtol=0)


def test_fold_batch_norms_refuses_training_mode_and_counts():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(model)
    assert fold_batch_norms(model.eval()) == 1 and isinstance(model[1], torch.nn.Identity)


# ---------------------------------------------------------------------------------------------- the auto rule


def test_auto_rule_reads_the_cpu_flags():
    assert resolve_precision("auto", "cuda", frozenset()) == ("fp16", "auto: CUDA GPU")
    assert resolve_precision("auto", "cpu", frozenset({"avx2", "avx512f", "avx512_bf16"}))[0] == "bf16"
    precision, reason = resolve_precision("auto", "cpu", frozenset({"avx2", "amx_bf16", "amx_tile"}))
    assert precision == "bf16" and "AMX_BF16" in reason
    assert resolve_precision("auto", "cpu", frozenset({"avx2", "avx512f"}))[0] == "fp32"
    assert resolve_precision("auto", "mps", frozenset({"avx512_bf16"}))[0] == "fp32"
    assert resolve_precision("int8", "cpu") == ("int8", "requested")
    with pytest.raises(InvalidInputError, match="int8 runs on the CPU only"):
        resolve_precision("int8", "cuda")
    with pytest.raises(InvalidInputError, match="precision must be one of auto, fp32, bf16, fp16, int8"):
        resolve_precision("fp64", "cpu")


def test_cpu_flags_come_from_the_cpu(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n\nprocessor\t: 1\n")
    monkeypatch.setattr(precision_module, "Path", lambda _: cpuinfo)
    precision_module.cpu_flags.cache_clear()
    try:
        assert native_bf16_flags() == ["avx512_bf16"]
        assert resolve_precision("auto", "cpu")[0] == "bf16"
    finally:
        precision_module.cpu_flags.cache_clear()


# ---------------------------------------------------------------------------------------------- CLI + metadata


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from talkface.models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor

    folder = tmp_path_factory.mktemp("precision_inputs")
    frames = media.read_frames(data_file("clip07_edtalk_mouth_source_muxed.mkv"), max_frames=10)
    with media.VideoWriter(folder / "face.mp4", fps=25, width=256, height=256,
                           audio=media.read_audio(data_file("speech04_retalking_audio1.wav"))[:6400]) as writer:
        for frame in frames:
            writer.write(frame)
    config = Wav2LipConfig(
        img_size=24, hidden_size=16,
        face_encoder_channels=[4, 8, 8, 16], face_encoder_kernel_sizes=[7, 3, 3, 3],
        face_encoder_strides=[1, 2, 2, 2], face_encoder_residual_layers=[0, 1, 1, 0],
        audio_encoder_channels=[4, 8, 8, 16], audio_encoder_residual_layers=[1, 0, 1, 0],
        decoder_channels=[16, 8, 8, 4], decoder_residual_layers=[1, 0, 1, 1], output_hidden_channels=4,
    )
    Wav2LipModel(config).save_pretrained(folder / "tiny")
    TalkingFaceAudioFeatureExtractor().save_pretrained(folder / "tiny")
    return folder


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8", "auto"])
def test_cli_precision_is_printed_and_stored(inputs, tmp_path, capsys, precision):
    out = tmp_path / "out.mp4"
    code = talkface_main(["generate", "--no-progress", "--device", "cpu", "--face", str(inputs / "face.mp4"),
                          "--audio", str(inputs / "face.mp4"), "--model", str(inputs / "tiny"), "--out", str(out),
                          "--box", "40", "30", "220", "250", "--precision", precision])
    assert code == 0
    expected = resolve_precision(precision, "cpu")[0]
    printed = capsys.readouterr().out
    assert f"generator precision: {expected}" in printed and f"precision {expected})" in printed
    assert f"precision: {expected}" in read_metadata(out)["comment"]


def test_cli_refuses_an_unknown_precision(inputs, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # argparse's own refusal, exit code 2
        talkface_main(["generate", "--face", str(inputs / "face.mp4"), "--audio", str(inputs / "face.mp4"),
                       "--model", str(inputs / "tiny"), "--out", str(tmp_path / "o.mp4"), "--precision", "fp64"])
    assert exit_info.value.code == 2 and "invalid choice: 'fp64'" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


# ---------------------------------------------------------------------------------------------- drift on real crops


def real_face_crops(clip, count=16, size=96):
    from talkface.faces import FaceTracker, crop_face, get_face_backend

    pytest.importorskip("mediapipe")
    backend = get_face_backend("mediapipe")
    try:
        frames = media.read_frames(data_file(clip), max_frames=count)
        faces = [face for _, face in FaceTracker(backend).track(iter(frames))]
    finally:
        backend.close()
    crops = np.stack([crop_face(frame, face.box, size) for frame, face in zip(frames, faces)])
    reference = torch.from_numpy(crops.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    masked = reference.clone()
    masked[:, :, size // 2:] = 0
    return masked, reference


@pytest.mark.parametrize("clip", ["clip01_sadtalker_WDA_AlexandriaOcasioCortez_000.mp4",
                                  "clip05_retalking_face5_woman_glasses.mp4"])
def test_reduced_precisions_stay_within_the_documented_drift(golden_wav2lip, tmp_path, clip):
    from talkface.models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor

    folder = tmp_path / "wav2lip"
    golden_wav2lip.save_pretrained(folder)
    TalkingFaceAudioFeatureExtractor().save_pretrained(folder)
    masked, reference = real_face_crops(clip)
    waveform = media.read_audio(data_file(clip))[: 16000]
    faces = {}
    for precision in ("fp32", "bf16", "int8"):
        pipeline = LipSyncPipeline.from_pretrained(folder, device="cpu", precision=precision, watermark=False)
        audio = pipeline.generator.prepare_audio(waveform, 16000, 25.0)
        indices = torch.arange(len(masked))
        with torch.no_grad(), pipeline._autocast():
            if precision == "int8":  # the first call calibrates (in fp32) and converts
                pipeline.generator.generate(masked[:8], reference[:8], audio, indices[:8])
            faces[precision] = pipeline.generator.generate(masked, reference, audio, indices).float()
    for precision, bounds in DRIFT_BOUNDS.items():
        difference = (faces[precision] - faces["fp32"]).abs()
        assert 0 < difference.max() <= bounds["max"] and difference.mean() <= bounds["mean"], (
            precision, difference.max().item(), difference.mean().item())
