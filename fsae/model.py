"""The functionally separate autoencoder (Wei & Ren, 2023), read top to bottom.

Contents:
    LeakyReLU, Sigmoid, Softmax, Identity -- invertible activations (``fsae.layers``, imported here), each with
                                             ``forward`` and ``inverse`` (exact, but for softmax's additive constant
                                             and sigmoid's clip).
    LayerSpec, FSAEConfig                 -- the architecture and the variant, as typed config (``fsae.model_config``,
                                             imported here).
    StrideWarning                         -- a strided conv layer that leaves part of its input unread.
    AbstractNet                           -- the supervised "top half": conv/linear layers, no pooling, no padding.
    ConcreteNet                           -- its layer-by-layer inverse, derived automatically from AbstractNet.
    FSAE                                  -- both halves plus the variants: plain, round, jump connections,
                                             negative feedback, generation from a label or any code vector.

Notation (``docs/DESIGN.md`` section 1). Abstract layers l = 1..L with h_0 = x:

    z_l = A_l(h_{l-1}),   h_l = f_l(z_l)                      f_l: leaky ReLU (hidden) or the head (l = L)

Concrete network, from a code g_L back to the input:

    zhat_l = f_l^{-1}(g_l),   g_{l-1} = C_l(zhat_l),   xhat = out(g_0)

C_l is A_l with its shape reversed (Linear(out, in) or ConvTranspose2d). A_l's weight is not square, so C_l
cannot be computed from it and is learned instead (the paper's point about eq. 1-2), with A frozen.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from fsae.config import check
from fsae.layers import ConvTranspose2d, Identity, LeakyReLU, Sigmoid, Softmax
from fsae.model_config import (  # noqa: F401  (FSAEConfig and the rest are read from fsae.model by callers)
    FSAEConfig,
    LayerSpec,
    StrideWarning,
    conv_out,
    paper_layers,
    unread_input,
)

# --------------------------------------------------------------------------------------------------------------------
# The two halves


class AbstractNet(nn.Module):
    """The supervised half: z_l = A_l(h_{l-1}), h_l = f_l(z_l). No pooling, no padding (both lose information), and
    a ``StrideWarning`` for a strided conv whose windows do not cover its input (see ``LayerSpec.stride``)."""

    def __init__(self, config: FSAEConfig):
        super().__init__()
        self.config = config
        shape = tuple(config.input_shape)
        self.shapes: list[tuple[int, ...]] = [shape]  # shape of h_l without the batch axis, l = 0..L
        layers: list[nn.Module] = []
        for i, spec in enumerate(config.layers):
            if spec.type == "conv":
                check(len(shape) == 3, f"layer {i + 1}: conv after a linear layer is not supported")
                c, h, w = shape
                oh, ow = conv_out(h, spec.kernel, spec.stride), conv_out(w, spec.kernel, spec.stride)
                check(oh >= 1 and ow >= 1, f"layer {i + 1}: kernel {spec.kernel} does not fit a {h}x{w} input")
                unread = unread_input(i + 1, h, w, spec.kernel, spec.stride)
                if unread:
                    warnings.warn(unread, StrideWarning, stacklevel=2)
                layers.append(nn.Conv2d(c, spec.out, spec.kernel, spec.stride, padding=0))
                shape = (spec.out, oh, ow)
            else:
                layers.append(nn.Linear(math.prod(shape), spec.out))
                shape = (spec.out,)
            self.shapes.append(shape)
        self.layers = nn.ModuleList(layers)
        hidden = LeakyReLU(config.leaky_slope)
        head: nn.Module = {
            "softmax": lambda: Softmax([config.code_size], config.eps),
            "groups": lambda: Softmax(config.groups, config.eps),
            "sigmoid": lambda: Sigmoid(config.eps),
            "linear": lambda: Identity(),
        }[config.head]()
        self.activations = nn.ModuleList([hidden] * (len(layers) - 1) + [head])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, C, H, W) -> (logits z_L (B, K), [h_0 = x, h_1, ..., h_L]). h_L is the code (e.g. softmax probs)."""
        assert x.shape[1:] == self.shapes[0], f"input shape {tuple(x.shape[1:])} != model input {self.shapes[0]}"
        hs = [x]
        for layer, act in zip(self.layers, self.activations):
            h = hs[-1].flatten(1) if isinstance(layer, nn.Linear) else hs[-1]
            z = layer(h)
            hs.append(act(z))
        return z, hs


