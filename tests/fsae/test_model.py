"""Tests for fsae.model: activation inverses, derived concrete shapes, exact inversion, variants, freezing, init.

Models are tiny (inputs of at most 3x28x56, batches of at most 32) so the file runs in seconds on a shared CPU.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

from fsae.config import ConfigError
from fsae.model import (
    FSAE,
    FSAEConfig,
    Identity,
    LayerSpec,
    LeakyReLU,
    Sigmoid,
    Softmax,
    StrideWarning,
    paper_layers,
)

HYPOTHESIS = settings(max_examples=40, deadline=None)
EPS = 1e-6


def _floats(lo: float, hi: float, dtype=np.float32, max_rows: int = 4, max_cols: int = 12):
    """Strategy for (rows, cols) arrays of finite floats in [lo, hi]."""
    width = 32 if dtype == np.float32 else 64
    shape = st.tuples(st.integers(1, max_rows), st.integers(1, max_cols))
    return arrays(dtype, shape, elements=st.floats(lo, hi, width=width))


def _small_config(**kw) -> FSAEConfig:
    """A conv + two linear layers on 1x8x8: fast, and the code size is 3 unless the caller says otherwise."""
    kw.setdefault("input_shape", (1, 8, 8))
    kw.setdefault("layers", [LayerSpec("conv", 4, 3, 1), LayerSpec("linear", 8), LayerSpec("linear", 3)])
    return FSAEConfig(**kw)


# --- 1. Activation inverses (paper eq. 3-12) -------------------------------------------------------------------------


@HYPOTHESIS
@given(z=_floats(-10.0, 10.0), slope=st.sampled_from([0.01, 0.1, 0.3, 0.5, 0.99]) | st.floats(0.05, 0.95))
def test_leaky_relu_inverse_is_exact(z, slope):
    f = LeakyReLU(slope)
    z = torch.from_numpy(z)
    h = f(z)
    torch.testing.assert_close(h, torch.where(z >= 0, z, slope * z))  # the forward is the textbook leaky ReLU
    assert (f.inverse(h) - z).abs().max().item() <= 1e-5


@HYPOTHESIS
@given(z=_floats(-1e3, 1e3))
def test_identity_inverse_is_exact(z):
    z = torch.from_numpy(z)
    assert torch.equal(Identity().inverse(Identity()(z)), z)


@HYPOTHESIS
@given(z=_floats(-10.0, 10.0, dtype=np.float64))
def test_sigmoid_inverse_is_exact_inside_clip_float64(z):
    # |z| <= 10 keeps sigmoid(z) inside [eps, 1 - eps] for eps = 1e-6 (sigmoid(10) = 1 - 4.5e-5).
    f = Sigmoid(EPS)
    z = torch.from_numpy(z)
    assert (f.inverse(f(z)) - z).abs().max().item() <= 1e-5


@HYPOTHESIS
@given(z=_floats(-2.0, 2.0))
def test_sigmoid_inverse_is_exact_inside_clip_float32(z):
    # float32 resolves 1 - sigmoid(z) to ~1e-7 relative only for moderate z; |z| <= 2 keeps the error under 1e-5.
    f = Sigmoid(EPS)
    z = torch.from_numpy(z)
    assert (f.inverse(f(z)) - z).abs().max().item() <= 1e-5


@HYPOTHESIS
@given(
    groups=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    rows=st.integers(1, 4),
    data=st.data(),
)
def test_softmax_inverse_recovers_logits_up_to_one_constant_per_group(groups, rows, data):
    z = data.draw(arrays(np.float32, (rows, sum(groups)), elements=st.floats(-5.0, 5.0, width=32)))
    f = Softmax(groups, EPS)
    z = torch.from_numpy(z)
    h = f(z)
    for hg in h.split(groups, -1):  # each group is a distribution
        torch.testing.assert_close(hg.sum(-1), torch.ones(rows))
    diff = f.inverse(h) - z
    for dg, zg in zip(diff.split(groups, -1), z.split(groups, -1)):
        # ln softmax(z) - z = -logsumexp(z): the same constant for every unit of the group
        assert (dg - dg[:, :1]).abs().max().item() <= 1e-4
        torch.testing.assert_close(dg[:, 0], -zg.logsumexp(-1), atol=1e-4, rtol=0)


def test_inverse_at_clipped_values():
    # Softmax: a one-hot code contains h = 0, whose inverse is clipped to ln(eps) (paper eq. 12).
    sm = Softmax([3], EPS).inverse(torch.tensor([[1.0, 0.0, 0.0]]))
    assert sm[0, 0].item() == 0.0
    assert sm[0, 1].item() == pytest.approx(math.log(EPS), abs=1e-4)
    assert sm[0, 2].item() == pytest.approx(-13.8155, abs=1e-3)
    # Sigmoid: 0 and 1 map to the finite logit(eps) and logit(1 - eps) = -logit(eps) = 13.8155 (float64).
    logit_eps = math.log(EPS / (1 - EPS))
    sg = Sigmoid(EPS).inverse(torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64))
    torch.testing.assert_close(sg, torch.tensor([logit_eps, -logit_eps, 0.0], dtype=torch.float64))
    # float32 holds 1 - 1e-6 as 0.99999905, so the upper clip gives 13.8023: finite, and off by float32 rounding only.
    sg32 = Sigmoid(EPS).inverse(torch.tensor([0.0, 1.0, 0.5]))
    assert torch.isfinite(sg32).all()
    top = torch.tensor(1 - EPS, dtype=torch.float32).item()
    assert sg32[0].item() == pytest.approx(logit_eps, abs=1e-3)
    assert sg32[1].item() == pytest.approx(math.log(top / (1 - top)), abs=1e-3)
    assert sg32[1].item() == pytest.approx(-logit_eps, abs=0.02)
    assert sg32[2].item() == 0.0
    # Leaky ReLU inverse by hand: -0.3 / 0.3 = -1, positives pass.
    torch.testing.assert_close(LeakyReLU(0.3).inverse(torch.tensor([-0.3, 0.0, 2.0])), torch.tensor([-1.0, 0.0, 2.0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_leaky_relu_inverse_is_the_textbook_formula_bit_for_bit(dtype):
    """min(h, h / a) gives where(h >= 0, h, h / a) to the last bit, with and without autograd; its gradient is 1 or
    1 / a (to an ulp: the backward multiplies by 1 / a)."""
    h = torch.randn(4096, dtype=dtype) * 5
    h[:3] = torch.tensor([0.0, -0.0, 1e-30])
    f = LeakyReLU(0.3)
    expected = torch.where(h >= 0, h, h / 0.3)
    assert torch.equal(f.inverse(h), expected)
    leaf = h.clone().requires_grad_()
    out = f.inverse(leaf)
    assert torch.equal(out.detach(), expected)
    out.backward(torch.ones_like(h))
    torch.testing.assert_close(leaf.grad, torch.where(h > 0, 1.0, 1 / 0.3).to(dtype), rtol=1e-6, atol=0)


def test_leaky_relu_rejects_non_invertible_slopes():
    for slope in (0.0, 1.0, -0.1):
        with pytest.raises(ConfigError, match=f"slope must be in \\(0, 1\\) to be invertible, got {slope}"):
            LeakyReLU(slope)


# --- 2. The concrete network mirrors any abstract architecture's shapes ----------------------------------------------

# (input_shape, layers, head, groups, expected abstract shapes h_0..h_L by hand, expected output_padding of each C_l)
ARCHITECTURES = {
    "paper_conv_fc": (
        (1, 28, 28),
        paper_layers(),
        "softmax",
        [],
        [(1, 28, 28), (32, 26, 26), (64, 24, 24), (64, 22, 22), (64,), (10,)],
        [(0, 0), (0, 0), (0, 0)],
    ),
    "fc_only": (
        (1, 8, 8),
        [LayerSpec("linear", 16), LayerSpec("linear", 5)],
        "softmax",
        [],
        [(1, 8, 8), (16,), (5,)],
        [],
    ),
    "strided_5x5_s2": (
        (1, 28, 28),
        [LayerSpec("conv", 8, 5, 2), LayerSpec("conv", 8, 3, 2), LayerSpec("linear", 10)],
        "softmax",
        [],
        [(1, 28, 28), (8, 12, 12), (8, 5, 5), (10,)],
        [(1, 1), (1, 1)],  # (12-1)*2+5 = 27 -> 28 needs 1; (5-1)*2+3 = 11 -> 12 needs 1
    ),
    "rgb_non_square_28x56": (
        (3, 28, 56),
        [LayerSpec("conv", 4, 3, 1), LayerSpec("conv", 4, 4, 3), LayerSpec("linear", 6)],
        "sigmoid",
        [],
        [(3, 28, 56), (4, 26, 54), (4, 8, 17), (6,)],
        [(0, 0), (1, 2)],  # (8-1)*3+4 = 25 -> 26; (17-1)*3+4 = 52 -> 54
    ),
    "odd_29x31": (
        (1, 29, 31),
        [LayerSpec("conv", 4, 4, 3), LayerSpec("conv", 4, 3, 2), LayerSpec("linear", 5)],
        "groups",
        [3, 2],
        [(1, 29, 31), (4, 9, 10), (4, 4, 4), (5,)],
        [(1, 0), (0, 1)],  # 28 -> 29, 31 -> 31; 9 -> 9, 9 -> 10
    ),
    "rgb_square_linear_head": (
        (3, 9, 9),
        [LayerSpec("conv", 4, 3, 1), LayerSpec("linear", 4)],
        "linear",
        [],
        [(3, 9, 9), (4, 7, 7), (4,)],
        [(0, 0)],
    ),
}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
@pytest.mark.parametrize("jumps", ["none", "all"])
def test_concrete_shapes_mirror_abstract(name, jumps):
    input_shape, layers, head, groups, shapes, pads = ARCHITECTURES[name]
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = FSAE(FSAEConfig(input_shape=input_shape, layers=layers, head=head, groups=groups, jumps=jumps))
    assert model.abstract.shapes == shapes
    convs = [c for c in model.concrete.layers if isinstance(c, nn.ConvTranspose2d)]
    assert [tuple(c.output_padding) for c in convs] == pads
    # an output padding is exactly the rows/columns the abstract conv never read, and each such layer is warned about
    unread = [str(w.message) for w in caught if issubclass(w.category, StrideWarning)]
    assert [m.split(":")[0] for m in unread] == [f"layer {i + 1}" for i, p in enumerate(pads) if any(p)]

    x = torch.rand(2, *input_shape)
    _, hs = model.abstract(x)
    assert [tuple(h.shape[1:]) for h in hs] == shapes

    seen: dict[int, tuple[int, ...]] = {}  # concrete layer index i (C_{i+1}) -> shape of g_i it produced
    hooks = [
        layer.register_forward_hook(lambda _m, _inp, out, i=i: seen.__setitem__(i, tuple(out.shape[1:])))
        for i, layer in enumerate(model.concrete.layers)
    ]
    for mode in (True, False):
        seen.clear()
        model.train(mode)
        xhat = model(x)
        assert xhat.shape == x.shape
        assert sorted(seen) == list(range(len(layers)))
        for i, out_shape in seen.items():
            target = shapes[i]  # g_i must have h_i's shape
            if isinstance(model.concrete.layers[i], nn.Linear) and len(target) == 3:
                assert out_shape == (math.prod(target),)  # flat, viewed back to the feature map right after
            else:
                assert out_shape == target
    for h in hooks:
        h.remove()
    assert model.generate(torch.rand(2, model.config.code_size)).shape == x.shape


def test_strides_that_leave_input_unread_warn_with_sizes_that_fit():
    def build(input_shape, *layers: LayerSpec) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            FSAE(FSAEConfig(input_shape=input_shape, layers=[*layers, LayerSpec("linear", 10)]))
        return [str(w.message) for w in caught if issubclass(w.category, StrideWarning)]

    # (28 - 5) % 2 = 1: row 27 and column 27 are never read; 27 or 29 fit, and so do kernels 4 and 6.
    assert build((1, 28, 28), LayerSpec("conv", 4, 5, 2)) == [
        "layer 1: conv kernel 5 stride 2 never reads the last 1 row(s) and the last 1 column(s) of its 28x28 input "
        "((size - kernel) % stride != 0), so the concrete network regenerates them from its biases alone; an input "
        "of 27 or 29 rows, 27 or 29 columns fits, or a kernel of 4 or 6"
    ]
    # The second layer's input is h_1 = 26x54: (26 - 4) % 3 = 1 row, (54 - 4) % 3 = 2 columns; no kernel fits both.
    (msg,) = build((1, 28, 56), LayerSpec("conv", 4, 3, 1), LayerSpec("conv", 4, 4, 3))
    assert msg.startswith("layer 2: conv kernel 4 stride 3 never reads the last 1 row(s) and the last 2 column(s)")
    assert msg.endswith("an input of 25 or 28 rows, 52 or 55 columns fits")
    assert build((1, 28, 28), LayerSpec("conv", 4, 2, 3)) == [
        "layer 1: conv stride 3 > kernel 2 never reads 1 of every 3 rows and columns of its 28x28 input; use a "
        "stride <= 2 or a kernel >= 3"
    ]
    # Every pixel read: (28 - 4) % 2 = 0 and (13 - 3) % 2 = 0 (configs/pretrain/mnist_fast.yaml), and stride 1.
    assert build((1, 28, 28), LayerSpec("conv", 4, 4, 2), LayerSpec("conv", 4, 3, 2)) == []
    assert build((1, 28, 56), *paper_layers()[:3]) == []


# --- 3. Exact reproduction when every abstract layer is square and invertible ----------------------------------------


def _square_invertible_model(head: str, jumps, dtype=torch.float32) -> FSAE:
    """FC-only net 1x2x2 -> 4 -> 4 -> 4, well-conditioned square A_l, and each C_l set to A_l's exact inverse."""
    torch.manual_seed(1)
    config = FSAEConfig(input_shape=(1, 2, 2), layers=[LayerSpec("linear", 4)] * 3, head=head, jumps=jumps)
    model = FSAE(config).to(dtype)
    with torch.no_grad():
        for a, c in zip(model.abstract.layers, model.concrete.layers):
            q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
            w = q * torch.linspace(0.8, 1.25, 4, dtype=torch.float64)  # singular values 0.8..1.25
            b = 0.1 * torch.randn(4, dtype=torch.float64)
            w_inv = torch.linalg.inv(w)
            a.weight.copy_(w)
            a.bias.copy_(b)
            c.weight.copy_(w_inv)  # C_l(z) = W^{-1} (z - b)
            c.bias.copy_(-w_inv @ b)
    return model


