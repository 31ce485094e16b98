"""Reproducible agents: the same seed gives the same learning curve and final metrics, bit for bit; another seed
does not (SB3 ``tests/test_deterministic.py``). Pretraining's determinism is tested in tests/fsae/test_pretrain.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import yaml

from fsae.config import apply_overrides, from_dict
from rl.agent import train_agent
from rl.config import AgentConfig

BANDIT = Path(__file__).resolve().parents[2] / "configs" / "agent" / "digit_bandit.yaml"
# 512 steps: 4 rollouts of 2 envs x 64 steps, an evaluation (2 episodes of 8 steps) every 128 steps.
TINY = ["torch_threads=1", "progress_bar=false", "device=cpu", "condition=none", "total_steps=512", "n_envs=2",
        "eval_freq=128", "eval_episodes=2", "checkpoint_freq=0", "env_kwargs.episode_length=8",
        "eval_env_kwargs.episode_length=8", "hyperparams.n_steps=64", "hyperparams.batch_size=64",
        "hyperparams.n_epochs=1"]  # fmt: skip
WALL_CLOCK = ("time/", "seconds", "steps_per_second", "run_dir")  # differ between identical runs


def _run(logdir: Path, seed: int) -> dict:
    """Train once; return the learning curve (progress.csv without wall-clock columns), evaluations and metrics."""
    cfg = from_dict(AgentConfig, apply_overrides(yaml.safe_load(BANDIT.read_text()), [*TINY, f"seed={seed}"]))
    cfg.logdir = str(logdir)
    metrics = train_agent(cfg)
    run = Path(metrics["run_dir"])
    with (run / "progress.csv").open() as f:
        rows = [{k: v for k, v in row.items() if not k.startswith(WALL_CLOCK)} for row in csv.DictReader(f)]
    evals = dict(np.load(run / "eval" / "evaluations.npz"))
    final = {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if not k.startswith(WALL_CLOCK)}
    return {"rows": rows, "evals": evals, "final": final}


def test_same_seed_same_curve_other_seed_differs(tmp_path):
    a, b, c = _run(tmp_path / "a", 0), _run(tmp_path / "b", 0), _run(tmp_path / "c", 1)
    curve = [r["rollout/ep_rew_mean"] for r in a["rows"] if r.get("rollout/ep_rew_mean")]
    assert len(curve) == 4 and len(a["evals"]["timesteps"]) == 4, "one log row per rollout, an evaluation per 128"
    assert a["rows"] == b["rows"], "same seed: progress.csv differs"
    assert a["evals"].keys() == b["evals"].keys()
    for k, v in a["evals"].items():
        np.testing.assert_array_equal(v, b["evals"][k], err_msg=k)
    assert a["final"] == b["final"]
    # Another seed: other digits, other actions, so another curve (the losses differ even when rewards tie).
    assert a["rows"] != c["rows"]
