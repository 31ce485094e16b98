"""The building blocks of the two halves: invertible activations and the concrete network's transposed convolution.

Contents:
    LeakyReLU, Sigmoid, Softmax, Identity -- invertible activations (paper eq. 3-12), each with ``forward`` and
                                             ``inverse``: exact where the function is a bijection (leaky ReLU,
                                             identity; sigmoid inside its clip), up to an additive constant for softmax.
    ConvTranspose2d                       -- ``nn.ConvTranspose2d`` (same parameters, same state dict) that runs, on
                                             a CPU and where its kernel is a multiple of its stride, as one ordinary
                                             convolution and a pixel shuffle: the same function, faster there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fsae.config import check

# Run ConvTranspose2d as a convolution and a pixel shuffle where it is faster (``ConvTranspose2d.runs_polyphase``). On
# the project's CPU, for the digit tasks' last layer (32 -> 1 channels, kernel 4, stride 2), 2.5x faster forward at
# batch 1000 and 1.4x forward + backward at batch 128 than PyTorch's transposed convolution; for DigitSum's (13 x 27
# input) 2.2x and 1.3x; for the kernel-3 layers under bfloat16 autocast about 1.7-2x forward + backward
# (``benchmarks/step_costs.py``, docs/PERFORMANCE.md). Off, every layer is PyTorch's own.
POLYPHASE_ON_CPU = True


class LeakyReLU(nn.Module):
    """Leaky ReLU (paper eq. 5-6): f(z) = z if z >= 0 else a z;  f^{-1}(h) = h if h >= 0 else h / a.

    The default slope in ``FSAEConfig`` is 0.3, not 0.01: the inverse multiplies negatives by 1/a at every layer,
    and with a = 0.01 a deep inverse blows up (``docs/DESIGN.md`` section 3.1; measured in
    ``docs/results/choices.md``).
    """

    def __init__(self, slope: float):
        super().__init__()
        check(0.0 < slope < 1.0, f"leaky ReLU slope must be in (0, 1) to be invertible, got {slope}")
        self.slope = slope

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(z, self.slope)

    def inverse(self, h: torch.Tensor) -> torch.Tensor:
        """h if h >= 0 else h / a, computed as min(h, h / a) (the same values; a < 1): on a CPU several times faster
        than ``torch.where``, forward and backward, which the concrete network's training spends much of its time in."""
        if torch.is_grad_enabled() and h.requires_grad:
            return _LeakyInverse.apply(h, self.slope)
        return torch.minimum(h, h / self.slope)