class ConcreteNet(nn.Module):
    """The generative half, derived from an ``AbstractNet``: C_l is A_l reversed, applied from l = L down to 1.

    Linear(in, out) becomes Linear(out, in); Conv2d(in_ch, out_ch, k, s) becomes ConvTranspose2d(out_ch, in_ch, k, s)
    with ``output_padding`` chosen so g_{l-1} has exactly h_{l-1}'s shape (a strided conv floors its output size).
    The output-padding rows/columns are the ones the abstract conv never read: no weight reaches them, only the bias.
    """

    def __init__(self, abstract: AbstractNet):
        super().__init__()
        self.shapes = abstract.shapes
        # f_l^{-1}: the abstract network's own activation modules (parameter-free), kept out of this module's tree.
        self.activations = list(abstract.activations)
        layers: list[nn.Module] = []
        for i, a in enumerate(abstract.layers):
            before, after = self.shapes[i], self.shapes[i + 1]
            if isinstance(a, nn.Conv2d):
                k, s = a.kernel_size, a.stride
                natural = [(after[d + 1] - 1) * s[d] + k[d] for d in range(2)]
                pad = tuple(before[d + 1] - natural[d] for d in range(2))
                assert all(0 <= p < s[d] for d, p in enumerate(pad)), f"layer {i + 1}: cannot invert shape {before}"
                layers.append(ConvTranspose2d(a.out_channels, a.in_channels, k, s, output_padding=pad))
            else:
                layers.append(nn.Linear(a.out_features, a.in_features))
        self.layers = nn.ModuleList(layers)  # layers[l-1] = C_l, applied in reverse order

    def forward(self, code: torch.Tensor, hs: list[torch.Tensor] | None = None, jumps: list[int] = ()) -> torch.Tensor:
        """code g_L (B, K) -> xhat (B, C, H, W). With ``jumps``, g_l <- (g_l + h_l) / 2 for l in jumps (Fig. 2c).

        The output is linear while training (MSE on the raw value) and clamped to the data range [0, 1] in eval mode.
        """
        g = code
        for l in range(len(self.layers), 0, -1):  # noqa: E741  (l is the paper's layer index)
            if l in jumps:
                assert hs is not None, "jump connections need the abstract activations hs"
                g = 0.5 * (g + hs[l])
            zhat = self.activations[l - 1].inverse(g)  # same shape as h_l
            g = self.layers[l - 1](zhat)
            if g.dim() == 2 and len(self.shapes[l - 1]) == 3:  # Linear back to a conv feature map
                g = g.view(-1, *self.shapes[l - 1])  # (B, C_{l-1}, H_{l-1}, W_{l-1})
        return g if self.training else g.clamp(0.0, 1.0)


# --------------------------------------------------------------------------------------------------------------------
# The whole network


