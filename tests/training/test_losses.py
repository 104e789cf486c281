"""talkface.training.losses.core on hand-made cases with known values, and gradients reaching the generator."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from talkface.training.losses.core import (
    GENERATOR_LOSSES,
    AVHubertSyncLoss,
    GeneratorLossInputs,
    LossTerm,
    SyncNetExpertLoss,
    build_generator_losses,
    cosine_log_loss,
    discriminator_loss,
    gan_loss,
    gather_window,
    insert_window,
    l1_loss,
    register_generator_loss,
)


class PoolingAVHubert(nn.Module):
    """Stand-in for AVHubertModel with known features: the video gives each frame's mean over D vertical bands of
    the mouth crop, the audio its first D values; multimodal input sums both. One parameter, to check freezing."""

    def __init__(self, dim=4):
        super().__init__()
        self.dim = dim
        self.scale = nn.Parameter(torch.ones(()))
        self.calls = []

    def forward(self, audio_features=None, video=None, padding_mask=None, output_layer=None):
        self.calls.append((audio_features is not None, video is not None))
        parts = []
        if video is not None:  # (B, 1, T, 88, 88) -> (B, T, dim)
            bands = video[:, 0].reshape(*video.shape[:1], video.shape[2], 88, self.dim, 88 // self.dim)
            parts.append(bands.mean(dim=(2, 4)))
        if audio_features is not None:  # (B, 104, T) -> (B, T, dim)
            parts.append(audio_features[:, : self.dim].transpose(1, 2))
        return SimpleNamespace(last_hidden_state=self.scale * sum(parts))


def identity_crop(images, affines):
    """Mouth crop stand-in: grey value of the first channel resized to 88x88 (affines ignored)."""
    return nn.functional.interpolate(images[:, :1], size=(88, 88), mode="nearest")


class TestPlainLosses:
    def test_gan_known_values(self):
        zero = torch.zeros(4)
        torch.testing.assert_close(gan_loss(zero, True), torch.tensor(math.log(2)))
        torch.testing.assert_close(gan_loss(zero, False), torch.tensor(math.log(2)))
        logits = torch.tensor([2.0, -1.0])
        expected_real = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0))) / 2
        torch.testing.assert_close(gan_loss(logits, True), torch.tensor(expected_real))
        expected_fake = (math.log1p(math.exp(2.0)) + math.log1p(math.exp(-1.0))) / 2
        torch.testing.assert_close(gan_loss(logits, False), torch.tensor(expected_fake))
        expected = torch.tensor((expected_real + expected_fake) / 2)
        torch.testing.assert_close(discriminator_loss(logits, logits), expected)

    def test_l1_known_values(self):
        generated = torch.tensor([[0.0, 0.5], [1.0, 0.25]])
        target = torch.tensor([[1.0, 0.5], [0.0, 0.75]])
        torch.testing.assert_close(l1_loss(generated, target), torch.tensor((1 + 0 + 1 + 0.5) / 4))

    def test_cosine_log_loss(self):
        features = torch.randn(2, 5, 8)
        torch.testing.assert_close(cosine_log_loss(features, features), torch.tensor(0.0), atol=1e-6, rtol=0)
        torch.testing.assert_close(cosine_log_loss(features, 3 * features), torch.tensor(0.0), atol=1e-6, rtol=0)
        a = torch.tensor([[1.0, 0.0]])
        b = torch.tensor([[0.0, 1.0]])
        torch.testing.assert_close(cosine_log_loss(a, b, min_cosine=1e-3), torch.tensor(-math.log(1e-3)))
        torch.testing.assert_close(cosine_log_loss(a, -a, min_cosine=1e-3), torch.tensor(-math.log(1e-3)))
        half = torch.tensor([[1.0, math.sqrt(3.0)]])  # 60 degrees from a: cosine 0.5
        torch.testing.assert_close(cosine_log_loss(a, half), torch.tensor(math.log(2.0)))
        mask = torch.tensor([True, False])
        pair = torch.stack([a[0], a[0]])[None]
        other = torch.stack([half[0], b[0]])[None]
        torch.testing.assert_close(cosine_log_loss(pair, other, mask=mask[None]), torch.tensor(math.log(2.0)))
        with pytest.raises(ValueError, match="min_cosine"):
            cosine_log_loss(a, b, min_cosine=0.0)

    def test_insert_and_gather_window(self):
        context = torch.zeros(2, 6, 1)
        window = torch.ones(2, 2, 1, requires_grad=True)
        start = torch.tensor([1, 4])
        merged = insert_window(context, window, start)
        assert merged[:, :, 0].tolist() == [[0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1]]
        assert torch.equal(gather_window(merged, start, 2), window.detach())
        merged.sum().backward()
        assert torch.equal(window.grad, torch.ones_like(window))


def sync_case(batch=2, frames=8, k=3):
    g = torch.Generator().manual_seed(0)
    context = torch.rand(batch, frames, 3, 16, 16, generator=g)
    affines = torch.zeros(batch, frames, 2, 3)
    start = torch.tensor([1, 5][:batch])
    audio = torch.randn(batch, frames, 104, generator=g)
    return context, affines, audio, start, k


class TestAVHubertSyncLoss:
    def test_variants_and_known_values(self):
        context, affines, audio, start, k = sync_case()
        avhubert = PoolingAVHubert()
        generated = gather_window(context, start, k).clone()  # the generated window equals the ground truth
        for variant in ("visual_visual", "multimodal"):
            loss = AVHubertSyncLoss(avhubert, variant=variant, crop_fn=identity_crop)
            output = loss(generated, context, affines, audio, start)
            torch.testing.assert_close(output.loss, torch.tensor(0.0), atol=1e-6, rtol=0)
            assert output.cosine.shape == (2, k)

        # unsupervised: features of the generated frames vs the audio features, known by construction
        loss = AVHubertSyncLoss(avhubert, variant="unsupervised", min_cosine=1e-3, crop_fn=identity_crop)
        flat = torch.full_like(generated, 0.5)
        audio_same = audio.clone()
        audio_same[:, :, :4] = 1.0  # audio feature (1, 1, 1, 1) everywhere; a flat grey frame gives (0.5,) * 4
        output = loss(flat, context, affines, audio_same, start)
        torch.testing.assert_close(output.loss, torch.tensor(0.0), atol=1e-6, rtol=0)
        audio_opposite = audio.clone()
        audio_opposite[:, :, :4] = -1.0  # opposite direction: clamped
        output = loss(flat, context, affines, audio_opposite, start)
        torch.testing.assert_close(output.loss, torch.tensor(-math.log(1e-3)))

    def test_only_generated_interval_counts(self):
        context, affines, audio, start, k = sync_case()
        avhubert = PoolingAVHubert()
        loss = AVHubertSyncLoss(avhubert, variant="visual_visual", crop_fn=identity_crop)
        generated = gather_window(context, start, k).clone()
        # changing ground-truth frames outside the window changes both sequences equally there: loss stays 0
        changed = context.clone()
        changed[0, 0] = 1.0 - changed[0, 0]
        changed[1, 2] = 0.0
        torch.testing.assert_close(loss(generated, changed, affines, audio, start).loss, torch.tensor(0.0),
                                   atol=1e-6, rtol=0)
        # changing a generated frame does change it
        generated[0, 0] = 1.0 - generated[0, 0]
        assert loss(generated, context, affines, audio, start).loss > 1e-4

    def test_gradient_reaches_generated_frames_not_avhubert(self):
        context, affines, audio, start, k = sync_case()
        avhubert = PoolingAVHubert()
        loss = AVHubertSyncLoss(avhubert, crop_fn=identity_crop)
        generated = torch.rand(2, k, 3, 16, 16, requires_grad=True)
        loss(generated, context, affines, audio, start).loss.backward()
        assert generated.grad is not None and generated.grad.abs().sum() > 0
        assert avhubert.scale.grad is None and not avhubert.scale.requires_grad
        loss.train()
        assert not avhubert.training

    def test_real_avhubert_and_mouth_crop(self):
        from talkface.models import avhubert as avhubert_module
        config = avhubert_module.AVHubertConfig(
            encoder_layers=1, encoder_embed_dim=16, encoder_ffn_embed_dim=32, encoder_attention_heads=2, conv_pos=4,
            conv_pos_groups=2, video_frontend_channels=4, resnet_channels=[4, 4, 8, 8], resnet_blocks=[1, 1, 1, 1])
        model = avhubert_module.AVHubertModel(config)
        loss = AVHubertSyncLoss(model, variant="multimodal")  # default crop: crop_mouth_differentiable
        frames, size, k = 10, 48, 5
        context = (torch.rand(2, frames, 3, size, size) * 255).to(torch.uint8)
        affines = torch.tensor([[0.25, 0.0, 12.0], [0.0, 0.25, 24.0]]).expand(2, frames, 2, 3)
        audio = torch.randn(2, frames, 104)
        start = torch.tensor([0, 5])
        padding_mask = torch.zeros(2, frames, dtype=torch.bool)
        padding_mask[0, 8:] = True
        generated = torch.rand(2, k, 3, size, size, requires_grad=True)
        output = loss(generated, context, affines, audio, start, padding_mask)
        assert output.loss.ndim == 0 and torch.isfinite(output.loss)
        output.loss.backward()
        assert generated.grad.abs().sum() > 0
        assert all(p.grad is None for p in model.parameters())
        same = loss(context[torch.arange(2)[:, None], start[:, None] + torch.arange(k)].float() / 255, context,
                    affines, audio, start, padding_mask)
        torch.testing.assert_close(same.loss, torch.tensor(0.0), atol=1e-5, rtol=0)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="variant"):
            AVHubertSyncLoss(PoolingAVHubert(), variant="syncnet")
        context, affines, audio, start, k = sync_case()
        loss = AVHubertSyncLoss(PoolingAVHubert(), crop_fn=identity_crop)
        with pytest.raises(ValueError, match="leaves the context"):
            loss(torch.rand(2, k, 3, 16, 16), context, affines, audio, torch.tensor([0, 6]))


class TestSyncNetExpertLoss:
    def test_expert_loss_matches_bce_of_cosine(self):
        from talkface.models import syncnet
        config = syncnet.SyncNetConfig(audio_encoder_channels=[4, 4, 8, 8], hidden_size=8,
                                       face_encoder_channels=[4, 4, 8, 8, 8, 8])
        expert = syncnet.SyncNetModel(config)
        loss = SyncNetExpertLoss(expert)
        generated = torch.rand(2, 5, 3, 96, 96, requires_grad=True)
        mel = torch.randn(2, 1, 80, 16)
        output = loss(generated, mel)
        reference = expert(syncnet.SyncNetModel.stack_face_frames(generated.detach(), channel_order="rgb"), mel)
        expected = -torch.log(reference.cosine_similarity.clamp(min=1e-7)).mean()
        torch.testing.assert_close(output.loss, expected, rtol=1e-5, atol=1e-6)
        output.loss.backward()
        assert generated.grad.abs().sum() > 0
        assert all(p.grad is None for p in expert.parameters())


class TestRegistry:
    def test_build_and_schedule(self):
        losses = build_generator_losses({"l1": {"weight": 10.0}, "gan": {"weight": 1.0, "start_step": 5}})
        by_name = {loss.name: loss for loss in losses}
        assert by_name["l1"].weight == 10.0 and by_name["l1"].active(0)
        assert not by_name["gan"].active(4) and by_name["gan"].active(5)
        batch = SimpleNamespace(target_frames=torch.zeros(1, 5, 3, 4, 4))
        generated = torch.full((1, 5, 3, 4, 4), 0.5, requires_grad=True)
        inputs = GeneratorLossInputs(generated_frames=generated, batch=batch,
                                     fake_logits=lambda frames: frames.mean(dim=(2, 3, 4)) * 0)
        torch.testing.assert_close(by_name["l1"].term(inputs), torch.tensor(0.5))
        torch.testing.assert_close(by_name["gan"].term(inputs), torch.tensor(math.log(2)))

    def test_typos_fail(self):
        with pytest.raises(ValueError, match="unknown loss"):
            build_generator_losses({"l2": {}})
        with pytest.raises(ValueError, match="does not use"):
            build_generator_losses({"l1": {"weight": 1.0, "wieght": 2}})

    def test_register_new_loss(self):
        @register_generator_loss("test_constant")
        def build(options):
            value = options.pop("value")

            class Constant(LossTerm):
                def forward(self, inputs):
                    return torch.tensor(float(value))

            return Constant()

        try:
            (loss,) = build_generator_losses({"test_constant": {"weight": 2.0, "value": 3}})
            assert loss.term(None).item() == 3.0 and loss.weight == 2.0
        finally:
            GENERATOR_LOSSES.pop("test_constant")
