"""Task data for pretraining: observations of an environment under a random policy, labelled from its ``info``.

Contents:
    labels_from_info  -- the ground-truth label(s) of an observation: ``info["labels"]`` if present, else
                         ``info["label"]``.
    parse_env_kwargs  -- ``["noise=0.1", "occlusion_size=8"]`` -> ``{"noise": 0.1, "occlusion_size": 8}``.
    collect           -- roll out a seeded random policy for N steps; returns ``(obs, labels)`` in the task-data format
                         of ``fsae.data.save_task_data`` / ``load_task_data``.

Labels: (N,) int64 classes for ``fsae/DigitBandit-v0``; (N, 2) int64 (left digit, right digit) for
``fsae/DigitSum-v0`` and ``fsae/DigitLock-v0`` (target, dial), for a pretraining head of type "groups" with
``groups: [10, 10]``. They are the clean classes, whatever the corruption of the images.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

import envs  # noqa: F401  (registers the fsae/ ids)

__all__ = ["collect", "labels_from_info", "parse_env_kwargs"]


def labels_from_info(info: Mapping[str, Any]) -> np.ndarray:
    """The clean label(s) of the observation returned with ``info``, as an int64 array: () or (K,)."""
    for key in ("labels", "label"):
        if key in info:
            return np.asarray(info[key], dtype=np.int64)
    raise KeyError(f"info has neither 'labels' nor 'label' (keys: {sorted(info)}); the env gives no ground truth")


def parse_env_kwargs(pairs: Sequence[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings into keyword arguments; values are Python literals, else kept as strings.

    Args:
        pairs: e.g. ``["noise=0.1", "occlusion_size=8", "render_mode=None"]``.

    Returns:
        e.g. ``{"noise": 0.1, "occlusion_size": 8, "render_mode": None}``. Nothing is evaluated beyond literals.

    Raises:
        ValueError: an item has no ``=`` or an empty key, or a key repeats.
    """
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"env kwarg {pair!r} must look like key=value, e.g. noise=0.1")
        if key in kwargs:
            raise ValueError(f"env kwarg {key!r} is given twice")
        try:
            kwargs[key] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            kwargs[key] = text.strip()  # a bare word such as a render mode
    return kwargs


def collect(
    env_id: str,
    steps: int,
    split: str = "train",
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Roll out a uniformly random policy and keep every observation it sees with its ground-truth label(s).

    The observations are those the policy acts on, ``steps`` in all: each reset's and each step's next observation,
    except that the final observation of an episode is replaced by the next reset's (reset without a new seed, so the
    whole run follows from ``seed``). The same arguments give the same arrays.

    Args:
        env_id: a registered id, e.g. "fsae/DigitSum-v0".
        steps: number of observations to collect (>= 1).
        split: "train" or "test": the MNIST split the environment draws its images from.
        seed: seeds the environment's first reset and the action space.
        env_kwargs: further constructor arguments (``noise``, ``occlusion``, ...); not ``split``.
        progress: show a tqdm progress bar.

    Returns:
        ``(obs, labels)``: obs (steps, C, H, W) uint8; labels (steps,) or (steps, K) int64, see the module docstring.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    kwargs = dict(env_kwargs or {})
    if "split" in kwargs:
        raise ValueError("give the split as collect(split=...) (--split on the command line), not in env_kwargs")
    env = gym.make(env_id, split=split, **kwargs)
    try:
        shape = env.observation_space.shape
        assert shape is not None and env.observation_space.dtype == np.uint8 and len(shape) == 3, (
            f"{env_id} must have (C, H, W) uint8 image observations to give task data, got {env.observation_space}"
        )
        env.action_space.seed(seed)
        ob, info = env.reset(seed=seed)
        obs = np.empty((steps, *shape), np.uint8)
        labels = np.empty((steps, *labels_from_info(info).shape), np.int64)
        for t in tqdm(range(steps), desc=f"collect {env_id}", disable=not progress, unit="step"):
            if t > 0:
                ob, _, terminated, truncated, info = env.step(env.action_space.sample())
                if terminated or truncated:
                    ob, info = env.reset()
            obs[t], labels[t] = ob, labels_from_info(info)
    finally:
        env.close()
    return obs, labels
