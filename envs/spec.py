"""Any registered Gymnasium environment from a config: the packages that register its id, and its wrappers.

Contents:
    EXTRAS          -- importable package -> the project's pip extra that installs it (``pip install -e ".[atari]"``).
    WrapperEntry    -- one ``env_wrappers`` entry as YAML gives it: a dotted path, or ``{path: {kwarg: value}}``.
    import_packages -- import the ``env_packages`` (``ale_py``, ``minigrid``) so their ids register.
    resolve_wrappers -- each entry as (path, callable, kwargs), checked: the path imports, names a ``gymnasium.Wrapper``
                       subclass or a function ``env -> env``, and the kwargs fit its signature ("did you mean").
    make            -- ``gym.make`` with the packages imported and the wrappers applied in order (a module-level
                       function, so ``SubprocVecEnv`` workers do the same).
    check_observation -- an observation that is not what the env's ``observation_space`` declares (its shape or
                       dtype) is refused in one line: the space is what every layout decision reads.
    ObservationGuard -- the last layer ``make`` adds over a ``Box`` space: an observation that leaves the declared
                       shape or dtype mid-run is a ``ConfigError`` of one line naming the step (numpy would fail later,
                       in a vector env's buffer, with a traceback that names neither the env nor the space).
    first_reset     -- the first ``reset``, its observation checked; a failure is one line naming the layer (the env
                       or which wrapper) that raised.
    unknown_id_hint -- for gymnasium's unknown-namespace error: name the module that registers it in env_packages.
    image_layout    -- the ``fsae.layout.ImageLayout`` of an observation space that is a uint8 image (2-D, 3-D or a
                       stack), or one line saying what it is not and which wrappers make it one (``image_hint``);
                       task data collection and the agents check with this one function.
    image_hint      -- which wrappers turn an observation space that is not an image into one.

The wrapper list follows rl-baselines3-zoo's YAML convention (``env_wrapper`` in its ``hyperparams/*.yml``, resolved with
``importlib`` in ``rl_zoo3.utils.get_wrapper_class``); nothing is evaluated as code. Every error is a ``ConfigError``
of one line naming the entry, raised when the config is loaded, before any environment is made (a value the wrapper
itself refuses: when ``make`` builds it). YAML lists reach a wrapper as tuples (``shape: [64, 64]`` below):

    env_packages: [ale_py]
    env_wrappers:
      - gymnasium.wrappers.AtariPreprocessing: {frame_skip: 4, screen_size: 84}
      - gymnasium.wrappers.FrameStackObservation: {stack_size: 4}

    env_wrappers:                              # any env with RGB frames, to 64 x 64 grey
      - gymnasium.wrappers.ResizeObservation: {shape: [64, 64]}
      - gymnasium.wrappers.GrayscaleObservation

Example:
    >>> [(path, kwargs) for path, _, kwargs in resolve_wrappers(
    ...     ["gymnasium.wrappers.FlattenObservation", {"gymnasium.wrappers.TimeLimit": {"max_episode_steps": 5}}])]
    [('gymnasium.wrappers.FlattenObservation', {}), ('gymnasium.wrappers.TimeLimit', {'max_episode_steps': 5})]
    >>> resolve_wrappers([{"gymnasium.wrappers.TimeLimit": {"max_episode_step": 5}}])
    Traceback (most recent call last):
    fsae.config.ConfigError: env_wrappers[0] gymnasium.wrappers.TimeLimit: unknown keyword 'max_episode_step' (did you mean 'max_episode_steps'?); valid: ['max_episode_steps']
"""  # noqa: E501

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any, Union

import gymnasium as gym
import numpy as np

from fsae.config import ConfigError
from fsae.console import kind_and_reason
from fsae.layout import ImageLayout, detect_layout

EXTRAS = {"ale_py": "atari", "cv2": "atari", "minigrid": "minigrid", "ray": "ray"}
"""Top-level module -> the extra of pyproject.toml that installs it."""

WrapperEntry = Union[str, dict[str, Union[dict[str, Any], None]]]  # noqa: UP007  (evaluated at runtime by from_dict)
"""``"pkg.mod.Wrapper"`` or ``{"pkg.mod.Wrapper": {kwarg: value}}`` (kwargs may be null)."""

_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