@pytest.mark.parametrize("head", ["linear", "sigmoid"])
@pytest.mark.parametrize("jumps", ["all", "none", [2]])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exact_inverse_reproduces_input(head, jumps, dtype):
    # With square invertible A_l the inverse is exact, so plain, jumps at some or all layers, all reproduce x: the
    # paper's remark that only non-square weights stop the concrete network from computing A's inverse.
    model = _square_invertible_model(head, jumps, dtype)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    x = torch.rand(16, 1, 2, 2, dtype=dtype)
    model.train()  # no [0, 1] clamp
    assert (model(x) - x).abs().max().item() <= tol
    x_wide = 3 * torch.randn(16, 1, 2, 2, dtype=dtype)  # outside [0, 1] too: the inverse does not rely on the clamp
    if head == "linear":
        assert (model(x_wide) - x_wide).abs().max().item() <= tol
    model.eval()  # inputs in [0, 1] pass the clamp unchanged
    assert (model(x) - x).abs().max().item() <= tol
    # The intermediate concrete values equal the abstract activations: g_l = h_l for every l.
    _, hs = model.abstract(x)
    g = model.concrete.layers[2](model.concrete.activations[2].inverse(hs[3]))
    assert (g - hs[2]).abs().max().item() <= tol


def test_softmax_head_loses_exactly_its_additive_constant():
    # Softmax drops logsumexp(z_L); C_L(ln h_L) = W^{-1}(z_L - c - b) = h_{L-1} - c W^{-1} 1 (paper eq. 7-12), so a
    # softmax head cannot be inverted exactly even with square weights, and a jump at L-1 halves the error.
    model = _square_invertible_model("softmax", "all", torch.float64)
    x = torch.rand(8, 1, 2, 2, dtype=torch.float64)
    z, hs = model.abstract(x)
    c_last = model.concrete.layers[2]
    g = c_last(model.concrete.activations[2].inverse(hs[3]))
    expected_error = -z.logsumexp(-1, keepdim=True) * (c_last.weight @ torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(g - hs[2], expected_error, atol=1e-10, rtol=0)
    # The concrete network's own pass: g_2 as it enters C_2 (captured before C_2, mapped back through f_2), without
    # jumps and with the jump at L-1 = 2, which averages g_2 with h_2 and so halves the error.
    seen = []
    hook = model.concrete.layers[1].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    model.train()  # no clamp on the output
    for jumps in ([], [2]):
        model.concrete(hs[3], hs, jumps=jumps)
    hook.remove()
    g_plain, g_jump = (model.concrete.activations[1](zhat) for zhat in seen)
    torch.testing.assert_close(g_plain - hs[2], expected_error, atol=1e-10, rtol=0)
    torch.testing.assert_close(g_jump - hs[2], expected_error / 2, atol=1e-10, rtol=0)


def _reference_regeneration(model: FSAE, x: torch.Tensor, jumps: list[int]) -> torch.Tensor:
    """Slow reference of F(x) written from docs/DESIGN.md section 1.3, layer by layer, independent of
    ConcreteNet.forward."""
    cfg = model.config
    slope, n = cfg.leaky_slope, len(cfg.layers)
    h = [x]
    for a, spec in zip(model.abstract.layers, cfg.layers):
        z = a(h[-1].flatten(1) if spec.type == "linear" else h[-1])
        h.append(z if len(h) == n else torch.where(z >= 0, z, slope * z))
    h[-1] = z.softmax(-1)  # softmax head
    g = h[n]
    for l in range(n, 0, -1):  # noqa: E741
        if l in jumps:
            g = (g + h[l]) / 2
        zhat = torch.log(torch.clamp(g, min=cfg.eps)) if l == n else torch.where(g >= 0, g, g / slope)
        g = model.concrete.layers[l - 1](zhat).reshape(h[l - 1].shape)
    return g


@pytest.mark.parametrize("jumps", ["none", "last", "all", [1], [1, 3]])
def test_jump_connections_match_a_slow_reference(jumps):
    torch.manual_seed(6)
    layers = [LayerSpec("conv", 4, 3, 2), LayerSpec("conv", 4, 3, 1), LayerSpec("linear", 8), LayerSpec("linear", 3)]
    model = FSAE(FSAEConfig(input_shape=(2, 11, 11), layers=layers, jumps=jumps)).train()
    x = torch.rand(5, 2, 11, 11)
    model.init_concrete(x)
    with torch.no_grad():
        expected = _reference_regeneration(model, x, model.config.jump_layers())
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
        plain = _reference_regeneration(model, x, [])
        assert (expected - plain).abs().max().item() > 1e-3 or jumps == "none"  # the jumps do change the output


# --- 4. Round: one prototype per concept -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "code_size", "groups"), [("softmax", 3, []), ("groups", 5, [3, 2]), ("sigmoid", 3, [])]
)
def test_round_gives_one_output_per_predicted_class(head, code_size, groups):
    torch.manual_seed(2)
    layers = [LayerSpec("conv", 4, 3, 1), LayerSpec("linear", 8), LayerSpec("linear", code_size)]
    model = FSAE(_small_config(layers=layers, head=head, groups=groups, round=True)).eval()
    x = torch.rand(32, 1, 8, 8) * torch.linspace(0.05, 1.0, 32).view(32, 1, 1, 1)
    with torch.no_grad():  # an untrained net gives every input one class: sharpen and centre its logits on the batch
        last = model.abstract.layers[-1]
        last.weight.mul_(20.0)
        last.bias.sub_(model.abstract(x)[0].mean(0))
    _, hs = model.abstract(x)
    code = model.round_code(hs[-1])

    # round_code is one-hot per softmax group / 0-1 per sigmoid unit, and equals the label code of the prediction.
    assert set(code.unique().tolist()) <= {0.0, 1.0}
    if head != "sigmoid":
        for part in code.split(groups or [code_size], -1):
            assert torch.equal(part.sum(-1), torch.ones(32))
    assert torch.equal(code, model.code_from_labels(model.classify(x)))

    labels = model.classify(x).view(32, -1)
    classes: dict[tuple, list[int]] = {}
    for i, key in enumerate(map(tuple, labels.tolist())):
        classes.setdefault(key, []).append(i)
    assert len(classes) >= 2 and max(map(len, classes.values())) >= 2  # the test below compares something
    singly = torch.cat([model(x[i : i + 1]) for i in range(32)])  # same code in, same computation: bit-identical
    batched = model(x)
    torch.testing.assert_close(batched, singly, atol=1e-5, rtol=0)  # GEMM blocking: ~1 ulp
    prototypes = {}
    for key, idx in classes.items():
        for i in idx[1:]:
            assert torch.equal(singly[i], singly[idx[0]])
        prototypes[key] = singly[idx[0]]
        # the output is the concrete network's image of the label: the class prototype
        assert torch.equal(singly[idx[0]], model.generate(code[idx[0] : idx[0] + 1])[0])
    first, *others = prototypes.values()
    assert any(not torch.equal(first, p) for p in others)  # different concepts, different prototypes


