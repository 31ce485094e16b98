"""The FSAE's architecture as typed config, and what its shapes imply (``fsae.model`` builds the networks from it).

Contents:
    LayerSpec, paper_layers -- one affine layer of the abstract network; the paper's MNIST network.
    HEADS, FSAEConfig       -- the code's head and the whole architecture with its generation variant.
    StrideWarning           -- a strided conv layer that leaves part of its input unread (``unread_input`` says
                               which part and what would fit); ``conv_out`` is a conv's output size, no padding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fsae.config import check


@dataclass
class LayerSpec:
    """One affine layer A_l of the abstract network."""

    type: str = "conv"
    """'conv' (Conv2d, no padding) or 'linear' (input flattened first)."""
    out: int = 32
    """Output channels (conv) or units (linear). The last layer's ``out`` is the code size."""
    kernel: int = 3
    """Conv kernel size (ignored for linear)."""
    stride: int = 1
    """Conv stride (ignored for linear). The conv reads every input pixel only when (size - kernel) % stride == 0
    and stride <= kernel. Otherwise its windows never reach the last rows/columns (or skip the gaps between them):
    those pixels reach neither the code nor the jump connections, the concrete network regenerates them from its
    biases alone, and ``AbstractNet`` warns (``StrideWarning``)."""

    def __post_init__(self):
        check(self.type in ("conv", "linear"), f"layer type must be 'conv' or 'linear', got '{self.type}'")
        check(self.out > 0 and self.kernel > 0 and self.stride > 0, f"layer sizes must be positive: {self}")


def paper_layers() -> list[LayerSpec]:
    """The paper's MNIST network: 3 conv layers (3x3; 32, 64, 64 channels), FC 64, FC 10."""
    return [
        LayerSpec("conv", 32, 3, 1),
        LayerSpec("conv", 64, 3, 1),
        LayerSpec("conv", 64, 3, 1),
        LayerSpec("linear", 64),
        LayerSpec("linear", 10),
    ]


HEADS = ("softmax", "sigmoid", "groups", "linear")


