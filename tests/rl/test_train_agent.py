"""Agent training: configs, CLI errors, a frozen FSAE, each algorithm, and a tiny end-to-end run of the script."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import rl.agent
import rl.env_factory
from fsae.checkpoint import safe_load, save_fsae, sha256_file
from fsae.config import ConfigError, apply_overrides, from_dict, load_config
from fsae.model import FSAE, FSAEConfig, LayerSpec
from rl.agent import train_agent
from rl.callbacks import SplitEvalCallback
from rl.config import AgentConfig
from rl.extractor import SmallCNN
from rl.run_folder import run_dir_for

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_agent.py"
BANDIT = ROOT / "configs" / "agent" / "digit_bandit.yaml"
# A few hundred steps: 2 envs x 64 steps per rollout, an evaluation every 128 steps of 2 short episodes.
TINY = [
    "torch_threads=1",
    "progress_bar=false",
    "eval_freq=128",
    "eval_episodes=2",
    "checkpoint_freq=128",
    "env_kwargs.episode_length=8",
    "eval_env_kwargs.episode_length=8",
    "hyperparams.n_steps=64",
    "hyperparams.batch_size=64",
    "hyperparams.n_epochs=1",
]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> Path:
    """A pretraining-like folder: fsae_round.pt and autoencoder.pt, tiny 1x28x28 models."""
    folder = tmp_path_factory.mktemp("pretrain")
    layers = [LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 10)]
    torch.manual_seed(0)
    save_fsae(folder / "fsae_round.pt", FSAE(FSAEConfig((1, 28, 28), layers, round=True)), variant="round")
    save_fsae(folder / "autoencoder.pt", FSAE(FSAEConfig((1, 28, 28), layers, head="linear")), variant="autoencoder")
    return folder


def tiny_config(tmp_path: Path, **kw) -> AgentConfig:
    d = apply_overrides(yaml.safe_load(BANDIT.read_text()), TINY)
    d.update(total_steps=256, n_envs=2, logdir=str(tmp_path), **kw)
    return from_dict(AgentConfig, d)


# --------------------------------------------------------------------------------------------------------------------
# Configs and the CLI


@pytest.mark.parametrize("name", ["digit_bandit", "digit_sum", "digit_lock"])
def test_shipped_configs_load(name):
    cfg = load_config(AgentConfig, ROOT / "configs" / "agent" / f"{name}.yaml")
    rl.config.check_hyperparams(cfg)
    assert cfg.condition == "none" and cfg.algo == "ppo" and cfg.eval_env_kwargs["split"] == "test"
    assert isinstance(cfg.hyperparams["n_steps"], int) and isinstance(cfg.hyperparams["learning_rate"], float)
    if name != "digit_lock":
        assert cfg.hyperparams["gamma"] == 0  # bandits: each step is independent


def test_augment_flag(tmp_path, monkeypatch, load_script):
    script = load_script("train_agent")
    assert script.parse_args([]).augment is None  # the config's condition
    assert script.parse_args(["--augment"]).augment == "fsae"
    assert script.parse_args(["--augment", "copy"]).augment == "copy"
    assert script.parse_args(["--augment", "--seed", "3"]).augment == "fsae"
    # Without the flag the YAML's condition holds ('none' in the shipped configs); the flag, then --set, override it.
    seen = []
    monkeypatch.setattr(script, "train_agent", lambda cfg, **kw: seen.append(cfg.condition) or {})
    yaml_copy = tmp_path / "copy.yaml"
    yaml_copy.write_text(BANDIT.read_text().replace("condition: none", "condition: copy"))
    flags = [[], ["--augment", "none"], ["--set", "condition=none"], ["--augment", "none", "--set", "condition=copy"]]
    for argv in flags:
        assert script.main(["--config", str(yaml_copy), "--logdir", str(tmp_path), *argv]) == 0
    assert script.main(["--config", str(BANDIT), "--logdir", str(tmp_path)]) == 0
    assert seen == ["copy", "none", "none", "copy", "none"]


@pytest.fixture
def cli_error(capsys, load_script):
    """Run train_agent.py's main on argv: it must fail with exit 2 and one ``error:`` line, which is returned."""

    def run(argv: list[str]) -> str:
        assert load_script("train_agent").main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
        return err[0]

    return run


def test_unknown_key_is_one_error_line(cli_error, tmp_path):
    err = cli_error(["--config", str(BANDIT), "--logdir", str(tmp_path), "--set", "lerning_rate=0.1"])
    assert "unknown AgentConfig key 'lerning_rate'" in err
    err = cli_error(["--config", str(BANDIT), "--logdir", str(tmp_path), "--set", "hyperparams.lr=0.1"])
    assert "unknown PPO hyperparameter 'lr'" in err
    assert not any(tmp_path.iterdir()), "nothing is written before the config is accepted"


