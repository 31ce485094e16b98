"""Gymnasium environments built from corrupted MNIST digits; importing this package registers them.

Contents:
    ENV_IDS -- the registered ids, in order of difficulty:
        ``fsae/DigitBandit-v0`` (:class:`envs.digits.DigitBandit`): name one digit, ``Discrete(10)``.
        ``fsae/DigitSum-v0`` (:class:`envs.digits.DigitSum`): name the sum of two digits, ``Discrete(19)``.
        ``fsae/DigitLock-v0`` (:class:`envs.digits.DigitLock`): dial a lock to a target digit, ``Discrete(3)``.

Modules:
    envs.digits  -- the environments and their shared base class (corruption, rendering, seeding).
    envs.pool    -- the MNIST images the environments draw from, per split, shared between environments.
    envs.noise   -- ``PixelNoise``, the digit tasks' Gaussian pixel noise as a wrapper for any image environment.
    envs.spec    -- any registered environment from a config: ``env_packages``, ``env_wrappers``, the first reset.
    envs.labels  -- the labels of task data: ``info`` keys, Atari RAM bytes, MiniGrid concepts, a function.
    envs.collect -- roll out a random policy and gather observations with their labels for pretraining.

Registration uses string entry points, so ``import envs`` stays cheap (the environments, and with them MNIST and
torch, load on the first ``gymnasium.make``), and it is skipped for ids already registered, so re-importing or
reloading the package does not trigger Gymnasium's "Overriding environment" warning.

Example:
    >>> import gymnasium as gym
    >>> import envs
    >>> env = gym.make("fsae/DigitSum-v0", split="test", noise=0.2)
    >>> env.observation_space
    Box(0, 255, (1, 28, 56), uint8)
"""

from __future__ import annotations

import gymnasium

__all__ = ["ENV_IDS"]

_ENTRY_POINTS = {
    "fsae/DigitBandit-v0": "envs.digits:DigitBandit",
    "fsae/DigitSum-v0": "envs.digits:DigitSum",
    "fsae/DigitLock-v0": "envs.digits:DigitLock",
}
ENV_IDS: tuple[str, ...] = tuple(_ENTRY_POINTS)


def _register() -> None:
    for env_id, entry_point in _ENTRY_POINTS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point)


_register()