def install_hint(module: str) -> str:
    """How to install the package of ``module``: the project's extra when there is one."""
    top = module.split(".")[0]
    return f'pip install -e ".[{EXTRAS[top]}]"' if top in EXTRAS else f"pip install the package that provides '{top}'"


def import_packages(names: Sequence[str]) -> None:
    """Import each module of ``env_packages`` (importing ``ale_py`` registers the ``ALE/`` ids, ``minigrid`` the
    ``MiniGrid-`` ids); one missing is a ``ConfigError`` naming it and its pip extra."""
    for name in names:
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$", name):
            raise ConfigError(f"env_packages: {name!r} is not a module name (e.g. ale_py, minigrid)")
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
                raise ConfigError(f"env package '{name}' is not installed; {install_hint(name)}") from None
            raise ConfigError(f"env package '{name}' failed to import: {e}") from None


def _entry(i: int, entry: Any) -> tuple[str, dict[str, Any]]:
    """One YAML entry -> (path, kwargs), its form checked."""
    if isinstance(entry, str):
        path, kwargs = entry, {}
    elif isinstance(entry, dict) and len(entry) == 1:
        path, kwargs = next(iter(entry.items()))
        kwargs = {} if kwargs is None else kwargs
    else:
        raise ConfigError(
            f"env_wrappers[{i}]: {entry!r} must be a dotted path or a mapping of one path to its kwargs "
            "(e.g. '- gymnasium.wrappers.TimeLimit: {max_episode_steps: 100}')"
        )
    if not isinstance(path, str) or not _DOTTED.match(path):
        raise ConfigError(
            f"env_wrappers[{i}]: {path!r} is not a dotted import path (e.g. minigrid.wrappers.ImgObsWrapper)"
        )
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ConfigError(f"env_wrappers[{i}] {path}: the kwargs must be a mapping of names to values, got {kwargs!r}")
    return path, {k: _tuples(v) for k, v in kwargs.items()}