class FSAE(nn.Module):
    """Abstract network + concrete network + the configured variant.

    ``forward(x)`` regenerates x in the variant (plain, round, jumps); ``regenerate(x)`` adds negative feedback;
    ``generate(code)`` and ``generate_labels(labels)`` run the concrete network alone, from a concept.

    Example:
        >>> model = FSAE(FSAEConfig(layers=[LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 10)])).eval()
        >>> model(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 1, 28, 28])
        >>> model.generate_labels(torch.tensor([3, 8])).shape
        torch.Size([2, 1, 28, 28])
    """

    def __init__(self, config: FSAEConfig):
        super().__init__()
        self.config = config
        self.abstract = AbstractNet(config)
        self.concrete = ConcreteNet(self.abstract)
        self.jumps = config.jump_layers()

    # -- the abstract half ------------------------------------------------------------------------------------------

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The abstract network's prediction: class indices (B,), per-group (B, G), 0/1 attributes, or values."""
        logits, hs = self.abstract(x)
        head = self.config.head
        if head == "softmax":
            return logits.argmax(-1)
        if head == "groups":
            return torch.stack([g.argmax(-1) for g in logits.split(self.config.groups, -1)], dim=-1)
        if head == "sigmoid":
            return (logits > 0).long()
        return hs[-1]

    def round_code(self, code: torch.Tensor) -> torch.Tensor:
        """round() between the halves (paper Fig. 2b): one-hot per softmax group, 0/1 per sigmoid, a grid for linear."""
        head = self.config.head
        if head in ("softmax", "groups"):
            sizes = self.config.groups if head == "groups" else [code.shape[-1]]
            return torch.cat([F.one_hot(g.argmax(-1), g.shape[-1]).to(code.dtype) for g in code.split(sizes, -1)], -1)
        if head == "sigmoid":
            return code.round()
        grid = self.config.round_grid
        return torch.round(code / grid) * grid if grid > 0 else code

    def code_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Labels -> the code a perfectly confident abstract network would output.

        softmax: (B,) class indices -> one-hot (B, K); groups: (B, G) indices -> concatenated one-hots;
        sigmoid: (B, K) 0/1 attributes and linear: (B, K) values pass through as float.
        """
        head, k = self.config.head, self.config.code_size
        if head == "softmax":
            return F.one_hot(labels.long().view(-1), k).float()
        if head == "groups":
            labels = labels.long().view(-1, len(self.config.groups))
            return torch.cat([F.one_hot(labels[:, i], n) for i, n in enumerate(self.config.groups)], -1).float()
        return labels.float().view(-1, k)

    # -- regeneration -----------------------------------------------------------------------------------------------

    def _regenerate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass of F: x -> (xhat, the code fed to the concrete network)."""
        _, hs = self.abstract(x)
        code = self.round_code(hs[-1]) if self.config.round else hs[-1]
        return self.concrete(code, hs, self.jumps), code

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) in [0, 1] -> xhat (B, C, H, W): F(x) in the configured variant, without feedback."""
        return self._regenerate(x)[0]

    @property
    def feedback_is_inert(self) -> bool:
        """Round without jump connections, and a discrete concept: the output depends on the rounded code alone, so
        ``regenerate``'s concept test refuses every step that would change it, and a step that keeps it leaves the
        output and the residual as they were: no feedback step is ever accepted (tested for every head)."""
        cfg = self.config
        return cfg.round and not self.jumps and (cfg.head != "linear" or cfg.round_grid > 0)

    def regenerate(
        self, x: torch.Tensor, steps: int | None = None, gain: float | None = None, trace: bool = False
    ) -> torch.Tensor | list[torch.Tensor]:
        """F with negative feedback (paper Fig. 2d, 3): an integral controller on the input.

            u_0 = x,   u_{t+1} = u_t + k (x - F(u_t)),   output F(u_T)

        x is known at inference, so each step is checked per sample and accepted only when it lowers the residual
        ||x - F(u)||^2 and keeps the code's concept (its rounded value) unchanged; a rejected sample keeps u and halves
        its gain. That is the controller's anti-windup: feedback never makes a regeneration worse, so the error is
        monotone in T by construction, and it regenerates x rather than switching to another class's prototype.
        (``docs/DESIGN.md`` section 3.8: the residual test and the halving are the design; the concept test, and
        counting a retry with the halved gain as one of the T steps, are this implementation's choices.)
        With round and no jumps the output depends on the concept alone, so no step is ever accepted (the paper:
        feedback "only works when jump connection or regression"). Costs T + 1 forward passes. With ``trace`` the
        outputs after every step are returned, [F(u_0), ..., F(u_T)], at no extra cost.
        """
        steps = self.config.feedback_steps if steps is None else steps
        gain = self.config.feedback_gain if gain is None else gain
        y, code = self._regenerate(x)
        outputs = [y]
        if steps == 0:
            return outputs if trace else y
        concept = self.round_code(code)
        # A linear code without a grid has no discrete concept: requiring it unchanged would refuse every step.
        keep_concept = self.config.head != "linear" or self.config.round_grid > 0
        residual = (x - y).pow(2).flatten(1).mean(1)  # (B,)
        k = torch.full_like(residual, gain)
        u = x
        expand = (-1,) + (1,) * (x.dim() - 1)  # (B,) -> (B, 1, 1, 1)
        for _ in range(steps):
            cand = u + k.view(expand) * (x - y)
            y_c, code_c = self._regenerate(cand)
            r_c = (x - y_c).pow(2).flatten(1).mean(1)
            ok = r_c < residual
            if keep_concept:
                ok = ok & (self.round_code(code_c) == concept).all(-1)
            u = torch.where(ok.view(expand), cand, u)
            y = torch.where(ok.view(expand), y_c, y)
            residual = torch.where(ok, r_c, residual)
            k = torch.where(ok, k, 0.5 * k)
            outputs.append(y)
        return outputs if trace else y

    # -- generation from a concept ----------------------------------------------------------------------------------

    def generate(self, code: torch.Tensor) -> torch.Tensor:
        """Any code vector (B, K) -> xhat: a one-hot label gives its class prototype, a mixture a blend of concepts."""
        assert code.shape[-1] == self.config.code_size, f"code size {code.shape[-1]} != {self.config.code_size}"
        return self.concrete(code)

    def generate_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Labels (see ``code_from_labels``) -> the concrete network's image of each label."""
        return self.generate(self.code_from_labels(labels))

    # -- training support -------------------------------------------------------------------------------------------

    def freeze_abstract(self) -> None:
        """Freeze the abstract half for concrete training (paper: "set it as untrainable"): no grads, eval mode."""
        self.abstract.requires_grad_(False)
        self.abstract.eval()

    def train(self, mode: bool = True) -> FSAE:
        """Like ``nn.Module.train``, but a frozen abstract half stays in eval mode."""
        super().train(mode)
        if not any(p.requires_grad for p in self.abstract.parameters()):
            self.abstract.eval()
        return self

    @torch.no_grad()
    def init_concrete(self, x: torch.Tensor) -> None:
        """Data-dependent init of the concrete layers, top down, in the configured variant.

        PyTorch's default init, then each C_l is rescaled per output channel (or unit) so that on the batch ``x`` its
        output has the mean and std of the abstract activation h_{l-1} it reconstructs. Without it a deep inverse
        blows up; a pseudo-inverse init is the unmeasured alternative (``docs/DESIGN.md`` section 3.2).
        """
        _, hs = self.abstract(x)
        g = self.round_code(hs[-1]) if self.config.round else hs[-1]
        for l in range(len(self.concrete.layers), 0, -1):  # noqa: E741
            if l in self.jumps:
                g = 0.5 * (g + hs[l])
            layer = self.concrete.layers[l - 1]
            zhat = self.concrete.activations[l - 1].inverse(g)
            out = layer(zhat).view(hs[l - 1].shape)  # (B, C, H, W) or (B, N)
            dims = [0, 2, 3] if out.dim() == 4 else [0]
            # Per channel or unit. An output with no spread on this batch (a single value per unit, or every image
            # rounded to one class) gives nothing to match: keep its scale, shift its mean only.
            out_mean = out.mean(dims)
            scale = torch.ones_like(out_mean)
            if out.numel() > scale.numel():
                h_std, out_std = hs[l - 1].std(dims), out.std(dims)
                scale = torch.where(out_std > 1e-6, h_std / out_std.clamp_min(1e-6), scale)
            shift = hs[l - 1].mean(dims) - scale * out_mean
            if isinstance(layer, nn.ConvTranspose2d):  # weight (C_l, C_{l-1}, k, k)
                layer.weight.mul_(scale.view(1, -1, 1, 1))
                layer.bias.mul_(scale).add_(shift)
            else:  # Linear weight (N_{l-1}, N_l); a flattened feature map repeats each channel's factor H*W times
                rep = layer.out_features // scale.numel()
                layer.weight.mul_(scale.repeat_interleave(rep).view(-1, 1))
                layer.bias.mul_(scale.repeat_interleave(rep)).add_(shift.repeat_interleave(rep))
            g = layer(zhat).view(hs[l - 1].shape)
