"""TalkLipModel on tiny random configs (global and local audio encoders), and the face path's Wav2Lip parity."""

import json

import numpy as np
import pytest
import torch

from talkface.models.avhubert import AVHubertConfig
from talkface.models.talklip import TalkLipConfig, TalkLipModel, flatten_frame_indices
from talkface.models.wav2lip import Wav2LipConfig, Wav2LipModel
from tests.models.model_tester import ModelTesterMixin, randomise_batch_norm
from tests.utils import formula_state_dict, load_golden

TINY_IMG = 24
GOLDEN_ATOL = 1e-5  # golden/README.md: Wav2Lip outputs within 1e-5


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_avhubert_config(**overrides) -> dict:
    values = dict(encoder_layers=3, encoder_embed_dim=16, encoder_ffn_embed_dim=32, encoder_attention_heads=2,
                  conv_pos=4, conv_pos_groups=2, video_frontend_channels=4, resnet_channels=[4, 4, 8, 8],
                  resnet_blocks=[1, 1, 1, 1], dropout=0.0, attention_dropout=0.0)
    values.update(overrides)
    return values


def tiny_config(**overrides) -> TalkLipConfig:
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
        avhubert_config=tiny_avhubert_config(),
        trainable_audio_layers=2,
    )
    values.update(overrides)
    return TalkLipConfig(**values)


def tiny_inputs(num_faces=3, batch=1, frames=7, seed=1):
    generator = torch.Generator().manual_seed(seed)
    faces = torch.rand(num_faces, 6, TINY_IMG, TINY_IMG, generator=generator)
    audio = torch.randn(batch, 104, frames, generator=generator)
    return faces, audio


@pytest.fixture
def model():
    torch.manual_seed(0)
    return randomise_batch_norm(TalkLipModel(tiny_config())).eval()


# --- configuration ------------------------------------------------------------------------------------------------


def test_config_defaults_reproduce_the_released_talklip():
    config = TalkLipConfig()
    assert config.audio_encoder_type == "global" and config.model_type == "talklip"
    assert isinstance(config.avhubert_config, AVHubertConfig)
    assert (config.avhubert_config.encoder_layers, config.avhubert_config.encoder_embed_dim) == (12, 768)
    assert config.trainable_audio_layers == 3 and config.hidden_size == 512 and config.image_size == 96
    assert config.audio_feature_dim == 768 and config.contrastive_projection_dim == 768
    # the face path is Wav2Lip's, field for field
    wav2lip = Wav2LipConfig()
    for name in ("face_encoder_channels", "face_encoder_kernel_sizes", "face_encoder_strides",
                 "face_encoder_residual_layers", "decoder_channels", "decoder_residual_layers", "hidden_size"):
        assert getattr(config, name) == getattr(wav2lip, name), name


def test_local_config_has_no_avhubert_and_no_trainable_layers():
    config = TalkLipConfig(audio_encoder_type="local")
    assert config.avhubert_config is None and config.trainable_audio_layers == 0
    assert config.audio_feature_dim == 512


class TestTalkLipModel(ModelTesterMixin):
    """The global (AV-HuBERT) encoder; one utterance of 7 frames and one face per batch item."""

    model_class = TalkLipModel
    output_names = ("generated_faces", "audio_embeds", "audio_hidden_states", "picked_audio_features")
    former_field_names = {"img_size": "image_size"}
    bad_configs = (
        ({"audio_encoder_type": "mel"}, "audio_encoder_type"),
        ({"trainable_audio_layers": 4}, "trainable_audio_layers"),
        ({"trainable_audio_layers": -1}, "trainable_audio_layers"),
        ({"image_size": 32}, "image_size"),
        ({"decoder_channels": [16, 8, 8]}, "decoder_channels"),
        ({"avhubert_config": "base"}, "avhubert_config"),
    )
    frames = 7

    def get_config(self, **overrides):
        return tiny_config(**overrides)

    def prepare_model(self, model):
        return randomise_batch_norm(model)

    def face_rows(self, batch_size):
        return torch.arange(batch_size) * 2 % self.frames  # the frame each utterance's face is at

    def get_inputs(self, batch_size, seed=0):
        faces, audio = tiny_inputs(num_faces=batch_size, batch=batch_size, frames=self.frames, seed=seed)
        indices = flatten_frame_indices(torch.arange(batch_size), self.face_rows(batch_size), self.frames)
        return {"masked_and_reference_faces": faces, "audio_features": audio, "audio_frame_indices": indices}

    def select_item(self, inputs, index, batch_size):
        return {"masked_and_reference_faces": inputs["masked_and_reference_faces"][index : index + 1],
                "audio_features": inputs["audio_features"][index : index + 1],
                "audio_frame_indices": self.face_rows(batch_size)[index : index + 1]}

    def expected_shapes(self, batch_size):
        return {"generated_faces": (batch_size, 3, TINY_IMG, TINY_IMG), "audio_embeds": (batch_size, 16, 1, 1),
                "audio_hidden_states": (batch_size, self.frames, 16), "picked_audio_features": (batch_size, 16)}


