"""Training an SB3 agent on an ``fsae/`` environment under one experimental condition (``DESIGN.md`` section 2).

Contents:
    PolicyConfig, AgentConfig -- typed configs (``configs/agent/*.yaml``); unknown keys and wrong types are refused.
    ALGOS                     -- 'ppo', 'a2c', 'dqn' -> the SB3 classes.
    resolve_checkpoint        -- which checkpoint a condition uses; says how to make one when there is none.
    probe_env                 -- make the training and evaluation envs once: a bad id or kwarg fails before anything.
    make_vec_env_for          -- the vector env of a split with the condition's wrapper stack (training and eval alike).
    run_dir_for               -- ``logdir/<env>/<condition label>/seed<N>``.
    train_agent               -- build everything, train with periodic test-split evaluation and checkpoints, and
                                 return the final metrics (also written to ``metrics.json``).

Conditions: 'none' (raw observations), 'fsae' (raw + the FSAE's regeneration, the paper's proposal), 'copy' (raw +
raw: controls for the extra channels), 'autoencoder' (raw + the regeneration of the same-size conventional
autoencoder that pretraining trains without labels). The run folder holds SB3's TensorBoard events and CSV log
(written there directly, no ``PPO_1`` subfolder), ``config.yaml`` (resolved), ``command.txt``, ``fsae.json`` (which
model: path, SHA-256, variant), ``run_info.json`` (code version, machine, the checkpoint's SHA-256), ``metrics.json``,
``eval/evaluations.npz``, ``best_model.zip`` (when a periodic evaluation ran), ``final_model.zip`` and
``checkpoints/``. The frozen model is not inside SB3's zip files (it lives in the env wrapper); ``fsae.json``
identifies it.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import yaml
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import TensorBoardOutputFormat, configure
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv
from torch import nn

from fsae.checkpoint import atomic_write, atomic_write_json
from fsae.config import ConfigError, check, to_dict
from fsae.provenance import check_dependencies, write_run_info
from fsae.train import resolve_device, seed_everything
from rl import CONDITIONS
from rl import resume as resume_lib
from rl.common_sense import DTYPES, UNIONS, Regenerator, VecCommonSense, make_regenerator
from rl.extractor import SmallCNN

ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "dqn": DQN}
# Set by train_agent itself; a YAML may not pass them through ``hyperparams``.
_RESERVED = {"policy", "env", "policy_kwargs", "seed", "device", "tensorboard_log", "verbose", "_init_setup_model"}
PRETRAIN_HINT = (
    "python scripts/pretrain.py --config configs/pretrain/mnist_fast.yaml --out runs/pretrain/fast "
    "(for a quick one, about 5 minutes on a 2-core CPU, add --set data.train_size=10000 train.abstract_epochs=2 "
    "train.concrete_epochs=2 'feedback_steps=[0]'), then pass --fsae runs/pretrain/fast/fsae_round.pt"
)


@dataclass
class PolicyConfig:
    """SB3 ``policy_kwargs`` as typed values (no strings evaluated as code)."""

    features_dim: int = 128
    """Output size of the ``SmallCNN`` features extractor."""
    cnn_channels: tuple[int, int, int] = (32, 64, 64)
    """Channels of SmallCNN's three 3x3 convolutions."""
    net_arch: list[int] = field(default_factory=lambda: [64])
    """Hidden layers after the extractor: for both the policy and value heads (PPO, A2C), or the Q head (DQN)."""
    activation: Literal["relu", "tanh"] = "relu"
    """Activation of the ``net_arch`` layers."""


