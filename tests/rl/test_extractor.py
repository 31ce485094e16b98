"""SmallCNN: shapes computed by hand for 28x28 and 28x56 with 1 and 2 channels, and use inside SB3's CnnPolicy."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.torch_layers import NatureCNN
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn

from rl.extractor import SmallCNN


# conv 3x3 s1, 3x3 s2, 3x3 s2 (no padding): 28 -> 26 -> 12 -> 5 and 56 -> 54 -> 26 -> 12; 64 channels at the end.
@pytest.mark.parametrize(
    "shape, n_flatten",
    [((1, 28, 28), 64 * 5 * 5), ((2, 28, 28), 64 * 5 * 5), ((1, 28, 56), 64 * 5 * 12), ((2, 28, 56), 64 * 5 * 12)],
)
def test_output_shape(shape, n_flatten):
    space = spaces.Box(0, 255, shape, np.uint8)
    net = SmallCNN(space, features_dim=128)
    assert net.linear[0].in_features == n_flatten
    assert net.features_dim == 128
    out = net(torch.rand(5, *shape))
    assert out.shape == (5, 128) and (out >= 0).all()  # final ReLU


@pytest.mark.parametrize("shape", [(1, 28, 28), (2, 28, 56), (3, 28, 28)])
def test_channels_last_is_the_same_network(shape):
    """The default channels-last layout computes what the plain one does with the same weights (to float rounding),
    forward and backward, its conv weights stored channels-last, and state dicts load across the two."""
    space = spaces.Box(0, 255, shape, np.uint8)
    torch.manual_seed(0)
    fast, plain = SmallCNN(space), SmallCNN(space, channels_last=False)
    plain.load_state_dict(fast.state_dict())
    for name, p in fast.named_parameters():
        assert torch.equal(p, dict(plain.named_parameters())[name]), name
        if p.ndim == 4:
            assert p.is_contiguous(memory_format=torch.channels_last), name
    x = torch.rand(6, *shape)
    out_fast, out_plain = fast(x), plain(x)
    assert torch.allclose(out_fast, out_plain, rtol=1e-5, atol=1e-6)
    out_fast.square().sum().backward()
    out_plain.square().sum().backward()
    for (name, p), q in zip(fast.named_parameters(), plain.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6), name


def test_nature_cnn_fails_on_28x28_and_small_images_are_refused():
    space = spaces.Box(0, 255, (1, 28, 28), np.uint8)
    with pytest.raises(RuntimeError):  # why SmallCNN exists: 28 -> 6 -> 2 -> (3x3 kernel does not fit)
        NatureCNN(space)
    assert SmallCNN(spaces.Box(0, 255, (3, 9, 9), np.uint8)).linear[0].in_features == 64  # 9 -> 7 -> 3 -> 1
    with pytest.raises(ValueError, match="at least 9x9"):
        SmallCNN(spaces.Box(0, 255, (1, 8, 28), np.uint8))
    with pytest.raises(ValueError, match="channels-first image"):
        SmallCNN(spaces.Box(0, 255, (28, 28), np.uint8))
    # Float images that SB3 would not divide by 255: refused unless declared scaled already (as SB3's NatureCNN).
    scaled = spaces.Box(-5.0, 5.0, (3, 28, 28), np.float32)
    with pytest.raises(ValueError, match="normalized_image=True"):
        SmallCNN(scaled)
    assert SmallCNN(scaled, normalized_image=True)(torch.zeros(2, 3, 28, 28)).shape == (2, 128)


class TwoChannelEnv(gym.Env):
    observation_space = spaces.Box(0, 255, (2, 28, 56), np.uint8)
    action_space = spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, True, {}


def test_cnn_policy_with_small_cnn():
    model = PPO(
        "CnnPolicy",
        DummyVecEnv([TwoChannelEnv]),
        policy_kwargs={"features_extractor_class": SmallCNN, "normalize_images": True},
        n_steps=16,
        batch_size=16,
        n_epochs=1,
        seed=0,
        device="cpu",
    )
    cnn = model.policy.features_extractor
    assert isinstance(cnn, SmallCNN)
    # SB3's orthogonal init (gain sqrt 2) reached the channels-last weights: each conv's weight, as an (out, in * kH *
    # kW) matrix, has orthogonal rows or columns (whichever are fewer) of norm sqrt 2; the weights stay channels-last.
    for conv in (m for m in cnn.cnn if isinstance(m, nn.Conv2d)):
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        w = conv.weight.detach().reshape(conv.out_channels, -1)
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        assert torch.allclose(gram, 2 * torch.eye(len(gram)), atol=1e-5)
    model.learn(16)
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in cnn.cnn if isinstance(c, nn.Conv2d))
    action, _ = model.predict(TwoChannelEnv().observation_space.sample(), deterministic=True)
    assert 0 <= int(action) < 3
