"""LipSyncPipeline's options (one validated object, the CLI's defaults), the generator's frame-count rule, and a new
generator added as one registered class; with the test-only painting generator on a real clip."""

import numpy as np
import pytest
import torch

from talkface import media
from talkface.models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor
from talkface.pipelines.lipsync.generator import GENERATOR_ADAPTERS, LipSyncGenerator, PreparedAudio, register_generator
from talkface.pipelines.lipsync.options import InvalidInputError, LipSyncOptions
from talkface.pipelines.lipsync.pipeline import LipSyncPipeline
from tests.pipelines.pipeline_helpers import PaintingGenerator, write_wav


# ---------------------------------------------------------------------------------------------- options


def test_options_defaults_validation_and_replace():
    options = LipSyncOptions()
    assert options.fps is None and options.batch_size is None and options.pads == (0, 10, 0, 0)
    assert options.duration_policy == "pingpong" and options.blend == "feather" and options.detect_every == 1
    changed = options.replace(pads=[1, 2, 3, 4], box=np.array([1, 2, 30, 40]), fps="30")
    assert changed.pads == (1, 2, 3, 4) and changed.box == (1.0, 2.0, 30.0, 40.0) and changed.fps == 30.0
    assert options.pads == (0, 10, 0, 0)  # replace makes a copy
    bad = {"fps": (0, "fps must be a number > 0"), "batch_size": (0, "batch size"), "face_index": (-1, "face index"),
           "box": ((5, 5, 1, 1), "x2 > x1"), "pads": ((1, 2, 3), "pads must be 4"),
           "duration_policy": ("stretch", "duration_policy must be one of pingpong, loop, cut"),
           "blend": ("alpha", "blend must be one of"), "feather": (0.0, "feather"), "detect_every": (0, "detect_every"),
           "face_backend": ("opencv", "face backend must be one of"), "batch_size ": (2.5, "whole number")}
    for name, (value, message) in bad.items():
        with pytest.raises(InvalidInputError, match=message):
            LipSyncOptions(**{name.strip(): value})
    with pytest.raises(TypeError, match="unknown lip-sync option.*the options are: fps, batch_size"):
        options.replace(speed=2)


def test_cli_flags_take_their_defaults_from_the_options():
    import argparse

    from talkface.commands import generate

    subparsers = argparse.ArgumentParser().add_subparsers()
    parser = generate.register(subparsers)
    args = parser.parse_args(["--face", "f.mp4", "--audio", "a.wav", "--model", "m", "--out", "o.mp4"])
    assert generate.options_from_args(args) == LipSyncOptions()
    args = parser.parse_args(["--face", "f.mp4", "--audio", "a.wav", "--model", "m", "--out", "o.mp4", "--pads",
                              "1", "2", "3", "4", "--detect-every", "3", "--duration-policy", "cut"])
    assert generate.options_from_args(args) == LipSyncOptions(pads=(1, 2, 3, 4), detect_every=3,
                                                              duration_policy="cut")


def test_pipeline_options_object_and_keyword_overrides(tmp_path, short_clip, speech):
    generator = PaintingGenerator()
    pipeline = LipSyncPipeline(generator, options=LipSyncOptions(box=(60, 100, 200, 240), blend="hard"), fps=20)
    assert pipeline.options.fps == 20 and pipeline.options.blend == "hard"
    out = tmp_path / "out.mp4"
    result = pipeline(face=short_clip, audio=speech[0.8], out=out, options=LipSyncOptions(box=(60, 100, 200, 240)),
                      duration_policy="cut", progress=False)
    # the call's options replace the pipeline's (fps back to the generator's 25), then the keyword overrides apply
    assert result.options == LipSyncOptions(box=(60, 100, 200, 240), duration_policy="cut")
    assert result.fps == generator.fps == 25.0 and result.num_frames == 20
    with pytest.raises(TypeError, match="unknown lip-sync option"):
        pipeline(face=short_clip, audio=speech[0.8], out=out, speed=2)


# ---------------------------------------------------------------------------------------------- frame count


