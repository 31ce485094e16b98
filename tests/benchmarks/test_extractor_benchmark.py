"""benchmarks/extractor.py on its smallest case: both layouts timed, ratios as their definition (not its speed); and
``policy.channels_last`` reaching the PPO policy it builds."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import extractor  # noqa: E402  (benchmarks/extractor.py)

from fsae.config import load_config  # noqa: E402
from rl.agent import policy_kwargs  # noqa: E402
from rl.config import AgentConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_cnn_step_ratio():
    r = extractor.cnn_step_ms(4, 2, rounds=1, calls=1)
    assert set(r) == {"plain", "channels_last", "plain_over_channels_last"}
    assert r["plain_over_channels_last"] == pytest.approx(r["plain"] / r["channels_last"], rel=1e-12)


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
