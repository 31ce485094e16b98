"""benchmarks/abstract_pass.py: the networks it builds, its refusal of a wrong --arch, its medians (a fake clock)."""

import json

import abstract_pass  # benchmarks/abstract_pass.py
import pytest
import torch
from fake_clock import Clock  # tests/benchmarks/fake_clock.py

from fsae.config import ConfigError


def conv_channels(model) -> list[int]:
    return [s.out for s in model.config.layers if s.type == "conv"]


def test_networks_of_the_fast_config():
    own = abstract_pass.network(abstract_pass.FAST_CONFIG, None)
    wide = abstract_pass.network(abstract_pass.FAST_CONFIG, "32/64")
    assert conv_channels(own) == [24, 32] and conv_channels(wide) == [32, 64]
    assert own.config.round and wide.config.round  # the lookup's variant
    # only the channels change: kernels, strides and the linear layers stay the config's
    assert [(s.kernel, s.stride) for s in wide.config.layers] == [(s.kernel, s.stride) for s in own.config.layers]
    assert [s.out for s in wide.config.layers if s.type == "linear"] == [64, 10]
    assert abstract_pass.label(own, "") == "24/32 (config)" and abstract_pass.label(wide, "32/64") == "32/64"
    with pytest.raises(ConfigError, match="--arch 1/2/3: the config has 2 conv layers"):
        abstract_pass.network(abstract_pass.FAST_CONFIG, "1/2/3")


def test_medians_alternate_the_networks(monkeypatch):
    clock = Clock()  # moves only when a fake network runs
    order = []

    class Net:  # each call takes its round's scripted seconds; a round is 2 warm-up calls and 12 timed ones
        def __init__(self, name, seconds, config):
            self.name, self.seconds, self.config, self.calls = name, seconds, config, 0

        def abstract(self, x):
            if self.calls % 14 == 0:
                order.append(self.name)
            clock.advance(self.seconds[self.calls // 14])
            self.calls += 1

    config = abstract_pass.network(abstract_pass.FAST_CONFIG, None).config
    models = {"a": Net("a", [1e-3, 3e-3, 2e-3], config), "b": Net("b", [5e-4, 4e-4, 6e-4], config)}
    monkeypatch.setattr(abstract_pass, "time", clock)
    us = abstract_pass.time_passes(models, batch=8, rounds=3, calls=12)  # 12 // 6 = 2 warm-up calls, then 12 timed
    assert order == ["a", "b"] * 3  # the networks alternate in each round
    assert models["a"].calls == models["b"].calls == 3 * 14
    assert us == pytest.approx({"a": 2e-3 * 1e6, "b": 5e-4 * 1e6}, rel=1e-9)  # medians of each call's seconds, in us


def test_main_times_each_network_as_abstract_net_and_as_gemms(monkeypatch, tmp_path):
    """Each --arch is timed twice: AbstractNet's pass and the lookup's GEMM pass (fsae.gemm) of the same weights."""
    seen = {}

    def fake_time(models, batch, rounds, calls):
        x = torch.rand(batch, *next(iter(models.values())).config.input_shape)
        with torch.inference_mode():
            seen.update({k: m.abstract(x) for k, m in models.items()})
        return {k: float(i) for i, k in enumerate(models)}

    monkeypatch.setattr(abstract_pass, "time_passes", fake_time)
    us = abstract_pass.main(["--arch", "", "16/16", "--out", str(tmp_path / "a.json")])
    assert list(us) == ["24/32 (config)", "24/32 (config) GEMM", "16/16", "16/16 GEMM"]
    for name in ("24/32 (config)", "16/16"):  # AbstractNet returns (logits, activations); the GEMM pass the logits
        torch.testing.assert_close(seen[f"{name} GEMM"], seen[name][0], rtol=0, atol=1e-5)
    assert json.loads((tmp_path / "a.json").read_text())["us_per_pass"] == us