def _tuples(value: Any) -> Any:
    """YAML's lists as tuples, which YAML cannot write: gymnasium's wrappers take shapes as tuples
    (``ResizeObservation(shape=(64, 64))`` refuses a list), and every sequence parameter takes one."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _resolve(where: str, path: str) -> Any:
    """The object a dotted path names: the longest importable module prefix, then attributes."""
    parts = path.split(".")
    for n in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:n])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
                continue  # this prefix is not a module: try a shorter one
            raise ConfigError(f"{where}: importing '{module_name}' failed: {e}") from None
        for attr in parts[n:]:
            if not hasattr(obj, attr):
                names = [a for a in dir(obj) if not a.startswith("_")]
                near = difflib.get_close_matches(attr, names, n=1)
                hint = f" (did you mean '{near[0]}'?)" if near else ""
                raise ConfigError(f"{where}: '{obj.__name__}' has no '{attr}'{hint}; unknown path")
            obj = getattr(obj, attr)
        return obj
    top = parts[0]
    if top in EXTRAS:
        raise ConfigError(f"{where}: package '{top}' is not installed; {install_hint(top)}")
    raise ConfigError(f"{where}: no module named '{top}' (unknown path, or a package that is not installed)")


def _check_callable(where: str, obj: Any, kwargs: dict[str, Any]) -> None:
    """``obj`` is a wrapper class or a function of an env, and ``obj(env, **kwargs)`` binds."""
    if inspect.isclass(obj):
        if not issubclass(obj, gym.Wrapper):
            raise ConfigError(f"{where}: {obj.__name__} is a class but not a gymnasium.Wrapper")
    elif not callable(obj):
        raise ConfigError(f"{where}: is a {type(obj).__name__}, not a wrapper class or a function env -> env")
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return  # a builtin without a signature: it is called as it is
    params = list(sig.parameters.values())
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        raise ConfigError(f"{where}: takes no environment as its first argument; not a wrapper")
    rest = [p for p in params[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    valid = [p.name for p in rest]
    if not any(p.kind == p.VAR_KEYWORD for p in params):
        for key in kwargs:
            if key not in valid:
                near = difflib.get_close_matches(key, valid, n=1)
                hint = f" (did you mean '{near[0]}'?)" if near else ""
                raise ConfigError(f"{where}: unknown keyword '{key}'{hint}; valid: {valid}")
    missing = [p.name for p in rest if p.default is p.empty and p.name not in kwargs]
    if missing:
        raise ConfigError(f"{where}: missing keyword '{missing[0]}' (it has no default); valid: {valid}")


def resolve_wrappers(entries: Sequence[WrapperEntry]) -> list[tuple[str, Callable[..., gym.Env], dict[str, Any]]]:
    """Each ``env_wrappers`` entry as (path, wrapper class or function, kwargs), checked (``ConfigError``, one line
    naming the entry: not a path, unknown path, package not installed, not a wrapper, unknown or missing keyword).
    Values are checked only when the wrapper is built (``make``)."""
    out = []
    for i, entry in enumerate(entries):
        path, kwargs = _entry(i, entry)
        where = f"env_wrappers[{i}] {path}"
        obj = _resolve(where, path)
        _check_callable(where, obj, kwargs)
        out.append((path, obj, kwargs))
    return out


def make(
    env_id: str, env_packages: Sequence[str] = (), env_wrappers: Sequence[WrapperEntry] = (), **kwargs: Any
) -> gym.Env:
    """``gym.make(env_id, **kwargs)`` after importing ``env_packages``, then each of ``env_wrappers`` applied in order
    (the first entry wraps the environment itself). The ``fsae/`` ids are registered by ``import envs``. A wrapper
    that raises, or returns something other than an environment, is a ``ConfigError`` of one line naming its entry.
    Over a ``Box`` observation space the last layer is an ``ObservationGuard`` (each observation's shape and dtype
    checked against the space)."""
    import_packages(env_packages)
    env = gym.make(env_id, **kwargs)
    for i, (path, wrapper, wrapper_kwargs) in enumerate(resolve_wrappers(env_wrappers)):
        try:
            wrapped = wrapper(env, **wrapper_kwargs)
        except ConfigError:
            env.close()
            raise
        except Exception as e:  # a value the wrapper refuses, or an env it cannot wrap: one line naming the entry
            env.close()
            raise ConfigError(f"env_wrappers[{i}] {path} on {env_id}: {kind_and_reason(e)}") from None
        if not isinstance(wrapped, gym.Env):
            env.close()
            raise ConfigError(f"env_wrappers[{i}] {path} returned a {type(wrapped).__name__}, not an environment")
        env = wrapped
    return ObservationGuard(env, env_id) if isinstance(env.observation_space, gym.spaces.Box) else env


class ObservationGuard(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Pass every observation on unchanged after checking that its shape and dtype are those its ``Box`` space
    declares (two attribute reads per step); ``ConfigError`` of one line naming the step otherwise
    (``check_observation``)."""

    def __init__(self, env: gym.Env, env_id: str):
        gym.utils.RecordConstructorArgs.__init__(self, env_id=env_id)  # so that gym.make(env.spec) rebuilds it
        gym.Wrapper.__init__(self, env)
        space = env.observation_space
        self._shape, self._dtype, self._env_id, self._steps = space.shape, space.dtype, env_id, 0

    def _check(self, obs: Any) -> None:
        if getattr(obs, "shape", None) != self._shape or getattr(obs, "dtype", None) != self._dtype:
            check_observation(obs, self.observation_space, self._env_id, self._steps)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._check(obs)
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        self._check(obs)
        return obs, reward, terminated, truncated, info


def check_observation(obs: Any, space: gym.Space, env_id: str, step: int = 0) -> None:
    """Refuse (``ConfigError``, one line) an observation whose shape or dtype is not the one its ``Box`` space
    declares: images are laid out from the space, so a space that misstates them would be misread silently.
    ``step``: how many steps the env had taken (named when it is not the first observation)."""
    if not isinstance(space, gym.spaces.Box):
        return
    arr = np.asarray(obs)
    if arr.shape != space.shape or arr.dtype != space.dtype:
        gave = (
            f"gave an observation of shape {arr.shape} {arr.dtype} at step {step}"
            if step
            else (f"gives observations of shape {arr.shape} {arr.dtype}")
        )
        raise ConfigError(
            f"{env_id} {gave}, but its observation_space declares {space}; the env or one of its wrappers misstates "
            "its space"
        )


