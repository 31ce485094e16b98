"""rl.lookup: the table of prototype images, and the GEMM pass's close calls left to AbstractNet.

The lookup's images against the full forward pass, in both wrappers and precisions, are tested in
``test_common_sense.py``; here, the cases where the GEMM pass must not decide: a winner within the margin.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fsae.model import FSAE, FSAEConfig, LayerSpec
from rl.common_sense import Regenerator
from rl.lookup import Lookup, rounded_codes


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
        assert regen._lookup._rows_from_logits(regen._lookup.gemm(x)) is None


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
        rows = lookup._rows_from_logits(lookup.gemm(x))
        assert rows is not None
        assert torch.equal(rows, lookup.rows(model.abstract(x)[1][-1]))
        assert torch.equal(lookup(x), lookup.table[rows])
    assert lookup.exact_batches == 0


def test_no_lookup_and_no_gemm_where_they_do_not_apply():
    model = round_model("softmax")
    assert Lookup.of(model, gemm=False).gemm is None
    assert Lookup.of(model, max_codes=4) is None  # five codes
    plain = FSAE(FSAEConfig(input_shape=[1, 12, 12], layers=[LayerSpec("linear", 4)])).eval()
    assert Lookup.of(plain) is None and rounded_codes(plain) is None
