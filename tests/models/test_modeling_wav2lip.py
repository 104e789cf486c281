"""Wav2LipModel, Wav2LipVisualDiscriminator and the Wav2Lip generator adapter, on tiny random configs."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig

from talkface.models.wav2lip.feature_extraction_wav2lip import SamplingRateMismatchError, TalkingFaceAudioFeatureExtractor
from talkface.models.wav2lip import (
    Wav2LipConfig,
    Wav2LipModel,
    Wav2LipVisualDiscriminator,
    Wav2LipVisualDiscriminatorConfig,
)
from talkface.pipelines.lipsync.adapters.wav2lip import Wav2LipGenerator
from talkface.pipelines.lipsync.generator import load_generator
from tests.models.model_tester import ModelTesterMixin, randomise_batch_norm
from tests.utils import KEYS_DIR, golden_file

TINY_IMG = 24


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # tiny convolutions gain nothing from threads, and on a loaded machine two spinning OpenMP threads make each
    # forward ~100x slower
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_config(**overrides) -> Wav2LipConfig:
    values = dict(
        image_size=TINY_IMG,
        hidden_size=16,
        face_encoder_channels=[4, 8, 8, 16],
        face_encoder_kernel_sizes=[7, 3, 3, 3],
        face_encoder_strides=[1, 2, 2, 2],  # 24 -> 24 -> 12 -> 6 -> 3
        face_encoder_residual_layers=[0, 1, 1, 0],
        audio_encoder_channels=[4, 8, 8, 16],
        audio_encoder_residual_layers=[1, 0, 1, 0],
        decoder_channels=[16, 8, 8, 4],
        decoder_residual_layers=[1, 0, 1, 1],
        output_hidden_channels=4,
    )
    values.update(overrides)
    return Wav2LipConfig(**values)


def tiny_discriminator_config(**overrides) -> Wav2LipVisualDiscriminatorConfig:
    values = dict(
        image_size=TINY_IMG,
        hidden_size=16,
        stage_channels=[4, 8, 8, 8],
        stage_kernel_sizes=[7, 5, 3, 3],
        stage_strides=[1, [1, 2], 2, 2],  # lower half 12x24 -> 12x24 -> 12x12 -> 6 -> 3
        stage_extra_layers=[0, 1, 0, 1],
    )
    values.update(overrides)
    return Wav2LipVisualDiscriminatorConfig(**values)


@pytest.fixture
def model():
    return randomise_batch_norm(Wav2LipModel(tiny_config())).eval()


def inputs(batch=3, seed=0, image_size=TINY_IMG):
    generator = torch.Generator().manual_seed(seed)
    faces = torch.rand(batch, 6, image_size, image_size, generator=generator)
    faces[:, :3, image_size // 2 :] = 0  # masked lower half of the target frame
    mels = torch.rand(batch, 1, 80, 16, generator=generator) * 8 - 4
    return faces, mels


# --- generator ----------------------------------------------------------------------------------------------------
class TestWav2LipModel(ModelTesterMixin):
    model_class = Wav2LipModel
    output_names = ("generated_faces", "audio_embeds")
    former_field_names = {"img_size": "image_size"}
    bad_configs = (
        ({"image_size": 100}, "image_size"),
        ({"face_encoder_strides": [2, 2, 2, 1]}, "face_encoder_strides"),
        ({"face_encoder_residual_layers": [0, 1]}, "face_encoder_residual_layers"),
        ({"decoder_channels": [16, 8, 8]}, "decoder_channels"),
        ({"audio_encoder_strides": [[1, 1], [3, 1], [3, 3], [3, 3]]}, "audio_encoder_strides"),
        ({"mel_step_size": 20}, "mel_step_size"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"hidden_size": 0}, "hidden_size"),
    )

    def get_config(self, **overrides):
        return tiny_config(**overrides)

    def prepare_model(self, model):
        return randomise_batch_norm(model)

    def get_inputs(self, batch_size, seed=0):
        faces, mels = inputs(batch_size, seed)
        return {"masked_and_reference_faces": faces, "mel_chunks": mels}

    def expected_shapes(self, batch_size):
        return {"generated_faces": (batch_size, 3, TINY_IMG, TINY_IMG), "audio_embeds": (batch_size, 16, 1, 1)}


def test_output_range_and_no_loss_without_targets(model):
    faces, mels = inputs()
    with torch.no_grad():
        output = model(masked_and_reference_faces=faces, mel_chunks=mels)
    assert (output.generated_faces > 0).all() and (output.generated_faces < 1).all()
    assert output.loss is None


def test_former_input_keyword_still_works_with_a_warning(model):
    faces, mels = inputs(2)
    with torch.no_grad():
        expected = model(faces, mels).generated_faces
        with pytest.warns(FutureWarning, match="masked_and_reference_faces"):
            old = model(face_frames=faces, mel_chunks=mels).generated_faces
    torch.testing.assert_close(old, expected, rtol=0, atol=0)
    with pytest.raises(TypeError, match="both"):
        model(faces, mels, face_frames=faces)


def test_sequence_input_folds_time_into_batch(model):
    batch, frames = 2, 3
    faces, mels = inputs(batch * frames)
    # (batch, 6, frames, H, W) and (batch, frames, 1, 80, 16), sample (b, t) = row b * frames + t
    faces_5d = faces.reshape(batch, frames, 6, TINY_IMG, TINY_IMG).transpose(1, 2)
    mels_5d = mels.reshape(batch, frames, 1, 80, 16)
    with torch.no_grad():
        sequence = model(masked_and_reference_faces=faces_5d, mel_chunks=mels_5d).generated_faces
        flat = model(masked_and_reference_faces=faces, mel_chunks=mels).generated_faces
    assert sequence.shape == (batch, 3, frames, TINY_IMG, TINY_IMG)
    torch.testing.assert_close(sequence.transpose(1, 2).reshape(batch * frames, 3, TINY_IMG, TINY_IMG), flat)


def test_audio_changes_the_output(model):
    # PyTorch's default init shrinks activations layer by layer, so an untrained Wav2Lip barely hears the audio
    # (deep path) next to the shallow skip connections; variance-preserving weights make the dependence visible
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    faces, mels = inputs(2)
    with torch.no_grad():
        speech = model(faces, mels).generated_faces
        silence = model(faces, torch.full_like(mels, -4.0)).generated_faces
    assert (speech - silence).abs().max() > 1e-3


def test_loss_is_l1_to_targets(model):
    faces, mels = inputs(2)
    targets = torch.rand(2, 3, TINY_IMG, TINY_IMG)
    output = model(faces, mels, target_faces=targets)
    torch.testing.assert_close(output.loss, F.l1_loss(output.generated_faces, targets))
    output.loss.backward()
    assert model.output_block[1].weight.grad is not None
    loss, generated, _ = model(faces, mels, target_faces=targets, return_dict=False)
    torch.testing.assert_close(generated, output.generated_faces)


def test_default_config_is_the_released_architecture():
    config = Wav2LipConfig()
    assert AutoConfig.for_model("wav2lip").__class__ is Wav2LipConfig
    assert config.face_encoder_feature_sizes == [96, 48, 24, 12, 6, 3]
    model = Wav2LipModel(config)
    assert sum(p.numel() for p in model.parameters()) == 36_298_035
    expected = {key: tuple(shape) for key, shape in json.loads(golden_file("wav2lip_generator_keys.json").read_text())}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected


def test_bad_input_shape_raises(model):
    faces, mels = inputs(2)
    with pytest.raises(ValueError, match="masked_and_reference_faces"):
        model(faces[:, :3], mels)
    with pytest.raises(ValueError, match="mel_chunks"):
        model(faces, mels[:, :, :40])


# --- visual-quality discriminator ---------------------------------------------------------------------------------
def test_discriminator_shapes_and_lower_half_only():
    discriminator = Wav2LipVisualDiscriminator(tiny_discriminator_config()).eval()
    faces = torch.rand(2, 3, TINY_IMG, TINY_IMG)
    with torch.no_grad():
        output = discriminator(faces)
        assert output.probabilities.shape == (2, 1)
        torch.testing.assert_close(output.probabilities, torch.sigmoid(output.logits))
        changed_top = faces.clone()
        changed_top[:, :, : TINY_IMG // 2] = torch.rand(2, 3, TINY_IMG // 2, TINY_IMG)
        torch.testing.assert_close(discriminator(changed_top).probabilities, output.probabilities, rtol=0, atol=0)
        changed_bottom = faces.clone()
        changed_bottom[:, :, TINY_IMG // 2 :] = 0
        assert (discriminator(changed_bottom).probabilities - output.probabilities).abs().max() > 0
        sequence = discriminator(torch.rand(2, 3, 4, TINY_IMG, TINY_IMG))
        assert sequence.probabilities.shape == (8, 1)


def test_discriminator_losses():
    discriminator = Wav2LipVisualDiscriminator(tiny_discriminator_config()).eval()
    fakes = torch.rand(3, 3, TINY_IMG, TINY_IMG)
    perceptual = discriminator.perceptual_forward(fakes)
    expected = -torch.log(perceptual.probabilities).mean()  # BCE against "real"
    torch.testing.assert_close(perceptual.loss, expected)
    real_labels = discriminator(fakes, labels=torch.zeros(3))
    torch.testing.assert_close(real_labels.loss, -torch.log(1 - real_labels.probabilities).mean())


def test_discriminator_default_keys_are_the_original():
    text = (KEYS_DIR / "syncnet_wav2lip_resnet.txt")
    if not text.is_file():
        pytest.skip("../shared/reference/keys is absent")
    section = text.read_text().split("##### Wav2Lip_disc_qual")[1].splitlines()[1:]
    expected = {line.split("\t")[0]: tuple(json.loads(line.split("\t")[1].replace("(", "[").replace(",)", "]")
                                                     .replace(")", "]")))
                for line in section if line.strip() and not line.startswith("#")}
    default = Wav2LipVisualDiscriminator(Wav2LipVisualDiscriminatorConfig())
    assert {k: tuple(v.shape) for k, v in default.state_dict().items()} == expected


class TestWav2LipVisualDiscriminator(ModelTesterMixin):
    model_class = Wav2LipVisualDiscriminator
    output_names = ("probabilities", "logits")
    former_field_names = {"img_size": "image_size"}
    bad_configs = (
        ({"stage_strides": [1, 2, 2, 2]}, "stage_strides"),
        ({"stage_kernel_sizes": [7, 5, 3]}, "stage_kernel_sizes"),
        ({"image_size": 23}, "image_size"),
        ({"hidden_size": 0}, "hidden_size"),
    )

    def get_config(self, **overrides):
        return tiny_discriminator_config(**overrides)

    def prepare_model(self, model):
        return randomise_batch_norm(model)

    def get_inputs(self, batch_size, seed=0):
        generator = torch.Generator().manual_seed(seed)
        return {"face_frames": torch.rand(batch_size, 3, TINY_IMG, TINY_IMG, generator=generator)}

    def expected_shapes(self, batch_size):
        return {"probabilities": (batch_size, 1), "logits": (batch_size, 1)}


# --- generator adapter --------------------------------------------------------------------------------------------
@pytest.fixture
def model_folder(model, tmp_path):
    folder = tmp_path / "tiny-wav2lip"
    model.save_pretrained(folder)
    TalkingFaceAudioFeatureExtractor().save_pretrained(folder)
    return folder


def test_adapter_loads_through_the_registry_and_generates(model_folder, model):
    generator = load_generator(model_folder)
    assert isinstance(generator, Wav2LipGenerator)
    assert generator.img_size == TINY_IMG and generator.frames_per_step == 1

    waveform = np.random.default_rng(0).standard_normal(16000 + 320).astype(np.float32) * 0.1  # 1.02 s
    audio = generator.prepare_audio(waveform, sampling_rate=16000, fps=25)
    assert audio.num_frames == 26 and audio.per_frame.shape == (26, 1, 80, 16)
    mel = generator.feature_extractor.mel_spectrogram(waveform, 16000)
    np.testing.assert_array_equal(audio.per_frame[5, 0].numpy(), mel[:, 16:32])

    faces_rgb = torch.rand(3, 3, TINY_IMG, TINY_IMG)
    masked_rgb = faces_rgb.clone()
    masked_rgb[:, :, TINY_IMG // 2 :] = 0
    frame_indices = torch.tensor([0, 7, 25])
    generated_rgb = generator.generate(masked_rgb, faces_rgb, audio, frame_indices)
    assert generated_rgb.shape == (3, 3, TINY_IMG, TINY_IMG)

    # the adapter equals calling the network directly on BGR input and flipping the result back to RGB
    face_frames_bgr = torch.cat((masked_rgb[:, [2, 1, 0]], faces_rgb[:, [2, 1, 0]]), dim=1)
    with torch.no_grad():
        direct_bgr = model(face_frames_bgr, audio.per_frame[frame_indices]).generated_faces
    torch.testing.assert_close(generated_rgb, direct_bgr[:, [2, 1, 0]], rtol=0, atol=1e-6)


def test_adapter_refuses_wrong_sampling_rate(model_folder):
    generator = Wav2LipGenerator.from_pretrained(model_folder)
    with pytest.raises(SamplingRateMismatchError):
        generator.prepare_audio(np.zeros(44100, dtype=np.float32), sampling_rate=44100, fps=25)


def test_adapter_without_preprocessor_config_uses_defaults(model, tmp_path):
    model.save_pretrained(tmp_path)
    generator = Wav2LipGenerator.from_pretrained(tmp_path)
    assert generator.feature_extractor.hop_length == 200 and generator.feature_extractor.pad_mode == "reflect"