@dataclass
class FSAEConfig:
    """Architecture of both halves and the generation variant. Variants are fields here, not subclasses."""

    input_shape: tuple[int, int, int] = (1, 28, 28)
    """(C, H, W) of the input images, values in [0, 1]."""
    layers: list[LayerSpec] = field(default_factory=paper_layers)
    """The abstract network's affine layers, input to output; the concrete network is derived from them."""
    head: str = "softmax"
    """'softmax' (classes), 'sigmoid' (multi-attribute), 'groups' (softmax per group), 'linear' (regression)."""
    groups: list[int] = field(default_factory=list)
    """Group sizes for head 'groups' (e.g. [10, 10] for two digits); they must sum to the last layer's ``out``."""
    leaky_slope: float = 0.3
    """Slope a of the hidden leaky ReLUs (Keras' default; see ``LeakyReLU``)."""
    eps: float = 1e-6
    """Clip for the inverse of sigmoid and softmax (paper eq. 12)."""
    round: bool = False
    """Round the code before the concrete network (paper Fig. 2b): one-hot per softmax group, 0/1 per sigmoid."""
    round_grid: float = 0.0
    """Linear head only: round the code to multiples of this step when ``round`` is on (0 = leave it)."""
    jumps: list[int] | str = field(default_factory=list)
    """Jump connections (Fig. 2c): hidden layers l in 1..L-1 whose abstract output h_l is averaged into the concrete
    network, or 'last' (l = L-1, the paper's Fig. 2c), 'all' (every hidden layer), 'none'."""
    feedback_steps: int = 0
    """Negative feedback (Fig. 2d): integral-controller steps T at inference (0 = off)."""
    feedback_gain: float = 1.0
    """Negative feedback gain k."""

    def __post_init__(self):
        self.input_shape = tuple(self.input_shape)  # type: ignore[assignment]
        self.layers = [LayerSpec(**s) if isinstance(s, dict) else s for s in self.layers]
        check(len(self.input_shape) == 3, f"input_shape must be (C, H, W), got {self.input_shape}")
        check(len(self.layers) >= 1, "the abstract network needs at least one layer")
        check(self.head in HEADS, f"head must be one of {HEADS}, got '{self.head}'")
        check(self.layers[-1].type == "linear", "the last layer must be 'linear' (it produces the code)")
        if self.head == "groups":
            out = self.layers[-1].out
            check(
                self.groups and sum(self.groups) == out,
                f"head 'groups' needs groups summing to the last layer's out ({out}), got {self.groups}",
            )
        check(0.0 < self.leaky_slope < 1.0, f"leaky_slope must be in (0, 1), got {self.leaky_slope}")
        check(0.0 < self.eps < 0.5, f"eps must be in (0, 0.5), got {self.eps}")
        check(self.round_grid >= 0.0, f"round_grid must be >= 0, got {self.round_grid}")
        # Settings of another head would be silently ignored:
        check(
            self.head == "groups" or not self.groups, f"groups {self.groups} apply to head 'groups', not '{self.head}'"
        )
        check(
            self.head == "linear" or self.round_grid == 0.0,
            f"round_grid applies to head 'linear' (head '{self.head}' rounds to its classes); remove it",
        )
        check(
            not (self.round and self.head == "linear" and self.round_grid == 0.0),
            "round on head 'linear' needs round_grid > 0 (without a grid the round network is the plain one)",
        )
        check(self.feedback_steps >= 0, f"feedback_steps must be >= 0, got {self.feedback_steps}")
        check(self.feedback_gain > 0.0, f"feedback_gain must be > 0, got {self.feedback_gain}")
        self.jump_layers()  # validates

    @property
    def code_size(self) -> int:
        return self.layers[-1].out

    def jump_layers(self) -> list[int]:
        """The resolved jump layers: sorted indices l in 1..L-1."""
        n = len(self.layers)
        if isinstance(self.jumps, str):
            named = {"none": [], "last": [n - 1] if n > 1 else [], "all": list(range(1, n))}
            check(self.jumps in named, f"jumps must be a list of layers or one of {list(named)}, got '{self.jumps}'")
            return named[self.jumps]
        for j in self.jumps:
            check(1 <= j <= n - 1, f"jump layer {j} out of range: hidden layers are 1..{n - 1}")
        return sorted(set(self.jumps))


def conv_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1  # no padding


class StrideWarning(UserWarning):
    """A strided conv layer never reads part of its input (see ``LayerSpec.stride``)."""


def unread_input(layer: int, h: int, w: int, kernel: int, stride: int) -> str | None:
    """Why conv layer ``layer`` leaves part of its h x w input unread, and what would fit; None if it reads it all."""
    if stride > kernel:
        return (
            f"layer {layer}: conv stride {stride} > kernel {kernel} never reads {stride - kernel} of every {stride} "
            f"rows and columns of its {h}x{w} input; use a stride <= {kernel} or a kernel >= {stride}"
        )
    rest = {"row": (h - kernel) % stride, "column": (w - kernel) % stride}
    if not any(rest.values()):
        return None
    size = {"row": h, "column": w}
    unread = " and ".join(f"the last {r} {d}(s)" for d, r in rest.items() if r)
    # the nearest sizes with (size - kernel) % stride == 0, and the kernels that tile this input
    fits = ", ".join(f"{size[d] - r} or {size[d] - r + stride} {d}s" for d, r in rest.items() if r)
    kernels = [k for k in range(max(1, kernel - stride + 1), min(h, w, kernel + stride - 1) + 1)
               if (h - k) % stride == 0 and (w - k) % stride == 0]  # fmt: skip
    alt = f", or a kernel of {' or '.join(map(str, kernels))}" if kernels else ""
    return (
        f"layer {layer}: conv kernel {kernel} stride {stride} never reads {unread} of its {h}x{w} input "
        f"((size - kernel) % stride != 0), so the concrete network regenerates them from its biases alone; "
        f"an input of {fits} fits{alt}"
    )
