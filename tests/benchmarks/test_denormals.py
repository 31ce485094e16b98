"""benchmarks/denormals.py: the census of subnormal optimizer state, counted on a hand-made agent file."""

import io
import sys
import zipfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import denormals  # noqa: E402  (benchmarks/denormals.py)


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


def test_adam_step_timing_restores_ieee_mode():
    r = denormals.adam_step_ms((16, 16), 0.5, rounds=1, steps=2)
    assert set(r) == {"ieee_ms", "flush_ms", "ieee_over_flush"}
    assert r["ieee_over_flush"] == r["ieee_ms"] / r["flush_ms"] > 0
    assert bool((torch.full((4,), 1e-39) * 1.5 != 0).all())  # the benchmark leaves subnormals computed in full