@dataclass
class AgentConfig:
    """One agent training run: environment, algorithm, budget, evaluation and the common-sense condition."""

    env_id: str = "fsae/DigitBandit-v0"
    """A Gymnasium id; ``fsae/`` ids are registered by ``import envs``."""
    env_kwargs: dict[str, bool | int | float | str] = field(default_factory=dict)
    """Keyword arguments of the training environments (e.g. noise, occlusion)."""
    eval_env_kwargs: dict[str, bool | int | float | str] = field(default_factory=lambda: {"split": "test"})
    """Overrides of ``env_kwargs`` for the evaluation environment (default: the MNIST test split)."""
    algo: Literal["ppo", "a2c", "dqn"] = "ppo"
    """The SB3 algorithm."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """Features extractor and heads (``CnnPolicy`` with ``SmallCNN``, ``normalize_images=True``)."""
    hyperparams: dict[str, bool | int | float | str] = field(default_factory=dict)
    """Passed to the algorithm's constructor (e.g. learning_rate, n_steps, gamma); checked against its signature."""
    lr_schedule: Literal["constant", "linear"] = "constant"
    """'linear' decays the learning rate (``hyperparams.learning_rate`` or the algorithm's default) linearly to 0 over
    ``total_steps``, as rl-zoo3's ``lin_<lr>``; the run folder's label gets '-lin'."""
    total_steps: int = 50_000
    """Environment steps, summed over all training environments."""
    n_envs: int = 8
    """Parallel training environments."""
    vec_env: Literal["dummy", "subproc"] = "dummy"
    """'dummy' (one process, best for cheap envs) or 'subproc' (one process per env)."""
    eval_freq: int = 10_000
    """Evaluate every this many environment steps (0 = only at the end)."""
    eval_episodes: int = 20
    """Episodes per evaluation, with the deterministic policy, on the eval split."""
    checkpoint_freq: int = 25_000
    """Save the agent every this many environment steps into ``checkpoints/`` (0 = only the final model)."""
    condition: Literal["none", "fsae", "copy", "autoencoder"] = "none"
    """What the agent sees besides the raw observation (see the module docstring)."""
    fsae_checkpoint: str | None = None
    """The FSAE checkpoint for 'fsae' (e.g. runs/pretrain/<run>/fsae_round.pt)."""
    autoencoder_checkpoint: str | None = None
    """The conventional autoencoder for 'autoencoder' (default: autoencoder.pt beside ``fsae_checkpoint``)."""
    union: Literal["stack", "max", "mean"] = "stack"
    """How raw and regenerated images are united: channel stack (2C channels), elementwise max, or mean."""
    feedback_steps: int = 0
    """Negative-feedback steps T of the regeneration (paper Fig. 2d); each costs one more forward pass."""
    regen_dtype: Literal["float64", "float32"] = "float32"
    """Precision of the regeneration (float64: slower, batch-size invariant; see ``rl.common_sense``)."""
    cuda_graph: bool = True
    """On a GPU, replay the regeneration as a CUDA graph per batch shape (same output, fewer launches; see
    ``rl.common_sense.Regenerator``). Ignored on the CPU."""
    run_name: str = ""
    """Folder name of the condition ('' = the condition, e.g. 'fsae-round', plus '-max'/'-fb2' when not default)."""
    seed: int = 0
    """Seeds torch, numpy, the algorithm and the environments (evaluation envs get seed + 10000)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Device of the agent and the regenerator."""
    torch_threads: int = 0
    """torch.set_num_threads (0 = torch's default). On a small shared CPU, 1 is often much faster."""
    logdir: str = "runs/agents"
    """Root of the run folders."""
    overwrite: bool = False
    """Allow writing into a run folder that already holds a run."""
    progress_bar: bool = True
    """Show SB3's progress bar (tqdm + rich)."""
    verbose: int = 0
    """SB3 verbosity: 1 also prints the logged tables to stdout."""

    def __post_init__(self):
        self.policy = PolicyConfig(**self.policy) if isinstance(self.policy, dict) else self.policy
        check(self.total_steps > 0 and self.n_envs > 0, "total_steps and n_envs must be positive")
        check(self.eval_freq >= 0 and self.checkpoint_freq >= 0, "eval_freq and checkpoint_freq must be >= 0")
        check(self.eval_episodes > 0, f"eval_episodes must be positive, got {self.eval_episodes}")
        check(self.feedback_steps >= 0, f"feedback_steps must be >= 0, got {self.feedback_steps}")
        check(self.torch_threads >= 0, f"torch_threads must be >= 0, got {self.torch_threads}")
        check(
            self.condition in CONDITIONS and self.union in UNIONS and self.regen_dtype in DTYPES,
            f"condition, union, regen_dtype must be in {CONDITIONS}, {UNIONS}, {list(DTYPES)}",
        )
        check(
            not (self.condition == "copy" and self.union != "stack"),
            f"condition 'copy' controls for the extra channels of union 'stack'; with union '{self.union}' "
            "it would equal 'none'",
        )
        check("/" not in self.run_name, f"run_name must be a plain folder name, got '{self.run_name}'")


