"""``fsae.layers.ConvTranspose2d``: PyTorch's transposed convolution computed as one convolution and a pixel shuffle
where the kernel is a multiple of the stride; the same outputs and gradients to float precision, the same state dict."""

from __future__ import annotations

import pytest
import torch

from fsae import layers
from fsae.layers import ConvTranspose2d
from fsae.model import FSAE, FSAEConfig, LayerSpec

CASES = [  # (in, out, kernel, stride, output_padding, input H x W)
    (32, 1, 4, 2, 0, (13, 13)),  # the digit tasks' last layer
    (24, 1, 4, 2, 0, (13, 13)),  # the fast config's
    (32, 1, 4, 2, 0, (13, 27)),  # DigitSum's (28 x 56 images)
    (8, 3, 4, 2, 1, (5, 6)),  # output padding: those rows take only the bias
    (4, 2, (4, 2), (2, 1), (1, 0), (7, 5)),  # a stride per direction
    (6, 5, 6, 3, 2, (4, 4)),
]


@pytest.mark.parametrize(("c_in", "c_out", "k", "s", "op", "hw"), CASES)
def test_polyphase_equals_pytorchs_transposed_convolution(c_in, c_out, k, s, op, hw):
    torch.manual_seed(0)
    mine = ConvTranspose2d(c_in, c_out, k, s, output_padding=op).double()
    ref = torch.nn.ConvTranspose2d(c_in, c_out, k, s, output_padding=op).double()
    ref.load_state_dict(mine.state_dict())
    assert mine.polyphase and list(mine.state_dict()) == ["weight", "bias"]
    x = torch.randn(3, c_in, *hw, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    y, y_ref = mine(x), ref(x_ref)
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(mine.weight.grad, ref.weight.grad, rtol=0, atol=1e-10)
    torch.testing.assert_close(mine.bias.grad, ref.bias.grad, rtol=0, atol=1e-10)
    y32 = mine.float()(x.detach().float())  # float32, channels-last: float rounding only
    torch.testing.assert_close(y32, ref.float()(x.detach().float().to(memory_format=torch.channels_last)))


def test_polyphase_only_where_the_kernel_is_a_multiple_of_a_stride_above_one(monkeypatch):
    assert not ConvTranspose2d(4, 2, 3, 2).polyphase  # zero taps would be wasted: PyTorch's kernel
    assert not ConvTranspose2d(4, 2, 3, 1).polyphase  # stride 1: PyTorch's kernel is faster
    assert ConvTranspose2d(4, 2, 4, 2).polyphase
    monkeypatch.setattr(layers, "POLYPHASE_ON_CPU", False)
    assert not ConvTranspose2d(4, 2, 4, 2).polyphase


def test_the_concrete_network_is_the_same_function_either_way(monkeypatch):
    """A whole FSAE (fast config's shapes) regenerates the same images with the polyphase layer as without it."""
    torch.manual_seed(0)
    layers_ = [
        LayerSpec("conv", 8, 4, 2),
        LayerSpec("conv", 16, 3, 2),
        LayerSpec("linear", 32),
        LayerSpec("linear", 10),
    ]
    model = FSAE(FSAEConfig(layers=layers_, jumps="all")).double().eval()
    x = torch.rand(5, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        fast = model(x)
        monkeypatch.setattr(layers, "POLYPHASE_ON_CPU", False)
        slow = model(x)
    assert isinstance(model.concrete.layers[0], ConvTranspose2d) and model.concrete.layers[0].polyphase is False
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-12)
