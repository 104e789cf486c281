"""The training recipe interface: a new generator family is one `TrainingRecipe` class (here Wav2Lip, which has no
recipe of its own in talkface) trained through `train.main`, the registry, and validation videos regenerated
through the lip-sync pipeline's generator adapters."""

import importlib.util

import numpy as np
import pytest
import torch
import yaml

from talkface.errors import TalkFaceUserError
from talkface.models.wav2lip import Wav2LipConfig, Wav2LipModel
from talkface.models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor
from talkface.training.recipes import (
    RECIPES,
    TalkFaceTrainingRecipe,
    TalkLipTrainingRecipe,
    TrainingRecipe,
    recipe_for,
    register_recipe,
)
from tests.utils import REPO_ROOT

TRAIN_SCRIPT = REPO_ROOT / "train" / "train.py"
TINY_WAV2LIP = dict(img_size=24, hidden_size=16, face_encoder_channels=[4, 8, 8, 16],
                    face_encoder_kernel_sizes=[7, 3, 3, 3], face_encoder_strides=[1, 2, 2, 2],
                    face_encoder_residual_layers=[0, 1, 1, 0], audio_encoder_channels=[4, 8, 8, 16],
                    audio_encoder_residual_layers=[1, 0, 1, 0], decoder_channels=[16, 8, 8, 4],
                    decoder_residual_layers=[1, 0, 1, 1], output_hidden_channels=4)


@register_recipe
class ToyWav2LipRecipe(TrainingRecipe):
    """Wav2Lip trained by train.py: the whole recipe of a generator family that has a pipeline adapter."""

    name = "toy_wav2lip"
    card_kind = "wav2lip"
    generator_class = Wav2LipModel
    num_frames = 5
    img_size = 24

    def build_generator(self, log=None):
        fields = {k: v for k, v in self.config["model"].items() if k not in ("type", "syncnet")}
        return Wav2LipModel(Wav2LipConfig(**fields))

    def generator_forward(self, generator, batch, step):
        batch_size, k, channels, size = batch.masked_frames.shape[:4]
        # Wav2Lip sees each frame on its own: 6-channel BGR (masked target + reference), one mel window
        faces = torch.cat([batch.masked_frames.flip(2), batch.reference_frames.flip(2)], dim=2)
        mel_chunks = batch.mel_chunks.reshape(batch_size * k, *batch.mel_chunks.shape[2:])
        faces = faces.reshape(batch_size * k, 2 * channels, size, size)
        output = generator(masked_and_reference_faces=faces, mel_chunks=mel_chunks)
        return output.generated_faces.flip(1).reshape(batch_size, k, channels, size, size), {}

    def inference_generator(self, model):
        from talkface.pipelines.lipsync.adapters.wav2lip import Wav2LipGenerator

        return Wav2LipGenerator(model, self.feature_extractor())

    def feature_extractor(self):
        return TalkingFaceAudioFeatureExtractor()


