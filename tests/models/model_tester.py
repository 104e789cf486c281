"""The checks every talkface model passes, shared by the per-model test modules (like transformers' ModelTesterMixin).

A test module defines one class per network:

    class TestWav2LipModel(ModelTesterMixin):
        model_class = Wav2LipModel
        output_names = ("generated_faces", "audio_embeds")
        bad_configs = (({"image_size": 100}, "image_size"), ...)
        former_field_names = {"img_size": "image_size"}

        def get_config(self, **overrides): ...          # a tiny config (widths 4-32, 1-2 layers, small faces)
        def get_inputs(self, batch_size, seed=0): ...   # forward keyword arguments, batch first
        def expected_shapes(self, batch_size): ...      # {output name: shape}

and gets, on that tiny config: output shapes; save_pretrained / from_pretrained round trip (bit-identical weights
and buffers, equal outputs, the Auto class finds it); determinism under a seed; batch vs single-item equivalence;
bad configs raising a ValueError that names the field; and config.json round trips, including files that still
use a field's former name.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from transformers import AutoConfig, AutoModel


def _is_batched(value, batch_size: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch_size


def randomise_batch_norm(model, seed: int = 0):
    """Give every BatchNorm non-trivial running statistics, so that eval-mode checks exercise them."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
                module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=generator))
                module.running_var.copy_(1 + 0.1 * torch.rand(module.running_var.shape, generator=generator))
    return model


def _config_fields(config) -> dict:
    """The config's fields, without where it was loaded from."""
    fields = config.to_dict()
    fields.pop("_name_or_path", None)
    return fields


