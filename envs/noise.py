"""Gaussian pixel noise for any image environment, as the digit environments add it (``envs.digits``).

Contents:
    PixelNoise -- ``gymnasium.ObservationWrapper``: each uint8 image observation plus rounded Gaussian noise of standard
                  deviation ``sigma`` (in [0, 1] pixel units, i.e. ``sigma * 255`` grey levels), clipped to 0..255.

For an environment nobody here designed, the noisy variant of a verdict grid (issue 18: MiniGrid with sigma 0.3) is one
more entry of a config's ``env_wrappers``, after the wrappers that make the image:

    env_wrappers:
      - minigrid.wrappers.RGBImgPartialObsWrapper: {tile_size: 4}
      - minigrid.wrappers.ImgObsWrapper
      - envs.noise.PixelNoise: {sigma: 0.3}

The noise has its own generator, so the environment's own random stream (MiniGrid's layouts) is the one it would be
without noise: seeded at ``reset(seed=s)`` from ``(s, NOISE_STREAM)``, a stream apart from the environment's ``s``; an
environment never seeded draws its noise from fresh entropy, as Gymnasium's own ``np_random`` does.

Example:
    >>> import gymnasium as gym
    >>> import numpy as np
    >>> env = PixelNoise(gym.make("fsae/DigitBandit-v0", noise=0.0, occlusion=0.0), sigma=0.3)
    >>> obs, _ = env.reset(seed=0)
    >>> obs.shape, obs.dtype
    ((1, 28, 28), dtype('uint8'))
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from fsae.config import ConfigError

NOISE_STREAM = 0x6E6F697365
"""Mixed into the seed of the noise generator ("noise" in ASCII), so its stream differs from the environment's."""


class PixelNoise(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """uint8 image observations of any layout plus Gaussian noise: ``clip(obs + rint(N(0, (sigma * 255)^2)), 0, 255)``.

    Args:
        env: an environment whose observation space is a uint8 ``Box`` (any shape: (H, W), (C, H, W), (H, W, C), ...).
        sigma: the noise's standard deviation in [0, 1] pixel units (0: the observation unchanged).

    Raises:
        ConfigError: one line, for a sigma outside [0, 1] or an observation space that is not a uint8 ``Box`` of
            bounds 0..255.
    """

    def __init__(self, env: gym.Env, sigma: float = 0.3):
        gym.utils.RecordConstructorArgs.__init__(self, sigma=sigma)
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        number = isinstance(sigma, (int, float, np.integer, np.floating)) and not isinstance(sigma, bool)
        if not (number and 0 <= sigma <= 1):
            raise ConfigError(f"PixelNoise: sigma must be a number in [0, 1] (pixel units), got {sigma!r}")
        if not (isinstance(space, spaces.Box) and space.dtype == np.uint8):
            raise ConfigError(
                f"PixelNoise adds noise to uint8 images, but the observation space is {space}; put it after the "
                "wrappers that make the image (e.g. minigrid.wrappers.ImgObsWrapper)"
            )
        if not (np.all(space.low == 0) and np.all(space.high == 255)):
            raise ConfigError(
                f"PixelNoise adds noise over the whole range 0..255, but the observation space is {space}, whose "
                "bounds the noisy images would leave"
            )
        self.sigma = float(sigma)
        self._scale = np.float32(self.sigma * 255.0)
        self._rng: np.random.Generator | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset the environment; a seed (or the first reset) also starts the noise's stream, an unseeded reset
        continues it."""
        if seed is not None or self._rng is None:
            self._rng = np.random.default_rng(None if seed is None else [seed, NOISE_STREAM])
        return super().reset(seed=seed, options=options)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """One uint8 image -> the same plus a fresh draw of rounded noise, clipped to 0..255."""
        if self.sigma == 0.0:
            return observation
        assert self._rng is not None, "reset() must be called before the first observation"
        noise = np.rint(self._rng.standard_normal(observation.shape, dtype=np.float32) * self._scale)
        return np.clip(observation.astype(np.int16) + noise.astype(np.int16), 0, 255).astype(np.uint8)
