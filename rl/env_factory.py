"""Environments of an agent run: made once to check the config, then as vector envs with the condition's wrappers.

Contents:
    make_env         -- ``gym.make`` from a module-level function, so ``SubprocVecEnv`` workers register ids themselves.
    probe_env        -- make the training and evaluation envs once: a bad id or kwarg fails before anything is written.
    make_observer    -- the frozen model of the condition: a ``Regenerator`` (fsae, autoencoder, copy), an ``Encoder``
                        (code, features) or None (none), checked against the observation space.
    make_vec_env_for -- the vector env of a split with the condition's wrapper stack (training and eval alike).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from fsae.config import ConfigError
from rl.common_sense import Regenerator, VecCommonSense, make_regenerator
from rl.config import AgentConfig
from rl.perception import PERCEPTIONS, Encoder, VecPerception, make_encoder


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


def make_observer(
    cfg: AgentConfig, checkpoint: str | None, device: Any, observation_space: gym.Space | None = None
) -> Regenerator | Encoder | None:
    """The condition's frozen model, loaded on ``device`` and checked against ``observation_space`` when given
    (``CheckpointError`` naming both shapes)."""
    if cfg.condition in PERCEPTIONS:
        assert checkpoint is not None, f"condition '{cfg.condition}' needs a checkpoint"
        return make_encoder(cfg.condition, checkpoint, device, observation_space, cfg.code_round, cfg.env_id)
    return make_regenerator(
        cfg.condition,
        checkpoint,
        device,
        observation_space,
        cfg.feedback_steps,
        cfg.regen_dtype,
        cfg.env_id,
        cfg.cuda_graph,
    )


def make_vec_env_for(
    cfg: AgentConfig, regen: Regenerator | Encoder | None, n_envs: int, seed: int, env_kwargs: dict[str, Any]
) -> VecEnv:
    """``n_envs`` Monitor-wrapped envs in a Dummy/SubprocVecEnv, then ``VecCommonSense`` (or ``VecPerception`` for
    an ``Encoder``) unless the condition is 'none'. Training and evaluation envs are built by this one function, so
    their wrapper stacks are the same."""
    vec_cls = SubprocVecEnv if cfg.vec_env == "subproc" and n_envs > 1 else DummyVecEnv
    venv = make_vec_env(
        make_env, n_envs, seed=seed, vec_env_cls=vec_cls, env_kwargs={"env_id": cfg.env_id, **env_kwargs}
    )
    if isinstance(regen, Encoder):
        regen.check_space(venv.observation_space, cfg.env_id)
        venv = VecPerception(venv, regen)
    elif regen is not None:
        regen.check_space(venv.observation_space, cfg.env_id)
        venv = VecCommonSense(venv, regen, cfg.union)
    return venv
