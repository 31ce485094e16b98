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
logit's magnitude); a batch with any closer call, or a NaN, is computed again by ``AbstractNet`` (counted in
``exact_batches``). The margin is a measured safety factor, not a bound: on trained networks and real images the two
passes differ by less than a thousandth of it (``benchmarks/lookup_exact.py``), but a network whose logits are small
differences of large terms can make them differ by more than the margin (the rounding error scales with the terms, the
margin with the logits). So each lookup checks its model when it is made (``Lookup.check_gemm``: random images and the
prototypes) and drops the GEMM pass, with a ``GemmWarning``, where the difference exceeds ``CHECK_LIMIT`` of the margin.
With the pass kept, the rows, and so the images, have been those of the ``AbstractNet`` pass in every check so far: the
tests against the full forward pass (ties, leads inside the margin, NaN and a cancelling network included), and
``benchmarks/lookup_exact.py`` on trained networks and real images; ``gemm=False`` reads every row from ``AbstractNet``.
On a GPU the pass is ``AbstractNet``'s (inside the regenerator's CUDA graph, which cannot wait on a Python decision).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from fsae.gemm import GemmAbstract, margin, margin_of
from fsae.model import FSAE, FSAEConfig

CHECK_LIMIT = 0.01
"""The largest difference between the two passes' logits, as a fraction of ``fsae.gemm.margin``, that a model may show
in ``Lookup.check_gemm`` and keep the GEMM pass. Three trained networks read 0.0004-0.0014 in that check and at most
0.0009 on real images (``benchmarks/lookup_exact.py``; docs/PERFORMANCE.md, tenth round)."""


class GemmWarning(UserWarning):
    """A model's GEMM pass was dropped: on random images its logits differed from ``AbstractNet``'s by more than
    ``CHECK_LIMIT`` of the margin."""


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
        self.dtype = p.dtype
        cpu = p.device.type == "cpu"  # numpy views of the table and the place values, for the CPU path (``serve``)
        self.table_np, self.radix_np = (self.table.numpy(), self.radix.numpy()) if cpu else (None, None)
        self.gemm = GemmAbstract(model.abstract) if gemm and cpu else None
        self.exact_batches = 0  # batches the fast pass left to AbstractNet (a winner too close to call)
        self.gemm_check: float | None = None  # the check's largest difference / margin (``check_gemm``)
        if self.gemm is not None:
            self.check_gemm()

    def check_gemm(self, images: int = 256) -> float:
        """Compare the GEMM pass with ``AbstractNet`` on ``images`` random images (seeded) and on the table's own
        prototypes, in batches of 8: the largest logit difference as a fraction of the margin. Above ``CHECK_LIMIT``
        (the two passes' sums disagree more than the margin was made for, as in a network whose logits are small
        differences of large terms) the GEMM pass is dropped, with a ``GemmWarning``: every batch runs
        ``AbstractNet``. Called when the lookup is made; returns the fraction (also ``gemm_check``)."""
        assert self.gemm is not None
        p = next(self.model.parameters())
        gen = torch.Generator().manual_seed(0)
        shape = tuple(self.model.config.input_shape)
        x = torch.randint(0, 256, (images, *shape), generator=gen, dtype=torch.uint8).to(p.device)
        x = torch.cat([x, self.table]).to(p.dtype).div_(255.0)
        worst = 0.0
        for batch in x.split(8):
            ratio = self.gap(batch)[1].max().item()
            worst = max(worst, ratio) if ratio == ratio else math.inf  # NaN: no trust
        self.gemm_check = worst
        if worst > CHECK_LIMIT:
            warnings.warn(
                f"the lookup's GEMM pass differs from AbstractNet by {worst:.3g} of its margin on random images "
                f"(more than {CHECK_LIMIT}); this model's regenerator runs AbstractNet's pass instead",
                GemmWarning,
                stacklevel=2,
            )
            self.gemm = None
        return worst

    def gap(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float images (B, C, H, W) -> per image, the largest difference between the GEMM pass's logits and
        ``AbstractNet``'s, and the same as a fraction of the margin."""
        with torch.inference_mode():
            z = self.model.abstract(x)[0]
            d = (self.gemm(x) - z).abs().amax(-1)
        return d, d / margin(z)

    @classmethod
    def of(cls, model: FSAE, max_codes: int = 4096, gemm: bool = True) -> Lookup | None:
        """The lookup of a frozen model, or None where its regeneration is not one of at most ``max_codes`` images."""
        codes = rounded_codes(model, max_codes)
        return None if codes is None else cls(model, codes, gemm)

    def __len__(self) -> int:
        return len(self.table)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Float images (B, C, H, W) in [0, 1] -> uint8 (B, C, H, W): the table's row of each image's rounded code, by
        ``AbstractNet``'s pass, on any device (a GPU's CUDA graph holds it); ``serve`` is the CPU's GEMM path."""
        _, hs = self.model.abstract(x)  # what FSAE._regenerate computes, up to the concrete network: the code
        return self.table[self.rows(hs[-1])]

    def serve(self, obs: np.ndarray) -> np.ndarray:
        """uint8 images (B, C, H, W) -> their uint8 regenerations, a new array: ``self(obs / 255)`` on a CPU with the
        GEMM pass, picking the rows in numpy (on a vector step's few logits its small operations cost a fraction of
        torch's; docs/PERFORMANCE.md, tenth round). Call it under ``torch.inference_mode``."""
        assert self.gemm is not None, "serve is the GEMM pass's CPU path"
        x = torch.from_numpy(obs).to(self.dtype).div_(255.0)
        rows = self._rows_from_logits(self.gemm(x).numpy())
        if rows is None:
            self.exact_batches += 1
            rows = self.rows(self.model.abstract(x)[1][-1]).numpy()
        return self.table_np[rows]

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

    def _rows_from_logits(self, z: np.ndarray) -> np.ndarray | None:
        """Logits (B, K), a numpy array, -> the rows (int64) ``rows`` gives for their code, or None when any winner
        leads by no more than ``fsae.gemm.margin(z)`` (a sigmoid unit: its logit within the margin of 0)."""
        # Every test is "leads by more than the margin", so a NaN anywhere fails it and leaves the batch to AbstractNet.
        if len(self.sizes) == 1 and self.sizes[0] > 1:  # one softmax group (the usual case) in few numpy operations
            top = np.sort(z, axis=-1)  # a NaN sorts last
            tol = margin_of(np.maximum(top[:, -1], -top[:, 0]))  # the largest |logit|, from the sorted row
            return z.argmax(-1) if (top[:, -1] - top[:, -2] > tol).all() else None
        tol = margin_of(np.abs(z).max(-1))
        if self.model.config.head == "sigmoid":
            if not (np.abs(z) > tol[:, None]).all():
                return None
            return (z > 0).astype(np.int64) @ self.radix_np
        digits = []
        start = 0
        for n in self.sizes:
            g = z[:, start : start + n]
            start += n
            if n > 1:  # a group of one class has one digit, 0
                top = np.partition(g, n - 2, axis=-1)[:, n - 2 :]  # the runner-up and the winner (a NaN sorts last)
                if not (top[:, 1] - top[:, 0] > tol).all():
                    return None
            digits.append(g.argmax(-1))
        return digits[0] if len(digits) == 1 else np.stack(digits, -1) @ self.radix_np
