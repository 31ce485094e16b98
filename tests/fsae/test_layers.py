"""``fsae.layers.ConvTranspose2d``: PyTorch's transposed convolution computed as one convolution and a pixel shuffle
where it is strided (a kernel that is not a multiple of the stride padded with zero taps); the same outputs and
gradients to float precision, the same state dict."""

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
    (32, 24, 3, 2, 0, (6, 6)),  # the fast config's second layer: kernel 3, stride 2 (zero taps up to 4)
    (64, 32, 3, 2, 0, (6, 13)),  # the digit tasks' (DigitSum's 6 x 13)
    (5, 4, 3, 2, 1, (4, 5)),  # zero taps and output padding
    (3, 2, (5, 3), (2, 3), (1, 2), (3, 4)),  # zero taps in one direction, none in the other
]


@pytest.mark.parametrize(("c_in", "c_out", "k", "s", "op", "hw"), CASES)
def test_polyphase_equals_pytorchs_transposed_convolution(c_in, c_out, k, s, op, hw, monkeypatch):
    # Polyphase in float64 too (zero taps run only under bfloat16, where float64's exactness cannot be checked).
    monkeypatch.setattr(ConvTranspose2d, "runs_polyphase", lambda self, x: self.polyphase)
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


def test_polyphase_where_it_is_faster(monkeypatch):
    """A kernel that is a multiple of its stride > 1 always; one that needs zero taps only in bfloat16 (autocast or
    bfloat16 input); never with stride 1, padding, off the CPU, or with ``POLYPHASE_ON_CPU`` off."""
    x = torch.zeros(2, 4, 5, 5)
    k4, k3 = ConvTranspose2d(4, 2, 4, 2), ConvTranspose2d(4, 2, 3, 2)
    assert k4.runs_polyphase(x) and not k4.needs_zero_taps
    assert k3.polyphase and k3.needs_zero_taps and not k3.runs_polyphase(x)  # float32: PyTorch's kernel
    assert k3.runs_polyphase(x.bfloat16())
    with torch.autocast("cpu", torch.bfloat16):
        assert k3.runs_polyphase(x) and k4.runs_polyphase(x)
    assert not ConvTranspose2d(4, 2, 3, 1).runs_polyphase(x.bfloat16())  # stride 1: PyTorch's kernel is faster
    assert not ConvTranspose2d(4, 2, 4, 2, padding=1).runs_polyphase(x)
    assert not k4.runs_polyphase(x.to("meta")) and not k4.runs_polyphase(x[0])  # not on a CPU; not 4-D
    monkeypatch.setattr(layers, "POLYPHASE_ON_CPU", False)
    assert not k4.runs_polyphase(x)


def test_zero_taps_under_bfloat16_autocast_match_pytorchs_kernel():
    """The kernel-3 layer as pretraining runs it: outputs and gradients within bfloat16's rounding of PyTorch's."""
    torch.manual_seed(0)
    mine = ConvTranspose2d(32, 24, 3, 2)
    ref = torch.nn.ConvTranspose2d(32, 24, 3, 2)
    ref.load_state_dict(mine.state_dict())
    x = torch.randn(16, 32, 6, 6)
    calls = []
    conv2d = torch.nn.functional.conv2d
    with torch.autocast("cpu", torch.bfloat16):
        torch.nn.functional.conv2d = lambda *a, **k: (calls.append(1), conv2d(*a, **k))[1]
        try:
            y = mine(x)
        finally:
            torch.nn.functional.conv2d = conv2d
        y_ref = ref(x)
    assert calls == [1] and y.dtype == y_ref.dtype == torch.bfloat16  # the polyphase path ran, in bfloat16
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=0.02, atol=0.02)
    y.float().square().sum().backward()
    y_ref.float().square().sum().backward()
    g, g_ref = mine.weight.grad, ref.weight.grad  # bfloat16 gradients up to about 140: a relative error of the whole
    assert (g - g_ref).norm() / g_ref.norm() < 0.01
    assert (mine.bias.grad - ref.bias.grad).norm() / ref.bias.grad.norm() < 0.01


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
    assert isinstance(model.concrete.layers[0], ConvTranspose2d) and not model.concrete.layers[0].runs_polyphase(x)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-12)
