"""envs.noise.PixelNoise: the noise's spread and clipping by numbers, same seed same noise, the environment's own
random stream untouched, any uint8 layout, refusals in one line, and use from a config's env_wrappers."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from envs.noise import NOISE_STREAM, PixelNoise
from envs.spec import make
from fsae.config import ConfigError


class Flat(gym.Env):
    """A constant grey image of any shape; its own np_random draws one number per step (a stand-in for MiniGrid's
    layouts), returned in info."""

    def __init__(self, shape=(28, 28, 3), value=128):
        self.observation_space = spaces.Box(0, 255, shape, np.uint8)
        self.action_space = spaces.Discrete(2)
        self.value = value

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.full(self.observation_space.shape, self.value, np.uint8), {"draw": self.np_random.random()}

    def step(self, action):
        obs = np.full(self.observation_space.shape, self.value, np.uint8)
        return obs, 0.0, False, False, {"draw": self.np_random.random()}


def test_noise_is_the_rounded_gaussian_of_its_own_stream():
    """By the formula: clip(obs + rint(N(0, 1) * sigma * 255), 0, 255), N drawn from default_rng([seed, NOISE_STREAM])
    in float32; an unseeded reset after a seeded one continues the stream."""
    shape, sigma = (28, 28, 3), 0.3
    rng = np.random.default_rng([7, NOISE_STREAM])

    def expected():
        noise = np.rint(rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma * 255.0))
        return np.clip(128 + noise, 0, 255).astype(np.uint8)

    env = PixelNoise(Flat(shape), sigma=sigma)
    np.testing.assert_array_equal(env.reset(seed=7)[0], expected())
    np.testing.assert_array_equal(env.step(0)[0], expected())
    np.testing.assert_array_equal(env.reset()[0], expected())  # not reseeded
    np.testing.assert_array_equal(env.step(0)[0], expected())


def test_noise_has_the_asked_spread_and_integer_values():
    env = PixelNoise(Flat((64, 64, 3)), sigma=0.1)
    obs, _ = env.reset(seed=0)
    diffs = np.concatenate([(env.step(0)[0].astype(np.float64) - 128).ravel() for _ in range(10)])
    assert obs.dtype == np.uint8 and obs.shape == (64, 64, 3)
    assert abs(diffs.mean()) < 0.2 and diffs.std() == pytest.approx(25.5, rel=0.02)  # sigma * 255 grey levels
    assert diffs.min() > -128 and diffs.max() < 127  # 5 sigma: nothing reaches the clip at this sigma


def test_noise_clips_to_the_uint8_range():
    for value, bound in ((0, 0), (255, 255)):
        obs, _ = PixelNoise(Flat(value=value), sigma=0.3).reset(seed=1)
        at_bound = np.mean(obs == bound)
        assert 0.45 < at_bound < 0.55  # half the noise pushes past the bound and is clipped to it


def test_same_seed_same_noise_and_the_env_stream_untouched():
    def run(seed, sigma):
        env = PixelNoise(Flat(), sigma=sigma)
        obs, info = env.reset(seed=seed)
        out, draws = [obs], [info["draw"]]
        for _ in range(3):
            o, _, _, _, i = env.step(0)
            out.append(o)
            draws.append(i["draw"])
        return np.stack(out), draws

    a, draws_a = run(5, 0.3)
    b, draws_b = run(5, 0.3)
    c, _ = run(6, 0.3)
    _, draws_clean = run(5, 0.0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert draws_a == draws_b == draws_clean  # the environment draws what it would without noise
    assert not np.array_equal(a[1], a[2])  # a fresh draw each step


def test_sigma_zero_is_the_identity_and_any_layout_keeps_its_shape():
    obs, _ = PixelNoise(Flat((1, 28, 28)), sigma=0.0).reset(seed=0)
    np.testing.assert_array_equal(obs, np.full((1, 28, 28), 128, np.uint8))
    for shape in ((28, 28), (4, 84, 84), (28, 28, 3)):
        env = PixelNoise(Flat(shape), sigma=0.3)
        assert env.observation_space == Flat(shape).observation_space
        assert env.reset(seed=0)[0].shape == shape


def test_refusals_are_one_line():
    with pytest.raises(ConfigError, match=r"sigma must be a number in \[0, 1\] \(pixel units\), got 1.5$"):
        PixelNoise(Flat(), sigma=1.5)
    for bad in (True, np.float64(1.5), "0.3"):
        with pytest.raises(ConfigError, match=r"sigma must be a number in \[0, 1\]"):
            PixelNoise(Flat(), sigma=bad)
    assert PixelNoise(Flat(), sigma=np.float32(0.25)).sigma == 0.25
    env = Flat()
    env.observation_space = spaces.Box(0.0, 1.0, (28, 28, 3), np.float32)
    with pytest.raises(ConfigError, match=r"^PixelNoise adds noise to uint8 images, but the observation space is Box"):
        PixelNoise(env)
    env.observation_space = spaces.Box(0, 10, (28, 28, 3), np.uint8)
    with pytest.raises(ConfigError, match=r"^PixelNoise adds noise over the whole range 0\.\.255, but the observation"):
        PixelNoise(env)


def test_from_a_configs_env_wrappers():
    """As the noisy MiniGrid configs use it: an entry of env_wrappers, after the wrappers that make the image."""
    env = make("fsae/DigitBandit-v0", (), [{"envs.noise.PixelNoise": {"sigma": 0.3}}], noise=0.0, occlusion=0.0)
    clean = make("fsae/DigitBandit-v0", (), [], noise=0.0, occlusion=0.0)
    noisy, _ = env.reset(seed=0)
    plain, _ = clean.reset(seed=0)
    diff = noisy.astype(np.int16) - plain
    assert noisy.shape == plain.shape == (1, 28, 28)
    assert 0 < np.mean(diff != 0) and np.abs(diff).max() > 40  # noise of 76.5 grey levels, clipped where it must be
