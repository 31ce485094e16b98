"""benchmarks/denormals.py: the census of subnormal optimizer state, counted on a hand-made agent file."""

import io
import zipfile
from pathlib import Path

import denormals  # benchmarks/denormals.py
import pytest
import torch


def _agent_zip(path: Path, state: dict) -> Path:
    buf = io.BytesIO()
    torch.save({"state": state, "param_groups": []}, buf)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("policy.optimizer.pth", buf.getvalue())
    return path


def test_census_counts_subnormal_values_only(tmp_path):
    a = torch.tensor([0.0, 1e-39, -1e-40, 1e-30, 1.0, 1e-45, 2e-38, -0.0])  # 1e-39, -1e-40, 1e-45 are subnormal
    b = torch.ones(3, 4)  # none: left out
    state = {0: {"exp_avg": a, "exp_avg_sq": b, "step": torch.tensor(5.0)}, 3: {"exp_avg": torch.full((2, 5), 1e-40)}}
    c = denormals.census(_agent_zip(tmp_path / "agent.zip", state))
    assert c == {
        "0/exp_avg": {"subnormal": 3, "total": 8, "fraction": 3 / 8},
        "3/exp_avg": {"subnormal": 10, "total": 10, "fraction": 1.0},
    }


class ModeClock:
    """A fake ``time.perf_counter`` that moves 6 ms per reading while subnormals are computed in full and 2 ms while
    they are flushed: each timed block reads it twice, so it lasts what the float mode in force says."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        flushing = bool((torch.full((1,), 1e-39) * 1.5 == 0).all())
        now, self.now = self.now, self.now + (0.002 if flushing else 0.006)
        return now


def test_adam_step_timing_times_each_mode_and_restores_ieee(monkeypatch):
    monkeypatch.setattr(denormals, "time", ModeClock())
    r = denormals.adam_step_ms((16, 16), 0.5, rounds=3, steps=2)
    # per step: 6 ms / 2 steps in full, 2 ms / 2 flushed
    assert r == pytest.approx({"ieee_ms": 3.0, "flush_ms": 1.0, "ieee_over_flush": 3.0}, rel=1e-9)
    assert bool((torch.full((4,), 1e-39) * 1.5 != 0).all())  # the benchmark leaves subnormals computed in full
