"""The transformers-free Wav2Lip of the generation path (issue 14, start-up) is the same network as Wav2LipModel.

`talkface.networks.wav2lip.load_wav2lip_network` loads a folder written by `save_pretrained` into a plain
`nn.Module`; these tests hold it to `Wav2LipModel.from_pretrained` of the same folder: the same state dict, the same
outputs bit for bit (4-D and 5-D, before and after BatchNorm folding), the same mel features, and a fall-back to
transformers for every folder it does not read exactly.
"""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from talkface.models.wav2lip import TalkingFaceAudioFeatureExtractor, Wav2LipConfig, Wav2LipModel
from talkface.networks.optimization import optimize_for_inference
from talkface.networks.wav2lip import Wav2LipNetwork, load_wav2lip_network
from talkface.networks.wav2lip_audio import Wav2LipMelFeatures
from talkface.pipelines.lipsync.adapters.wav2lip import Wav2LipGenerator
from talkface.pipelines.lipsync.generator import PreparedAudio

TINY = dict(img_size=24, hidden_size=16,
            face_encoder_channels=[4, 8, 8, 16], face_encoder_kernel_sizes=[7, 3, 3, 3],
            face_encoder_strides=[1, 2, 2, 2], face_encoder_residual_layers=[0, 1, 1, 0],
            audio_encoder_channels=[4, 8, 8, 16], audio_encoder_residual_layers=[1, 0, 1, 0],
            decoder_channels=[16, 8, 8, 4], decoder_residual_layers=[1, 0, 1, 1], output_hidden_channels=4)