def test_round_on_a_linear_head_snaps_to_the_grid():
    model = FSAE(_small_config(head="linear", round=True, round_grid=0.25))
    code = torch.tensor([[0.1, 0.13, -0.38, 1.0]])
    torch.testing.assert_close(model.round_code(code), torch.tensor([[0.0, 0.25, -0.5, 1.0]]))
    assert torch.equal(FSAE(_small_config(head="linear")).round_code(code), code)  # grid 0: unchanged


# --- 5. Negative feedback ---------------------------------------------------------------------------------------------


def _initialised(config: FSAEConfig, seed: int = 3) -> tuple[FSAE, torch.Tensor]:
    torch.manual_seed(seed)
    model = FSAE(config)
    x = torch.rand(16, *config.input_shape)
    x[:8] *= 0.3
    model.init_concrete(x)
    return model.eval(), x


def _mse_per_sample(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).pow(2).flatten(1).mean(1)


def test_feedback_through_round_without_jumps_changes_nothing():
    model, x = _initialised(_small_config(round=True))
    assert torch.equal(model.regenerate(x, steps=5), model(x))
    assert torch.equal(model.regenerate(x, steps=5, gain=0.5), model(x))


@pytest.mark.parametrize(
    "config",
    [
        _small_config(jumps="all", feedback_gain=1.0),
        _small_config(head="linear", jumps="all"),
        _small_config(head="linear"),  # the paper: feedback works "when jump connection or regression"
    ],
    ids=["softmax_jumps_all", "linear_jumps_all", "linear_no_jumps"],
)
def test_feedback_changes_output_and_error_is_monotone_in_steps(config):
    model, x = _initialised(config)
    with torch.no_grad():
        outputs = [model.regenerate(x, steps=t) for t in range(6)]
    assert torch.equal(outputs[0], model(x))  # T = 0 is F(x)
    assert not torch.equal(outputs[5], outputs[0])
    errors = torch.stack([_mse_per_sample(x, y) for y in outputs])  # (T, B)
    assert (errors[1:] <= errors[:-1]).all()  # per sample, so also the batch mean
    means = errors.mean(1).tolist()
    assert all(b <= a for a, b in zip(means, means[1:]))
    assert means[5] < means[0]
    # steps and gain default to the config's fields
    model.config.feedback_steps = 5
    assert torch.equal(model.regenerate(x), outputs[5])