def test_frame_count_is_the_generators_rule(tmp_path, short_clip, speech):
    """0.81 s at 25 fps needs 20.25 frames: the generator's rule rounds up (the audio is never without a frame)."""
    waveform = media.read_audio(speech[1.0])[:12960]  # 0.81 s
    audio = write_wav(tmp_path / "speech_0.81s.wav", waveform)
    generator = PaintingGenerator()
    assert generator.num_video_frames(12960, 25.0) == 21 == generator.feature_extractor.num_video_frames(12960, 25)
    out = tmp_path / "out.mp4"
    result = LipSyncPipeline(generator)(face=short_clip, audio=audio, out=out, box=(60, 100, 200, 240),
                                        progress=False)
    assert result.num_frames == 21 == media.probe(out).num_frames and generator.frame_indices == list(range(21))
    # at 30 fps the 0.8 s clip has 24 grid frames and the audio needs 25: "cut" stops at 24 and cuts the audio to
    # the longest length that needs exactly 24 frames
    out = tmp_path / "cut.mp4"
    result = LipSyncPipeline(PaintingGenerator())(face=short_clip, audio=audio, out=out, box=(60, 100, 200, 240),
                                                  duration_policy="cut", fps=30, progress=False)
    assert result.num_frames == 24 and result.audio_duration == pytest.approx(24 / 30, abs=1 / 16000)

    class Inconsistent(PaintingGenerator):
        def prepare_audio(self, waveform, sampling_rate, fps):
            prepared = super().prepare_audio(waveform, sampling_rate, fps)
            return PreparedAudio(prepared.per_frame[:-1], prepared.num_frames - 1, fps)

    with pytest.raises(RuntimeError, match="must agree with itself"):
        LipSyncPipeline(Inconsistent())(face=short_clip, audio=audio, out=tmp_path / "bad.mp4",
                                        box=(60, 100, 200, 240), progress=False)
    assert not (tmp_path / "bad.mp4").exists()


# ---------------------------------------------------------------------------------------------- a new generator


@pytest.fixture
def toy_generator_folder(tmp_path):
    """A toy generator: a one-parameter model that paints the mouth region its `tint`, and its adapter."""
    from transformers import PretrainedConfig, PreTrainedModel

    class ToyTintConfig(PretrainedConfig):
        model_type = "toy_tint"

        def __init__(self, img_size=16, **kwargs):
            super().__init__(**kwargs)
            self.img_size = img_size

    class ToyTintModel(PreTrainedModel):
        config_class = ToyTintConfig

        def __init__(self, config):
            super().__init__(config)
            self.tint = torch.nn.Parameter(torch.tensor([0.0, 0.0, 1.0]))  # blue
            self.post_init()

        def _init_weights(self, module):
            pass

    # the whole integration of a new generator: one adapter class
    @register_generator("toy_tint")
    class ToyTintGenerator(LipSyncGenerator):
        def __init__(self, model, feature_extractor):
            super().__init__(model, feature_extractor)
            self.img_size = model.config.img_size

        @classmethod
        def from_pretrained(cls, path_or_repo_id, **kwargs):
            return cls(ToyTintModel.from_pretrained(path_or_repo_id),
                       TalkingFaceAudioFeatureExtractor.from_pretrained(path_or_repo_id))

        def prepare_audio(self, waveform, sampling_rate, fps):
            num_frames = self.num_video_frames(len(waveform), fps)
            return PreparedAudio(per_frame=torch.zeros(num_frames, 1), num_frames=num_frames, fps=fps)

        def generate(self, masked_faces, reference_faces, audio, frame_indices):
            generated = reference_faces.clone()
            generated[:, :, self.img_size // 2:] = self.model.tint.detach().view(1, 3, 1, 1)
            return generated

    torch.manual_seed(0)
    folder = tmp_path / "toy_tint"
    ToyTintModel(ToyTintConfig()).save_pretrained(folder)
    TalkingFaceAudioFeatureExtractor(fps=20.0).save_pretrained(folder)  # the model's native rate: 20 fps
    yield folder
    GENERATOR_ADAPTERS.pop("toy_tint")


def test_a_toy_generator_is_one_registered_class(tmp_path, toy_generator_folder, short_clip, speech):
    from talkface.pipelines.lipsync.generator import generator_adapters, load_generator

    assert {"wav2lip", "talklip", "talkface", "toy_tint"} <= set(generator_adapters())
    generator = load_generator(toy_generator_folder)
    assert type(generator).__name__ == "ToyTintGenerator" and generator.model_type == "toy_tint"
    pipeline = LipSyncPipeline.from_pretrained(toy_generator_folder, device="cpu", watermark=False)
    out = tmp_path / "toy.mp4"
    result = pipeline(face=short_clip, audio=speech[0.8], out=out, box=(60, 100, 200, 240), blend="hard",
                      progress=False)
    assert result.fps == 20.0 and result.num_frames == 16  # the generator's own rate and frame count
    frame = media.read_frames(out, fps=20, max_frames=1)[0].astype(int)
    assert frame[180:230, 80:180, 2].mean() > 200 and frame[180:230, 80:180, :2].mean() < 60  # blue mouth region
    with pytest.raises(ValueError, match="already has the generator adapter"):
        @register_generator("toy_tint")
        class Other(LipSyncGenerator):  # noqa: F841
            pass
    with pytest.raises(TypeError, match="LipSyncGenerator subclass"):
        register_generator("not_a_class")(object)
