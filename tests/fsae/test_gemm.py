"""fsae.gemm: the abstract network's logits as gathers and GEMMs, against AbstractNet itself.

Both passes compute the same function with their sums in another order: in float64 they agree to about 1e-15, in
float32 to a few ulps, always far inside ``margin``, the lead the lookup asks of a winning class before it trusts the
GEMM pass (``rl.lookup``; its tests check the images against the full forward pass).
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from fsae.gemm import ATOL, RTOL, GemmAbstract, _conv_index, margin
from fsae.model import FSAE, FSAEConfig, LayerSpec, StrideWarning

ARCHS = {
    "fast": (
        [1, 28, 28],
        [LayerSpec("conv", 24, 4, 2), LayerSpec("conv", 32, 3, 2), LayerSpec("linear", 64), LayerSpec("linear", 10)],
    ),  # fmt: skip
    "rgb_stride1": ([3, 12, 10], [LayerSpec("conv", 5, 3, 1), LayerSpec("conv", 4, 2, 1), LayerSpec("linear", 7)]),
    "unread_edge": ([2, 9, 9], [LayerSpec("conv", 3, 2, 2), LayerSpec("linear", 6)]),  # stride leaves a row unread
    "linear_only": ([1, 6, 5], [LayerSpec("linear", 8), LayerSpec("linear", 4)]),
}


def model_of(arch: str, dtype: torch.dtype = torch.float32, seed: int = 0) -> FSAE:
    shape, layers = ARCHS[arch]
    torch.manual_seed(seed)
    with pytest.warns(StrideWarning) if arch == "unread_edge" else contextlib.nullcontext():
        model = FSAE(FSAEConfig(input_shape=shape, layers=layers, leaky_slope=0.2)).eval()
    return model.to(dtype)


def test_conv_index_by_hand():
    """A 1x4x4 input, kernel 2, stride 2: four windows of four pixels, read in (row, col) order."""
    idx = _conv_index(1, 4, 4, 2, 2, channels_last=False).view(4, 4)
    assert idx.tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]
    # two channels, channels-last: pixel p's channels sit at 2p and 2p + 1, kept together within a window
    idx = _conv_index(2, 2, 2, 2, 1, channels_last=True)
    assert idx.tolist() == list(range(8))
    idx = _conv_index(2, 2, 2, 2, 1, channels_last=False)
    assert idx.tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


@pytest.mark.parametrize("arch", list(ARCHS))
def test_gemm_pass_equals_abstract_net(arch):
    """Same logits as AbstractNet.forward: to 1e-12 in float64, and in float32 far inside the lookup's margin."""
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        model = model_of(arch, dtype)
        gemm = GemmAbstract(model.abstract)
        for b in (1, 3, 8):
            x = torch.rand(b, *model.config.input_shape, generator=torch.Generator().manual_seed(b), dtype=dtype)
            with torch.inference_mode():
                z, fast = model.abstract(x)[0], gemm(x)
            assert fast.shape == z.shape and fast.dtype == dtype
            diff = (fast - z).abs().max().item()
            assert diff <= tol, f"{arch} {dtype} batch {b}: {diff}"
            if dtype == torch.float32:
                assert (fast - z).abs().amax(-1).le(margin(z) / 100).all()


def test_margin_is_relative_to_the_logits_scale():
    z = torch.tensor([[0.0, 0.5], [100.0, -3.0]])
    torch.testing.assert_close(margin(z), torch.tensor([ATOL + RTOL * 0.5, ATOL + RTOL * 100.0]))


def test_gemm_keeps_its_own_weights():
    """It copies every weight and bias, also where its layout is a view of the parameter's (a 1x1 conv of one channel,
    a linear layer of one unit): built from a frozen network, it does not follow later changes."""
    for model in (model_of("fast"), FSAE(FSAEConfig([1, 8, 8], [LayerSpec("conv", 1, 1, 1), LayerSpec("linear", 1)]))):
        gemm = GemmAbstract(model.abstract)
        x = torch.rand(2, *model.config.input_shape)
        before = gemm(x)
        torch.testing.assert_close(before, model.abstract(x)[0], rtol=0, atol=1e-5)
        with torch.no_grad():
            for p in model.abstract.parameters():
                p.add_(1.0)
        assert torch.equal(gemm(x), before)


def test_an_empty_batch():
    model = model_of("fast")
    assert GemmAbstract(model.abstract)(torch.rand(0, 1, 28, 28)).shape == (0, 10)
