"""Tests of the digit environments: API checkers, spaces, determinism, split disjointness, dynamics, corruption."""

from __future__ import annotations

import doctest
import importlib
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.env_util import make_vec_env

import envs
from envs import digits
from envs.digits import DigitBandit, DigitLock, DigitSum
from fsae.data import load_mnist

SHAPES = {"fsae/DigitBandit-v0": (1, 28, 28), "fsae/DigitSum-v0": (1, 28, 56), "fsae/DigitLock-v0": (1, 28, 56)}
N_ACTIONS = {"fsae/DigitBandit-v0": 10, "fsae/DigitSum-v0": 19, "fsae/DigitLock-v0": 3}
CLEAN = {"noise": 0.0, "occlusion": 0.0}
# The only warning left by SB3's check_env (documented in the report): its default NatureCNN needs >= 36 x 36 images;
# rl/ uses a small-image features extractor instead.
SB3_DOCUMENTED = "The minimal resolution for an image is 36x36"


@pytest.fixture(scope="module")
def mnist_index() -> dict[str, dict[bytes, int]]:
    """For each split, the bytes of every MNIST image -> its label."""
    out = {}
    for split in ("train", "test"):
        images, labels = load_mnist(split)
        out[split] = dict(zip((r.tobytes() for r in images), labels.tolist()))
    return out


def halves(obs: np.ndarray) -> list[np.ndarray]:
    """The 28 x 28 digit images of an observation (1, 28, 28 n), left to right."""
    return [obs[0, :, x : x + 28] for x in range(0, obs.shape[2], 28)]


def rollout(env: gym.Env, seed: int, actions: list[int]) -> tuple[list[np.ndarray], list[float], list[dict]]:
    """Observations, rewards and infos of taking ``actions`` from ``reset(seed=seed)``, resetting at episode ends."""
    obs, info = env.reset(seed=seed)
    observations, rewards, infos = [obs], [], [info]
    for a in actions:
        obs, r, terminated, truncated, info = env.step(a)
        observations.append(obs)
        rewards.append(r)
        infos.append(info)
        if terminated or truncated:
            obs, info = env.reset()
            observations.append(obs)
            infos.append(info)
    return observations, rewards, infos


# ------------------------------------------------------------------------------------------------------------------
# Registration, spaces, checkers


def test_registration_and_reimport_do_not_warn():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        importlib.reload(envs)
    assert [str(w.message) for w in caught] == []
    assert set(envs.ENV_IDS) == set(SHAPES)
    assert all(env_id in gym.registry for env_id in envs.ENV_IDS)


@pytest.mark.parametrize("env_id", list(SHAPES))
def test_spaces(env_id):
    env = gym.make(env_id)
    assert env.observation_space == gym.spaces.Box(0, 255, SHAPES[env_id], np.uint8)
    assert env.action_space == gym.spaces.Discrete(N_ACTIONS[env_id])
    observations, rewards, _ = rollout(env, 0, [env.action_space.n - 1, 0, 1] * 20)
    for obs in observations:
        assert obs.shape == SHAPES[env_id] and obs.dtype == np.uint8 and obs in env.observation_space
    assert all(isinstance(r, float) for r in rewards)


@pytest.mark.parametrize("env_id", list(SHAPES))
def test_gymnasium_check_env_passes_without_warnings(env_id):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(gym.make(env_id, render_mode="rgb_array").unwrapped)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("env_id", list(SHAPES))
def test_sb3_check_env_leaves_only_the_documented_warning(env_id):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(gym.make(env_id, render_mode="rgb_array"), warn=True, skip_render_check=False)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and messages[0].startswith(SB3_DOCUMENTED), messages


