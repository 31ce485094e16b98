"""Label sources for task data: what the ground truth of an observation is, read from the environment at each step.

Contents:
    LabelConfig       -- where the labels come from: ``info`` keys (default), RAM bytes (``ram``), or a function
                         ``module:function`` (``function``); exactly one.
    ATARI_RAM         -- the AtariARI RAM addresses of the objects' positions (Anand et al. 2019, "Unsupervised State
                         Representation Learning in Atari", table of annotated games), for named tables ``ram: pong``.
    MINIGRID_FRONT    -- the classes of the MiniGrid concept "object type in front of the agent".
    minigrid_concepts -- the shipped MiniGrid label function: (front object type, carries the key, door open).
    labels_from_info  -- ``info[key]`` (default: "labels", else "label") as an array.
    make_labeler      -- a ``LabelConfig`` -> ``Labeler``: ``labeler(env, info)`` gives one observation's label(s).

A label function is called as ``fn(env, info)`` right after the reset or step whose observation it labels, with the
environment as made (wrappers included; ``env.unwrapped`` is the base env) and that call's ``info``. It returns a
number or a 1-D array of the same length every step. Integer (and bool) labels are stored as int64 classes, floats as
float32 targets, always (N, K) for floats (``fsae.data`` reads (N,) only as classes). A function may carry ``names``
(one per label) and ``classes`` (the number of classes per label, for a ``groups`` head); both are recorded.

Example:
    >>> cfg = LabelConfig(ram="pong")
    >>> cfg.ram_addresses()
    [51, 50, 49, 54]
    >>> cfg.names()
    ['player_y', 'enemy_y', 'ball_x', 'ball_y']
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from fsae.config import ConfigError, check
from fsae.console import kind_and_reason

__all__ = [
    "ATARI_RAM",
    "MINIGRID_FRONT",
    "LabelConfig",
    "Labeler",
    "labels_from_info",
    "make_labeler",
    "minigrid_concepts",
]

RAM_SIZE = 128  # bytes of the Atari 2600's RAM, what ale.getRAM() returns

# AtariARI (Anand et al. 2019; mila-iqia/atari-representation-learning, atariari/benchmark/ram_annotations.py): the
# RAM address of each object's position. Each of these correlates 1.0 with the object's pixel position (issue 17).
ATARI_RAM: dict[str, dict[str, int]] = {
    "pong": {"player_y": 51, "enemy_y": 50, "ball_x": 49, "ball_y": 54},
    "breakout": {"player_x": 72, "ball_x": 99, "ball_y": 101},
}

LabelFn = Callable[[gym.Env, Mapping[str, Any]], Any]
Labeler = Callable[[gym.Env, Mapping[str, Any]], np.ndarray]


@dataclass
class LabelConfig:
    """Where an observation's labels come from. Give at most one of ``ram`` and ``function``; neither means ``info``."""

    info: list[str] = field(default_factory=list)
    """``info`` keys, read in order and concatenated ([] = ``info["labels"]``, else ``info["label"]``, as the digit
    envs give them)."""
    ram: list[int] | str = field(default_factory=list)
    """Atari RAM addresses (0..127), e.g. [51, 50, 49, 54], or a table of ``ATARI_RAM`` ('pong', 'breakout'); read
    with ``env.unwrapped.ale.getRAM()`` as float32 regression targets (the raw bytes, 0..255)."""
    function: str = ""
    """A label function 'module:function', imported with importlib, e.g. 'envs.labels:minigrid_concepts'."""

    def __post_init__(self):
        given = [name for name, v in (("info", self.info), ("ram", self.ram), ("function", self.function)) if v]
        check(len(given) <= 1, f"give one source, not {' and '.join(given)}")
        self.ram_addresses()  # validates
        check(not self.function or ":" in self.function, f"function '{self.function}' must look like "
              "module:function, e.g. envs.labels:minigrid_concepts")  # fmt: skip

    @property
    def source(self) -> str:
        """'ram', 'function' or 'info'."""
        return "ram" if self.ram else "function" if self.function else "info"

    def ram_addresses(self) -> list[int]:
        """The RAM addresses read ([] unless ``ram`` is set); a bad table name or address raises ``ConfigError``."""
        if isinstance(self.ram, str):
            check(self.ram in ATARI_RAM, f"no RAM table '{self.ram}'; tables: {sorted(ATARI_RAM)}, or "
                  "give the addresses, e.g. ram: [51, 50, 49, 54]")  # fmt: skip
            return list(ATARI_RAM[self.ram].values())
        for a in self.ram:
            check(0 <= a < RAM_SIZE, f"ram address {a} is out of range 0..{RAM_SIZE - 1} (the Atari 2600 "
                  f"has {RAM_SIZE} bytes of RAM)")  # fmt: skip
        return list(self.ram)

    def names(self) -> list[str] | None:
        """One name per label where known: info keys, RAM variables (``ram[51]`` for a bare address), or the label
        function's ``names`` attribute."""
        if self.source == "ram":
            table = ATARI_RAM.get(self.ram) if isinstance(self.ram, str) else None
            return list(table) if table else [f"ram[{a}]" for a in self.ram_addresses()]
        if self.source == "function":
            names = getattr(resolve_function(self.function), "names", None)
            return list(names) if names is not None else None
        return list(self.info) or None