# --------------------------------------------------------------------------------------------------------------------
# Pieces


def resolve_checkpoint(cfg: AgentConfig) -> str | None:
    """The checkpoint the condition uses (None for 'none' and 'copy'); a missing one is a ``ConfigError`` that names
    the pretraining command which makes it."""
    if cfg.condition == "fsae":
        if not cfg.fsae_checkpoint:
            raise ConfigError(
                f"condition 'fsae' needs an FSAE checkpoint (--fsae PATH); make one with: {PRETRAIN_HINT}"
            )
        return cfg.fsae_checkpoint
    if cfg.condition == "autoencoder":
        if cfg.autoencoder_checkpoint:
            return cfg.autoencoder_checkpoint
        if cfg.fsae_checkpoint:
            return str(Path(cfg.fsae_checkpoint).parent / "autoencoder.pt")
        raise ConfigError(
            "condition 'autoencoder' needs the pretraining run's autoencoder.pt (set autoencoder_checkpoint, or "
            f"--fsae PATH to a checkpoint beside it); make one with: {PRETRAIN_HINT}"
        )
    return None


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """Module-level env factory, so ``SubprocVecEnv`` workers import ``envs`` (and register its ids) themselves."""
    import envs  # noqa: F401

    return gym.make(env_id, **kwargs)


def probe_env(cfg: AgentConfig) -> gym.Space:
    """Make the training and the evaluation environment once (checking the id and both kwargs) and return the training
    environment's observation space; ``ConfigError`` naming the settings an environment refused."""
    spaces = []
    for kwargs in (cfg.env_kwargs, {**cfg.env_kwargs, **cfg.eval_env_kwargs}):
        try:
            probe = make_env(cfg.env_id, **kwargs)
        except (gym.error.Error, TypeError, ValueError) as e:
            raise ConfigError(f"cannot make environment '{cfg.env_id}' with {kwargs}: {e}") from None
        spaces.append(probe.observation_space)
        probe.close()
    return spaces[0]


def make_vec_env_for(
    cfg: AgentConfig, regen: Regenerator | None, n_envs: int, seed: int, env_kwargs: dict[str, Any]
) -> VecEnv:
    """``n_envs`` Monitor-wrapped envs in a Dummy/SubprocVecEnv, then ``VecCommonSense`` unless the condition is
    'none'. Training and evaluation envs are built by this one function, so their wrapper stacks are the same."""
    vec_cls = SubprocVecEnv if cfg.vec_env == "subproc" and n_envs > 1 else DummyVecEnv
    venv = make_vec_env(
        make_env, n_envs, seed=seed, vec_env_cls=vec_cls, env_kwargs={"env_id": cfg.env_id, **env_kwargs}
    )
    if regen is not None:
        regen.check_space(venv.observation_space, cfg.env_id)
        venv = VecCommonSense(venv, regen, cfg.union)
    return venv


def condition_label(cfg: AgentConfig) -> str:
    """Folder name of the condition: 'none', 'copy', 'autoencoder', 'fsae-<variant>' with <variant> the checkpoint's
    file name without 'fsae_' (``fsae_round.pt`` -> 'fsae-round'); '-<union>', '-fb<T>', '-lin' appended when not the
    defaults, so that variants and settings never share (and overwrite) a folder. ``run_name`` replaces it all."""
    if cfg.run_name:
        return cfg.run_name
    label = cfg.condition
    if cfg.condition == "fsae" and cfg.fsae_checkpoint:
        label = f"fsae-{Path(cfg.fsae_checkpoint).stem.removeprefix('fsae_')}"
    if cfg.condition != "none" and cfg.union != "stack":
        label += f"-{cfg.union}"
    if cfg.condition in ("fsae", "autoencoder") and cfg.feedback_steps:
        label += f"-fb{cfg.feedback_steps}"
    if cfg.lr_schedule != "constant":
        label += "-lin"
    return label