def test_sb3_vector_env_stacks_observations():
    venv = make_vec_env("fsae/DigitSum-v0", n_envs=2, seed=0)
    obs = venv.reset()
    assert obs.shape == (2, 1, 28, 56) and obs.dtype == np.uint8
    obs, rewards, dones, infos = venv.step(np.array([3, 4]))
    assert obs.shape == (2, 1, 28, 56) and rewards.shape == (2,) and infos[0]["labels"].shape == (2,)
    venv.close()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split": "val"}, r"split must be one of \['train', 'test'\]"),
        ({"noise": -0.1}, r"noise must be in \[0, 1\]"),
        ({"noise": 1.5}, r"noise must be in \[0, 1\]"),
        ({"noise": float("nan")}, r"noise must be in \[0, 1\]"),
        ({"occlusion": 1.01}, r"occlusion must be in \[0, 1\]"),
        ({"occlusion_size": 0}, r"occlusion_size must be an integer \[1, 28\]"),
        ({"occlusion_size": 29}, r"occlusion_size must be an integer \[1, 28\]"),
        ({"occlusion_size": 4.5}, r"occlusion_size must be an integer \[1, 28\]"),
        ({"render_mode": "human"}, r"render_mode must be None or one of \['rgb_array'\]"),
    ],
)
@pytest.mark.parametrize("cls", [DigitBandit, DigitSum, DigitLock])
def test_invalid_kwargs_raise_one_line_errors(cls, kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        cls(**kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        (DigitBandit, {"episode_length": 0}, r"episode_length must be an integer >= 1"),
        (DigitSum, {"episode_length": 2.0}, r"episode_length must be an integer >= 1"),
        (DigitLock, {"max_steps": 0}, r"max_steps must be an integer >= 1"),
        (DigitLock, {"step_cost": -0.01}, r"step_cost must be in \[0, 1\]"),
    ],
)
def test_invalid_env_specific_kwargs(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


@pytest.mark.parametrize("env_id", list(SHAPES))
def test_render_rgb_array_is_the_observation_upscaled(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    frame = env.render()
    c, h, w = SHAPES[env_id]
    assert frame.shape == (4 * h, 4 * w, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame[::4, ::4, 1], obs[0])
    plain = gym.make(env_id)  # render_mode=None
    plain.reset(seed=0)
    assert plain.render() is None


def test_docstring_examples_run():
    for module in (envs, digits):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__


# ------------------------------------------------------------------------------------------------------------------
# Determinism and splits


@pytest.mark.parametrize("env_id", list(SHAPES))
def test_same_seed_same_actions_same_results_and_other_seeds_differ(env_id):
    actions = np.random.default_rng(7).integers(N_ACTIONS[env_id], size=60).tolist()
    obs_a, rew_a, info_a = rollout(gym.make(env_id), 3, actions)
    obs_b, rew_b, info_b = rollout(gym.make(env_id), 3, actions)
    assert len(obs_a) == len(obs_b) and all(np.array_equal(a, b) for a, b in zip(obs_a, obs_b))
    assert rew_a == rew_b
    assert [str(i) for i in info_a] == [str(i) for i in info_b]
    obs_c, _, _ = rollout(gym.make(env_id), 4, actions)
    assert not np.array_equal(obs_a[0], obs_c[0])
    assert sum(np.array_equal(a, c) for a, c in zip(obs_a, obs_c)) == 0


def test_reseeding_the_same_env_replays_it():
    env = gym.make("fsae/DigitLock-v0")
    first = rollout(env, 11, [0, 1, 1, 2, 0, 2])
    again = rollout(env, 11, [0, 1, 1, 2, 0, 2])
    assert all(np.array_equal(a, b) for a, b in zip(first[0], again[0])) and first[1] == again[1]


def test_train_and_test_splits_share_no_image(mnist_index):
    assert not set(mnist_index["train"]) & set(mnist_index["test"])


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("env_id", list(SHAPES))
def test_env_shows_only_images_of_its_split_with_the_labels_in_info(env_id, split, mnist_index):
    env = gym.make(env_id, split=split, **CLEAN)
    other = "test" if split == "train" else "train"
    images = load_mnist(split)[0]
    observations, _, infos = rollout(env, 0, [0] * 150)
    for obs, info in zip(observations, infos):
        labels = [info["label"]] if "label" in info else info["labels"].tolist()
        index = np.atleast_1d(info["image_index"])
        for digit, label, i in zip(halves(obs), labels, index):
            key = digit.tobytes()
            assert key in mnist_index[split] and key not in mnist_index[other]
            assert mnist_index[split][key] == label  # the clean label, left to right
            np.testing.assert_array_equal(digit, images[i])


def test_classes_are_uniform_and_sum_pairs_independent():
    _, _, infos = rollout(gym.make("fsae/DigitSum-v0"), 0, [0] * 4000)
    pairs = np.array([i["labels"] for i in infos])
    counts = np.bincount(pairs[:, 0] * 10 + pairs[:, 1], minlength=100)
    assert counts.min() > 0
    per_class = np.bincount(pairs.ravel(), minlength=10) / pairs.size
    np.testing.assert_allclose(per_class, 0.1, atol=0.015)


# ------------------------------------------------------------------------------------------------------------------
# Dynamics


def test_bandit_random_policy_scores_one_tenth():
    env = gym.make("fsae/DigitBandit-v0")
    actions = np.random.default_rng(0).integers(10, size=5000).tolist()
    _, rewards, _ = rollout(env, 0, actions)
    assert len(rewards) == 5000
    assert abs(np.mean(rewards) - 0.1) <= 0.02


def test_bandit_episodes_truncate_after_episode_length():
    env = gym.make("fsae/DigitBandit-v0", episode_length=5)
    env.reset(seed=0)
    ends = [env.step(0)[2:4] for _ in range(5)]
    assert ends == [(False, False)] * 4 + [(False, True)]


@pytest.mark.parametrize("env_id", ["fsae/DigitBandit-v0", "fsae/DigitSum-v0"])
def test_oracle_reading_info_scores_one(env_id):
    env = gym.make(env_id)
    _, info = env.reset(seed=0)
    rewards = []
    for _ in range(1000):
        action = info["label"] if "label" in info else int(info["labels"].sum())
        _, r, terminated, truncated, info = env.step(action)
        rewards.append(r)
        if terminated or truncated:
            _, info = env.reset()
    assert np.mean(rewards) == 1.0


def test_sum_rewards_only_the_sum():
    # the action does not change what is shown next, so two envs with the same seed show the same digits
    right_env, wrong_env = (gym.make("fsae/DigitSum-v0", episode_length=100) for _ in range(2))
    _, info = right_env.reset(seed=0)
    wrong_env.reset(seed=0)
    for k in range(60):
        total = int(info["labels"].sum())
        _, right, _, _, info = right_env.step(total)
        wrong = wrong_env.step((total + 1 + k % 18) % 19)[1]
        assert (right, wrong) == (1.0, 0.0)


def test_lock_oracle_succeeds_in_minimal_steps_every_episode():
    env = gym.make("fsae/DigitLock-v0")
    cost = env.unwrapped.step_cost
    distances = []
    for episode in range(400):
        _, info = env.reset(seed=episode)
        assert info["dial"] != info["target"] and info["labels"].tolist() == [info["target"], info["dial"]]
        d = (info["target"] - info["dial"]) % 10
        shortest = min(d, 10 - d)
        distances.append(shortest)
        ret, steps, terminated, truncated = 0.0, 0, False, False
        while not (terminated or truncated):
            action = 2 if info["dial"] == info["target"] else (0 if d <= 5 else 1)
            _, r, terminated, truncated, info = env.step(action)
            ret, steps = ret + r, steps + 1
        assert terminated and not truncated and info["is_success"]
        assert steps == shortest + 1
        assert ret == pytest.approx(1.0 - cost * shortest)
    assert set(distances) == {1, 2, 3, 4, 5}


def test_lock_dial_moves_mod_10_and_wrong_submit_ends_with_zero():
    env = gym.make("fsae/DigitLock-v0", step_cost=0.05)
    _, info = env.reset(seed=1)
    target, dial = info["target"], info["dial"]
    for action, delta in [(0, 1), (0, 1), (1, -1), (0, 1)]:
        _, r, terminated, truncated, info = env.step(action)
        dial = (dial + delta) % 10
        assert (info["dial"], info["target"], r, terminated, truncated) == (dial, target, -0.05, False, False)
    if info["dial"] == info["target"]:
        env.step(0)
    _, r, terminated, truncated, info = env.step(2)
    assert (r, terminated, truncated, info["is_success"]) == (0.0, True, False, False)


def test_lock_truncates_after_max_steps():
    env = gym.make("fsae/DigitLock-v0", max_steps=7)
    env.reset(seed=0)
    results = [env.step(0) for _ in range(7)]
    assert [r[3] for r in results] == [False] * 6 + [True]
    assert not any(r[2] for r in results)
    assert sum(r[1] for r in results) == pytest.approx(-0.07)
    # A failed episode for SB3's success rate, as a wrong submit is; no verdict before the episode ends.
    assert [r[4].get("is_success") for r in results] == [None] * 6 + [False]


# ------------------------------------------------------------------------------------------------------------------
# Corruption


def test_noise_is_gaussian_with_the_given_sigma():
    sigma = 0.1
    env = gym.make("fsae/DigitBandit-v0", noise=sigma, occlusion=0.0)
    images = load_mnist("train")[0]
    residuals = []
    for obs, info in zip(*rollout(env, 0, [0] * 300)[::2]):
        clean = images[info["image_index"]].astype(np.int16)
        inside = (clean >= 4 * 25.5) & (clean <= 255 - 4 * 25.5)  # clipping at 0 or 255 is 4 sigma away
        residuals.append(obs[0].astype(np.int16)[inside] - clean[inside])
    r = np.concatenate(residuals)
    assert len(r) > 5000
    assert abs(r.mean()) < 1.0 and r.std() == pytest.approx(sigma * 255, rel=0.03)


def test_occlusion_blanks_one_square_inside_the_image():
    size = 6
    env = gym.make("fsae/DigitBandit-v0", noise=0.0, occlusion=1.0, occlusion_size=size)
    images = load_mnist("train")[0]
    blanked_ink = 0
    for obs, info in zip(*rollout(env, 0, [0] * 200)[::2]):
        clean = images[info["image_index"]]
        changed = obs[0] != clean
        assert (obs[0][changed] == 0).all()  # only blanking, nowhere else
        if changed.any():
            rows, cols = np.nonzero(changed)
            assert rows.max() - rows.min() < size and cols.max() - cols.min() < size
            blanked_ink += 1
    assert blanked_ink > 150  # centred on the ink box, the patch nearly always removes some ink


def test_occlusion_probability():
    env = gym.make("fsae/DigitBandit-v0", noise=0.0, occlusion=0.3, occlusion_size=28)  # a hit blanks everything
    observations, _, _ = rollout(env, 0, [0] * 2000)
    blank = np.mean([not obs.any() for obs in observations])
    assert blank == pytest.approx(0.3, abs=0.04)


def test_default_corruption_changes_most_pixels_but_keeps_the_ink():
    env = gym.make("fsae/DigitBandit-v0")
    images = load_mnist("train")[0]
    observations, _, infos = rollout(env, 0, [0] * 100)
    clean = np.stack([images[i["image_index"]] for i in infos]).astype(np.float32)
    noisy = np.stack([o[0] for o in observations]).astype(np.float32)
    assert (noisy != clean).mean() > 0.4
    correlation = np.corrcoef(clean.ravel(), noisy.ravel())[0, 1]
    assert 0.5 < correlation < 0.95