def test_mismatched_checkpoint_is_one_error_line(cli_error, tmp_path, ckpts):
    cfg = ROOT / "configs" / "agent" / "digit_sum.yaml"
    err = cli_error(
        ["--config", str(cfg), "--augment", "--fsae", str(ckpts / "fsae_round.pt"), "--logdir", str(tmp_path)]
    )
    assert "(1, 28, 28)" in err and "(1, 28, 56)" in err


def test_fsae_without_checkpoint_names_the_pretraining_command(cli_error, tmp_path):
    err = cli_error(["--config", str(BANDIT), "--augment", "--logdir", str(tmp_path)])
    assert "scripts/pretrain.py --config configs/pretrain/mnist_fast.yaml" in err


# --------------------------------------------------------------------------------------------------------------------
# Training runs


def test_fsae_weights_unchanged_after_training(tmp_path, ckpts, monkeypatch):
    made = []
    original = rl.env_factory.make_regenerator
    monkeypatch.setattr(rl.env_factory, "make_regenerator", lambda *a, **k: made.append(original(*a, **k)) or made[-1])
    path = ckpts / "fsae_round.pt"
    before = sha256_file(path)
    metrics = train_agent(tiny_config(tmp_path, condition="fsae", fsae_checkpoint=str(path)))
    assert metrics["timesteps"] >= 256 and metrics["fsae/weights_unchanged"] is True
    saved = safe_load(path)["state_dict"]
    after = made[0].model.state_dict()
    assert set(saved) == set(after)
    for k, v in saved.items():
        a = after[k].cpu()  # the regenerator runs on the config's device (auto: CUDA where there is one)
        assert torch.equal(a, v.to(a.dtype)), k  # bit-identical (float32 -> float64 is exact)
        assert torch.equal(a.to(v.dtype), v), k
    assert sha256_file(path) == before


def test_training_flushes_subnormals(tmp_path):
    """An agent trains with subnormal floats flushed to zero (fsae.runtime.flush_denormals): Adam's moments of dead
    units would otherwise put the CPU on its slow path."""
    tiny = torch.full((8,), 1e-39)
    assert bool((tiny * 1.5 != 0).all())
    train_agent(tiny_config(tmp_path, condition="none"))
    assert bool((tiny * 1.5 == 0).all())  # the conftest fixture turns it off again after the test