def randomised_batch_norms(model):
    """BatchNorm statistics and affine weights away from identity, so that folding them has something to do."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
    return model


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_wav2lip")
    randomised_batch_norms(Wav2LipModel(Wav2LipConfig(**TINY))).save_pretrained(folder)
    TalkingFaceAudioFeatureExtractor(fps=30.0).save_pretrained(folder)
    return folder


def inputs(batch=3, size=24):
    generator = torch.Generator().manual_seed(2)
    faces = torch.rand(batch, 6, size, size, generator=generator)
    mels = torch.rand(batch, 1, 80, 16, generator=generator) * 8 - 4
    return faces, mels


def test_same_state_dict_and_outputs_as_wav2lip_model(folder):
    model = Wav2LipModel.from_pretrained(folder).eval()
    network = load_wav2lip_network(folder)
    assert type(network) is Wav2LipNetwork and not network.training
    expected, got = model.state_dict(), network.state_dict()
    assert list(got) == list(expected)
    assert all(torch.equal(got[key], expected[key]) and got[key].dtype == expected[key].dtype for key in expected)
    assert not any(tensor.is_meta for tensor in got.values())
    faces, mels = inputs()
    with torch.no_grad():
        reference = model(masked_and_reference_faces=faces, mel_chunks=mels)
        output = network(masked_and_reference_faces=faces, mel_chunks=mels)
        assert torch.equal(output.generated_faces, reference.generated_faces)
        assert torch.equal(output.audio_embeds, reference.audio_embeds)
        # the 5-D (batch, 6, frames, H, W) form as well
        faces_5d, mels_5d = faces[None].transpose(1, 2), mels[None]
        assert torch.equal(network(faces_5d, mels_5d).generated_faces,
                           model(masked_and_reference_faces=faces_5d, mel_chunks=mels_5d).generated_faces)
        # and after the BatchNorm folding that from_pretrained of the pipeline applies
        optimize_for_inference(model), optimize_for_inference(network)
        assert torch.equal(network(faces, mels).generated_faces,
                           model(masked_and_reference_faces=faces, mel_chunks=mels).generated_faces)
    with pytest.raises(ValueError, match="expects masked_and_reference_faces"):
        network(faces[:, :3], mels)


def test_the_generator_adapter_loads_the_plain_network_with_identical_results(folder):
    plain = Wav2LipGenerator.from_pretrained(folder)
    assert type(plain.model) is Wav2LipNetwork and type(plain.feature_extractor) is Wav2LipMelFeatures
    full = Wav2LipGenerator(Wav2LipModel.from_pretrained(folder),
                            TalkingFaceAudioFeatureExtractor.from_pretrained(folder))
    assert plain.fps == full.fps == 30.0 and plain.sampling_rate == full.sampling_rate == 16000
    assert plain.img_size == full.img_size == 24
    waveform = np.sin(np.linspace(0, 400, 16000)).astype(np.float32) * 0.3
    audio_plain, audio_full = plain.prepare_audio(waveform, 16000, 25.0), full.prepare_audio(waveform, 16000, 25.0)
    assert audio_plain.num_frames == audio_full.num_frames == 25
    assert torch.equal(audio_plain.per_frame, audio_full.per_frame)
    for generator in (plain, full):
        generator.optimize_for_inference()
    faces = inputs(batch=4)[0]
    masked, reference = faces[:, :3].clone(), faces[:, 3:]
    masked[:, :, 12:] = 0
    indices = torch.tensor([0, 5, 9, 24])
    assert torch.equal(plain.generate(masked, reference, audio_plain, indices),
                       full.generate(masked, reference, PreparedAudio(audio_full.per_frame, 25, 25.0), indices))


def test_mel_features_match_the_feature_extractor(folder):
    plain = Wav2LipMelFeatures.from_json_file(folder / "preprocessor_config.json")
    full = TalkingFaceAudioFeatureExtractor.from_pretrained(folder)
    assert isinstance(full, Wav2LipMelFeatures)  # the transformers class is built on the numpy one
    waveform = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    assert np.array_equal(plain.mel_spectrogram(waveform, 16000), full.mel_spectrogram(waveform, 16000))
    assert plain.fps == full.fps == 30.0
    assert json.loads(full.to_json_string())["fps"] == 30.0 and "_mel_filters" not in full.to_dict()


def copy_folder(folder, target, config_change=None, weights_change=None):
    target.mkdir()
    config = json.loads((folder / "config.json").read_text())
    if config_change:
        config_change(config)
    (target / "config.json").write_text(json.dumps(config))
    (target / "preprocessor_config.json").write_text((folder / "preprocessor_config.json").read_text())
    state = load_file(folder / "model.safetensors")
    if weights_change:
        weights_change(state)
    save_file(state, target / "model.safetensors", metadata={"format": "pt"})
    return target


@pytest.mark.parametrize("change", ["bf16 weights", "a config key missing", "another architecture", "extra key",
                                    "a float size"])
def test_folders_it_does_not_read_exactly_go_through_transformers(folder, tmp_path, change):
    changes = {
        "bf16 weights": dict(weights_change=lambda state: state.update(
            {key: value.bfloat16() for key, value in state.items() if value.is_floating_point()})),
        "a config key missing": dict(config_change=lambda config: config.pop("decoder_residual_layers")),
        "another architecture": dict(config_change=lambda config: config.update(architectures=["SomethingElse"])),
        "extra key": dict(weights_change=lambda state: state.update(extra=torch.zeros(1))),
        "a float size": dict(config_change=lambda config: config.update(hidden_size=16.0)),
    }
    changed = copy_folder(folder, tmp_path / "changed", **changes[change])
    assert load_wav2lip_network(changed) is None


def test_no_preprocessor_config_or_loading_options_use_transformers(folder, tmp_path):
    changed = copy_folder(folder, tmp_path / "changed")
    (changed / "preprocessor_config.json").unlink()
    generator = Wav2LipGenerator.from_pretrained(changed)
    assert type(generator.model) is Wav2LipModel
    assert type(generator.feature_extractor) is TalkingFaceAudioFeatureExtractor
    assert type(Wav2LipGenerator.from_pretrained(folder, dtype=torch.float32).model) is Wav2LipNetwork
    assert type(Wav2LipGenerator.from_pretrained(folder, revision="main").model) is Wav2LipModel
