"""int8 generation on the CPU: post-training static quantization of the generator's convolution stacks.

`quantize_generator(generator)` prepares every convolution stack of the network (each `nn.Sequential` among the
model's children and in its `nn.ModuleList`s: Wav2Lip's audio encoder, face encoder / decoder blocks and output
block) with PyTorch's FX graph-mode quantization for the x86 backend (per-channel int8 weights, uint8
activations, conv + ReLU fused). Activation ranges need real data, so the first `generate` call of the generator
runs with observers in fp32 on the real face crops of that batch, then the stacks are converted to int8 and every
later call runs quantized. Tensors between the stacks (skip concatenations, the reshapes) stay float.

The drift against fp32 is documented in docs/generation.md; int8 is for CPUs only.
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

logger = logging.getLogger(__name__)


def _stacks(model: nn.Module):
    """(parent, name) of every nn.Sequential among the model's children and its ModuleLists' elements."""
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential):
            yield model, name
        elif isinstance(child, nn.ModuleList):
            for index, element in enumerate(child):
                if isinstance(element, nn.Sequential):
                    yield child, str(index)


def quantize_generator(generator) -> None:
    """Make `generator` (a `LipSyncGenerator` on the CPU, in fp32) int8 after its first `generate` call."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if generator.device.type != "cpu":
        raise ValueError("int8 generation runs on the CPU only")
    model = generator.model.eval()
    stacks = list(_stacks(model))
    if not stacks:
        raise ValueError(f"{type(model).__name__} has no convolution stacks to quantize")
    torch.backends.quantized.engine = "x86"
    qconfig = get_default_qconfig_mapping("x86")
    original_generate = generator.generate
    state = {"prepared": False}

    def prepare(example_inputs):
        with warnings.catch_warnings():  # FX quantization is marked deprecated in favour of pt2e; it still works
            warnings.simplefilter("ignore")
            for parent, name in stacks:
                module = parent._modules[name]
                parent._modules[name] = prepare_fx(module, qconfig, example_inputs=(example_inputs[(parent, name)],))

    def convert():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for parent, name in stacks:
                parent._modules[name] = convert_fx(parent._modules[name])

    def generate(masked_faces, reference_faces, audio, frame_indices):
        if state["prepared"]:
            return original_generate(masked_faces, reference_faces, audio, frame_indices)
        # 1. the input each stack sees on this (real) batch, to trace it; 2. observe; 3. convert
        examples, hooks = {}, []
        for parent, name in stacks:
            hooks.append(parent._modules[name].register_forward_pre_hook(
                lambda module, args, key=(parent, name): examples.setdefault(key, args[0])))
        try:
            original_generate(masked_faces[:1], reference_faces[:1], audio, frame_indices[:1])
        finally:
            for hook in hooks:
                hook.remove()
        prepare(examples)
        output = original_generate(masked_faces, reference_faces, audio, frame_indices)  # fp32, observed
        convert()
        state["prepared"] = True
        logger.debug("%s: %d convolution stacks quantized to int8", type(model).__name__, len(stacks))
        return output

    generator.generate = generate


__all__ = ["quantize_generator"]