class TestLocalTalkLipModel(TestTalkLipModel):
    """The local (Wav2Lip mel) encoder."""

    output_names = ("generated_faces", "audio_embeds")
    bad_configs = (
        ({"audio_encoder_type": "mel"}, "audio_encoder_type"),
        ({"image_size": 32}, "image_size"),
        ({"decoder_channels": [16, 8, 8]}, "decoder_channels"),
        ({"audio_encoder_residual_layers": [1, 0]}, "audio_encoder_residual_layers"),
    )

    def get_config(self, **overrides):
        return tiny_config(**{"audio_encoder_type": "local", **overrides})

    def get_inputs(self, batch_size, seed=0):
        faces, _ = tiny_inputs(num_faces=batch_size, seed=seed)
        mels = torch.randn(batch_size, 1, 80, 16, generator=torch.Generator().manual_seed(seed + 1))
        return {"masked_and_reference_faces": faces, "mel_chunks": mels}

    def select_item(self, inputs, index, batch_size):
        return ModelTesterMixin.select_item(self, inputs, index, batch_size)

    def expected_shapes(self, batch_size):
        return {"generated_faces": (batch_size, 3, TINY_IMG, TINY_IMG), "audio_embeds": (batch_size, 16, 1, 1)}


def test_former_input_keyword_still_works_with_a_warning(model):
    faces, audio = tiny_inputs(num_faces=2)
    with torch.no_grad():
        expected = model(faces, audio_features=audio, audio_frame_indices=torch.tensor([0, 3])).generated_faces
        with pytest.warns(FutureWarning, match="masked_and_reference_faces"):
            old = model(face_frames=faces, audio_features=audio, audio_frame_indices=torch.tensor([0, 3]))
    torch.testing.assert_close(old.generated_faces, expected, rtol=0, atol=0)