def labels_from_info(info: Mapping[str, Any], keys: list[str] | None = None) -> np.ndarray:
    """The label(s) in ``info``: the values of ``keys`` concatenated, or ``info["labels"]``, else ``info["label"]``."""
    if keys:
        missing = [k for k in keys if k not in info]
        if missing:
            raise KeyError(f"info has no key(s) {missing} (keys: {sorted(info)}); set labels.info to keys it has")
        return np.concatenate([np.asarray(info[k]).reshape(-1) for k in keys])
    for key in ("labels", "label"):
        if key in info:
            return np.asarray(info[key])
    raise KeyError(
        f"info has neither 'labels' nor 'label' (keys: {sorted(info)}); the env gives no ground truth: set labels.info "
        "to the keys that hold it, or use labels.ram / labels.function"
    )


def resolve_function(spec: str) -> LabelFn:
    """'module:function' -> the function, imported with importlib (never ``eval``); ``ConfigError`` naming what is
    missing."""
    module_name, _, name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"labels.function '{spec}': cannot import module '{module_name}' ({e})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        own = [n for n, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == module.__name__]
        own = sorted(n for n in own if not n.startswith("_"))
        near = difflib.get_close_matches(name, own, n=1)
        hint = f"did you mean '{near[0]}'? " if near else ""
        raise ConfigError(f"labels.function '{spec}': module '{module_name}' has no function '{name}'; {hint}its "
                          f"functions: {own}")  # fmt: skip
    return fn


def _ram_reader(addresses: list[int]) -> Labeler:
    idx = np.asarray(addresses)

    def read(env: gym.Env, info: Mapping[str, Any]) -> np.ndarray:
        ale = getattr(env.unwrapped, "ale", None)
        if ale is None:
            name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
            raise ConfigError(f"labels.ram reads Atari RAM, but {name} has no ALE (env.unwrapped.ale); use labels.info "
                              "or labels.function")  # fmt: skip
        return ale.getRAM()[idx].astype(np.float32)

    return read


def make_labeler(cfg: LabelConfig) -> Labeler:
    """The function ``(env, info) -> label array`` that ``cfg`` describes: int64 classes or float32 targets."""
    if cfg.source == "ram":
        return _ram_reader(cfg.ram_addresses())
    if cfg.source == "function":
        fn = resolve_function(cfg.function)

        def call(env: gym.Env, info: Mapping[str, Any]) -> np.ndarray:
            try:
                value = fn(env, info)
            except ConfigError:
                raise
            except Exception as e:  # the user's function: one line naming it and what it raised
                raise ConfigError(f"labels.function '{cfg.function}' raised {kind_and_reason(e)}") from None
            return _as_label(value, cfg.function)

        return call
    keys = list(cfg.info)
    return lambda env, info: _as_label(labels_from_info(info, keys), "info")


def _as_label(value: Any, where: str) -> np.ndarray:
    """A number or 1-D array as int64 (integers, bools) or float32 (floats); anything else is a ``ConfigError``."""
    arr = np.asarray(value)
    if arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.int64)
    elif np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    else:
        raise ConfigError(f"labels from {where} must be numbers, got {arr.dtype} {value!r}")
    check(arr.ndim <= 1, f"labels from {where} must be a number or a 1-D array, got shape {arr.shape}")
    return arr


# --------------------------------------------------------------------------------------------------------------------
# MiniGrid

MINIGRID_FRONT = ("empty", "wall", "door", "key", "goal", "other")


def minigrid_concepts(env: gym.Env, info: Mapping[str, Any]) -> np.ndarray:
    """Three MiniGrid concepts of the current state, read from the base env (``env.unwrapped``), as int64:

    - ``front``: what is in the cell the agent faces (``front_pos``), an index into ``MINIGRID_FRONT`` (empty, wall,
      door, key, goal, other);
    - ``carrying_key``: 1 if the agent carries a key (``carrying``);
    - ``door_open``: 1 if a door of the grid is open.

    For a ``groups`` head with ``groups: [6, 2, 2]`` (``minigrid_concepts.classes``).
    """
    u = env.unwrapped
    grid = getattr(u, "grid", None)
    if grid is None or not hasattr(u, "front_pos"):
        raise ConfigError(f"labels.function minigrid_concepts needs a MiniGrid env, got {type(u).__name__}")
    x, y = u.front_pos
    inside = 0 <= x < grid.width and 0 <= y < grid.height
    cell = grid.get(int(x), int(y)) if inside else None
    kind = "empty" if cell is None and inside else (cell.type if cell is not None else "other")
    front = MINIGRID_FRONT.index(kind) if kind in MINIGRID_FRONT else len(MINIGRID_FRONT) - 1
    carrying = u.carrying is not None and u.carrying.type == "key"
    door_open = any(o is not None and o.type == "door" and o.is_open for o in grid.grid)
    return np.array([front, carrying, door_open], np.int64)


minigrid_concepts.names = ("front", "carrying_key", "door_open")  # type: ignore[attr-defined]
minigrid_concepts.classes = (len(MINIGRID_FRONT), 2, 2)  # type: ignore[attr-defined]
