"""The lookup: a round FSAE's regeneration served from a table of its prototype images.

Contents:
    Lookup         -- the table of every rounded code's regeneration, and the abstract pass that picks a row.
    rounded_codes  -- every code a round-without-jumps model can feed its concrete network (None for other models).
    quantise       -- an image in [0, 1] -> uint8, as every regeneration is handed to an agent.

With round and no jump connections the concrete network sees only the rounded code, one of a finite set (a one-hot of
K for a softmax head, a product of one-hots for groups, 0/1 per attribute for sigmoid), so the regeneration is one of
a handful of images. ``Lookup`` computes them once and serves each batch by the abstract pass, the rounding and an
index into the table: the concrete network never runs again. ``rl.common_sense.Regenerator`` uses it by default.

**The abstract pass on a CPU** (``gemm=True``) runs as gathers and GEMMs (``fsae.gemm``), about twice as fast as
``AbstractNet`` on the few images of a vector step, but with its sums in another order, so its logits differ from
``AbstractNet``'s in the last bits. Only which class wins each softmax group (which side of 0 each sigmoid logit lies
on) is read from it, and only where the winner leads by more than ``fsae.gemm.margin`` (1e-4 plus 1e-3 of the largest
logit's magnitude: more than a thousand times the largest difference between the two passes measured on trained
networks); a batch with any closer call is computed again by ``AbstractNet`` (counted in ``exact_batches``). So the
row, and the image, are the ones the ``AbstractNet`` pass picks: the tests check it against the full forward pass
(ties and logits at 0 included), and ``benchmarks/lookup_exact.py`` on trained networks and real images. On a
GPU the pass is ``AbstractNet``'s (inside the regenerator's CUDA graph, which cannot wait on a Python decision).
"""

from __future__ import annotations

import math

import torch

from fsae.gemm import GemmAbstract, margin
from fsae.model import FSAE, FSAEConfig


def quantise(xhat: torch.Tensor) -> torch.Tensor:
    """An image in [0, 1] (float) -> uint8 round(clamp(xhat, 0, 1) * 255); in place on ``xhat``."""
    return xhat.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)


def _digit_sizes(cfg: FSAEConfig) -> list[int]:
    """How many values each digit of a rounded code takes: the group sizes, or 2 per sigmoid attribute."""
    if cfg.head == "sigmoid":
        return [2] * cfg.code_size
    return list(cfg.groups) if cfg.head == "groups" else [cfg.code_size]


def rounded_codes(model: FSAE, max_codes: int = 4096) -> torch.Tensor | None:
    """Every code a model's concrete network can be fed, (N, K) float32, when its regeneration depends on the rounded
    code alone (round, no jump connections, a softmax, groups or sigmoid head) and there are at most ``max_codes``;
    None otherwise (a linear head's grid is unbounded). Row i is the code whose digits (class per group, or 0/1 per
    attribute) spell i in mixed radix, the first digit the most significant: softmax gives the one-hots of 0..K-1,
    groups [10, 10] the one-hots of (0, 0), (0, 1), ..., (9, 9)."""
    cfg = model.config
    if not cfg.round or model.jumps or cfg.head == "linear":
        return None
    sizes = _digit_sizes(cfg)
    if math.prod(sizes) > max_codes:
        return None
    digits = torch.cartesian_prod(*[torch.arange(n) for n in sizes]).view(-1, len(sizes))
    return model.code_from_labels(digits.view(-1) if cfg.head == "softmax" else digits)


class Lookup:
    """The regeneration of every rounded code of a frozen ``model`` (on its device, in its dtype) as a uint8 table,
    and ``lookup(x)``: float images (B, C, H, W) in [0, 1] -> their uint8 regenerations, by a row of the table.

    Make it with ``Lookup.of(model)``, which says None where the regeneration does not depend on the rounded code
    alone. ``gemm`` (CPU only) picks rows by ``fsae.gemm``'s pass, checked as the module docstring says.
    """

    def __init__(self, model: FSAE, codes: torch.Tensor, gemm: bool = True):
        self.model = model
        p = next(model.parameters())
        self.sizes = _digit_sizes(model.config)
        self.radix = torch.tensor([math.prod(self.sizes[i + 1 :]) for i in range(len(self.sizes))], device=p.device)
        with torch.inference_mode():  # in chunks: the paper's FSAE needs about 1 MB per image
            codes = codes.to(device=p.device, dtype=p.dtype)
            self.table = torch.cat([quantise(model.generate(c)) for c in codes.split(256)])  # (N, C, H, W) uint8
        self.gemm = GemmAbstract(model.abstract) if gemm and p.device.type == "cpu" else None
        self.exact_batches = 0  # batches the fast pass left to AbstractNet (a winner too close to call)

    @classmethod
    def of(cls, model: FSAE, max_codes: int = 4096, gemm: bool = True) -> Lookup | None:
        """The lookup of a frozen model, or None where its regeneration is not one of at most ``max_codes`` images."""
        codes = rounded_codes(model, max_codes)
        return None if codes is None else cls(model, codes, gemm)

    def __len__(self) -> int:
        return len(self.table)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Float images (B, C, H, W) in [0, 1] -> uint8 (B, C, H, W): the table's row of each image's rounded code."""
        if self.gemm is not None:
            rows = self._rows_from_logits(self.gemm(x))
            if rows is not None:
                return self.table[rows]
            self.exact_batches += 1
        _, hs = self.model.abstract(x)  # what FSAE._regenerate computes, up to the concrete network: the code
        return self.table[self.rows(hs[-1])]

    def rows(self, code: torch.Tensor) -> torch.Tensor:
        """Codes (B, K) -> the rows of their rounded codes (B,): the digits ``FSAE.round_code`` keeps (the argmax of
        each softmax group, each sigmoid unit rounded) as one mixed-radix number, the first digit the most
        significant (``rounded_codes``' order)."""
        if self.model.config.head == "sigmoid":
            digits = code.round().long()
        elif len(self.sizes) == 1:  # one softmax group: its argmax is the row
            return code.argmax(-1)
        else:
            digits = torch.stack([g.argmax(-1) for g in code.split(self.sizes, -1)], -1)
        return (digits * self.radix).sum(-1)

    def _rows_from_logits(self, z: torch.Tensor) -> torch.Tensor | None:
        """Logits (B, K) -> the rows ``rows`` gives for their code, or None when any winner leads by no more than
        ``margin(z)`` (a sigmoid unit: its logit within the margin of 0)."""
        tol = margin(z)
        if self.model.config.head == "sigmoid":
            if bool((z.abs() <= tol[:, None]).any()):
                return None
            return ((z > 0).long() * self.radix).sum(-1)
        if len(self.sizes) == 1:  # one softmax group (the usual case), in as few tensor ops as it takes
            top, winner = z.topk(2, -1)
            return None if bool((top[:, 0] - top[:, 1] <= tol).any()) else winner[:, 0]
        digits = []
        for g in z.split(self.sizes, -1):
            if g.shape[-1] > 1:
                top = g.topk(2, -1).values
                if bool((top[:, 0] - top[:, 1] <= tol).any()):
                    return None
            digits.append(g.argmax(-1))
        return (torch.stack(digits, -1) * self.radix).sum(-1)
