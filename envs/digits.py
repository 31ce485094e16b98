"""Gymnasium environments built from corrupted MNIST digits, the tasks on which the FSAE serves as "common sense".

Contents:
    SPLITS, DEFAULT_NOISE, DEFAULT_OCCLUSION, DEFAULT_OCCLUSION_SIZE -- the allowed splits and default corruption.
    digit_pool  -- one MNIST split's images and, per class, the indices of its images (``envs.pool``).
    DigitEnv    -- the shared base: kwarg validation, MNIST pool, corruption (occlusion, Gaussian noise), rendering,
                   seeding. Subclasses choose the digits shown; the base draws and corrupts the images.
    DigitBandit -- ``fsae/DigitBandit-v0``: name the digit (1 x 28 x 28, Discrete(10)).
    DigitSum    -- ``fsae/DigitSum-v0``: name the sum of two digits (1 x 28 x 56, Discrete(19)).
    DigitLock   -- ``fsae/DigitLock-v0``: turn a dial to a target digit and submit (1 x 28 x 56, Discrete(3)).

Observations are ``Box(0, 255, (1, 28, 28 * n), uint8)``, channel-first, with the ``n`` digits side by side (left to
right). Every observation is a fresh handwriting sample: each step draws a new MNIST image of every digit shown, from
the "train" split by default or from the disjoint "test" split (``split="test"``), so that evaluating on "test"
measures generalisation to unseen handwriting.

Corruption, per digit, in this order: with probability ``occlusion`` an ``occlusion_size`` square is blanked (set to
0, like the background) at a random place whose centre lies in the central 20 x 20 box where MNIST puts the ink; then
Gaussian noise of standard deviation ``noise`` (in [0, 1] pixel units, i.e. ``noise * 255`` grey levels) is added to
the whole image and the result is clipped to 0..255. Because the blanked patch is noised like the background, the
agent cannot see where ink was removed.

The noise comes from a bank of ``NOISE_BANK_SIZE`` Gaussian values drawn from ``self.np_random`` on the first reset
and on every seeded reset; each observation adds a slice of the bank at a random offset. Drawing 784 normals per step
would cost about 8 us per digit, the slice about 1 us, and the bank offers about 130,000 different noise patterns.

Ground truth is in ``info``: ``info["label"]`` (bandit) or ``info["labels"]`` (sum, lock: left and right digit), the
clean classes of the returned observation, and ``info["image_index"]``, the index (or indices) of the MNIST images
shown in ``fsae.data.load_mnist(split)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.pool import SPLITS, DigitPool, digit_pool

__all__ = [
    "DEFAULT_NOISE",
    "DEFAULT_OCCLUSION",
    "DEFAULT_OCCLUSION_SIZE",
    "NOISE_BANK_SIZE",
    "SPLITS",
    "DigitBandit",
    "DigitEnv",
    "DigitLock",
    "DigitPool",
    "DigitSum",
    "digit_pool",
]

DEFAULT_NOISE = 0.3
"""Gaussian sigma in [0, 1] units (77 grey levels): strokes stay visible to the eye, but single pixels no longer tell
ink from background, so a policy must pool over the shape.

Together with the default occlusion this is hard but learnable: a small CNN (conv 32 4x4/2, conv 64 3x3/2, FC 64,
FC 10) trained with Adam for 4 epochs on 30,000 DigitBandit observations of the train split reached 93-94% accuracy
on 5,000 corrupted test-split observations, against 98% with ``noise=0, occlusion=0`` (one seed, CPU)."""
DEFAULT_OCCLUSION = 0.5
"""Probability that a digit loses a patch: half the digits are whole, half must be recognised from a part."""
DEFAULT_OCCLUSION_SIZE = 10
"""Side of the blanked square in pixels: about a quarter of the 20 x 20 box that holds an MNIST digit, enough to
remove a loop or a bar of many digits but not the whole digit."""
NOISE_BANK_SIZE = 1 << 17
"""Gaussian values per environment from which each observation's noise is sliced."""

_SIDE = 28  # MNIST images are 28 x 28
_INK_LO, _INK_SPAN = 4, 20  # MNIST digits lie in the central 20 x 20 box; occlusion centres are drawn there
_RENDER_SCALE = 4  # rgb_array frames are upscaled so that recorded videos are watchable


def _check_fraction(name: str, value: float) -> float:
    """``value`` as a float if it lies in [0, 1] (NaN does not), else a one-line ValueError."""
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return v


