"""Task data for pretraining: observations of an environment under a random policy, with their labels.

Contents:
    CollectConfig     -- what to collect: env id, kwargs, packages, wrappers, label source, steps, seed, image layout
                         (``configs/collect/*.yaml``; unknown keys refused, packages and wrappers checked on load).
    TaskData          -- the result: obs (N, C, H, W) uint8, labels, what was done to the images, the labels' names.
    parse_env_kwargs  -- ``["noise=0.1", "occlusion_size=8"]`` -> ``{"noise": 0.1, "occlusion_size": 8}``.
    collect           -- roll out a seeded random policy for N steps; returns ``TaskData`` in the format of
                         ``fsae.task_data.save_task_data`` / ``load_task_data``.
    label_ceiling     -- how many distinct images the data holds and, for class labels, the highest accuracy any
                         function of the image can reach on them (identical images with different labels), and that of
                         always answering the most frequent label.
    save_collected    -- the data written with where it came from (``fsae.task_data.task_data_origin`` reads it).
    index_grid_warning -- a line when no value in the images exceeds 15: an index grid rather than pixels?

Images are stored channels first, uint8, whatever the environment gives: channels-last (H, W, C) frames (MiniGrid's
``RGBImgPartialObsWrapper``) are transposed, 2-D grey frames (``AtariPreprocessing``) get a channel axis, frame stacks
put their frames one after the other along C (``fsae.layout``), so pretraining reads them as (C, H, W).
``TaskData.layout`` says which was done. Labels come from ``envs.labels``:
``info`` (the digit envs: (N,) int64 for ``fsae/DigitBandit-v0``; (N, 2) int64 for ``fsae/DigitSum-v0`` and
``fsae/DigitLock-v0``, the clean classes whatever the corruption), Atari RAM (float32) or a label function.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import gymnasium as gym
import numpy as np
from tqdm import tqdm

import envs  # noqa: F401  (registers the fsae/ ids)
from envs import spec
from envs.labels import LabelConfig, make_labeler
from fsae.config import ConfigError, check, to_dict
from fsae.layout import LAYOUTS
from fsae.task_data import save_task_data

__all__ = [
    "CollectConfig",
    "TaskData",
    "collect",
    "index_grid_warning",
    "label_ceiling",
    "parse_env_kwargs",
    "save_collected",
]


@dataclass
class CollectConfig:
    """One collection run (``scripts/collect.py --config``); every field can also be given as a flag."""

    env_id: str = "fsae/DigitBandit-v0"
    """A registered Gymnasium id (those of ``env_packages`` once imported)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Constructor arguments, e.g. {split: test, noise: 0.1} for the digit envs, {frameskip: 4} for Atari."""
    env_packages: list[str] = field(default_factory=list)
    """Modules to import so that the id registers, e.g. [ale_py] or [minigrid]."""
    env_wrappers: list[spec.WrapperEntry] = field(default_factory=list)
    """Wrappers applied in order, in rl-zoo3's convention: a dotted path, or {path: kwargs} (``envs.spec``)."""
    labels: LabelConfig = field(default_factory=LabelConfig)
    """The label source: info keys, RAM bytes or a label function (``envs.labels``)."""
    image_layout: Literal["auto", "channels_first", "channels_last"] = "auto"
    """Where an image's channels are: 'auto' decides as SB3 does (``fsae.layout``), else as stated."""
    steps: int = 10_000
    """Observations to collect."""
    seed: int = 0
    """Seeds the environment's first reset and the random policy."""

    def __post_init__(self):
        self.labels = LabelConfig(**self.labels) if isinstance(self.labels, dict) else self.labels
        check(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        check(self.image_layout in LAYOUTS, f"image_layout must be one of {LAYOUTS}, got '{self.image_layout}'")
        spec.import_packages(self.env_packages)  # a missing package or a bad wrapper: one line, before any step
        spec.resolve_wrappers(self.env_wrappers)
        make_labeler(self.labels)  # an unknown label function, likewise

    def make_env(self, env_id: str, **kwargs: Any) -> gym.Env:
        """The env as ``collect`` makes it: ``env_packages`` imported, ``env_wrappers`` applied (``envs.spec.make``)."""
        return spec.make(env_id, self.env_packages, self.env_wrappers, **kwargs)


class TaskData(NamedTuple):
    """What ``collect`` returns."""

    obs: np.ndarray
    """(N, C, H, W) uint8."""
    labels: np.ndarray
    """(N,) or (N, K) int64 classes, or (N, K) float32 targets."""
    layout: str
    """What was done to each observation to make it (C, H, W), e.g. 'channels-last (28, 28, 3) -> (3, 28, 28)'."""
    label_names: list[str] | None
    """One name per label column where the source gives them."""


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
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    labels: LabelConfig | None = None,
    layout: str = "auto",
    make_env: Callable[..., gym.Env] = spec.make,
    progress: bool = True,
    env_wrappers: Sequence[spec.WrapperEntry] = (),
) -> TaskData:
    """Roll out a uniformly random policy and keep every observation it sees with its label(s).

    The observations are those the policy acts on, ``steps`` in all: each reset's and each step's next observation,
    except that the final observation of an episode is replaced by the next reset's (reset without a new seed, so the
    whole run follows from ``seed``). The same arguments give the same arrays.

    Args:
        env_id: a registered id, e.g. "fsae/DigitSum-v0".
        steps: number of observations to collect (>= 1).
        seed: seeds the environment's first reset and the action space.
        env_kwargs: constructor arguments (``split``, ``noise``, ...), passed as they are.
        labels: the label source (default: ``info``'s "labels" / "label").
        layout: 'auto' (SB3's rule), 'channels_first' or 'channels_last' (``envs.spec.image_layout``).
        make_env: ``make_env(env_id, **env_kwargs)`` builds the env (``CollectConfig.make_env``: with its packages
            imported and its wrappers added).
        progress: show a tqdm progress bar.
        env_wrappers: the wrappers ``make_env`` adds, only to name the one whose first reset fails.

    Returns:
        ``TaskData``: obs (steps, C, H, W) uint8; labels (steps,) or (steps, K); the layout line; the labels' names.

    Raises:
        ConfigError: the observations are not images, or the labels change shape or dtype between steps.
    """
    check(steps >= 1, f"steps must be >= 1, got {steps}")
    cfg = labels or LabelConfig()
    labeler = make_labeler(cfg)
    env = make_env(env_id, **dict(env_kwargs or {}))
    try:
        found = spec.image_layout(env.observation_space, layout, env_id)  # the agents' check (rl.images)
        if not isinstance(env, spec.ObservationGuard):  # a make_env of the caller's: every step checked, as spec.make's
            env = spec.ObservationGuard(env, env_id)

        def to_chw(ob: np.ndarray) -> np.ndarray:
            return found.to_chw(np.asarray(ob)[None])[0]

        env.action_space.seed(seed)
        ob, info = spec.first_reset(env, seed, env_id, env_wrappers)  # checked; a failure names its layer
        first = labeler(env, info)
        if first.dtype == np.float32 and first.ndim == 0:
            first = first.reshape(1)  # fsae.data reads (N,) only as classes: a float target is (N, 1)
        obs = np.empty((steps, *to_chw(ob).shape), np.uint8)
        ys = np.empty((steps, *first.shape), first.dtype)
        for t in tqdm(range(steps), desc=f"collect {env_id}", disable=not progress, unit="step"):
            if t > 0:
                ob, _, terminated, truncated, info = env.step(env.action_space.sample())
                if terminated or truncated:
                    ob, info = env.reset()
            y = labeler(env, info) if t > 0 else first
            if y.size != first.size or y.dtype != first.dtype:
                raise ConfigError(
                    f"labels from {cfg.source} are {y.size} {y.dtype} value(s) at step {t} but were {first.size} "
                    f"{first.dtype} at step 0; every observation needs the same number of labels"
                )
            obs[t], ys[t] = to_chw(ob), y.reshape(first.shape)
    finally:
        env.close()
    return TaskData(obs, ys, found.conversion(), cfg.names())