class _LeakyInverse(torch.autograd.Function):
    """min(h, h / a) with the leaky ReLU's own backward kernel (gradient 1 where h > 0, else 1 / a): min's backward
    splits ties and is slow. The gradient equals d(h / a)/dh to the last bit or two (grad * (1 / a), not grad / a)."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, slope: float) -> torch.Tensor:
        ctx.save_for_backward(h)
        ctx.slope = slope
        return torch.minimum(h, h / slope)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (h,) = ctx.saved_tensors
        return torch.ops.aten.leaky_relu_backward(grad, h, 1.0 / ctx.slope, False), None


class Sigmoid(nn.Module):
    """Sigmoid (paper eq. 3-4): f^{-1}(h) = ln(h / (1 - h)), with h clipped to [eps, 1 - eps] so 0 and 1 stay finite."""

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(z)

    def inverse(self, h: torch.Tensor) -> torch.Tensor:
        return torch.logit(h, eps=self.eps)


class Softmax(nn.Module):
    """Softmax over one or several groups of units (one group per concept, e.g. one per digit in a two-digit image).

    Softmax drops an additive constant, so no exact inverse exists. The paper (eq. 7-12) uses ln(h) + C with C
    dropped, and clips h = 0, which one-hot codes contain: f^{-1}(h) = ln(max(h, eps)). This recovers the logits
    up to one additive constant per group.
    """

    def __init__(self, groups: list[int], eps: float):
        super().__init__()
        self.groups = list(groups)
        self.eps = eps

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([g.softmax(-1) for g in z.split(self.groups, dim=-1)], dim=-1)

    def inverse(self, h: torch.Tensor) -> torch.Tensor:
        return h.clamp_min(self.eps).log()


class Identity(nn.Module):
    """The linear (regression) head: f = f^{-1} = identity."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def inverse(self, h: torch.Tensor) -> torch.Tensor:
        return h


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` that, on a CPU, runs as one convolution and a pixel shuffle where that is faster
    (``runs_polyphase``); elsewhere, PyTorch's transposed convolution. Same parameters and state dict; the same
    function, summed in another order (equal to float precision, tested).

    A transposed convolution with stride s writes output pixel (s i + p, s j + q) from the kernel taps
    (p + s m, q + s n) alone: each of the s^2 output phases is an ordinary convolution of the input with a sub-kernel
    of (k / s)^2 taps, flipped. Stacked as s^2 C_out output channels of one convolution (input padded by k / s - 1),
    ``pixel_shuffle`` interleaves the phases; the output padding rows take only the bias. A kernel that is not a
    multiple of the stride (3 with stride 2, the networks' second layer) is first padded with zero taps up to one
    (4): the same outputs, and one more row and column at the end, cut off.

    Where it is faster (``benchmarks/step_costs.py``, docs/PERFORMANCE.md): a kernel that is a multiple of the
    stride always (PyTorch's CPU kernel is much slower than oneDNN's convolution for few output channels, the last
    layer of an image decoder); one that needs zero taps only under bfloat16 (pretraining's autocast), where
    PyTorch's kernel is slow for every layer; in float32 the zero taps cost more than they save, most at an agent's
    batch of 8.
    """

    @property
    def polyphase(self) -> bool:
        """Whether the layer can run polyphase: strided, no padding, dilation or groups (and ``POLYPHASE_ON_CPU``)."""
        plain = self.padding == (0, 0) and self.dilation == (1, 1) and self.groups == 1
        strided = max(self.stride) > 1  # with stride 1 PyTorch's kernel was the faster one (a quick test)
        return POLYPHASE_ON_CPU and plain and strided

    @property
    def needs_zero_taps(self) -> bool:
        return any(k % s for k, s in zip(self.kernel_size, self.stride))

    def runs_polyphase(self, x: torch.Tensor) -> bool:
        """Whether ``forward(x)`` runs polyphase: on a CPU, for a 4-D input, where it is faster (see the class)."""
        if x.device.type != "cpu" or x.dim() != 4 or not self.polyphase:
            return False
        bf16 = x.dtype == torch.bfloat16 or (
            torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        )
        return bf16 or not self.needs_zero_taps

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is not None or not self.runs_polyphase(x):
            return super().forward(x, output_size)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        zh, zw = -kh % sh, -kw % sw  # zero taps that make the kernel a multiple of the stride
        weight = F.pad(self.weight, (0, zw, 0, zh)) if zh or zw else self.weight
        mh, mw = (kh + zh) // sh, (kw + zw) // sw
        c_in, c_out = weight.shape[:2]
        # weight (C_in, C_out, kh, kw), tap (p + s m, q + s n) -> conv weight (C_out * sh * sw, C_in, mh, mw), flipped
        w = weight.view(c_in, c_out, mh, sh, mw, sw).flip(2, 4)
        w = w.permute(1, 3, 5, 0, 2, 4).reshape(c_out * sh * sw, c_in, mh, mw)
        y = F.conv2d(x, w, padding=(mh - 1, mw - 1))  # (B, C_out * sh * sw, H + mh - 1, W + mw - 1)
        y = _shuffle(y, c_out, sh, sw)
        h, w_ = x.shape[-2:]
        out_h, out_w = (h - 1) * sh + kh, (w_ - 1) * sw + kw  # without the output padding: it gets only the bias
        oph, opw = self.output_padding
        y = F.pad(y[..., :out_h, :out_w], (0, opw, 0, oph)) if oph or opw else y[..., :out_h, :out_w]
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1).to(y.dtype)


def _shuffle(y: torch.Tensor, c: int, sh: int, sw: int) -> torch.Tensor:
    """(B, c * sh * sw, H, W), channel (ch, p, q) -> (B, c, H * sh, W * sw) with pixel (i sh + p, j sw + q)."""
    if sh == sw:
        return F.pixel_shuffle(y, sh)
    b, _, h, w = y.shape
    return y.view(b, c, sh, sw, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, h * sh, w * sw)
