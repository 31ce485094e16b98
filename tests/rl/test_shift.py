"""rl.shift: finished agents reloaded without unpickling and re-evaluated on changed environments; the table's rows."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy

from fsae.checkpoint import save_fsae
from fsae.config import ConfigError, apply_overrides, from_dict
from fsae.model import FSAE, FSAEConfig, LayerSpec
from rl.agent import train_agent
from rl.config import AgentConfig
from rl.env_factory import make_vec_env_for
from rl.shift import AS_TRAINED, evaluate_run, evaluate_shifts, load_final_agent, markdown_table

ROOT = Path(__file__).resolve().parents[2]
BANDIT = ROOT / "configs" / "agent" / "digit_bandit.yaml"
TINY = ["torch_threads=1", "progress_bar=false", "eval_freq=0", "checkpoint_freq=0", "env_kwargs.episode_length=8",
        "eval_env_kwargs.episode_length=8", "hyperparams.n_steps=64", "hyperparams.batch_size=64",
        "hyperparams.n_epochs=1", "total_steps=256", "n_envs=2"]  # fmt: skip


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    """Finished tiny runs: none (seeds 0, 1) and fsae-round (seed 0), DigitBandit, 256 steps each."""
    root = tmp_path_factory.mktemp("runs")
    ckpt = root / "fsae_round.pt"
    torch.manual_seed(0)
    layers = [LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 10)]
    save_fsae(ckpt, FSAE(FSAEConfig((1, 28, 28), layers, round=True)), variant="round")
    for condition, seed in (("none", 0), ("none", 1), ("fsae", 0)):
        d = apply_overrides(yaml.safe_load(BANDIT.read_text()), TINY)
        d.update(logdir=str(root), condition=condition, seed=seed)
        if condition == "fsae":
            d["fsae_checkpoint"] = str(ckpt)
        train_agent(from_dict(AgentConfig, d))
    return root


def test_final_agent_is_the_trained_one_and_the_shift_reaches_the_env(logdir):
    run = logdir / "DigitBandit-v0" / "none" / "seed0"
    agent = load_final_agent(run)
    venv = agent.env({"noise": 0.6})
    saved = PPO.load(run / "final_model.zip", device="cpu")  # the test's own file: trusted
    for name, value in saved.policy.state_dict().items():
        torch.testing.assert_close(agent.model.policy.state_dict()[name], value, rtol=0, atol=0, msg=name)
    assert venv.get_attr("noise") == [0.6] and venv.get_attr("split") == ["test"]
    venv.close()
    # 'As trained' is the trained policy on the run's evaluation env, seeded seed + 10000: the same number as SB3's.
    cfg = from_dict(AgentConfig, yaml.safe_load((run / "config.yaml").read_text()))
    fresh = make_vec_env_for(cfg, None, 1, 10_000, {**cfg.env_kwargs, **cfg.eval_env_kwargs})
    expected, _ = evaluate_policy(saved, fresh, n_eval_episodes=6, deterministic=True)
    fresh.close()
    assert evaluate_run(run, {}, episodes=6) == pytest.approx(expected, abs=0)
    # The same episodes, differently corrupted: the same digits step by step, under much stronger noise.
    plain, noisy = agent.env(), agent.env({"noise": 1.0})
    a, b = plain.reset().astype(np.int16), noisy.reset().astype(np.int16)
    assert (a != b).mean() > 0.3 and b.std() > a.std()
    labels = [[venv.reset_infos[0]["label"]] for venv in (plain, noisy)]
    for _ in range(7):  # the rest of the 8-step episode
        for venv, seen in zip((plain, noisy), labels):
            seen.append(venv.step(np.array([0]))[3][0]["label"])
    assert labels[0] == labels[1] and len(set(labels[0])) > 1
    plain.close(), noisy.close()


def test_evaluate_shifts_rows(logdir):
    rows = evaluate_shifts(logdir, {"noisy": {"noise": 0.6}}, episodes=4, n_resamples=99, log=lambda m: None)
    keys = [(r["shift"], r["condition"], r["seeds"]) for r in rows]
    assert keys == [(AS_TRAINED, "none", 2), (AS_TRAINED, "fsae-round", 1), ("noisy", "none", 2),
                    ("noisy", "fsae-round", 1)]  # fmt: skip
    none = rows[0]
    assert math.isnan(none["p_improve"]) and none["ci_low"] <= none["iqm"] <= none["ci_high"]
    x = evaluate_run(logdir / "DigitBandit-v0" / "fsae-round" / "seed0", {"noise": 0.6}, episodes=4)
    base = [evaluate_run(logdir / "DigitBandit-v0" / "none" / f"seed{s}", {"noise": 0.6}, episodes=4) for s in (0, 1)]
    assert rows[3]["iqm"] == pytest.approx(x) and rows[2]["iqm"] == pytest.approx(np.mean(base))  # 2 seeds: the mean
    assert rows[3]["p_improve"] == pytest.approx(np.mean([(x > b) + 0.5 * (x == b) for b in base]))
    table = markdown_table(rows).splitlines()
    assert table[2].startswith(f"| DigitBandit-v0 | {AS_TRAINED} | none | 2 |") and table[2].endswith("| — |")
    with pytest.raises(FileNotFoundError, match="no finished runs"):
        evaluate_shifts(logdir, {}, conditions=["copy"])


def test_a_retrained_checkpoint_is_refused_unless_allowed(logdir, tmp_path):
    run = tmp_path / "seed0"
    shutil.copytree(logdir / "DigitBandit-v0" / "fsae-round" / "seed0", run)
    ckpt = Path(yaml.safe_load((run / "config.yaml").read_text())["fsae_checkpoint"])
    before = ckpt.read_bytes()
    try:
        torch.manual_seed(1)
        layers = [LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 10)]
        save_fsae(ckpt, FSAE(FSAEConfig((1, 28, 28), layers, round=True)), variant="round")  # retrained
        with pytest.raises(ConfigError, match="fsae_round.pt.*the agent was trained with the old file"):
            evaluate_run(run, episodes=1)
        assert math.isfinite(evaluate_run(run, episodes=1, allow_changed=True))
    finally:
        ckpt.write_bytes(before)


def test_cli(logdir, tmp_path, capsys, load_script):
    script = load_script("evaluate_shift")
    argv = [str(logdir), "--conditions", "none", "--episodes", "2", "--n-resamples", "99", "--out", str(tmp_path)]
    assert script.main([*argv, "--shift", "noise=0.6 occlusion=1.0"]) == 0
    assert "| DigitBandit-v0 | noise=0.6 occlusion=1.0 | none | 2 |" in capsys.readouterr().out
    assert (tmp_path / "results.csv").read_text().splitlines()[0].startswith("env,shift,condition,seeds,iqm")
    assert script.main([*argv, "--shift", "noize=0.6"]) == 2  # the environment refuses it, before any evaluation
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: shift 'noize=0.6': cannot make environment 'fsae/DigitBandit")
    with pytest.raises(ConfigError, match="no final_model.zip"):
        load_final_agent(tmp_path)