@pytest.fixture
def train(tmp_path):
    """train/train.py as a module, with accelerate's process-wide state cleared around each run."""
    accelerate_state = pytest.importorskip("accelerate.state")
    spec = importlib.util.spec_from_file_location("talkface_train_script_recipes", TRAIN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    accelerate_state.AcceleratorState._reset_state(reset_partial_state=True)
    accelerate_state.GradientState._reset_state()
    yield module
    accelerate_state.AcceleratorState._reset_state(reset_partial_state=True)
    accelerate_state.GradientState._reset_state()
    torch.set_num_threads(threads)


def test_a_new_recipe_is_one_class_trained_by_train_py(train, tmp_path):
    config = {
        "seed": 0,
        "dataset": {"name": "synthetic", "synthetic_length": 8, "synthetic_val_length": 2, "num_workers": 0},
        "model": {"type": "toy_wav2lip", **TINY_WAV2LIP},
        "discriminator": None,
        "losses": {"l1": {"weight": 1.0}},
        "optimizer": {"lr": 1e-3},
        "training": {"batch_size": 2, "checkpointing_steps": 1, "logging_steps": 1, "report_to": "none"},
        "validation": {"steps": 0, "batches": 1},
    }
    config_file = tmp_path / "toy.yaml"
    config_file.write_text(yaml.safe_dump(config))
    summary = train.main(["--config", str(config_file), "--max-steps", "2", "--output-dir", str(tmp_path / "run"),
                          "--cpu"])
    assert summary["recipe"] == "toy_wav2lip" and summary["global_step"] == 2
    assert [entry["step"] for entry in summary["history"]] == [1, 2]
    assert {"loss/l1", "loss/generator_total"} <= set(summary["last_losses"])
    assert "val/l1" in summary["validation"] and "val/psnr" in summary["validation"]
    # checkpoints hold the generator as a save_pretrained folder, the final folder is a pipeline generator
    assert (tmp_path / "run" / "checkpoint-2" / "generator" / "model.safetensors").is_file()
    from talkface.pipelines.lipsync.generator import load_generator

    final = load_generator(tmp_path / "run" / "final")
    assert type(final).__name__ == "Wav2LipGenerator" and final.img_size == 24
    trained = Wav2LipModel.from_pretrained(tmp_path / "run" / "checkpoint-2" / "generator").state_dict()
    for key, value in final.model.state_dict().items():
        assert torch.equal(value, trained[key]), key
    assert "Wav2Lip" in (tmp_path / "run" / "final" / "README.md").read_text()


def test_registry_is_built_from_the_classes():
    assert RECIPES["talkface"] is TalkFaceTrainingRecipe and RECIPES["talklip"] is TalkLipTrainingRecipe
    assert RECIPES["toy_wav2lip"] is ToyWav2LipRecipe
    assert isinstance(recipe_for({"model": {}, "losses": {}}), TalkFaceTrainingRecipe)  # the default model.type
    with pytest.raises(TalkFaceUserError, match="model.type='wav2lip_gan' is unknown; use one of .*talklip"):
        recipe_for({"model": {"type": "wav2lip_gan"}})

    class Impostor(ToyWav2LipRecipe):
        pass

    with pytest.raises(ValueError, match="already trained by"):
        register_recipe(Impostor)
    with pytest.raises(TypeError, match="needs a `name`"):
        register_recipe(type("Nameless", (ToyWav2LipRecipe,), {"name": None}))
    with pytest.raises(TypeError, match="abstract"):
        type("Incomplete", (TrainingRecipe,), {"name": "incomplete"})({})
    assert RECIPES["toy_wav2lip"] is ToyWav2LipRecipe


def test_talkface_model_section_errors_name_the_section():
    with pytest.raises(TalkFaceUserError, match="invalid talkface model section"):
        TalkFaceTrainingRecipe({"model": {"encoder_channels": [4, -1]}, "losses": {}})


def test_validation_videos_come_from_the_pipeline_adapter():
    """The TalkFace recipe's validation regeneration (pipeline adapter: prepare_audio + generate) equals running
    the model on k-frame windows with the video's first k frames as reference and each frame's mel window."""
    from talkface.models.talkface_gan import TalkFaceConfig, TalkFaceModel
    from talkface.training.validation import regenerate_video

    torch.manual_seed(0)
    model_fields = dict(img_size=48, encoder_channels=[4, 4, 8, 8, 8, 8], decoder_channels=[8, 8, 8, 8, 4, 4],
                        fusion_channels=8, output_hidden_size=4, convs_per_block=1,
                        audio_encoder_channels=[4, 4, 8, 8], audio_encoder_residual_layers=[1, 0, 1, 0],
                        audio_hidden_size=8)
    recipe = TalkFaceTrainingRecipe({"model": model_fields, "losses": {}})
    model = TalkFaceModel(TalkFaceConfig(**model_fields)).eval()
    adapter = recipe.inference_generator(model)
    assert type(adapter).__name__ == "TalkFaceGenerator"
    num_frames, k = 13, recipe.num_frames  # not a multiple of k: the adapter pads the last window
    frames = torch.rand(num_frames, 3, 48, 48)
    waveform = (0.1 * np.random.default_rng(0).standard_normal(num_frames * 640)).astype(np.float32)
    audio = adapter.prepare_audio(waveform, 16000, 25.0)
    assert audio.num_frames == num_frames
    generated = regenerate_video(adapter, frames, audio, k)
    assert generated.shape == (num_frames, 3, 48, 48)

    extractor = TalkingFaceAudioFeatureExtractor()
    mels = torch.from_numpy(extractor.frame_mel_chunks(extractor.mel_spectrogram(waveform, 16000), fps=25.0,
                                                        num_frames=num_frames))
    padded = 15
    index = torch.arange(padded).clamp(max=num_frames - 1)
    masked = frames[index].clone()
    masked[:, :, 24:] = 0
    with torch.no_grad():
        expected = model(frames[:k].repeat(3, 1, 1, 1).reshape(3, k, 3, 48, 48), masked.reshape(3, k, 3, 48, 48),
                         mels[index].reshape(3, k, *mels.shape[1:])).generated_frames
    torch.testing.assert_close(generated, expected.reshape(padded, 3, 48, 48)[:num_frames].clamp(0, 1))
