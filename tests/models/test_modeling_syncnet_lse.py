"""SyncNetLSEModel (syncnet_python `S`): tiny-config behaviour, converter, and golden parity of the streams."""

import json

import numpy as np
import pytest
import torch

from talkface.errors import ModelLoadError
from talkface.models.syncnet_lse import (
    SyncNetLSEConfig,
    SyncNetLSEFeatureExtractor,
    SyncNetLSEModel,
)
from talkface.models.syncnet_lse.convert_syncnet_lse_original_checkpoint import (
    convert_checkpoint,
    convert_syncnet_lse_state_dict,
)
from tests.models.model_tester import ModelTesterMixin, randomise_batch_norm
from tests.utils import formula_state_dict, golden_file, load_golden

TINY = dict(
    audio_channels=[4, 6, 8, 8, 8, 12],
    video_channels=[4, 6, 8, 8, 8, 12],
    fc_hidden_size=10,
    embedding_size=7,
    image_size=64,
)


def tiny_model(**overrides) -> SyncNetLSEModel:
    torch.manual_seed(0)
    model = SyncNetLSEModel(SyncNetLSEConfig(**{**TINY, **overrides})).eval()
    # random batch-norm statistics, so that a wrongly wired BN would change the outputs
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_()
    return model


def frames(batch, num_frames, size=64):
    return torch.rand(batch, 3, num_frames, size, size) * 255


class TestSyncNetLSEModel(ModelTesterMixin):
    model_class = SyncNetLSEModel
    output_names = ("video_embeddings", "audio_embeddings", "distances")
    bad_configs = tuple(({field: value}, field) for field, value in (
        ("audio_channels", [4, 4]), ("video_channels", [4, 4, 4, 4, 4, 0]), ("embedding_size", 0),
        ("image_size", 50), ("audio_window", 6), ("num_mfcc", 4), ("batch_norm_eps", 0.0)))
    batch_atol = 1e-4  # embeddings of pixel values on the 0..255 scale

    def get_config(self, **overrides):
        return SyncNetLSEConfig(**{**TINY, **overrides})

    def prepare_model(self, model):
        return randomise_batch_norm(model)

    def get_inputs(self, batch_size, seed=0):
        generator = torch.Generator().manual_seed(seed)
        # one 5-frame window and its 20 MFCC frames per item (longer clips: test_sliding_windows_...)
        return {"pixel_values": torch.rand(batch_size, 3, 5, 64, 64, generator=generator) * 255,
                "input_features": torch.randn(batch_size, 1, 13, 20, generator=generator)}

    def expected_shapes(self, batch_size):
        return {"video_embeddings": (batch_size, 1, 7), "audio_embeddings": (batch_size, 7),
                "distances": (batch_size, 1)}

    def test_full_size_keys_and_shapes_match_the_original(self):
        with torch.device("meta"):
            model = SyncNetLSEModel(SyncNetLSEConfig())
        expected = json.loads(golden_file("syncnet_S_keys.json").read_text())
        state = model.state_dict()
        assert [k for k, _ in expected] == list(state)
        assert all(list(state[k].shape) == shape for k, shape in expected)
        assert sum(p.numel() for p in model.parameters()) == 13_631_616

    def test_one_window_shapes_and_distances(self):
        model = tiny_model()
        with torch.no_grad():
            out = model(pixel_values=frames(2, 5), input_features=torch.randn(2, 1, 13, 20))
        assert out.video_embeddings.shape == (2, 1, 7)
        assert out.audio_embeddings.shape == (2, 7)
        assert out.distances.shape == (2, 1)
        expected = torch.linalg.vector_norm(out.video_embeddings[:, 0] - out.audio_embeddings + 1e-6, dim=-1)
        torch.testing.assert_close(out.distances[:, 0], expected)
        torch.testing.assert_close(
            out.distances[:, 0],
            torch.nn.functional.pairwise_distance(out.video_embeddings[:, 0], out.audio_embeddings),
        )

    def test_sliding_windows_equal_single_windows(self):
        model = tiny_model()
        clip = frames(1, 9)
        with torch.no_grad():
            sliding = model.get_video_embeddings(clip)[0]  # (5, 7)
            single = torch.cat([model.get_video_embeddings(clip[:, :, w : w + 5])[0] for w in range(5)])
        assert sliding.shape == (5, 7)
        torch.testing.assert_close(sliding, single, atol=1e-5, rtol=1e-5)

    def test_bad_input_shape_raises(self):
        model = tiny_model()
        with pytest.raises(ValueError, match="pixel_values"):
            model.get_video_embeddings(frames(1, 4))
        with pytest.raises(ValueError, match="input_features"):
            model.get_audio_embeddings(torch.randn(1, 1, 13, 21))