class ModelTesterMixin:
    model_class = None  # the PreTrainedModel subclass under test
    auto_class = AutoModel  # the transformers Auto class that must load a saved folder (None: not registered)
    output_names: tuple[str, ...] = ()  # ModelOutput fields that are batch-first tensors, compared by the checks
    bad_configs: tuple = ()  # ((overrides, text the ValueError must contain), ...)
    former_field_names: dict = {}  # {former config field name: current name}, still accepted in config.json
    batch_size = 3
    seed = 0
    batch_atol = 1e-5  # batch vs single items: different kernel blocking may round differently
    round_trip_atol = 1e-6  # loaded weights are bit-identical; CPU kernels may still differ by an ulp

    # --- what a test class provides ------------------------------------------------------------------------------
    def get_config(self, **overrides):
        raise NotImplementedError

    def get_inputs(self, batch_size: int, seed: int = 0) -> dict:
        raise NotImplementedError

    def expected_shapes(self, batch_size: int) -> dict:
        raise NotImplementedError

    def prepare_model(self, model):
        """Hook to give a fresh model non-trivial state (e.g. BatchNorm statistics) before it is tested."""
        return model

    def select_item(self, inputs: dict, index: int, batch_size: int) -> dict:
        """The inputs of batch item `index` alone (default: slice every batch-first tensor)."""
        return {name: value[index : index + 1] if _is_batched(value, batch_size) else value
                for name, value in inputs.items()}

    # --- helpers -------------------------------------------------------------------------------------------------
    def build_model(self, **overrides):
        return self.prepare_model(self.model_class(self.get_config(**overrides))).eval()

    def outputs(self, model, inputs: dict) -> dict:
        """{name: batch-first tensor} the checks compare (default: the `output_names` fields of the ModelOutput)."""
        with torch.no_grad():
            output = model(**inputs, return_dict=True)
        return {name: getattr(output, name) for name in self.output_names}

    @staticmethod
    def assert_same_state(first, second):
        first_state, second_state = first.state_dict(), second.state_dict()
        assert first_state.keys() == second_state.keys()
        for key, value in first_state.items():
            torch.testing.assert_close(second_state[key], value, rtol=0, atol=0, msg=f"state entry {key} differs")

    # --- the checks ----------------------------------------------------------------------------------------------
    def test_output_shapes(self):
        assert self.output_names, "a model test must name the outputs it checks"
        model = self.build_model()
        outputs = self.outputs(model, self.get_inputs(self.batch_size, self.seed))
        shapes = {name: tuple(value.shape) for name, value in outputs.items()}
        expected = {name: tuple(shape) for name, shape in self.expected_shapes(self.batch_size).items()}
        assert shapes == expected
        for name, value in outputs.items():
            assert torch.isfinite(value.float()).all(), f"{name} has non-finite values"

    def test_save_pretrained_from_pretrained_round_trip(self, tmp_path):
        model = self.build_model()
        model.save_pretrained(tmp_path)
        saved = json.loads((tmp_path / "config.json").read_text())
        assert saved["model_type"] == model.config.model_type
        loaded = self.model_class.from_pretrained(tmp_path).eval()
        assert type(loaded) is self.model_class
        self.assert_same_state(model, loaded)
        assert _config_fields(loaded.config) == _config_fields(model.config)
        inputs = self.get_inputs(self.batch_size, self.seed)
        expected = self.outputs(model, inputs)
        for name, value in self.outputs(loaded, inputs).items():
            torch.testing.assert_close(value, expected[name], rtol=0, atol=self.round_trip_atol, msg=name)
        if self.auto_class is not None:
            assert type(self.auto_class.from_pretrained(tmp_path)) is self.model_class

    def test_determinism_under_a_seed(self):
        torch.manual_seed(1234)
        first = self.build_model()
        torch.manual_seed(1234)
        second = self.build_model()
        self.assert_same_state(first, second)
        inputs = self.get_inputs(self.batch_size, self.seed)
        once, twice, other = self.outputs(first, inputs), self.outputs(first, inputs), self.outputs(second, inputs)
        for name in once:
            torch.testing.assert_close(twice[name], once[name], rtol=0, atol=0, msg=f"{name}: same model, same input")
            torch.testing.assert_close(other[name], once[name], rtol=0, atol=0, msg=f"{name}: same seed, new model")
        torch.manual_seed(4321)
        different = self.build_model()
        assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                          different.state_dict().values())
                   if a.is_floating_point()), "another seed must give other weights"

    def test_batch_equals_single_items(self):
        model = self.build_model()
        inputs = self.get_inputs(self.batch_size, self.seed)
        batched = self.outputs(model, inputs)
        singles = [self.outputs(model, self.select_item(inputs, index, self.batch_size))
                   for index in range(self.batch_size)]
        for name in batched:
            stacked = torch.cat([single[name] for single in singles])
            torch.testing.assert_close(stacked, batched[name], rtol=0, atol=self.batch_atol, msg=name)

    def test_bad_config_raises(self):
        assert self.bad_configs, "a model test must list bad configs"
        self.get_config()  # the tiny config itself is valid
        for overrides, field in self.bad_configs:
            try:
                self.get_config(**overrides)
            except ValueError as err:
                assert re.search(field, str(err)), f"the error for {overrides} does not name {field!r}: {err}"
            else:
                pytest.fail(f"{self.model_class.__name__}'s config accepted {overrides}")

    def test_config_round_trip_and_former_field_names(self, tmp_path):
        config = self.get_config()
        config.save_pretrained(tmp_path)
        reloaded = type(config).from_pretrained(tmp_path)
        assert _config_fields(reloaded) == _config_fields(config)
        assert type(AutoConfig.from_pretrained(tmp_path)) is type(config)
        saved = json.loads((tmp_path / "config.json").read_text())
        for former, current in self.former_field_names.items():
            assert former not in saved and current in saved
            # a config.json written before the rename
            old_style = {former if key == current else key: value for key, value in saved.items()}
            folder = tmp_path / f"with_{former}"
            folder.mkdir()
            (folder / "config.json").write_text(json.dumps(old_style))
            old = type(config).from_pretrained(folder)
            assert getattr(old, current) == saved[current]
            assert getattr(old, former) == saved[current]  # the former attribute name still reads the field
            assert _config_fields(old) == _config_fields(config)
            # ... and the former keyword in Python
            keywords = {key: value for key, value in old_style.items()
                        if key not in ("model_type", "transformers_version")}
            assert _config_fields(type(config)(**keywords)) == _config_fields(config)