def test_overwrite_clears_what_the_run_before_left(tmp_path):
    """A run started again with overwrite (here without checkpoints or evaluations) leaves none of the earlier run's
    records, checkpoints, curves or marker to be read as its own; a file of another kind (a sweep's train.log) stays."""
    run = Path(train_agent(tiny_config(tmp_path))["run_dir"])
    (run / "done.json").write_text("{}")
    (run / "train.log").write_text("the sweep's log\n")
    assert (run / "checkpoints").is_dir() and (run / "eval").is_dir()
    cfg = tiny_config(tmp_path, overwrite=True, checkpoint_freq=0, eval_freq=0)
    again = {p.name for p in run.iterdir()}
    cfg.hyperparams = {**cfg.hyperparams, "learning_rate": 1e-4}
    with pytest.MonkeyPatch.context() as mp:  # the new run is killed once it has started, before it trains
        mp.setattr(rl.agent, "open_logger", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            train_agent(cfg)
    left = {p.name for p in run.iterdir()}
    assert yaml.safe_load((run / "config.yaml").read_text())["hyperparams"]["learning_rate"] == 1e-4  # the new run's
    assert "train.log" in left and not left & {"metrics.json", "done.json", "checkpoints", "eval", "final_model.zip"}
    assert not any(n.startswith("events.out.tfevents.") for n in left), left
    assert "metrics.json" in again  # (the first run had finished)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_a_checkpoint_has_learned_every_step_it_counts(tmp_path, algo):
    """Checkpoints every 128 steps, rollouts of 128: each zip is written after the update on its rollout, so its
    weights have learned the steps in its name (a resumed run skips none), and the last one is the final agent."""
    hp = {"ppo": {}, "a2c": {"n_steps": 64}}[algo]  # A2C: one update per rollout of 2 x 64 steps
    cfg = tiny_config(tmp_path, algo=algo)
    cfg.hyperparams = {**(cfg.hyperparams if algo == "ppo" else {}), **hp}
    run = Path(train_agent(cfg)["run_dir"])
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["agent_128_steps.zip", "agent_256_steps.zip"]
    paths = [run / "checkpoints" / "agent_128_steps.zip", run / "checkpoints" / "agent_256_steps.zip"]
    first, last, final = (rl.config.ALGOS[algo].load(p, device="cpu") for p in [*paths, run / "final_model.zip"])
    assert (first.num_timesteps, first._n_updates) == (128, 1) and (last.num_timesteps, last._n_updates) == (256, 2)
    assert final._n_updates == 2
    for a, b in zip(last.policy.state_dict().values(), final.policy.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("algo, condition", [("a2c", "autoencoder"), ("dqn", "copy")])
def test_other_algorithms_and_conditions(tmp_path, ckpts, algo, condition):
    hp = {"a2c": {"n_steps": 8}, "dqn": {"learning_starts": 64, "buffer_size": 1000, "train_freq": 4}}[algo]
    cfg = tiny_config(tmp_path, algo=algo, condition=condition, fsae_checkpoint=str(ckpts / "fsae_round.pt"))
    cfg.hyperparams = hp
    metrics = train_agent(cfg)
    run = Path(metrics["run_dir"])
    assert run == tmp_path / "DigitBandit-v0" / condition / "seed0"
    info = json.loads((run / "fsae.json").read_text())
    if condition == "autoencoder":
        assert info["checkpoint"] == str((ckpts / "autoencoder.pt").resolve())
        assert info["sha256"] == sha256_file(ckpts / "autoencoder.pt") and info["variant"] == "autoencoder"
    else:
        assert info["checkpoint"] is None and info["condition"] == "copy"
    # 8-step episodes, reward 0 or 1 per step: the final evaluation's mean is a whole number of rewards per episode.
    rewards = metrics["final_eval/mean_reward"] * cfg.eval_episodes
    assert rewards == pytest.approx(round(rewards), abs=1e-9) and 0 <= round(rewards) <= 8 * cfg.eval_episodes
    agent = rl.config.ALGOS[algo].load(run / "final_model.zip", device="cpu")
    assert agent.observation_space.shape == (2, 28, 28)  # the policy was trained on the union: raw + regeneration


def test_linear_lr_schedule_decays_to_zero(tmp_path):
    """lr_schedule 'linear': the learning rate of each PPO update is lr x the remaining progress, the folder '-lin'."""
    cfg = tiny_config(tmp_path, lr_schedule="linear")  # 2 envs x 64 steps: updates at 128 and 256 of 256 steps
    lr = cfg.hyperparams["learning_rate"]
    metrics = train_agent(cfg)
    run = Path(metrics["run_dir"])
    assert run == tmp_path / "DigitBandit-v0" / "none-lin" / "seed0"
    with (run / "progress.csv").open() as f:
        logged = [float(r["train/learning_rate"]) for r in csv.DictReader(f) if r.get("train/learning_rate")]
    assert logged == pytest.approx([lr / 2, 0.0])
    model = PPO.load(run / "final_model.zip", device="cpu")
    assert model.observation_space.shape == (1, 28, 28)  # raw only
    assert model.lr_schedule(1.0) == pytest.approx(lr) and model.lr_schedule(0.25) == pytest.approx(lr / 4)
    with pytest.raises(ConfigError, match="numeric hyperparams.learning_rate"):
        rl.config.check_hyperparams(tiny_config(tmp_path, lr_schedule="linear", hyperparams={"learning_rate": "fast"}))


def test_occupied_run_folder_is_refused(tmp_path):
    cfg = tiny_config(tmp_path)
    run = run_dir_for(cfg)
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("x: 1\n")
    with pytest.raises(ConfigError, match="already holds a run"):
        train_agent(cfg)


def test_script_end_to_end(tmp_path, ckpts):
    """The acceptance run: the script, a few hundred steps, TensorBoard tags, and the run folder's records."""
    ckpt = ckpts / "fsae_round.pt"
    argv = [sys.executable, str(SCRIPT), "--config", str(BANDIT), "--augment", "--fsae", str(ckpt)]
    argv += ["--seed", "3", "--total-steps", "256", "--n-envs", "2", "--device", "cpu", "--logdir", str(tmp_path)]
    argv += ["--set", *TINY]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "DigitBandit-v0" / "fsae-round" / "seed3"
    events = list(run.glob("events.out.tfevents.*"))
    assert len(events) == 1, sorted(p.name for p in run.iterdir())
    acc = EventAccumulator(str(run)).Reload()
    tags = acc.Tags()["scalars"]
    assert {"rollout/ep_rew_mean", "eval/mean_reward", "eval/final_mean_reward"} <= set(tags), tags
    assert len(acc.Scalars("eval/mean_reward")) == 2  # at 128 and 256 steps
    assert all(0.0 <= e.value <= 8.0 for e in acc.Scalars("rollout/ep_rew_mean"))
    # The records agree: each periodic evaluation in TensorBoard is the mean of its episodes in evaluations.npz, the
    # evaluation after training is metrics.json's, and the best of the periodic ones is best_eval/mean_reward.
    evals = np.load(run / "eval" / "evaluations.npz")
    assert evals["timesteps"].tolist() == [e.step for e in acc.Scalars("eval/mean_reward")] == [128, 256]
    means = evals["results"].mean(1)
    assert [e.value for e in acc.Scalars("eval/mean_reward")] == pytest.approx(means.tolist())
    metrics = json.loads((run / "metrics.json").read_text())
    (final,) = acc.Scalars("eval/final_mean_reward")
    assert final.step == 256 and final.value == pytest.approx(metrics["final_eval/mean_reward"])
    assert metrics["best_eval/mean_reward"] == pytest.approx(means.max())

    cfg = load_config(AgentConfig, run / "config.yaml")
    assert (cfg.condition, cfg.seed, cfg.total_steps, cfg.n_envs) == ("fsae", 3, 256, 2)
    assert cfg.fsae_checkpoint == str(ckpt) and cfg.hyperparams["n_steps"] == 64
    command = (run / "command.txt").read_text()
    assert "--augment" in command and str(ckpt) in command
    info = json.loads((run / "fsae.json").read_text())
    assert info["sha256"] == sha256_file(ckpt) and info["checkpoint"] == str(ckpt.resolve())
    assert info["variant"] == "round" and info["union"] == "stack" and info["input_shape"] == [1, 28, 28]
    provenance = json.loads((run / "run_info.json").read_text())
    assert provenance["depends_on"] == {"fsae": {"path": str(ckpt.resolve()), "sha256": sha256_file(ckpt)}}
    assert (run / "final_model.zip").is_file() and (run / "best_model.zip").is_file()
    assert PPO.load(run / "final_model.zip", device="cpu").observation_space.shape == (2, 28, 28)
    assert len(list((run / "checkpoints").glob("agent_*_steps.zip"))) == 2
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["timesteps"] == 256 and metrics["fsae/weights_unchanged"] is True


class HalfSuccessEnv(gym.Env):
    """Episodes of 2 steps that alternate: terminated with is_success=True, then truncated without is_success."""

    observation_space = spaces.Box(0, 255, (1, 12, 12), np.uint8)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.episode = 0, getattr(self, "episode", -1) + 1
        return np.zeros((1, 12, 12), np.uint8), {}

    def step(self, action):
        self.t += 1
        if self.t < 2:
            return np.zeros((1, 12, 12), np.uint8), 0.0, False, False, {}
        if self.episode % 2 == 0:
            return np.zeros((1, 12, 12), np.uint8), 1.0, True, False, {"is_success": True}
        return np.zeros((1, 12, 12), np.uint8), 0.0, False, True, {}


def test_eval_with_success_on_some_episodes_only(tmp_path):
    """SB3's EvalCallback crashes writing evaluations.npz here (ragged success lists); SplitEvalCallback does not, and
    counts the truncated episodes as failures: success rate 2 of 4."""
    eval_env = DummyVecEnv([lambda: Monitor(HalfSuccessEnv())])
    model = PPO("CnnPolicy", DummyVecEnv([HalfSuccessEnv]), n_steps=8, batch_size=8, n_epochs=1, device="cpu",
                policy_kwargs={"features_extractor_class": SmallCNN, "normalize_images": True})  # fmt: skip
    model.set_logger(configure(str(tmp_path), ["csv"]))
    callback = SplitEvalCallback(eval_env, tmp_path / "eval" / "evaluations.npz", n_eval_episodes=4, eval_freq=8)
    model.learn(24, callback=callback)
    data = np.load(tmp_path / "eval" / "evaluations.npz")
    assert data["results"].shape == (3, 4) and data["ep_lengths"].shape == (3, 4)
    np.testing.assert_array_equal(np.sort(data["results"], axis=1), [[0.0, 0.0, 1.0, 1.0]] * 3)
    np.testing.assert_array_equal(data["success_rate"], [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(data["timesteps"], [8, 16, 24])
    rows = list(csv.DictReader((tmp_path / "progress.csv").open()))
    assert [float(r["eval/success_rate"]) for r in rows if r.get("eval/success_rate")] == [0.5, 0.5, 0.5]