def run_dir_for(cfg: AgentConfig) -> Path:
    """``logdir/<env>/<condition label>/seed<N>``, with <env> the id without namespace, e.g. DigitBandit-v0."""
    return Path(cfg.logdir) / cfg.env_id.split("/")[-1] / condition_label(cfg) / f"seed{cfg.seed}"


def policy_kwargs(cfg: AgentConfig) -> dict[str, Any]:
    """SB3 policy_kwargs: ``SmallCNN`` extractor, heads, activation, and image normalisation (uint8 / 255)."""
    p = cfg.policy
    heads: Any = list(p.net_arch) if cfg.algo == "dqn" else {"pi": list(p.net_arch), "vf": list(p.net_arch)}
    return {
        "features_extractor_class": SmallCNN,
        "features_extractor_kwargs": {"features_dim": p.features_dim, "channels": tuple(p.cnn_channels)},
        "net_arch": heads,
        "activation_fn": {"relu": nn.ReLU, "tanh": nn.Tanh}[p.activation],
        "normalize_images": True,
    }


def check_hyperparams(cfg: AgentConfig) -> None:
    """Refuse hyperparameters the algorithm's constructor does not take, or that ``train_agent`` sets itself (and a
    'linear' ``lr_schedule`` without a numeric learning rate)."""
    valid = set(inspect.signature(ALGOS[cfg.algo].__init__).parameters) - _RESERVED - {"self"}
    for key in cfg.hyperparams:
        if key in _RESERVED:
            raise ConfigError(f"hyperparams.{key} is set by train_agent; use the config's own field instead")
        if key not in valid:
            raise ConfigError(f"unknown {cfg.algo.upper()} hyperparameter '{key}'; valid: {sorted(valid)}")
    algo_kwargs(cfg)  # a linear schedule needs a numeric learning rate


def algo_kwargs(cfg: AgentConfig) -> dict[str, Any]:
    """``cfg.hyperparams`` for the algorithm's constructor, with the learning rate as a schedule when
    ``lr_schedule`` is 'linear' (SB3 calls it with the remaining progress, 1 at the start and 0 at the end)."""
    kwargs: dict[str, Any] = dict(cfg.hyperparams)
    if cfg.lr_schedule == "linear":
        default = inspect.signature(ALGOS[cfg.algo].__init__).parameters["learning_rate"].default
        lr = kwargs.get("learning_rate", default)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)):
            raise ConfigError(f"lr_schedule 'linear' needs a numeric hyperparams.learning_rate, got {lr!r}")
        kwargs["learning_rate"] = LinearSchedule(float(lr), 0.0, 1.0)
    return kwargs


class SplitEvalCallback(EvalCallback):
    """SB3's ``EvalCallback`` with an ``evaluations.npz`` and success rate that stay well formed when only some
    episodes report ``info["is_success"]``.

    DigitLock reports it when the agent submits, not when an episode is truncated; SB3's own writer then stacks
    success lists of different lengths and ``np.savez`` fails ("inhomogeneous shape"), and its success rate averages
    over the submits alone. Here, when any episode of an evaluation reports success, those that do not count as
    failures (``eval/success_rate``); the file holds ``timesteps``, ``results`` and ``ep_lengths`` (n_evals,
    n_episodes) as SB3's does, and ``success_rate`` (n_evals,), NaN where no episode reported success.
    """

    def __init__(self, eval_env: VecEnv, npz_path: Path, **kwargs: Any):
        super().__init__(eval_env, log_path=None, **kwargs)
        self.npz_path = npz_path
        self._episodes: list[tuple[float, int, bool | None]] = []
        self._history: dict[str, list[Any]] = {"timesteps": [], "results": [], "ep_lengths": [], "success_rate": []}

    def _log_success_callback(self, locals_: dict[str, Any], globals_: dict[str, Any]) -> None:
        info = locals_["info"]
        if not (locals_["done"] and "episode" in info):  # Monitor's record: the whole episode
            return
        success = info.get("is_success")
        self._episodes.append((info["episode"]["r"], info["episode"]["l"], None if success is None else bool(success)))
        if len(self._episodes) == self.n_eval_episodes:  # evaluate_policy counts exactly this many episodes
            rewards, lengths, successes = zip(*self._episodes)
            reported = [s for s in successes if s is not None]
            rate = sum(reported) / len(successes) if reported else float("nan")
            if reported:  # recorded before EvalCallback dumps its eval/ values, so they share one step
                self.logger.record("eval/success_rate", rate)
            for key, value in zip(self._history, (self.num_timesteps, rewards, lengths, rate)):
                self._history[key].append(value)
            arrays = {k: np.asarray(v) for k, v in self._history.items()}
            atomic_write(self.npz_path, lambda f: np.savez(f, **arrays))  # a kill mid-write leaves the old file

    def _on_step(self) -> bool:
        self._episodes = []
        return super()._on_step()


