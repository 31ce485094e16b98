"""rl.lookup: the table of prototype images, and the GEMM pass's close calls left to AbstractNet.

The lookup's images against the full forward pass, in both wrappers and precisions, are tested in
``test_common_sense.py``; here, the cases where the GEMM pass must not decide (a winner within the margin, a NaN, a
model whose two passes disagree), and heads with one-class groups.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fsae.gemm import GemmAbstract, margin
from fsae.model import FSAE, FSAEConfig, LayerSpec
from rl.common_sense import Regenerator
from rl.lookup import CHECK_LIMIT, GemmWarning, Lookup, rounded_codes


def round_model(head: str, groups=()) -> FSAE:
    out = {"softmax": 5, "groups": sum(groups), "sigmoid": 3}[head]
    torch.manual_seed(0)
    layers = [LayerSpec("conv", 3, 4, 2), LayerSpec("linear", 8), LayerSpec("linear", out)]
    return FSAE(FSAEConfig(input_shape=[1, 12, 12], layers=layers, head=head, groups=list(groups), round=True)).eval()


def obs_batch(n: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 12, 12), dtype=np.uint8)


@pytest.mark.parametrize(
    ("head", "groups", "tie"),
    [
        ("softmax", (), (0, 2)),  # classes 0 and 2 always level and always on top
        ("groups", (3, 2), (3, 4)),  # the second group's two classes always level
    ],
)
def test_a_tie_is_left_to_abstract_net(head, groups, tie):
    """Two classes with the same weights tie on every image: the GEMM pass refuses every batch, AbstractNet decides
    (its argmax takes the first of the two), and the images are the forward pass's."""
    model = round_model(head, groups)
    last = model.abstract.layers[-1]
    with torch.no_grad():
        last.weight[tie[1]] = last.weight[tie[0]]
        last.bias[tie[1]] = last.bias[tie[0]] = 50.0  # far above the others: the tied pair holds the top two
    regen, full = Regenerator(model), Regenerator(model, lookup=False)
    obs = obs_batch()
    for b in (1, 4, 16):
        np.testing.assert_array_equal(regen(obs[:b]), full(obs[:b]))
    assert regen._lookup.exact_batches == 3
    x = torch.from_numpy(obs).float() / 255
    with torch.inference_mode():
        assert regen._lookup._rows_from_logits(regen._lookup.gemm(x).numpy()) is None


def test_a_sigmoid_logit_at_zero_is_left_to_abstract_net():
    """A sigmoid unit with no weights and no bias sits at logit 0 (sigmoid 0.5, which rounds to 0): never decided by
    the GEMM pass."""
    model = round_model("sigmoid")
    last = model.abstract.layers[-1]
    with torch.no_grad():
        last.weight[1] = 0.0
        last.bias[1] = 0.0
    regen, full = Regenerator(model), Regenerator(model, lookup=False)
    obs = obs_batch()
    np.testing.assert_array_equal(regen(obs), full(obs))
    assert regen._lookup.exact_batches == 1


def test_clear_winners_are_served_by_the_gemm_pass():
    """Scaled-up logits leave no close call: every batch is served by the GEMM pass, rows as AbstractNet's code."""
    model = round_model("groups", (3, 2))
    with torch.no_grad():
        model.abstract.layers[-1].weight.mul_(20.0)
    lookup = Lookup.of(model)
    assert lookup is not None and lookup.gemm is not None and len(lookup) == 6
    x = torch.from_numpy(obs_batch(64)).float() / 255
    with torch.inference_mode():
        rows = lookup._rows_from_logits(lookup.gemm(x).numpy())
        assert rows is not None
        assert rows.tolist() == lookup.rows(model.abstract(x)[1][-1]).tolist()
        assert torch.equal(lookup(x), lookup.table[torch.from_numpy(rows)])
        np.testing.assert_array_equal(lookup.serve(obs_batch(64)), lookup(x).numpy())
    assert lookup.exact_batches == 0


def test_no_lookup_and_no_gemm_where_they_do_not_apply():
    model = round_model("softmax")
    assert Lookup.of(model, gemm=False).gemm is None
    assert Lookup.of(model, max_codes=4) is None  # five codes
    plain = FSAE(FSAEConfig(input_shape=[1, 12, 12], layers=[LayerSpec("linear", 4)])).eval()
    assert Lookup.of(plain) is None and rounded_codes(plain) is None