# --- 6. Freezing: the abstract half is bit-identical after concrete training ------------------------------------------


def test_concrete_training_leaves_abstract_weights_bit_identical():
    torch.manual_seed(4)
    model = FSAE(_small_config(jumps="last"))
    x = torch.rand(8, 1, 8, 8)
    model.freeze_abstract()
    assert all(not p.requires_grad for p in model.abstract.parameters())
    assert all(p.requires_grad for p in model.concrete.parameters())
    model.train()
    assert not model.abstract.training and model.concrete.training  # train() keeps a frozen abstract half in eval
    abstract_before = {k: v.clone() for k, v in model.abstract.state_dict().items()}
    concrete_before = {k: v.clone() for k, v in model.concrete.state_dict().items()}

    opt = torch.optim.Adam(model.concrete.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        loss = torch.nn.functional.mse_loss(model(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())

    for k, v in model.abstract.state_dict().items():
        assert torch.equal(v, abstract_before[k]), k
    assert all(p.grad is None for p in model.abstract.parameters())
    for k, v in model.concrete.state_dict().items():
        assert not torch.equal(v, concrete_before[k]), k
    assert losses[-1] < losses[0]
    model.eval()
    model.train()
    assert not model.abstract.training


def test_unfrozen_abstract_follows_train_mode():
    model = FSAE(_small_config())
    model.eval()
    model.train()
    assert model.abstract.training and model.concrete.training


# --- 9. Determinism, generation, data-dependent init ------------------------------------------------------------------


def test_same_seed_gives_identical_outputs():
    def run(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        model = FSAE(_small_config(jumps="all")).eval()
        x = torch.rand(4, 1, 8, 8)
        model.init_concrete(x)
        return torch.cat([model(x).flatten(), model.regenerate(x, steps=2).flatten()])

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


@pytest.mark.parametrize(
    ("head", "groups", "labels"),
    [
        ("softmax", [], torch.tensor([0, 2, 1])),
        ("groups", [3, 2], torch.tensor([[0, 1], [2, 0], [1, 1]])),
        ("sigmoid", [], torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1]])),
    ],
)
def test_generate_labels_gives_images(head, groups, labels):
    layers = [LayerSpec("conv", 4, 3, 1), LayerSpec("linear", 8), LayerSpec("linear", 5 if groups else 3)]
    model = FSAE(FSAEConfig(input_shape=(2, 7, 9), layers=layers, head=head, groups=groups)).eval()
    images = model.generate_labels(labels)
    assert images.shape == (3, 2, 7, 9)
    assert images.min() >= 0.0 and images.max() <= 1.0  # eval: clamped to the data range
    code = model.code_from_labels(labels)
    expected = {  # one-hot per label, one-hot per group (concatenated), the 0/1 attributes themselves
        "softmax": torch.eye(3)[labels],
        "groups": torch.tensor([[1.0, 0, 0, 0, 1], [0, 0, 1, 1, 0], [0, 1, 0, 0, 1]]),
        "sigmoid": labels.float(),
    }[head]
    torch.testing.assert_close(code, expected, rtol=0, atol=0)
    assert torch.equal(images, model.generate(code))