class AtomicCheckpointCallback(CheckpointCallback):
    """SB3's ``CheckpointCallback`` (agent only: no replay buffer or VecNormalize here), but each
    ``agent_<step>_steps.zip`` is written through a temporary file and renamed: a kill mid-save leaves the older
    checkpoints and no partial zip for ``--resume`` to trip over."""

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            atomic_write(self._checkpoint_path(extension="zip"), self.model.save)
        return True


def _hparam_table(cfg: AgentConfig) -> str:
    rows = [("key", "value"), ("---", "---")]
    flat = {**{k: v for k, v in to_dict(cfg).items() if not isinstance(v, dict)}, **cfg.hyperparams}
    rows += [(k, str(v)) for k, v in sorted(flat.items())]
    return "\n".join(f"|{k}|{v}|" for k, v in rows)


# --------------------------------------------------------------------------------------------------------------------
# The run


def build_model(cfg: AgentConfig, venv: VecEnv, device: str | torch.device) -> BaseAlgorithm:
    """A new SB3 model of ``cfg.algo`` with the small-image CNN policy on ``venv``; ``ConfigError`` if SB3 or torch
    refuse a hyperparameter's value (e.g. a negative learning rate)."""
    try:
        return ALGOS[cfg.algo](
            "CnnPolicy",
            venv,
            policy_kwargs=policy_kwargs(cfg),
            seed=cfg.seed,
            device=device,
            verbose=cfg.verbose,
            **algo_kwargs(cfg),
        )
    except (ValueError, TypeError, AssertionError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{cfg.algo.upper()} refused the hyperparameters: {reason}; fix hyperparams.<key>") from None


def train_agent(cfg: AgentConfig, command: str | None = None, resume: bool = False) -> dict[str, Any]:
    """Train one agent and return its final metrics (also written to ``run_dir/metrics.json``).

    Raises ``ConfigError`` (bad config, missing checkpoint, occupied run folder) or ``CheckpointError`` (unreadable
    checkpoint, or one whose input shape does not fit the environment) before any training starts. ``resume``
    continues the unfinished run of the same config in its folder from its newest checkpoint (see ``rl.resume``).
    """
    check_hyperparams(cfg)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    obs_space = probe_env(cfg)  # the id, both kwargs and (below) the checkpoint's fit are checked before writing
    checkpoint = resolve_checkpoint(cfg)
    regen = make_regenerator(
        cfg.condition, checkpoint, device, obs_space, cfg.feedback_steps, cfg.regen_dtype, cfg.env_id, cfg.cuda_graph
    )
    run_dir = run_dir_for(cfg)
    if resume:
        resume_lib.check_resumable(run_dir, yaml.safe_load(yaml.safe_dump(to_dict(cfg))))
    elif run_dir.is_dir() and any(run_dir.iterdir()) and not cfg.overwrite:
        raise ConfigError(f"run folder {run_dir} already holds a run; remove it, change logdir/seed, or set overwrite")
    venv = make_vec_env_for(cfg, regen, cfg.n_envs, cfg.seed, dict(cfg.env_kwargs))
    eval_env = make_vec_env_for(cfg, regen, 1, cfg.seed + 10_000, {**cfg.env_kwargs, **cfg.eval_env_kwargs})
    logger = None
    try:  # the envs (worker processes with vec_env: subproc) and the logger are closed however the run ends
        model = build_model(cfg, venv, device)
        if resume:
            resume_lib.load_latest(model, run_dir, device)
            model.set_random_seed(cfg.seed + model.num_timesteps)  # not the first run's episodes again

        start = model.num_timesteps  # 0, or the checkpoint's step when resuming
        if resume:
            with (run_dir / "command.txt").open("a") as f:
                f.write(f"# resumed at step {start}:\n{command or '(called from Python)'}\n")
            check_dependencies(run_dir)  # warns if the FSAE checkpoint changed since the run started
            old_progress = resume_lib.read_progress(run_dir)
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
            (run_dir / "command.txt").write_text((command or "(called from Python)") + "\n")
            regen_info = regen.describe() if regen else {"condition": "none", "checkpoint": None, "sha256": None}
            regen_info["union"] = cfg.union if regen is not None else None
            (run_dir / "fsae.json").write_text(json.dumps(regen_info, indent=2) + "\n")
            write_run_info(run_dir, depends_on={cfg.condition: checkpoint} if checkpoint else {})
        frozen = {k: v.clone() for k, v in regen.model.state_dict().items()} if regen and regen.model else {}
        # A custom logger puts the TensorBoard events straight into run_dir (SB3's tensorboard_log would add PPO_1/).
        logger = configure(str(run_dir), (["stdout"] if cfg.verbose else []) + ["csv", "tensorboard"])
        model.set_logger(logger)
        if resume:
            resume_lib.restore_progress(run_dir, logger, start, old_progress)
        for fmt in logger.output_formats:
            if isinstance(fmt, TensorBoardOutputFormat) and not resume:
                fmt.writer.add_text("hyperparameters", _hparam_table(cfg), 0)
                fmt.writer.flush()

        per_env = lambda steps: max(steps // cfg.n_envs, 1)  # noqa: E731  (callbacks count vector steps)
        callbacks = [
            SplitEvalCallback(
                eval_env,
                run_dir / "eval" / "evaluations.npz",
                n_eval_episodes=cfg.eval_episodes,
                eval_freq=per_env(cfg.eval_freq) if cfg.eval_freq else cfg.total_steps + 1,
                best_model_save_path=str(run_dir),
                deterministic=True,
                verbose=0,
            )
        ]
        if cfg.checkpoint_freq:
            every = per_env(cfg.checkpoint_freq)
            callbacks.append(AtomicCheckpointCallback(every, str(run_dir / "checkpoints"), "agent"))
        if resume:
            resume_lib.restore_evaluations(callbacks[0], run_dir / "eval" / "evaluations.npz", start)
            for cb in callbacks:  # they fire on n_calls (vector steps): keep the first run's grid of steps
                cb.n_calls = start // cfg.n_envs

        t0 = time.time()
        remaining = max(cfg.total_steps - start, 0)
        model.learn(remaining, callback=callbacks, progress_bar=cfg.progress_bar, reset_num_timesteps=not resume)
        seconds = time.time() - t0
        model.save(run_dir / "final_model.zip")

        mean, std = evaluate_policy(model, eval_env, n_eval_episodes=cfg.eval_episodes, deterministic=True)
        logger.record("eval/final_mean_reward", float(mean))
        logger.dump(model.num_timesteps)
        metrics: dict[str, Any] = {
            "run_dir": str(run_dir),
            "condition": cfg.condition,
            "timesteps": int(model.num_timesteps),
            "seconds": seconds,
            "steps_per_second": (model.num_timesteps - start) / max(seconds, 1e-9),
            "final_eval/mean_reward": float(mean),
            "final_eval/std_reward": float(std),
            # None (JSON null) when no periodic evaluation ran (eval_freq 0 or above total_steps): no best_model.zip
            "best_eval/mean_reward": best if math.isfinite(best := float(callbacks[0].best_mean_reward)) else None,
        }
        if resume:
            metrics["resumed_from"] = start
        if frozen:
            after = regen.model.state_dict()  # type: ignore[union-attr]
            unchanged = all(torch.equal(v, after[k]) for k, v in frozen.items())
            assert unchanged, "the frozen regenerator's weights changed during RL training; this is a bug"
            metrics["fsae/weights_unchanged"] = unchanged
        atomic_write_json(run_dir / "metrics.json", metrics)  # the run's last file: it marks the run finished
        return metrics
    finally:
        venv.close()
        eval_env.close()
        if logger is not None:
            logger.close()