class TestSyncNetLSEConverter:
    def original_state_dict(self, model):
        """syncnet_v2.model layout: same names, values that encode their key, no num_batches_tracked."""
        original = {}
        for i, (key, tensor) in enumerate(model.state_dict().items()):
            if key.endswith("num_batches_tracked"):
                continue
            ramp = torch.arange(tensor.numel()).reshape(tensor.shape) * 1e-3
            original[key] = torch.full_like(tensor, float(i)) + ramp
        return original

    def test_converts_and_fills_batch_norm_counters(self):
        model = tiny_model()
        original = self.original_state_dict(model)
        assert len(original) == len(model.state_dict()) - 14  # 14 batch-norm layers
        converted = convert_syncnet_lse_state_dict({f"__S__.{k}": v for k, v in original.items()}, model.config)
        model.load_state_dict(converted, strict=True)
        assert torch.equal(model.netcnnlip[4].weight, original["netcnnlip.4.weight"])
        assert torch.equal(model.netfcaud[1].running_var, original["netfcaud.1.running_var"])
        assert model.netcnnaud[19].num_batches_tracked.item() == 0

    def test_already_converted_input_is_unchanged(self):
        model = tiny_model()
        state = model.state_dict()
        converted = convert_syncnet_lse_state_dict(state, model.config)
        assert list(converted) == list(state)
        assert all(converted[k] is state[k] for k in state)

    def test_convert_command_writes_a_loadable_folder(self, tmp_path):
        from talkface.cli import main

        model = SyncNetLSEModel(SyncNetLSEConfig(**{**TINY, "image_size": 224})).eval()
        checkpoint = tmp_path / "syncnet_v2.model"
        torch.save(self.original_state_dict(model), checkpoint)
        out = tmp_path / "converted"
        assert main(["convert", "syncnet-lse", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
        expected_files = {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"}
        assert expected_files <= {p.name for p in out.iterdir()}
        loaded = SyncNetLSEModel.from_pretrained(out)
        assert loaded.config.video_channels == TINY["video_channels"]
        assert torch.equal(loaded.netcnnlip[8].weight, self.original_state_dict(model)["netcnnlip.8.weight"])
        extractor = SyncNetLSEFeatureExtractor.from_pretrained(out)
        assert extractor.mfcc_frames_per_video_frame == 4 and extractor.image_size == 224

    def test_refuses_a_pickled_module_with_instructions(self, tmp_path):
        checkpoint = tmp_path / "whole_module.model"
        torch.save(tiny_model(), checkpoint)
        with pytest.raises(ModelLoadError, match="re-save its weights"):
            convert_checkpoint(checkpoint)

    def test_wrong_file_is_refused(self, tmp_path):
        checkpoint = tmp_path / "other.pth"
        torch.save({"conv.weight": torch.zeros(3, 3)}, checkpoint)
        with pytest.raises(ModelLoadError, match="syncnet_v2.model"):
            convert_checkpoint(checkpoint)


class TestSyncNetLSEGolden:
    """syncnet_python `S` with formula weights (golden/README.md section 1), through our converter."""

    @pytest.fixture(scope="class")
    def golden_model(self):
        config = SyncNetLSEConfig()
        model = SyncNetLSEModel(config).eval()
        model.load_state_dict(convert_syncnet_lse_state_dict(formula_state_dict("syncnet_S_keys.json"), config))
        return model

    def test_audio_stream_matches_forward_aud(self, golden_model):
        golden = load_golden("syncnet_lse.npz")
        extractor = SyncNetLSEFeatureExtractor()
        mfcc = extractor.mfcc(golden["audio_int16"], int(golden["sample_rate"]))
        np.testing.assert_array_equal(mfcc, golden["mfcc"])
        with torch.no_grad():
            audio = golden_model.get_audio_embeddings(extractor.audio_windows(mfcc, 45))
        np.testing.assert_allclose(audio.numpy(), golden["audio_feat"], atol=1e-3, rtol=1e-5)

    def test_video_stream_matches_forward_lip(self, golden_model):
        golden = load_golden("syncnet_lse.npz")
        extractor = SyncNetLSEFeatureExtractor()
        with torch.no_grad():  # the first 4 windows (8 frames) keep this test fast; test_metrics_sync runs all 45
            pixels = extractor.pixel_values(golden["frames_bgr"][:8], channel_order="bgr")
            video = golden_model.get_video_embeddings(pixels)[0]
        np.testing.assert_allclose(video.numpy(), golden["video_feat"][:4], atol=1e-3, rtol=1e-5)
