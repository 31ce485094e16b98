"""benchmarks/extractor.py on its smallest case: both layouts timed, ratios as their definition (not its speed); and
``policy.channels_last`` reaching the PPO policy it builds."""

from pathlib import Path

import extractor  # benchmarks/extractor.py
import numpy as np
import pytest
import torch
from fake_clock import Clock  # tests/benchmarks/fake_clock.py
from gymnasium import spaces

from fsae.config import load_config
from rl.agent import policy_kwargs
from rl.config import AgentConfig

ROOT = Path(__file__).resolve().parents[2]


def test_median_ms_is_the_median_round_per_call_after_untimed_warmup(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(extractor, "time", clock)
    # per call, in order: 3 warm-up calls each (not timed), then 3 rounds of 2 calls each, the layouts alternating
    a = iter([9.0] * 3 + [0.004, 0.004, 0.010, 0.010, 0.002, 0.002])  # rounds of 4, 10, 2 ms a call: median 4
    b = iter([9.0] * 3 + [0.001, 0.003, 0.001, 0.001, 0.005, 0.005])  # rounds of 2, 1, 5 ms a call: median 2
    fns = {"plain": lambda: clock.advance(next(a)), "channels_last": lambda: clock.advance(next(b))}
    assert extractor._median_ms(fns, rounds=3, calls=2) == pytest.approx({"plain": 4.0, "channels_last": 2.0})


def test_cnn_step_ratio(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(extractor, "time", clock)
    ran = []

    def timed_by_layout(fns, rounds, calls):  # runs each step once for real, then scripted durations
        for name, fn in fns.items():
            fn()
            ran.append(name)
        return {"plain": 3.0, "channels_last": 2.0}

    monkeypatch.setattr(extractor, "_median_ms", timed_by_layout)
    r = extractor.cnn_step_ms(4, 2, rounds=1, calls=1)
    assert ran == ["plain", "channels_last"]
    assert r == {"plain": 3.0, "channels_last": 2.0, "plain_over_channels_last": 1.5}


def test_ppo_layouts_reach_the_policy(monkeypatch):
    built = []
    original = extractor.build_model
    monkeypatch.setattr(extractor, "build_model", lambda *a: built.append(original(*a)) or built[-1])
    r = extractor.ppo_steps_per_s(ROOT / "configs/agent/digit_bandit.yaml", steps=128, rounds=1)
    assert r["channels_last_over_plain"] == pytest.approx(r["channels_last"] / r["plain"], rel=1e-12)
    cnns = [m.policy.features_extractor for m in built]  # plain, then channels-last
    assert [c.channels_last for c in cnns] == [False, True]
    second_conv = [c.cnn[2].weight for c in cnns]  # 32 -> 64 channels: the two layouts differ in memory
    assert [w.is_contiguous(memory_format=torch.channels_last) for w in second_conv] == [False, True]


def test_policy_channels_last_setting():
    cfg = load_config(AgentConfig, ROOT / "configs/agent/digit_bandit.yaml", ["policy.channels_last=false"])
    space = spaces.Box(0, 255, (2, 28, 28), np.uint8)
    assert policy_kwargs(cfg, space)["features_extractor_kwargs"]["channels_last"] is False
    cfg = load_config(AgentConfig, ROOT / "configs/agent/digit_bandit.yaml")
    assert policy_kwargs(cfg, space)["features_extractor_kwargs"]["channels_last"] is True
