"""Training an SB3 agent on a Gymnasium environment under one experimental condition (``docs/DESIGN.md`` section 2).

Contents:
    resolve_checkpoint -- which checkpoint a condition uses; says how to make one when there is none.
    policy_kwargs      -- SB3 ``policy_kwargs``: the features extractor, heads and activation of ``PolicyConfig``.
    build_model        -- a new SB3 model of the config's algorithm on a vector env.
    train_agent        -- build everything, train with periodic test-split evaluation and checkpoints, and return the
                          final metrics (also written to ``metrics.json``).

The config is ``rl.config``, the environments ``rl.env_factory``, the callbacks ``rl.callbacks``, the run folder
``rl.run_folder`` and resuming ``rl.resume``.

Conditions: 'none' (raw observations), 'fsae' (raw + the FSAE's regeneration, the paper's proposal), 'copy' (raw +
raw: controls for the extra channels), 'autoencoder' (raw + the regeneration of the same-size conventional
autoencoder that pretraining trains without labels), 'code' and 'features' (raw + the frozen abstract network's code
or last hidden layer as a vector, ``rl.perception``: the classifier's answer handed over directly).

The run folder holds SB3's TensorBoard events and CSV log (written there directly, no ``PPO_1`` subfolder),
``config.yaml`` (resolved), ``command.txt``, ``fsae.json`` (which model: path, SHA-256, variant), ``run_info.json``
(code version, machine, the checkpoint's SHA-256), ``metrics.json``, ``eval/evaluations.npz``, ``best_model.zip`` (when
a periodic evaluation ran), ``final_model.zip`` and ``checkpoints/``. The frozen model is not inside SB3's zip files (it
lives in the env wrapper); ``fsae.json`` identifies it.

Two figures of a finished run: ``best_eval/mean_reward`` is the best of the periodic evaluations (each
``eval_episodes`` episodes on the evaluation split; ``best_model.zip`` is that agent), ``final_eval/mean_reward`` a
new evaluation of the final agent. The final agent can score above the best periodic one: it was never among the
periodic evaluations, and each evaluation is a sample of ``eval_episodes`` episodes. On-policy algorithms collect whole
rollouts (``n_steps`` x ``n_envs`` steps), so ``timesteps`` is ``total_steps`` rounded up to a whole rollout.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from fsae.checkpoint import atomic_write_json
from fsae.config import ConfigError, to_dict
from fsae.memory import retain_freed_memory
from fsae.run_folder import check_no_file_in_way
from fsae.runtime import flush_denormals, resolve_device, seed_everything
from fsae.threads import set_threads
from rl import resume as resume_lib
from rl.callbacks import AtomicCheckpointCallback, ProgressCallback, SplitEvalCallback
from rl.config import ALGOS, AgentConfig, algo_kwargs, check_hyperparams
from rl.env_factory import make_observer, make_vec_env_for, probe_env
from rl.extractor import ImageVectorExtractor, SmallCNN, extractor_class
from rl.images import image_layout
from rl.perception import PERCEPTIONS
from rl.run_folder import open_logger, run_dir_for, start_run, write_hparams

PRETRAIN_HINT = (
    "python scripts/pretrain.py --config configs/pretrain/mnist_fast.yaml --out runs/pretrain/fast "
    "(for a quick one, about 5 minutes on a 2-core CPU, add --set data.train_size=10000 train.abstract_epochs=2 "
    "train.concrete_epochs=2 'feedback_steps=[0]'), then pass --fsae runs/pretrain/fast/fsae_round.pt"
)


def resolve_checkpoint(cfg: AgentConfig) -> str | None:
    """The checkpoint the condition uses (None for 'none' and 'copy'); a missing one is a ``ConfigError`` that names
    the pretraining command which makes it."""
    if cfg.condition in ("fsae", *PERCEPTIONS):
        if not cfg.fsae_checkpoint:
            raise ConfigError(
                f"condition '{cfg.condition}' needs an FSAE checkpoint (--fsae PATH); make one with: {PRETRAIN_HINT}"
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


def policy_kwargs(cfg: AgentConfig, observation_space: gym.Space) -> dict[str, Any]:
    """SB3 policy_kwargs for the policy's ``observation_space`` (channels-first images, or ``{image, code}``): the
    features extractor of ``policy.extractor`` (SmallCNN or NatureCNN, by the image's size for 'auto'; for 'code' and
    'features' ``ImageVectorExtractor``, the same extractor beside the vector), heads, activation, and image
    normalisation (uint8 / 255)."""
    p = cfg.policy
    heads: Any = list(p.net_arch) if cfg.algo == "dqn" else {"pi": list(p.net_arch), "vf": list(p.net_arch)}
    if cfg.condition in PERCEPTIONS:
        extractor: Any = ImageVectorExtractor
        kwargs: dict[str, Any] = {
            "features_dim": p.features_dim,
            "channels": tuple(p.cnn_channels),
            "channels_last": p.channels_last,
        }
        image_cls = extractor_class(observation_space["image"], p.extractor)
        kwargs["extractor"] = (
            "small" if image_cls is SmallCNN else "nature"
        )  # the choice, resolved, in the saved kwargs
    else:
        extractor = extractor_class(observation_space, p.extractor)
        kwargs = {"features_dim": p.features_dim}
        if extractor is SmallCNN:
            kwargs["channels"] = tuple(p.cnn_channels)
            kwargs["channels_last"] = p.channels_last
    return {
        "features_extractor_class": extractor,
        "features_extractor_kwargs": kwargs,
        "net_arch": heads,
        "activation_fn": {"relu": nn.ReLU, "tanh": nn.Tanh}[p.activation],
        "normalize_images": True,
    }


def build_model(cfg: AgentConfig, venv: VecEnv, device: str | torch.device) -> BaseAlgorithm:
    """A new SB3 model of ``cfg.algo`` on ``venv`` (``CnnPolicy``, ``MultiInputPolicy`` for 'code' and 'features', with
    the extractor ``policy_kwargs`` picks); ``ConfigError`` if SB3 or torch
    refuse a hyperparameter's value (e.g. a negative learning rate)."""
    try:
        return ALGOS[cfg.algo](
            "MultiInputPolicy" if cfg.condition in PERCEPTIONS else "CnnPolicy",
            venv,
            policy_kwargs=policy_kwargs(cfg, venv.observation_space),
            seed=cfg.seed,
            device=device,
            verbose=cfg.verbose,
            **algo_kwargs(cfg),
        )
    except (ValueError, TypeError, AssertionError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{cfg.algo.upper()} refused the hyperparameters: {reason}; fix hyperparams.<key>") from None


def train_agent(
    cfg: AgentConfig,
    command: str | None = None,
    resume: bool = False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train one agent and return its final metrics (also written to ``run_dir/metrics.json``).

    Raises ``ConfigError`` (bad config, missing checkpoint, occupied run folder) or ``CheckpointError`` (unreadable
    checkpoint, or one whose input shape does not fit the environment) before any training starts. ``resume``
    continues the unfinished run of the same config in its folder from its newest checkpoint (see ``rl.resume``).
    ``on_progress`` receives each periodic evaluation and each checkpoint as it happens (``rl.callbacks.
    ProgressCallback``; a sweep on Ray Tune reports them).
    """
    check_hyperparams(cfg)
    flush_denormals()  # subnormal Adam moments of dead units stall CPU training (fsae.runtime), before threads start
    set_threads("agent", cfg.torch_threads)  # 0: one thread whatever the load, for reproducibility (fsae.threads)
    retain_freed_memory()  # no page faults for every batch's activations (fsae.memory)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    obs_space = probe_env(cfg)  # the id, both kwargs and (below) the checkpoint's fit are checked before writing
    layout = image_layout(obs_space, cfg.image_layout, cfg.env_id)
    observation = f"{layout.describe()}, read as (C, H, W) = {layout.chw}"
    print(f"{cfg.env_id}: observations {observation}", flush=True)  # the layout, before any step is taken on it
    checkpoint = resolve_checkpoint(cfg)
    regen = make_observer(cfg, checkpoint, device, obs_space)
    run_dir = run_dir_for(cfg)
    check_no_file_in_way(run_dir, "logdir")
    if resume:
        resume_lib.check_resumable(run_dir, yaml.safe_load(yaml.safe_dump(to_dict(cfg))), checkpoint)
    elif run_dir.is_dir() and any(run_dir.iterdir()) and not cfg.overwrite:
        raise ConfigError(f"run folder {run_dir} already holds a run; remove it, change logdir/seed, or set overwrite")
    venv = make_vec_env_for(cfg, regen, cfg.n_envs, cfg.seed, dict(cfg.env_kwargs))
    eval_env, logger = None, None
    try:  # the envs (worker processes with vec_env: subproc) and the logger are closed however the run ends
        eval_env = make_vec_env_for(cfg, regen, 1, cfg.seed + 10_000, {**cfg.env_kwargs, **cfg.eval_env_kwargs})
        model = build_model(cfg, venv, device)
        per_env = lambda steps: max(steps // cfg.n_envs, 1)  # noqa: E731  (callbacks count vector steps)
        evaluation = SplitEvalCallback(
            eval_env,
            run_dir / "eval" / "evaluations.npz",
            n_eval_episodes=cfg.eval_episodes,
            eval_freq=per_env(cfg.eval_freq) if cfg.eval_freq else cfg.total_steps + 1,
            best_model_save_path=str(run_dir),
            deterministic=True,
            verbose=0,
        )
        callbacks: list[Any] = [evaluation]
        checkpoints = None
        if cfg.checkpoint_freq:
            checkpoints = AtomicCheckpointCallback(per_env(cfg.checkpoint_freq), str(run_dir / "checkpoints"), "agent")
            callbacks.append(checkpoints)
        if on_progress is not None:
            callbacks.append(ProgressCallback(evaluation, checkpoints, on_progress))
        if resume:
            start, logger = resume_lib.resume(model, run_dir, cfg, callbacks, command, device)
        else:
            start = 0
            start_run(run_dir, cfg, regen, checkpoint, command, observation)
            logger = open_logger(run_dir, cfg.verbose)
            model.set_logger(logger)
            write_hparams(logger, cfg)
        frozen = {k: v.clone() for k, v in regen.model.state_dict().items()} if regen and regen.model else {}

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
            "seconds": seconds,  # training including the periodic evaluations
            "steps_per_second": (model.num_timesteps - start) / max(seconds, 1e-9),
            "final_eval/mean_reward": float(mean),
            "final_eval/std_reward": float(std),
            # None (JSON null) when no periodic evaluation ran (eval_freq 0 or above total_steps): no best_model.zip
            "best_eval/mean_reward": best if math.isfinite(best := float(evaluation.best_mean_reward)) else None,
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
    except (EOFError, ConnectionError) as e:  # SB3's subprocess workers do not send their errors back: they die
        if cfg.vec_env != "subproc":
            raise
        raise ConfigError(
            f"a SubprocVecEnv worker of {cfg.env_id} stopped ({type(e).__name__}); its own error is printed above "
            "(vec_env: dummy gives it as one line)"
        ) from None
    finally:
        for env in (venv, eval_env):
            try:
                if env is not None:
                    env.close()
            except (EOFError, ConnectionError):  # a dead worker: the error that killed it is the one to see
                pass
        if logger is not None:
            logger.close()
