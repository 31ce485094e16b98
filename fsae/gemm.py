"""The abstract network's logits as gathers and matrix products: a faster inference pass for small batches on a CPU.

An agent's common sense runs the frozen abstract network on a handful of images every vector step (8 for the digit
tasks). At that size a convolution costs mostly its set-up: PyTorch's CPU convolution (oneDNN, or the native im2col
kernel) spends several times the arithmetic on it. Here each conv layer is one ``index_select`` that gathers every
output position's receptive field (a precomputed index) and one ``addmm`` with the kernel as a (k * k * C_in, C_out)
matrix; activations stay channels-last between conv layers, and the first linear layer's columns are permuted to
read them in that order. For the fast config's network on a batch of 8 this is about twice as fast as
``AbstractNet.forward`` on a CPU (2.3x, one thread: ``benchmarks/abstract_pass.py`` measures both;
docs/PERFORMANCE.md, tenth round).

The values are the same function computed with the sums in another order, so they differ from ``AbstractNet`` in the
last bits: up to 1.5e-5 on the logits of the fast config trained on MNIST, a few ulps of their largest partial sums
(``benchmarks/lookup_exact.py``). That is why the one user, ``rl.lookup``, takes from it only what a few ulps cannot
change: which class wins each softmax group (or which side of 0 each sigmoid logit is on), when the winner leads by more
than ``margin(z)``; any batch with a closer call is computed again by ``AbstractNet`` itself. The margin scales with the
logits, not with the terms summed, so it is a measured safety factor, not a bound; ``rl.lookup`` checks each model
against it before using this pass. Nothing else (pretraining, the ``code`` and ``features`` conditions) uses it, so
their numbers are those of ``AbstractNet``.

    >>> from fsae.model import FSAE, FSAEConfig, LayerSpec
    >>> cfg = FSAEConfig(input_shape=[1, 8, 8], layers=[LayerSpec("conv", 4, 3, 1), LayerSpec("linear", 3)])
    >>> model = FSAE(cfg).eval()
    >>> x = torch.rand(5, 1, 8, 8)
    >>> bool((GemmAbstract(model.abstract)(x) - model.abstract(x)[0]).abs().max() < 1e-5)
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Two float32 evaluations of the same logits, summed in different orders, differ by a few ulps of the largest partial
# sums; ``margin`` asks the winner to lead by more than a thousand times the largest difference measured on trained
# networks (``benchmarks/lookup_exact.py``; docs/PERFORMANCE.md, tenth round), relative to the logits' scale so that
# it grows with them.
RTOL, ATOL = 1e-3, 1e-4


def margin(z: torch.Tensor) -> torch.Tensor:
    """The lead (per row of logits ``z`` (B, K)) below which the fast pass's winner is not trusted."""
    return margin_of(z.abs().amax(-1))


def margin_of(largest):
    """``margin`` from each row's largest logit magnitude: a tensor, or a numpy array (the lookup's CPU path)."""
    return ATOL + RTOL * largest


def _conv_index(c: int, h: int, w: int, k: int, s: int, channels_last: bool) -> torch.Tensor:
    """For an input (C, H, W) flattened channels-first or channels-last, the flat position of every output position's
    receptive field, ordered (out_h, out_w, kernel_h, kernel_w, C): a (out_h * out_w * k * k * C,) index."""
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    rows = (torch.arange(oh) * s).view(oh, 1, 1, 1, 1) + torch.arange(k).view(1, 1, k, 1, 1)
    cols = (torch.arange(ow) * s).view(1, ow, 1, 1, 1) + torch.arange(k).view(1, 1, 1, k, 1)
    chan = torch.arange(c).view(1, 1, 1, 1, c)
    idx = (rows * w + cols) * c + chan if channels_last else chan * (h * w) + rows * w + cols
    return idx.reshape(-1)


def _own(t: torch.Tensor) -> torch.Tensor:
    """A contiguous copy that shares no memory with the network's parameter."""
    return t.detach().clone(memory_format=torch.contiguous_format)


class GemmAbstract:
    """``AbstractNet``'s logits z_L for a batch (B, C, H, W), as gathers and GEMMs (see the module docstring).

    Built from a frozen network and holding its own copies of the weights, laid out for the products: build it again
    if the network changes. Inference only (no gradients).
    """

    def __init__(self, abstract: nn.Module):
        self.input_shape = tuple(abstract.shapes[0])
        self.slope = abstract.config.leaky_slope  # every hidden layer's activation
        # Each step: (index or None, weight (in, out), bias (out,), positions per image or 1).
        self.steps: list[tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, int]] = []
        channels_last = False  # the input arrives channels-first; conv outputs are kept channels-last
        with torch.no_grad():
            for i, layer in enumerate(abstract.layers):
                before, after = abstract.shapes[i], abstract.shapes[i + 1]
                w = layer.weight.detach()
                if isinstance(layer, nn.Conv2d):
                    k, s = layer.kernel_size[0], layer.stride[0]
                    idx = _conv_index(*before, k, s, channels_last).to(w.device)
                    weight = w.permute(2, 3, 1, 0).reshape(-1, w.shape[0])  # (k * k * C_in, C_out)
                    self.steps.append((idx, _own(weight), _own(layer.bias), after[1] * after[2]))
                    channels_last = True
                else:
                    if channels_last:  # the columns read (C, H, W); the conv output is (H, W, C)
                        c, h, wd = before
                        w = w.reshape(-1, c, h, wd).permute(0, 2, 3, 1).reshape(w.shape[0], -1)
                        channels_last = False
                    self.steps.append((None, _own(w.t()), _own(layer.bias), 1))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) -> the logits z_L (B, K), as ``AbstractNet.forward(x)[0]`` up to the order of its sums."""
        b = x.shape[0]
        if b == 0:
            return x.new_zeros(0, self.steps[-1][1].shape[1])
        h = x.reshape(b, -1)
        last = len(self.steps) - 1
        for i, (idx, weight, bias, positions) in enumerate(self.steps):
            if idx is not None:
                h = h.index_select(1, idx).view(b * positions, -1)
            h = torch.addmm(bias, h, weight)
            if i < last:
                F.leaky_relu_(h, self.slope)  # in place: h is this call's own
            h = h.view(b, -1)
        return h
