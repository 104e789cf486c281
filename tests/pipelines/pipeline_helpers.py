"""Helpers of the pipeline tests: a test-only generator that paints the mouth half, real clips and speech cut
short, and the checks of a written video."""

import math

import numpy as np
import pytest
import torch

from talkface import media
from talkface.models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor
from talkface.pipelines.lipsync.generator import LipSyncGenerator, PreparedAudio
from tests.utils import data_file, write_wav

CLIP = "clip07_edtalk_mouth_source_muxed.mkv"  # 256x256, 25 fps, tight face
SPEECH = "speech04_retalking_audio1.wav"
RED = (1.0, 0.0, 0.0)


class PaintingGenerator(LipSyncGenerator):
    """Test-only generator: returns the reference face with its lower half painted one colour.

    It records what the pipeline hands it and checks the interface contract on every call.
    """

    img_size = 32

    def __init__(self, colour=RED):
        super().__init__(torch.nn.Linear(1, 1), TalkingFaceAudioFeatureExtractor())
        self.colour = torch.tensor(colour).view(1, 3, 1, 1)
        self.frame_indices = []
        self.reference_means = []
        self.calls = 0

    @classmethod
    def from_pretrained(cls, path_or_repo_id, **kwargs):
        return cls()

    def prepare_audio(self, waveform, sampling_rate, fps):
        assert sampling_rate == self.sampling_rate == 16000 and waveform.dtype == np.float32
        num_frames = self.num_video_frames(len(waveform), fps)
        return PreparedAudio(per_frame=torch.arange(num_frames).float()[:, None], num_frames=num_frames, fps=fps)

    def generate(self, masked_faces, reference_faces, audio, frame_indices):
        size = self.img_size
        assert masked_faces.shape == reference_faces.shape and masked_faces.shape[1:] == (3, size, size)
        assert masked_faces.dtype == torch.float32 and 0.0 <= reference_faces.min() <= reference_faces.max() <= 1.0
        assert masked_faces[:, :, size // 2:].abs().max() == 0  # lower half masked
        assert torch.equal(masked_faces[:, :, : size // 2], reference_faces[:, :, : size // 2])
        assert frame_indices.dtype == torch.long and (frame_indices < audio.num_frames).all()
        self.calls += 1
        self.frame_indices += frame_indices.tolist()
        self.reference_means += reference_faces.mean(dim=(1, 2, 3)).tolist()
        generated = reference_faces.clone()
        generated[:, :, size // 2:] = self.colour
        return generated


def make_clip(path, num_frames, black=(), source=CLIP):
    """The first `num_frames` frames of a real clip (25 fps, no audio), with some frames replaced by black."""
    frames = media.read_frames(data_file(source), max_frames=num_frames)
    with media.VideoWriter(path, fps=25, width=frames.shape[2], height=frames.shape[1]) as writer:
        for i, frame in enumerate(frames):
            writer.write(np.zeros_like(frame) if i in black else frame)
    return path


def check_output(result, out, audio_seconds, fps=25.0):
    info = media.probe(out)
    assert info.has_video and info.has_audio
    assert info.fps == pytest.approx(fps)
    assert info.num_frames == result.num_frames == math.ceil(audio_seconds * fps - 1e-9)
    assert abs(info.duration - audio_seconds) <= 1 / fps
    assert abs(info.audio_duration - audio_seconds) <= 1 / fps
    assert result.out_path == out and result.fps == fps
    return info


def red_excess(frame, box):
    """How much redder than green/blue the box's lower-middle region is (0 for a natural face, ~200 painted)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    h, w = y2 - y1, x2 - x1
    region = frame[y1 + int(0.7 * h): y1 + int(0.8 * h), x1 + int(0.4 * w): x1 + int(0.6 * w)].astype(float)
    return region[..., 0].mean() - region[..., 1:].mean()