def test_config_round_trip_keeps_the_nested_avhubert_config(tmp_path):
    config = tiny_config()
    config.save_pretrained(tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["model_type"] == "talklip" and stored["avhubert_config"]["encoder_embed_dim"] == 16
    loaded = TalkLipConfig.from_pretrained(tmp_path)
    assert isinstance(loaded.avhubert_config, AVHubertConfig)
    assert loaded.avhubert_config.to_dict() == config.avhubert_config.to_dict()
    assert loaded.to_dict() == config.to_dict()


# --- forward ------------------------------------------------------------------------------------------------------


def test_global_forward_shapes_and_picked_features(model):
    faces, audio = tiny_inputs(num_faces=3, batch=2, frames=7)
    indices = flatten_frame_indices(torch.tensor([0, 1, 1]), torch.tensor([6, 0, 3]), 7)
    assert indices.tolist() == [6, 7, 10]
    with torch.no_grad():
        output = model(faces, audio_features=audio, audio_frame_indices=indices)
    assert output.generated_faces.shape == (3, 3, TINY_IMG, TINY_IMG)
    assert output.audio_embeds.shape == (3, 16, 1, 1)
    assert output.audio_hidden_states.shape == (2, 7, 16)
    assert 0 <= output.generated_faces.min() and output.generated_faces.max() <= 1
    # the picked features are rows b * T + t of the encoder output, and audio_map turns them into the embedding
    expected = output.audio_hidden_states[[0, 1, 1], [6, 0, 3]]
    torch.testing.assert_close(output.picked_audio_features, expected, rtol=0, atol=0)
    torch.testing.assert_close(output.audio_embeds.flatten(1), model.audio_map(expected), rtol=0, atol=0)
    # the encoder output is AV-HuBERT's audio-only final layer (after the final LayerNorm)
    torch.testing.assert_close(output.audio_hidden_states, model.audio_encoder.encode_audio(audio), rtol=0, atol=0)


def test_local_forward_matches_wav2lip_with_the_same_weights():
    torch.manual_seed(0)
    talklip = randomise_batch_norm(TalkLipModel(tiny_config(audio_encoder_type="local"))).eval()
    wav2lip_fields = {k: v for k, v in tiny_config().to_dict().items() if k in Wav2LipConfig().to_dict()}
    wav2lip = Wav2LipModel(Wav2LipConfig(**wav2lip_fields)).eval()
    face_state = {k: v for k, v in talklip.state_dict().items() if not k.startswith("contrastive_head.")}
    wav2lip.load_state_dict(face_state, strict=True)  # identical key names
    faces, _ = tiny_inputs(num_faces=2)
    mels = torch.randn(2, 1, 80, 16)
    with torch.no_grad():
        ours = talklip(faces, mel_chunks=mels)
        theirs = wav2lip(faces, mels)
    torch.testing.assert_close(ours.generated_faces, theirs.generated_faces, rtol=0, atol=0)
    torch.testing.assert_close(ours.audio_embeds, theirs.audio_embeds, rtol=0, atol=0)


def test_precomputed_audio_embeds_skip_the_encoder(model):
    faces, audio = tiny_inputs(num_faces=2)
    indices = torch.tensor([1, 4])
    with torch.no_grad():
        full = model(faces, audio_features=audio, audio_frame_indices=indices)
        direct = model(faces, audio_embeds=full.audio_embeds.flatten(1))
    torch.testing.assert_close(direct.generated_faces, full.generated_faces, rtol=0, atol=0)
    assert direct.audio_hidden_states is None


def test_batch_equals_single_with_padding(model):
    """Two utterances of different length, padded, give what each gives alone."""
    faces, _ = tiny_inputs(num_faces=4)
    generator = torch.Generator().manual_seed(3)
    long_audio, short_audio = torch.randn(1, 104, 9, generator=generator), torch.randn(1, 104, 6, generator=generator)
    audio = torch.zeros(2, 104, 9)
    audio[0], audio[1, :, :6] = long_audio[0], short_audio[0]
    padding_mask = torch.zeros(2, 9, dtype=torch.bool)
    padding_mask[1, 6:] = True
    frames = torch.tensor([0, 8, 2, 5])
    utterance = torch.tensor([0, 0, 1, 1])
    with torch.no_grad():
        batched = model(faces, audio_features=audio, padding_mask=padding_mask,
                        audio_frame_indices=flatten_frame_indices(utterance, frames, 9)).generated_faces
        first = model(faces[:2], audio_features=long_audio, audio_frame_indices=frames[:2]).generated_faces
        second = model(faces[2:], audio_features=short_audio, audio_frame_indices=frames[2:]).generated_faces
    torch.testing.assert_close(batched, torch.cat([first, second]), rtol=1e-5, atol=1e-6)


def test_l1_loss_with_targets(model):
    faces, audio = tiny_inputs(num_faces=2)
    target = torch.rand(2, 3, TINY_IMG, TINY_IMG)
    with torch.no_grad():
        output = model(faces, audio_features=audio, audio_frame_indices=torch.tensor([0, 1]), target_faces=target)
    torch.testing.assert_close(output.loss, (output.generated_faces - target).abs().mean())


@pytest.mark.parametrize("kwargs, message", [
    ({"mel_chunks": torch.zeros(3, 1, 80, 16)}, "global TalkLip encoder needs audio_features"),
    ({"audio_features": torch.zeros(1, 104, 7), "audio_frame_indices": torch.tensor([0, 1, 7])}, r"\[0, B \* T\)"),
    ({"audio_features": torch.zeros(1, 104, 7), "audio_frame_indices": torch.tensor([0, 1])}, "2 entries for 3"),
])
def test_bad_inputs_raise(model, kwargs, message):
    faces, _ = tiny_inputs(num_faces=3)
    with pytest.raises(ValueError, match=message):
        model(faces, **kwargs)


def test_wrong_face_shape_raises(model):
    with pytest.raises(ValueError, match="masked_and_reference_faces"):
        model(torch.zeros(2, 3, TINY_IMG, TINY_IMG), audio_embeds=torch.zeros(2, 16))


# --- freezing and fine-tuning -------------------------------------------------------------------------------------


def trainable_audio_names(model):
    return {name for name, p in model.named_parameters() if p.requires_grad and name.startswith("audio_encoder.")}


def test_only_the_last_layers_of_the_global_encoder_are_trainable(model, tmp_path):
    names = trainable_audio_names(model)
    assert names and all(n.startswith(("audio_encoder.encoder.layers.1.", "audio_encoder.encoder.layers.2."))
                         for n in names)
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("audio_encoder."))
    model.save_pretrained(tmp_path)
    assert trainable_audio_names(TalkLipModel.from_pretrained(tmp_path)) == names