def first_reset(
    env: gym.Env, seed: int | None, env_id: str, env_wrappers: Sequence[WrapperEntry] = ()
) -> tuple[Any, dict[str, Any]]:
    """``env.reset(seed=seed)`` with its observation checked (``check_observation``). A reset that raises is a
    ``ConfigError`` of one line naming the layer that raised: the innermost one whose own reset fails (each layer is
    reset once more, from the env outwards, to find it), as its ``env_wrappers`` entry where it is one. The project's
    own one-line errors (a bad setting, a missing MNIST) pass as they are."""
    from fsae.data import DatasetError

    try:
        obs, info = env.reset(seed=seed)
    except (ConfigError, DatasetError):
        raise
    except Exception as e:
        raise ConfigError(
            f"{env_id}: the first reset failed{_failing_layer(env, seed, env_wrappers)}: {kind_and_reason(e)}"
        ) from None
    check_observation(obs, env.observation_space, env_id)
    return obs, info


def _failing_layer(env: gym.Env, seed: int | None, env_wrappers: Sequence[WrapperEntry]) -> str:
    """' in <where>': the innermost layer of ``env`` whose reset raises, by its ``env_wrappers`` entry or class."""
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    entries = [(i, path, obj) for i, (path, obj, _) in enumerate(resolve_wrappers(env_wrappers))]
    for layer in reversed(layers):  # the env itself first
        try:
            layer.reset(seed=seed)
        except Exception:
            if layer is layers[-1]:
                return " in the environment itself"
            named = [
                f"env_wrappers[{i}] {path}" for i, path, obj in entries if inspect.isclass(obj) and type(layer) is obj
            ]
            return f" in {named[-1] if named else type(layer).__name__}"
    return ""


def unknown_id_hint(e: BaseException) -> str:
    """'; ...' for gymnasium's error on an id whose namespace nothing registered (``mine/Task-v0`` before its module
    is imported), '' for any other error."""
    if isinstance(e, gym.error.NamespaceNotFound):
        return "; an id of your own: name the module that registers it in env_packages (e.g. env_packages: [mymodule])"
    return ""


RENDER_HINT = (
    "for the pixels of any env that renders: env_kwargs {render_mode: rgb_array} and env_wrappers "
    "[{gymnasium.wrappers.AddRenderObservation: {render_only: true}}]"
)


def image_hint(space: gym.Space) -> str:
    """Which wrappers turn ``space``, not a uint8 image, into one, for the common cases (collect and the agents give
    the same hint)."""
    if isinstance(space, gym.spaces.Dict) and "image" in space.spaces:
        return (
            "a Dict with an 'image' key: add env_wrappers [minigrid.wrappers.ImgObsWrapper], which keeps that image "
            "(any env's), or a wrapper of your own by its dotted path; for MiniGrid, whose 'image' holds object "
            "indices, not pixels, put {minigrid.wrappers.RGBImgPartialObsWrapper: {tile_size: 4}} before it"
        )
    if isinstance(space, gym.spaces.Dict) and "pixels" in space.spaces:
        return "a Dict with 'pixels' (AddRenderObservation's): set its render_only: true for the pixels alone"
    if isinstance(space, gym.spaces.Box) and len(space.shape) >= 2 and space.dtype != np.uint8:
        return f"a {space.dtype} Box, not uint8 in [0, 255] (e.g. AtariPreprocessing's scale_obs: false)"
    if isinstance(space, gym.spaces.Box) and len(space.shape) >= 2:
        return "a uint8 Box whose bounds are not [0, 255]: scale it to pixels with a wrapper of your own"
    return f"not pixels; {RENDER_HINT}"


def image_layout(space: gym.Space, layout: str = "auto", env_name: str = "the environment") -> ImageLayout:
    """The layout of ``space``, which must be a uint8 Box(0, 255) of 2, 3 or 4 axes (``fsae.layout.detect_layout``:
    ``layout`` when stated, else SB3's rule); ``ConfigError`` of one line otherwise (what the space is, and which
    wrappers would make it an image)."""
    ok = (
        isinstance(space, gym.spaces.Box)
        and space.dtype == np.uint8
        and len(space.shape) in (2, 3, 4)
        and bool(np.all(space.low == 0))
        and bool(np.all(space.high == 255))
    )
    if not ok:
        raise ConfigError(
            f"{env_name} observes {space}, not an image (a uint8 Box(0, 255) of shape (H, W), (C, H, W), (H, W, C) "
            f"or a frame stack); {image_hint(space)}"
        )
    try:
        return detect_layout(space.shape, layout)
    except ValueError as e:
        raise ConfigError(f"{env_name}: {e}") from None
