"""Exact inference speed-ups applied to a loaded model: BatchNorm folding and channels-last weights.

    from talkface.networks.optimization import optimize_for_inference   # also talkface.models.optimization
    model = optimize_for_inference(Wav2LipModel.from_pretrained(folder))   # same outputs (fp32 rounding), faster

* `fold_batch_norms` merges every BatchNorm that directly follows a convolution or linear layer into that layer's
  weight and bias (y = gamma * (W x + b - mean) / sqrt(var + eps) + beta is again a convolution) and replaces the
  BatchNorm with `nn.Identity`. Two patterns are folded: neighbours in an `nn.Sequential` (Wav2Lip's `conv_block`,
  SyncNet's streams, AV-HuBERT's `frontend3D`) and the ResNet convention of sibling attributes `convN` / `bnN`
  (AV-HuBERT's BasicBlocks), where the forward computes `bnN(convN(x))`. In eval mode the result equals the
  unfolded network up to float rounding (max abs diff about 1e-6 on outputs of order 1).
* `to_channels_last` stores 4-D convolution weights as NHWC (5-D as NDHWC), which oneDNN runs faster on CPUs; the
  outputs are identical.

`inference_copy` does the same to a deep copy and leaves the original alone: the metric scorers use it so that the
model they were given (maybe shared with other scorers, or with a training loop) keeps its BatchNorms.

The optimised model is for inference only: folding changes its parameters (and empties the BatchNorms), so it is
marked `model.talkface_inference_optimized = True` and must not be trained or saved with `save_pretrained`
(`optimize_for_inference` makes saving raise). Load the folder again for either.
"""

from __future__ import annotations

import logging
from collections import Counter

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_conv_bn_weights, fuse_linear_bn_eval

logger = logging.getLogger(__name__)

_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _fused(layer: nn.Module, norm: nn.Module, single_use: set[int]) -> nn.Module | None:
    """`layer` with `norm` folded in, or None when the pair cannot be folded.

    A convolution used in one place only (its id in `single_use`) is folded in place: its weight and bias are
    replaced by torch's `fuse_conv_bn_weights` of them, the numbers `fuse_conv_bn_eval` gives, without that
    function's deep copy of the layer (for the full-size Wav2Lip on an idle 2-core CPU, optimize_for_inference
    takes ~0.075 s instead of ~0.10 s). Any other convolution (one module used in two places) is folded on a
    copy, once per use.
    """
    if not isinstance(norm, _BATCH_NORMS) or not norm.track_running_stats or norm.running_mean is None:
        return None
    if isinstance(layer, _CONVOLUTIONS):
        transpose = isinstance(layer, nn.modules.conv._ConvTransposeNd)
        if id(layer) not in single_use:
            return fuse_conv_bn_eval(layer, norm, transpose=transpose)
        if layer.training or norm.training:
            raise AssertionError("Fusion only for eval!")
        layer.weight, layer.bias = fuse_conv_bn_weights(layer.weight, layer.bias, norm.running_mean,
                                                        norm.running_var, norm.eps, norm.weight, norm.bias, transpose)
        return layer
    if isinstance(layer, nn.Linear) and isinstance(norm, nn.BatchNorm1d):
        return fuse_linear_bn_eval(layer, norm)
    return None


def fold_batch_norms(model: nn.Module) -> int:
    """Fold every BatchNorm that follows a convolution / linear layer into it, in place. Returns how many.

    The model must be in eval mode (folding uses the running statistics, as eval-mode BatchNorm does).
    """
    if model.training:
        raise ValueError("fold_batch_norms needs a model in eval mode (call model.eval() first)")
    folded = 0
    uses = Counter(id(child) for module in model.modules() for child in module._modules.values() if child is not None)
    single_use = {key for key, count in uses.items() if count == 1}
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in zip(names, names[1:]):
                fused = _fused(module._modules[first], module._modules[second], single_use)
                if fused is not None:
                    module._modules[first], module._modules[second] = fused, nn.Identity()
                    folded += 1
        for name, child in list(module._modules.items()):
            if name.startswith("conv") and name[4:].isdigit():
                norm_name = "bn" + name[4:]
                fused = _fused(child, module._modules.get(norm_name), single_use)
                if fused is not None:
                    module._modules[name], module._modules[norm_name] = fused, nn.Identity()
                    folded += 1
    return folded


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store 4-D (5-D) convolution weights channels-last; outputs do not change."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
        elif isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last_3d)
    return model


def _refuse_save(*args, **kwargs):
    raise RuntimeError("this model was optimised for inference (BatchNorms folded into the convolutions); load the "
                       "model folder again to save or train it")


def optimize_for_inference(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """Eval mode, BatchNorms folded, channels-last convolution weights (see the module docstring). In place."""
    if getattr(model, "talkface_inference_optimized", False):
        return model
    model.eval()
    folded = fold_batch_norms(model)
    if channels_last:
        to_channels_last(model)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    model.talkface_inference_optimized = True
    if hasattr(model, "save_pretrained"):
        model.save_pretrained = _refuse_save
    logger.debug("%s: %d BatchNorms folded%s", type(model).__name__, folded,
                 ", channels-last" if channels_last else "")
    return model


def inference_copy(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """An optimised deep copy of `model` (see `optimize_for_inference`); `model` itself is not changed.

    The copy snapshots the weights: a later change to `model` (training, loading a state dict) does not reach it.
    """
    import copy

    return optimize_for_inference(copy.deepcopy(model), channels_last=channels_last)


__all__ = ["fold_batch_norms", "inference_copy", "optimize_for_inference", "to_channels_last"]
