"""BatchNorm folding in place (start-up, issue 14): the numbers torch's fuse_conv_bn_eval gives, without its copies."""

import pytest
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from talkface.networks.optimization import fold_batch_norms, inference_copy


def _norm(channels: int, seed: int) -> nn.BatchNorm2d:
    generator = torch.Generator().manual_seed(seed)
    norm = nn.BatchNorm2d(channels)
    norm.running_mean.copy_(torch.randn(channels, generator=generator))
    norm.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
    norm.weight.data.copy_(torch.randn(channels, generator=generator))
    norm.bias.data.copy_(torch.randn(channels, generator=generator))
    return norm.eval()


@pytest.mark.parametrize("layer", [nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 8, 3, padding=1, bias=False),
                                   nn.ConvTranspose2d(3, 8, 3, stride=2, padding=1)],
                         ids=["conv", "no-bias", "transposed"])
def test_folding_in_place_gives_torchs_fused_weights_bit_for_bit(layer):
    torch.manual_seed(0)
    layer.eval()
    norm = _norm(8, 1)
    expected = fuse_conv_bn_eval(layer, norm, transpose=isinstance(layer, nn.ConvTranspose2d))
    model = nn.Sequential(layer, norm).eval()
    assert fold_batch_norms(model) == 1
    assert model[0] is layer and isinstance(model[1], nn.Identity)  # folded into the same module, no copy
    assert torch.equal(layer.weight, expected.weight) and torch.equal(layer.bias, expected.bias)


def test_a_convolution_used_twice_keeps_each_folding():
    torch.manual_seed(0)
    shared = nn.Conv2d(3, 3, 3, padding=1)
    model = nn.Sequential(nn.Sequential(shared, _norm(3, 1)), nn.Sequential(shared, _norm(3, 2))).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        before = model(x)
        folded = inference_copy(model, channels_last=False)
        assert sum(isinstance(m, nn.Identity) for m in folded.modules()) == 2
        assert folded[0][0] is not folded[1][0]
        assert torch.allclose(folded(x), before, atol=1e-5)
        assert fold_batch_norms(model) == 2
        assert torch.allclose(model(x), before, atol=1e-5)
