"""TalkFaceModel / TalkFaceDiscriminator with tiny configs: shapes, round trips, freezing, the pipeline adapter."""

import numpy as np
import pytest
import torch

from talkface.models.talkface_gan import (
    TalkFaceConfig,
    TalkFaceDiscriminator,
    TalkFaceDiscriminatorConfig,
    TalkFaceModel,
    audio_encoder_kwargs,
)
from talkface.models.talkface_gan.modeling_talkface_gan import TalkFaceSpectralNormConv2d
from tests.models.model_tester import ModelTesterMixin, randomise_batch_norm

TINY_AUDIO = dict(audio_encoder_channels=[4, 4, 8, 8], audio_encoder_residual_layers=[1, 0, 1, 0], audio_hidden_size=8)


def tiny_config(**overrides):
    # 6 stages -> 48x48 faces; widths 4-8 keep a forward pass in milliseconds
    kwargs = dict(image_size=48, encoder_channels=[4, 4, 8, 8, 8, 8], decoder_channels=[8, 8, 8, 8, 4, 4],
                  fusion_channels=8, output_hidden_size=4, convs_per_block=1, **TINY_AUDIO)
    kwargs.update(overrides)
    return TalkFaceConfig(**kwargs)


def tiny_inputs(batch=2, frames=5, size=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    reference = torch.rand(batch, frames, 3, size, size, generator=g)
    masked = torch.rand(batch, frames, 3, size, size, generator=g)
    masked[..., size // 2:, :] = 0
    mels = torch.randn(batch, frames, 1, 80, 16, generator=g)
    return reference, masked, mels


assert_same_state = ModelTesterMixin.assert_same_state


class TestTalkFaceModel(ModelTesterMixin):
    model_class = TalkFaceModel
    output_names = ("generated_frames", "audio_embeddings")
    former_field_names = {"img_size": "image_size"}
    bad_configs = (
        (dict(image_size=96), "image_size"),
        (dict(decoder_channels=[8, 8]), "decoder_channels"),
        (dict(encoder_channels=[4, 0, 8, 8, 8, 8]), "encoder_channels"),
        (dict(num_mels=40), "num_mels"),
        (dict(audio_encoder_strides=[[1, 1], [3, 1], [3, 3], [1, 1]]), "audio_encoder_strides"),
        (dict(encoder_stem_kernel_size=4), "encoder_stem_kernel_size"),
    )

    def get_config(self, **overrides):
        return tiny_config(**overrides)

    def prepare_model(self, model):
        return randomise_batch_norm(model)

    def get_inputs(self, batch_size, seed=0):
        reference, masked, mels = tiny_inputs(batch=batch_size, seed=seed)
        return {"reference_frames": reference, "masked_frames": masked, "mel_chunks": mels}

    def expected_shapes(self, batch_size):
        return {"generated_frames": (batch_size, 5, 3, 48, 48), "audio_embeddings": (batch_size * 5, 8)}

    def test_output_shapes_and_range(self):
        model = TalkFaceModel(tiny_config()).eval()
        reference, masked, mels = tiny_inputs()
        out = model(reference, masked, mels)
        assert out.generated_frames.shape == (2, 5, 3, 48, 48)
        assert out.audio_embeddings.shape == (10, 8)
        assert out.loss is None
        assert 0 <= out.generated_frames.min() and out.generated_frames.max() <= 1

    def test_full_size_default_shapes(self):
        config = TalkFaceConfig()
        assert config.image_size == 96 and config.num_frames == 5
        model = TalkFaceModel(config).eval()
        reference, masked, mels = tiny_inputs(batch=1, frames=1, size=96)
        assert model(reference, masked, mels).generated_frames.shape == (1, 1, 3, 96, 96)

    def test_four_dim_input_and_loss(self):
        model = TalkFaceModel(tiny_config()).eval()
        reference, masked, mels = tiny_inputs()
        out5 = model(reference, masked, mels, target_frames=reference)
        out4 = model(reference[:, 0], masked[:, 0], mels[:, 0], target_frames=reference[:, 0])
        assert out4.generated_frames.shape == (2, 3, 48, 48)
        torch.testing.assert_close(out4.generated_frames, out5.generated_frames[:, 0])
        expected = (out5.generated_frames - reference).abs().mean()
        torch.testing.assert_close(out5.loss, expected)

    def test_depends_on_audio_and_reference(self):
        model = TalkFaceModel(tiny_config()).eval()
        reference, masked, mels = tiny_inputs()
        base = model(reference, masked, mels).generated_frames
        assert not torch.allclose(base, model(reference, masked, mels + 1).generated_frames)
        assert not torch.allclose(base, model(reference.flip(-1), masked, mels).generated_frames)

    def test_frozen_audio_encoder_stays_frozen_after_loading(self, tmp_path):
        TalkFaceModel(tiny_config()).save_pretrained(tmp_path)
        assert not any(p.requires_grad for p in TalkFaceModel.from_pretrained(tmp_path).audio_encoder.parameters())

    def test_audio_encoder_frozen(self):
        model = TalkFaceModel(tiny_config())
        model.train()
        assert model.decoder.training and not model.audio_encoder.training
        stats_before = model.audio_encoder[0].conv_block[1].running_mean.clone()
        reference, masked, mels = tiny_inputs()
        out = model(reference, masked, mels)
        out.generated_frames.mean().backward()
        torch.testing.assert_close(model.audio_encoder[0].conv_block[1].running_mean, stats_before)
        assert all(p.grad is None for p in model.audio_encoder.parameters())
        assert model.identity_encoder.stages[0][0].conv.weight.grad is not None
        assert model.pose_encoder.stages[0][0].conv.weight.grad is not None
        unfrozen = TalkFaceModel(tiny_config(freeze_audio_encoder=False))
        assert all(p.requires_grad for p in unfrozen.audio_encoder.parameters())

    def test_bad_input_shape_raises(self):
        model = TalkFaceModel(tiny_config())
        reference, masked, mels = tiny_inputs()
        with pytest.raises(ValueError, match="mel_chunks"):
            model(reference, masked, mels[:, :4])
        with pytest.raises(ValueError, match="masked_frames"):
            model(reference[..., :40], masked[..., :40], mels)

    def test_load_audio_encoder_from_expert(self, tmp_path):
        from talkface.models import syncnet
        expert_config = syncnet.SyncNetConfig(audio_encoder_channels=[4, 4, 8, 8], hidden_size=8,
                                              audio_encoder_residual_layers=[1, 0, 1, 0],
                                              face_encoder_channels=[4, 4, 8, 8, 8, 8])
        expert = syncnet.SyncNetModel(expert_config)
        expert.save_pretrained(tmp_path / "expert")
        model = TalkFaceModel(tiny_config(**audio_encoder_kwargs(expert_config)))
        model.load_audio_encoder_from(tmp_path / "expert")
        for (key, value), expected in zip(model.audio_encoder.state_dict().items(),
                                          expert.audio_encoder.state_dict().values()):
            assert torch.equal(value, expected), key
        assert not any(p.requires_grad for p in model.audio_encoder.parameters())
        mismatched = TalkFaceModel(tiny_config(audio_hidden_size=16))
        with pytest.raises(Exception, match="audio encoder"):
            mismatched.load_audio_encoder_from(expert)


class TestTalkFaceDiscriminator(ModelTesterMixin):
    model_class = TalkFaceDiscriminator
    output_names = ("logits",)
    former_field_names = {"img_size": "image_size"}
    bad_configs = (
        (dict(leaky_relu_slope=1.5), "leaky_relu_slope"),
        (dict(hidden_channels=[]), "hidden_channels"),
        (dict(image_size=0), "image_size"),
    )

    def tiny(self):
        return self.get_config()

    def get_config(self, **overrides):
        return TalkFaceDiscriminatorConfig(**{"image_size": 48, "hidden_channels": [4, 8, 8, 8, 8, 8, 8], **overrides})

    def get_inputs(self, batch_size, seed=0):
        return {"frames": torch.rand(batch_size, 5, 3, 48, 48, generator=torch.Generator().manual_seed(seed))}

    def expected_shapes(self, batch_size):
        return {"logits": (batch_size, 5)}

    def test_shapes(self):
        disc = TalkFaceDiscriminator(self.tiny())
        frames = torch.rand(2, 5, 3, 48, 48)
        assert disc(frames).logits.shape == (2, 5)
        assert disc(frames[:, 0]).logits.shape == (2,)
        full = TalkFaceDiscriminator(TalkFaceDiscriminatorConfig())
        assert sum(isinstance(m, TalkFaceSpectralNormConv2d) for m in full.convs) == 7
        assert full(torch.rand(1, 3, 96, 96)).logits.shape == (1,)

    def test_round_trip_and_eval_has_no_side_effects(self, tmp_path):
        disc = TalkFaceDiscriminator(self.tiny())
        disc.train()
        disc(torch.rand(2, 3, 48, 48))  # one power iteration updates weight_u
        disc.eval()
        disc.save_pretrained(tmp_path)
        loaded = TalkFaceDiscriminator.from_pretrained(tmp_path).eval()
        assert_same_state(disc, loaded)
        frames = torch.rand(3, 3, 48, 48)
        before = {k: v.clone() for k, v in loaded.state_dict().items()}
        torch.testing.assert_close(disc(frames).logits, loaded(frames).logits, rtol=0, atol=0)
        for key, value in loaded.state_dict().items():
            assert torch.equal(value, before[key]), key

    def test_spectral_norm_converges_to_unit_sigma(self):
        conv = TalkFaceSpectralNormConv2d(4, 6, 3, 2, 1).train()
        for _ in range(50):
            weight = conv.normalized_weight()
        sigma = torch.linalg.matrix_norm(weight.detach().flatten(1), ord=2)
        torch.testing.assert_close(sigma, torch.tensor(1.0), rtol=1e-3, atol=1e-3)


class TestTalkFaceGeneratorAdapter:
    def test_generate_pads_to_multiple_of_k(self, tmp_path):
        from talkface.pipelines.lipsync.generator import load_generator

        model = TalkFaceModel(tiny_config()).eval()
        model.save_pretrained(tmp_path)
        generator = load_generator(tmp_path)
        assert type(generator).__name__ == "TalkFaceGenerator" and generator.frames_per_step == 5
        waveform = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
        audio = generator.prepare_audio(waveform, 16000, 25.0)
        assert audio.num_frames == 25 and audio.per_frame.shape == (25, 1, 80, 16)
        masked = torch.rand(7, 3, 48, 48)
        masked[:, :, 24:] = 0
        reference = torch.rand(7, 3, 48, 48)
        indices = torch.arange(3, 10)
        out = generator.generate(masked, reference, audio, indices)
        assert out.shape == (7, 3, 48, 48)
        # eval mode: each face depends only on its own inputs, so padding must not change the first group
        expected = model(reference[:5][None], masked[:5][None], audio.per_frame[3:8][None]).generated_frames[0]
        torch.testing.assert_close(out[:5], expected)