def test_init_concrete_matches_input_statistics_per_channel():
    torch.manual_seed(5)
    config = FSAEConfig(
        input_shape=(3, 13, 13),  # 13 -> 11 -> 5: every pixel read
        layers=[
            LayerSpec("conv", 8, 3, 1),
            LayerSpec("conv", 8, 3, 2),
            LayerSpec("linear", 16),
            LayerSpec("linear", 4),
        ],
        jumps="last",
    )
    model = FSAE(config)
    x = torch.rand(32, 3, 13, 13) * torch.tensor([1.0, 0.5, 0.2]).view(1, 3, 1, 1)  # distinct per-channel stats
    model.init_concrete(x)
    model.train()  # unclamped output
    with torch.no_grad():
        xhat = model(x)
        _, hs = model.abstract(x)
    torch.testing.assert_close(xhat.mean((0, 2, 3)), x.mean((0, 2, 3)), atol=1e-3, rtol=0)
    torch.testing.assert_close(xhat.std((0, 2, 3)), x.std((0, 2, 3)), atol=1e-3, rtol=1e-2)
    # the hidden concrete layers match their abstract activations too, e.g. g_3 vs h_3 (16 units)
    g3 = model.concrete.layers[3](model.concrete.activations[3].inverse(hs[4]))
    torch.testing.assert_close(g3.mean(0), hs[3].mean(0), atol=1e-3, rtol=0)
    torch.testing.assert_close(g3.std(0), hs[3].std(0), atol=1e-3, rtol=1e-2)