def test_a_lead_inside_the_margin_is_refused_and_one_outside_accepted():
    """Not only ties: a winner ahead by half the margin is left to AbstractNet, by twice the margin it is served;
    a NaN anywhere is never served."""
    lookup = Lookup.of(round_model("softmax"))
    z = torch.tensor([[1.0, 0.0, -1.0, 0.5, 0.2], [0.0, 3.0, 0.0, 0.0, 0.0]])
    tol = margin(z)  # the numpy picker computes the same margin
    close, clear = z.clone(), z.clone()
    close[0, 3] = 1.0 - tol[0] / 2
    clear[0, 3] = 1.0 - 2 * tol[0]
    assert lookup._rows_from_logits(close.numpy()) is None
    assert lookup._rows_from_logits(clear.numpy()).tolist() == [0, 1]
    nan = clear.clone()
    nan[1, 4] = float("nan")
    assert lookup._rows_from_logits(nan.numpy()) is None
    sig = Lookup.of(round_model("sigmoid"))
    zs = torch.tensor([[2.0, -2.0, 1.0]])
    assert sig._rows_from_logits(zs.numpy()).tolist() == [0b101]
    for bad in (torch.tensor([[2.0, -2.0, margin(zs)[0].item() / 2]]), torch.tensor([[2.0, float("nan"), 1.0]])):
        assert sig._rows_from_logits(bad.numpy()) is None
    groups = Lookup.of(round_model("groups", (3, 2)))  # rows 0..5: 2 * first digit + second digit
    zg = torch.tensor([[0.0, 5.0, 1.0, -1.0, 1.0], [9.0, 0.0, 0.0, 2.0, 0.0]])
    assert groups._rows_from_logits(zg.numpy()).tolist() == [2 * 1 + 1, 2 * 0 + 0]
    zg[1, 4] = 2.0 + margin(zg)[1].item() / 2  # the second group's winner inside the margin
    assert groups._rows_from_logits(zg.numpy()) is None


@pytest.mark.parametrize(("head", "groups", "out"), [("softmax", [], 1), ("groups", [1], 1), ("groups", [1, 3], 4)])
def test_one_class_groups(head, groups, out):
    """A group of one class has one rounded digit, 0: served without asking for a runner-up."""
    torch.manual_seed(0)
    layers = [LayerSpec("conv", 3, 4, 2), LayerSpec("linear", out)]
    model = FSAE(FSAEConfig(input_shape=[1, 12, 12], layers=layers, head=head, groups=groups, round=True)).eval()
    regen, full = Regenerator(model), Regenerator(model, lookup=False)
    assert regen.describe()["gemm"]
    obs = obs_batch()
    np.testing.assert_array_equal(regen(obs), full(obs))


def test_an_empty_batch():
    regen = Regenerator(round_model("softmax"))
    assert regen(obs_batch(0)).shape == (0, 1, 12, 12)


def cancelling_model() -> FSAE:
    """A logit that is a small difference of large terms (after the reviewer's reproducer): the two passes' sums
    round differently by far more than the margin, which scales with the logits, not with the terms."""
    torch.manual_seed(0)
    cfg = FSAEConfig(input_shape=(1, 8, 8), layers=[LayerSpec("conv", 2, 3, 1), LayerSpec("linear", 2)], round=True)
    model = FSAE(cfg).eval()
    with torch.no_grad():
        conv, lin = model.abstract.layers
        conv.weight[0].uniform_(0, 1000.0)
        conv.weight[1] = 3 * conv.weight[0]
        conv.bias.zero_()
        lin.weight.zero_()
        lin.weight[0, :36] = 3.0
        lin.weight[0, 36:] = -1.0
        lin.bias.zero_()
    return model


def test_the_margin_alone_does_not_hold_for_a_cancelling_network():
    """Why the check below exists: with the GEMM pass forced on, this network's logits differ between the two passes by
    more than the margin, and the lookup serves other prototypes than AbstractNet's pass would."""
    model = cancelling_model()
    lookup = Lookup.of(model, gemm=False)
    lookup.gemm = GemmAbstract(model.abstract)  # as if the check had not run
    obs = np.random.default_rng(0).integers(0, 256, (256, 1, 8, 8), dtype=np.uint8)
    x = torch.from_numpy(obs).float() / 255
    with torch.inference_mode():
        z = model.abstract(x)[0]
        assert ((lookup.gemm(x) - z).abs().amax(-1) > margin(z)).any()
        served = np.concatenate([lookup.serve(obs[i : i + 8]) for i in range(0, 256, 8)])
        assert (served != lookup(x).numpy()).any()


def test_a_model_whose_passes_disagree_loses_the_gemm_pass():
    """Checked when the lookup is made: the GEMM pass is dropped with one warning, and every batch is AbstractNet's."""
    with pytest.warns(GemmWarning, match="runs AbstractNet's pass instead"):
        regen = Regenerator(cancelling_model())
    assert regen.lookup and not regen.describe()["gemm"] and regen._lookup.gemm_check > CHECK_LIMIT
    obs = np.random.default_rng(0).integers(0, 256, (256, 1, 8, 8), dtype=np.uint8)
    np.testing.assert_array_equal(regen(obs), Regenerator(cancelling_model(), lookup=False)(obs))
    # an ordinary network keeps it, its passes far inside the margin
    assert Lookup.of(round_model("groups", (3, 2))).gemm_check < CHECK_LIMIT / 10