def test_audio_encoder_gets_gradients_only_while_finetuning(model):
    faces, audio = tiny_inputs(num_faces=2)
    model.train()
    output = model(faces, audio_features=audio, audio_frame_indices=torch.tensor([0, 5]))
    output.generated_faces.sum().backward()
    assert all(p.grad is None for p in model.audio_encoder.parameters())
    assert model.audio_map.weight.grad is not None and model.face_encoder_blocks[0][0].conv_block[0].weight.grad \
        is not None
    model.zero_grad(set_to_none=True)

    model.set_audio_encoder_finetuning(True)
    output = model(faces, audio_features=audio, audio_frame_indices=torch.tensor([0, 5]))
    output.generated_faces.sum().backward()
    layers = model.audio_encoder.encoder.layers
    assert all(p.grad is not None for p in layers[2].parameters())
    assert all(p.grad is not None for p in layers[1].parameters())
    assert all(p.grad is None for p in layers[0].parameters())
    assert model.audio_encoder.encoder.layer_norm.weight.grad is None


# --- save / load --------------------------------------------------------------------------------------------------


def test_contrastive_head_is_optional():
    assert TalkLipModel(tiny_config(use_contrastive_head=False)).contrastive_head is None
    head = TalkLipModel(tiny_config(contrastive_projection_dim=8)).contrastive_head
    projected = head(torch.randn(5, 16))
    assert projected.shape == (5, 8)
    torch.testing.assert_close(projected.norm(dim=-1), torch.ones(5))


# --- face path parity with the Wav2Lip golden ---------------------------------------------------------------------


def _wav2lip_face_config(audio_encoder_type, **overrides):
    return TalkLipConfig(audio_encoder_type=audio_encoder_type, use_contrastive_head=False, **overrides)


def test_face_path_matches_the_wav2lip_golden_in_both_modes():
    """TalkLip's face keys are Wav2Lip's: the formula weights of the Wav2Lip golden give its output.

    Local mode is the whole Wav2Lip network. In global mode the face path is fed Wav2Lip's own audio embedding
    of the golden mel windows (the audio encoders differ, the face path must not)."""
    golden = load_golden("wav2lip.npz")
    original = formula_state_dict("wav2lip_generator_keys.json")
    faces, mels = torch.from_numpy(golden["gen_face_in"]), torch.from_numpy(golden["gen_mel_in"])
    expected = torch.from_numpy(golden["gen_out"])

    local = TalkLipModel(_wav2lip_face_config("local")).eval()
    local.load_state_dict(original, strict=True)
    with torch.no_grad():
        output = local(faces, mel_chunks=mels)
    torch.testing.assert_close(output.generated_faces, expected, rtol=0, atol=GOLDEN_ATOL)

    tiny_global = _wav2lip_face_config("global", avhubert_config=tiny_avhubert_config(), trainable_audio_layers=0)
    global_model = TalkLipModel(tiny_global).eval()
    face_state = {k: v for k, v in original.items() if not k.startswith("audio_encoder.")}
    missing, unexpected = global_model.load_state_dict(face_state, strict=False)
    assert not unexpected and all(k.startswith(("audio_encoder.", "audio_map.")) for k in missing)
    with torch.no_grad():
        audio_embeds = output.audio_embeds  # Wav2Lip's audio embedding of the golden mel windows
        generated = global_model(faces, audio_embeds=audio_embeds).generated_faces
        # the face encoder activations are identical too, block by block
        hidden_local, hidden_global = faces, faces
        for block_local, block_global in zip(local.face_encoder_blocks, global_model.face_encoder_blocks):
            hidden_local, hidden_global = block_local(hidden_local), block_global(hidden_global)
            torch.testing.assert_close(hidden_global, hidden_local, rtol=0, atol=0)
    torch.testing.assert_close(generated, expected, rtol=0, atol=GOLDEN_ATOL)
    assert np.isfinite(generated.numpy()).all()