def test_one_feedback_step_is_the_controller_update():
    """T = 1: each sample's output is F(x + k (x - F(x))) where that lowered its residual, else F(x) (and some are
    accepted): a sign error in the update (positive feedback) fails here even though the error stays monotone."""
    model, x = _initialised(_small_config(head="linear", jumps="all"))
    with torch.no_grad():
        y0 = model(x)
        candidate = model(x + 0.7 * (x - y0))
        y1 = model.regenerate(x, steps=1, gain=0.7)
    better = _mse_per_sample(x, candidate) < _mse_per_sample(x, y0)
    assert 0 < better.sum() < len(x)  # both branches below are exercised
    torch.testing.assert_close(y1[better], candidate[better], rtol=0, atol=0)
    torch.testing.assert_close(y1[~better], y0[~better], rtol=0, atol=0)


def test_train_concrete_keeps_the_abstract_half_bit_identical():
    """The library's own concrete phase (not a hand-written loop): abstract weights unchanged, concrete ones trained."""
    from fsae.train import TrainConfig, train_concrete

    torch.manual_seed(6)
    model = FSAE(_small_config(jumps="last"))
    x = torch.rand(16, 1, 8, 8)
    abstract_before = {k: v.clone() for k, v in model.abstract.state_dict().items()}
    concrete_before = {k: v.clone() for k, v in model.concrete.state_dict().items()}
    cfg = TrainConfig(concrete_epochs=2, batch_size=4)
    losses = train_concrete(model, x, cfg, torch.Generator().manual_seed(0))
    for k, v in model.abstract.state_dict().items():
        assert torch.equal(v, abstract_before[k]), k
    assert all(not torch.equal(v, concrete_before[k]) for k, v in model.concrete.state_dict().items())
    assert len(losses) == 2 and losses[1] < losses[0]


@pytest.mark.parametrize("round_", [False, True])
def test_init_concrete_survives_a_batch_without_spread(round_):
    """A batch of one image (std NaN) or identical images under round (every rounded code equal, std 0): the init
    keeps finite, bounded weights instead of dividing by zero."""
    g = torch.Generator().manual_seed(1)  # not the global state other tests leave
    for x in (torch.rand(1, 1, 8, 8, generator=g), torch.rand(1, 1, 8, 8, generator=g).expand(8, 1, 8, 8).clone()):
        torch.manual_seed(2)
        model = FSAE(_small_config(round=round_))
        default = max(p.abs().max().item() for p in model.concrete.parameters())
        model.init_concrete(x)
        weights = torch.cat([p.flatten() for p in model.concrete.parameters()])
        assert weights.isfinite().all()
        assert weights.abs().max().item() < 100 * max(default, 1.0)
        assert model.eval()(x).isfinite().all()
