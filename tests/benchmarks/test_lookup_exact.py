"""benchmarks/lookup_exact.py counts the pixels where the lookup and the forward pass differ: none for a round model."""

import lookup_exact  # benchmarks/lookup_exact.py
import numpy as np
import pytest
import torch

from fsae.model import FSAE, FSAEConfig, LayerSpec


def test_counts_are_zero_for_a_round_model_and_refused_without_a_lookup():
    torch.manual_seed(0)
    layers = [LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 10)]
    obs = np.random.default_rng(0).integers(0, 256, (16, 1, 28, 28), dtype=np.uint8)
    counts = lookup_exact.count_differences(FSAE(FSAEConfig(layers=layers, round=True)), obs, batches=(1, 8))
    assert {k: (v["images"], v["differing_pixels"], v["batches"]) for k, v in counts.items()} == {
        f"{d}/batch{b}": (16, 0, 16 // b) for d in ("float32", "float64") for b in (1, 8)
    }
    for v in counts.values():  # the GEMM pass's logits, far inside the margin the lookup asks a winner to lead by
        assert 0 <= v["exact_batches"] <= v["batches"] and v["max_diff_over_margin"] < 0.01
    with pytest.raises(SystemExit, match="has no lookup"):
        lookup_exact.count_differences(FSAE(FSAEConfig(layers=layers)), obs)