def _check_int(name: str, value: int, lo: int, hi: int | None = None) -> int:
    """``value`` if it is an integer in [lo, hi] (hi None: no upper bound), else a one-line ValueError."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < lo or (hi is not None and value > hi):
        allowed = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)


class DigitEnv(gym.Env):
    """Base class: draws fresh MNIST images of the requested classes and corrupts them. Not registered itself.

    Subclasses set ``n_digits`` and the action space, keep their own state, and call :meth:`_observe` with the
    classes to show; it returns the observation and records the images' indices for ``info``.

    Args:
        split: "train" or "test": the MNIST split the images come from.
        noise: Gaussian noise sigma in [0, 1] pixel units (0: none).
        occlusion: probability in [0, 1] that each digit has a square blanked.
        occlusion_size: side of that square in pixels, 1..28.
        render_mode: None or "rgb_array" (the observation in grey, upscaled 4x, (H, W, 3) uint8).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 4}
    n_digits: ClassVar[int] = 1

    def __init__(
        self,
        split: str = "train",
        noise: float = DEFAULT_NOISE,
        occlusion: float = DEFAULT_OCCLUSION,
        occlusion_size: int = DEFAULT_OCCLUSION_SIZE,
        render_mode: str | None = None,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.split = split
        self.noise = _check_fraction("noise", noise)
        self.occlusion = _check_fraction("occlusion", occlusion)
        self.occlusion_size = _check_int("occlusion_size", occlusion_size, 1, _SIDE)
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0, 255, (1, _SIDE, _SIDE * self.n_digits), np.uint8)

        self._pool = digit_pool(split)
        self._noise_bank: np.ndarray | None = None  # (NOISE_BANK_SIZE,) int16, from np_random at reset
        self._image_index = np.zeros(self.n_digits, np.int64)
        self._last_obs: np.ndarray | None = None

    # ---------------------------------------------------------------------------------------------------------------

    def _seed(self, seed: int | None) -> None:
        """Seed ``self.np_random`` (Gymnasium's contract) and redraw the noise bank when the stream was reset."""
        super().reset(seed=seed)
        if self.noise > 0.0 and (seed is not None or self._noise_bank is None):
            bank = self.np_random.standard_normal(NOISE_BANK_SIZE, dtype=np.float32) * np.float32(self.noise * 255.0)
            self._noise_bank = np.rint(bank).astype(np.int16)

    def _observe(self, classes: tuple[int, ...]) -> np.ndarray:
        """A new observation (1, 28, 28 * n) uint8 showing a fresh, corrupted image of each class, left to right."""
        pool, s, side = self._pool, self.occlusion_size, _SIDE
        # 4 uniforms per digit (image, occlusion?, patch row, patch column) and 1 for the noise offset, in one call
        u = self.np_random.random(4 * len(classes) + 1).tolist()
        noisy = self.noise > 0.0
        canvas = np.empty((side, side * len(classes)), np.int16 if noisy else np.uint8)  # (28, 28n)
        for i, c in enumerate(classes):
            members = pool.by_class[c]
            idx = members[int(u[4 * i] * len(members))]
            self._image_index[i] = idx
            x0 = side * i
            canvas[:, x0 : x0 + side] = pool.images[idx]
            if u[4 * i + 1] < self.occlusion:
                top = min(max(_INK_LO + int(u[4 * i + 2] * _INK_SPAN) - s // 2, 0), side - s)
                left = min(max(_INK_LO + int(u[4 * i + 3] * _INK_SPAN) - s // 2, 0), side - s)
                canvas[top : top + s, x0 + left : x0 + left + s] = 0
        if noisy:
            assert self._noise_bank is not None, "reset() must be called before the first observation"
            offset = int(u[-1] * (NOISE_BANK_SIZE - canvas.size + 1))
            canvas += self._noise_bank[offset : offset + canvas.size].reshape(canvas.shape)
            np.maximum(canvas, 0, out=canvas)
            np.minimum(canvas, 255, out=canvas)
            canvas = canvas.astype(np.uint8)
        obs = canvas[None]  # (1, 28, 28n)
        self._last_obs = obs
        return obs

    def _image_info(self) -> np.ndarray | int:
        """``info["image_index"]``: the MNIST index of the shown image (int), or a new array of them, left to right."""
        return int(self._image_index[0]) if self.n_digits == 1 else self._image_index.copy()

    def render(self) -> np.ndarray | None:
        """The last observation as an RGB frame (28 * 4, 28 * n * 4, 3) uint8 in "rgb_array" mode, else None."""
        if self.render_mode != "rgb_array" or self._last_obs is None:
            return None
        grey = self._last_obs[0].repeat(_RENDER_SCALE, 0).repeat(_RENDER_SCALE, 1)
        return np.repeat(grey[:, :, None], 3, axis=2)


class DigitBandit(DigitEnv):
    """``fsae/DigitBandit-v0``: one corrupted digit per step; reward 1 for naming it, else 0.

    Observation: ``Box(0, 255, (1, 28, 28), uint8)``. Action: ``Discrete(10)``, the digit's name. Each step rewards
    the action against the digit just shown and shows a new one (class uniform in 0..9). Episodes last
    ``episode_length`` steps and end with ``truncated=True`` (never ``terminated``): the observation carries no clock,
    so the end is a time limit and value bootstrapping stays correct. A random policy scores 0.1 per step, an oracle 1.

    ``info``: ``label`` (int, the clean class of the returned observation), ``image_index`` (int).

    Args:
        episode_length: steps per episode (>= 1).
        **kwargs: ``split``, ``noise``, ``occlusion``, ``occlusion_size``, ``render_mode`` (see :class:`DigitEnv`).

    Example:
        >>> import gymnasium as gym
        >>> import envs  # registers the fsae/ ids
        >>> env = gym.make("fsae/DigitBandit-v0")
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape, obs.dtype, env.action_space
        ((1, 28, 28), dtype('uint8'), Discrete(10))
        >>> obs, reward, terminated, truncated, info = env.step(info["label"])  # the oracle: name the digit shown
        >>> reward, terminated, truncated
        (1.0, False, False)
    """

    def __init__(self, episode_length: int = 16, **kwargs: Any):
        super().__init__(**kwargs)
        self.episode_length = _check_int("episode_length", episode_length, 1)
        self.action_space = spaces.Discrete(10)
        self._label = 0
        self._t = 0

    def _next(self) -> tuple[np.ndarray, dict[str, Any]]:
        self._label = int(self.np_random.integers(10))
        obs = self._observe((self._label,))
        return obs, {"label": self._label, "image_index": self._image_info()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._seed(seed)
        self._t = 0
        return self._next()

    def step(self, action):
        action = int(action)
        assert 0 <= action < 10, f"action must be a digit 0..9, got {action}"
        reward = 1.0 if action == self._label else 0.0
        self._t += 1
        obs, info = self._next()
        return obs, reward, False, self._t >= self.episode_length, info


class DigitSum(DigitEnv):
    """``fsae/DigitSum-v0``: two corrupted digits side by side; reward 1 for naming their sum, else 0.

    Observation: ``Box(0, 255, (1, 28, 56), uint8)``, left digit in columns 0..27, right digit in 28..55, each class
    uniform in 0..9 and independent. Action: ``Discrete(19)``, the sum 0..18. Recognising each digit is needed but not
    enough: the agent has to combine the two concepts. Episodes last ``episode_length`` steps and end truncated, as in
    :class:`DigitBandit`. A random policy scores 1/19 per step, an oracle 1.

    ``info``: ``labels`` ((2,) int64, the clean classes left and right), ``image_index`` ((2,) int64).

    Args:
        episode_length: steps per episode (>= 1).
        **kwargs: ``split``, ``noise``, ``occlusion``, ``occlusion_size``, ``render_mode`` (see :class:`DigitEnv`).

    Example:
        >>> import gymnasium as gym
        >>> import envs
        >>> env = gym.make("fsae/DigitSum-v0", noise=0.1)
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape, env.action_space
        ((1, 28, 56), Discrete(19))
        >>> obs, reward, terminated, truncated, info = env.step(int(info["labels"].sum()))
        >>> reward
        1.0
    """

    n_digits = 2

    def __init__(self, episode_length: int = 16, **kwargs: Any):
        super().__init__(**kwargs)
        self.episode_length = _check_int("episode_length", episode_length, 1)
        self.action_space = spaces.Discrete(19)
        self._labels = (0, 0)
        self._t = 0

    def _next(self) -> tuple[np.ndarray, dict[str, Any]]:
        left, right = self.np_random.integers(10, size=2).tolist()
        self._labels = (left, right)
        obs = self._observe(self._labels)
        return obs, {"labels": np.array(self._labels, np.int64), "image_index": self._image_info()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._seed(seed)
        self._t = 0
        return self._next()

    def step(self, action):
        action = int(action)
        assert 0 <= action < 19, f"action must be a sum 0..18, got {action}"
        reward = 1.0 if action == self._labels[0] + self._labels[1] else 0.0
        self._t += 1
        obs, info = self._next()
        return obs, reward, False, self._t >= self.episode_length, info


class DigitLock(DigitEnv):
    """``fsae/DigitLock-v0``: a combination lock; turn the dial to the target digit and submit.

    State: ``(target, dial)``, two digits; at reset the target is uniform and the dial uniform among the other nine.
    Observation: ``Box(0, 255, (1, 28, 56), uint8)``, the target on the left and the dial on the right, both redrawn
    from fresh handwriting samples (and fresh corruption) every step, so the agent must read the concepts, not match
    pixels. Actions (``Discrete(3)``): 0 = dial up (+1 mod 10), 1 = dial down (-1 mod 10), 2 = submit.

    Rewards: each dial move costs ``step_cost``; submitting ends the episode (``terminated=True``) with +1 if the dial
    equals the target, else 0 (no extra penalty: a wrong guess already forgoes the +1). After ``max_steps`` steps
    without a submit the episode is truncated. The best return is ``1 - step_cost * min(d, 10 - d)`` with
    ``d = (target - dial) mod 10``, reached in ``min(d, 10 - d) + 1`` steps by turning the short way round (at most
    6 steps); a uniformly random policy succeeds in about 6% of episodes, with a mean return of about 0.04
    (measured over 20,000 episodes).

    ``info``: ``labels`` ((2,) int64: target, dial, matching left and right), ``target``, ``dial`` (ints),
    ``image_index`` ((2,) int64), and at the episode's end ``is_success`` (bool, read by SB3's logger and evaluation;
    False for an episode truncated without a submit).

    Args:
        max_steps: steps before truncation (>= 1; below 6 some episodes cannot be solved).
        step_cost: cost in [0, 1] of each dial move.
        **kwargs: ``split``, ``noise``, ``occlusion``, ``occlusion_size``, ``render_mode`` (see :class:`DigitEnv`).

    Example:
        >>> import gymnasium as gym
        >>> import envs
        >>> env = gym.make("fsae/DigitLock-v0")
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape, env.action_space
        ((1, 28, 56), Discrete(3))
        >>> d = (info["target"] - info["dial"]) % 10
        >>> for _ in range(min(d, 10 - d)):  # turn the short way round, then submit
        ...     obs, reward, terminated, truncated, info = env.step(0 if d <= 5 else 1)
        >>> info["dial"] == info["target"]
        True
        >>> obs, reward, terminated, truncated, info = env.step(2)
        >>> reward, terminated, info["is_success"]
        (1.0, True, True)
    """

    n_digits = 2
    UP, DOWN, SUBMIT = 0, 1, 2

    def __init__(self, max_steps: int = 20, step_cost: float = 0.01, **kwargs: Any):
        super().__init__(**kwargs)
        self.max_steps = _check_int("max_steps", max_steps, 1)
        self.step_cost = _check_fraction("step_cost", step_cost)
        self.action_space = spaces.Discrete(3)
        self.target = 0
        self.dial = 1
        self._t = 0

    def _info(self) -> dict[str, Any]:
        return {
            "labels": np.array([self.target, self.dial], np.int64),
            "target": self.target,
            "dial": self.dial,
            "image_index": self._image_info(),
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._seed(seed)
        self._t = 0
        self.target = int(self.np_random.integers(10))
        self.dial = (self.target + 1 + int(self.np_random.integers(9))) % 10  # any digit but the target
        return self._observe((self.target, self.dial)), self._info()

    def step(self, action):
        action = int(action)
        assert 0 <= action < 3, f"action must be 0 (up), 1 (down) or 2 (submit), got {action}"
        terminated = action == self.SUBMIT
        if terminated:
            reward = 1.0 if self.dial == self.target else 0.0
        else:
            self.dial = (self.dial + (1 if action == self.UP else -1)) % 10
            reward = -self.step_cost
        self._t += 1
        obs = self._observe((self.target, self.dial))
        info = self._info()
        truncated = not terminated and self._t >= self.max_steps
        if terminated or truncated:  # an episode that ran out of steps failed too (SB3's success rate counts both)
            info["is_success"] = terminated and reward > 0.0
        return obs, reward, terminated, truncated, info