def label_ceiling(obs: np.ndarray, labels: np.ndarray) -> tuple[int, list[float] | None, list[float] | None]:
    """How much a classifier of these images can get right: the number of distinct observations and, for integer
    labels, per label column, the accuracy of the best function of the image on this data (each distinct image answered
    with its most frequent label) and that of answering the most frequent label always. The first is below 1 where
    the image does not show the label (e.g. a MiniGrid door out of view); a test split of data with few distinct images
    measures little beyond it.

    Example:
        >>> obs = np.zeros((4, 1, 1, 1), np.uint8); obs[3] = 1
        >>> label_ceiling(obs, np.array([[0, 1], [0, 0], [0, 0], [1, 1]]))
        (2, [1.0, 0.75], [0.75, 0.5])
    """
    flat = np.ascontiguousarray(obs.reshape(len(obs), -1))
    rows = flat.view(np.dtype((np.void, flat.shape[1]))).reshape(-1)  # each image one byte string: compared whole
    _, image = np.unique(rows, return_inverse=True)  # as unique(axis=0) for uint8, ~100x faster on large frames
    image = image.reshape(-1)
    if not np.issubdtype(labels.dtype, np.integer):
        return int(image.max()) + 1, None, None
    best, majority = [], []
    for column in labels.reshape(len(labels), -1).T:
        _, label = np.unique(column, return_inverse=True)
        counts = np.zeros((image.max() + 1, label.max() + 1), np.int64)
        np.add.at(counts, (image, label.reshape(-1)), 1)
        best.append(float(counts.max(1).sum() / len(column)))
        majority.append(float(counts.sum(0).max() / len(column)))
    return int(image.max()) + 1, best, majority


def save_collected(data: TaskData, cfg: CollectConfig, path: str | Path) -> Path:
    """Write ``data`` to ``path`` (``fsae.task_data.save_task_data``, atomically) with where it came from beside the
    arrays: env id, seed, env kwargs, the whole config (its wrappers), the layout line and the labels' names, which
    pretraining copies into each checkpoint (``task_data_origin``). ``DatasetError`` when it cannot be written."""
    meta = {
        "env_id": cfg.env_id,
        "seed": cfg.seed,
        "env_kwargs": json.dumps(cfg.env_kwargs, default=repr),
        "config": json.dumps(to_dict(cfg), default=repr),
        "layout": data.layout,
    }
    if data.label_names:
        meta["label_names"] = data.label_names
    return save_task_data(path, data.obs, data.labels, **{k: np.array(v) for k, v in meta.items()})


def index_grid_warning(obs: np.ndarray) -> str | None:
    """A warning line when no value in ``obs`` exceeds 15 of 255: an index grid (MiniGrid's 'image' holds object
    indices) rather than pixels, which pretraining would read as near-black images; None otherwise."""
    top = int(obs.max()) if obs.size else 0
    if top >= 16:
        return None
    return (
        f"warning: no value above {top} in any image: an index grid (MiniGrid's 'image' holds object indices) rather "
        "than pixels? (minigrid.wrappers.RGBImgPartialObsWrapper gives pixels)"
    )
