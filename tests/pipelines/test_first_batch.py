"""A row's first generator call takes FIRST_BATCH_SIZE frames (start-up, issue 14), and that changes no output.

The full-size Wav2Lip (random weights: the same kernels as the released ones) generates a real clip with the first
batch small and with every batch full; the generated faces are compared bit for bit, in fp32 and bf16.
"""

import pytest
import torch

from talkface.pipelines.lipsync import pipeline as pipeline_module
from talkface.pipelines.lipsync.pipeline import FIRST_BATCH_SIZE, LipSyncPipeline


@pytest.fixture(scope="module")
def wav2lip_folder(tmp_path_factory):
    from talkface.models.wav2lip import TalkingFaceAudioFeatureExtractor, Wav2LipConfig, Wav2LipModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("wav2lip_full_size")
    Wav2LipModel(Wav2LipConfig()).save_pretrained(folder)
    TalkingFaceAudioFeatureExtractor().save_pretrained(folder)
    return folder


def generated(folder, clip, audio, out, precision, first_batch_size, monkeypatch):
    """(sizes of the generator calls, every generated face in output order) of one pipeline call."""
    monkeypatch.setattr(pipeline_module, "FIRST_BATCH_SIZE", first_batch_size)
    pipeline = LipSyncPipeline.from_pretrained(folder, device="cpu", precision=precision, watermark=False)
    calls, faces = [], []
    generate = pipeline.generator.generate

    def recording(masked, reference, prepared, indices):
        result = generate(masked, reference, prepared, indices)
        calls.append(len(indices))
        faces.append(result.detach().clone())
        return result

    pipeline.generator.generate = recording
    pipeline(face=clip, audio=audio, out=out, box=(40, 30, 220, 250), batch_size=8, progress=False)
    return calls, torch.cat(faces)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_small_first_batch_changes_no_generated_face(wav2lip_folder, short_clip, speech, tmp_path, monkeypatch,
                                                       precision):
    assert 1 < FIRST_BATCH_SIZE < 8
    calls, small_first = generated(wav2lip_folder, short_clip, speech[0.8], tmp_path / "a.mp4", precision,
                                   FIRST_BATCH_SIZE, monkeypatch)
    assert calls[0] == FIRST_BATCH_SIZE and calls[1:3] == [8, 8] and sum(calls) == 20
    calls, full = generated(wav2lip_folder, short_clip, speech[0.8], tmp_path / "b.mp4", precision, 8, monkeypatch)
    assert calls == [8, 8, 4]
    assert small_first.shape == full.shape == (20, 3, 96, 96)
    assert torch.equal(small_first, full), (small_first - full).abs().max().item()


def test_int8_keeps_full_batches(wav2lip_folder, short_clip, speech, tmp_path, monkeypatch):
    """int8 calibrates on its first batch: that batch stays whole, so int8 outputs do not move either."""
    calls, _ = generated(wav2lip_folder, short_clip, speech[0.8], tmp_path / "c.mp4", "int8", FIRST_BATCH_SIZE,
                         monkeypatch)
    assert calls == [8, 8, 4]
