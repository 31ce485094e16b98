"""Environments of an agent run: made once to check the config, then as vector envs with the condition's wrappers.

Contents:
    make_env         -- ``envs.spec.make`` (``gym.make`` after importing ``env_packages``, then ``env_wrappers``) from a
                        module-level function, so ``SubprocVecEnv`` workers register ids and wrap envs themselves.
    probe_env        -- make the training and evaluation envs once: a bad id, kwarg or wrapper value, an observation
                        that is not an image, or a union SB3 would misread fails before anything is written.
    make_observer    -- the frozen model of the condition: a ``Regenerator`` (fsae, autoencoder, copy;
                        ``rl.common_sense.make_regenerator``), an ``Encoder`` (code, features;
                        ``rl.perception.make_encoder``) or None (none), checked against the observation space.
    make_vec_env_for -- the vector env of a split with the condition's wrapper stack (training and eval alike); every
                        condition hands the policy channels-first images (``rl.images``).
    origin_warning, OriginWarning -- a warning when a multi-channel model's task data came from this env with its
                        channels on the other axis (the shapes fit; what the channels mean is not checked).
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from envs import spec
from fsae.checkpoint import CheckpointError
from fsae.config import ConfigError
from fsae.console import first_line
from fsae.data import DatasetError
from fsae.layout import ImageLayout
from rl.common_sense import Regenerator, VecCommonSense, make_regenerator, union_space
from rl.config import AgentConfig
from rl.extractor import extractor_class
from rl.images import VecChannelsFirst, check_readable, image_layout
from rl.perception import PERCEPTIONS, Encoder, VecPerception, make_encoder


def make_env(
    env_id: str, env_packages: list[str] | tuple = (), env_wrappers: list[Any] | tuple = (), **kwargs: Any
) -> gym.Env:
    """Module-level env factory (``envs.spec.make``), so ``SubprocVecEnv`` workers import ``envs`` and the
    ``env_packages`` (registering their ids) and apply the ``env_wrappers`` themselves."""
    return spec.make(env_id, env_packages, env_wrappers, **kwargs)


def _env_fn_kwargs(cfg: AgentConfig, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    return {"env_id": cfg.env_id, "env_packages": cfg.env_packages, "env_wrappers": cfg.env_wrappers, **env_kwargs}


def probe_env(cfg: AgentConfig) -> gym.Space:
    """Make the training and the evaluation environment once (checking the id, both kwargs and the wrappers' values)
    and return the training environment's observation space; ``ConfigError`` naming the settings an environment
    refused, ``eval_env_kwargs`` that change the observation or action space (the agent is evaluated on the spaces
    it was trained on), an observation space that is not an image (with the wrappers that would make one), or a
    condition's observation that SB3 would read in the wrong layout."""
    spaces, actions = [], []
    wrapped = f" and env_wrappers {[next(iter(w)) if isinstance(w, dict) else w for w in cfg.env_wrappers]}"
    for i, kwargs in enumerate((cfg.env_kwargs, {**cfg.env_kwargs, **cfg.eval_env_kwargs})):
        probe = None
        try:
            probe = make_env(**_env_fn_kwargs(cfg, kwargs))
            if i == 0:  # a wrapper may fail only on its first frame; an env may misstate its space
                spec.first_reset(probe, cfg.seed, cfg.env_id, cfg.env_wrappers)
        except (ConfigError, DatasetError, CheckpointError):
            raise  # the project's own one-line errors (a missing MNIST, a bad wrapper entry) as they are
        except Exception as e:  # the env's or a wrapper's own refusal when made: one line naming both
            reason = first_line(e)
            if not (reason and isinstance(e, (gym.error.Error, TypeError, ValueError, AssertionError))):
                reason = f"{type(e).__name__}: {reason}"  # a refused value reads as it is; anything else with its kind
            raise ConfigError(
                f"cannot make environment '{cfg.env_id}' with {kwargs}{wrapped if cfg.env_wrappers else ''}: {reason}"
                + spec.unknown_id_hint(e)
            ) from None
        finally:
            if probe is not None:
                probe.close()
        spaces.append(probe.observation_space)
        actions.append(probe.action_space)
    for what, (train, evaluation) in (("observation", spaces), ("action", actions)):
        if train != evaluation:
            raise ConfigError(
                f"eval_env_kwargs {cfg.eval_env_kwargs} change the {what} space of '{cfg.env_id}': {train} in "
                f"training, {evaluation} in evaluation; evaluate on the spaces the agent trains on"
            )
    layout = image_layout(spaces[0], cfg.image_layout, cfg.env_id)
    if cfg.condition in ("fsae", "copy", "autoencoder"):
        policy_space = union_space(spaces[0], cfg.union, cfg.image_layout)
    else:
        check_readable(layout.chw, f"the observation {layout.describe()} of {cfg.env_id}")
        policy_space = gym.spaces.Box(0, 255, layout.chw, np.uint8)
    extractor_class(policy_space, cfg.policy.extractor)  # an image too small for the extractor
    return spaces[0]


def make_observer(
    cfg: AgentConfig, checkpoint: str | None, device: Any, observation_space: gym.Space | None = None
) -> Regenerator | Encoder | None:
    """The condition's frozen model, loaded on ``device`` and checked against ``observation_space`` when given
    (``CheckpointError`` naming both shapes; a warning where its task data came through other wrappers,
    ``origin_warning``)."""
    if cfg.condition in PERCEPTIONS:
        assert checkpoint is not None, f"condition '{cfg.condition}' needs a checkpoint"
        observer = make_encoder(
            cfg.condition, checkpoint, device, observation_space, cfg.code_round, cfg.env_id, cfg.image_layout
        )
    else:
        observer = make_regenerator(
            cfg.condition,
            checkpoint,
            device,
            observation_space,
            cfg.feedback_steps,
            cfg.regen_dtype,
            cfg.env_id,
            cfg.cuda_graph,
            image_layout=cfg.image_layout,
        )
    if observer is not None and observer.model is not None and observation_space is not None:
        line = origin_warning(cfg, checkpoint, observer.model, image_layout(observation_space, cfg.image_layout))
        if line:
            warnings.warn(line, OriginWarning, stacklevel=2)
    return observer


class OriginWarning(UserWarning):
    """A frozen model pretrained on this environment's images read in another layout (``origin_warning``)."""


def origin_warning(cfg: AgentConfig, checkpoint: str | None, model: Any, layout: ImageLayout) -> str | None:
    """A line when ``model``'s task data (its checkpoint's ``meta['data']``, as pretraining records it from
    ``scripts/collect.py``'s file) came from this run's env id with its channels on the other axis than this run's
    observations (``layout``), for a model of more than one channel: the shapes fit (``frames_of``), but the channels
    may not mean the same, e.g. a model of RGB frames on a stack of three grey ones. None otherwise (a 1-channel model
    on a frame stack is how the pipelines use one; data from MNIST, another env or a file written by hand is not
    compared)."""
    data = (getattr(model, "checkpoint_meta", {}) or {}).get("data") or {}
    note = str(data.get("layout", ""))
    if data.get("env_id") != cfg.env_id or not note or model.config.input_shape[0] == 1:
        return None
    data_last = "(H, W, C)" in note
    if data_last == layout.channels_last:
        return None
    side = {True: "channels-last", False: "channels-first"}
    return (
        f"{checkpoint} was pretrained on {cfg.env_id} images read {side[data_last]} ({note}), this run's are "
        f"{side[layout.channels_last]} ({layout.describe()}): the shapes fit, but check that the channels mean the "
        "same (a model of RGB frames runs on a stack of grey ones without an error)"
    )


def make_vec_env_for(
    cfg: AgentConfig, regen: Regenerator | Encoder | None, n_envs: int, seed: int, env_kwargs: dict[str, Any]
) -> VecEnv:
    """``n_envs`` Monitor-wrapped envs in a Dummy/SubprocVecEnv, then ``VecCommonSense`` (or ``VecPerception`` for
    an ``Encoder``) unless the condition is 'none', where observations that are not channels-first (C, H, W) already
    pass through ``VecChannelsFirst``. Training and evaluation envs are built by this one function, so their wrapper
    stacks are the same."""
    vec_cls = SubprocVecEnv if cfg.vec_env == "subproc" and n_envs > 1 else DummyVecEnv
    venv = make_vec_env(make_env, n_envs, seed=seed, vec_env_cls=vec_cls, env_kwargs=_env_fn_kwargs(cfg, env_kwargs))
    if isinstance(regen, Encoder):
        regen.check_space(venv.observation_space, cfg.env_id, cfg.image_layout)
        return VecPerception(venv, regen, cfg.image_layout)
    if regen is not None:
        regen.check_space(venv.observation_space, cfg.env_id, cfg.image_layout)
        return VecCommonSense(venv, regen, cfg.union, cfg.image_layout)
    layout = image_layout(venv.observation_space, cfg.image_layout, cfg.env_id)
    if len(layout.shape) != 3 or layout.channels_last:
        venv = VecChannelsFirst(venv, layout)
    return venv
