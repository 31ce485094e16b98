"""A CNN features extractor for small images (MNIST-sized observations), for SB3's ``CnnPolicy``.

Contents:
    SmallCNN -- conv 3x3 s1 -> conv 3x3 s2 -> conv 3x3 s2 -> flatten -> linear, for any channel count and any image
                of at least 9x9 pixels (28x28 and 28x56 here).
    ImageVectorExtractor -- for ``{"image", "code"}`` observations (``rl.perception``): SmallCNN on the image, the
                vector concatenated after it.

SB3's default ``NatureCNN`` (8x8 stride 4, 4x4 stride 2, 3x3 stride 1) needs images of at least 36x36 and fails on
28x28 with a shape error. This one keeps the same idea (a few strided convs, ReLU, one linear layer) at a scale that
fits digits: 28x28 -> 26x26 -> 12x12 -> 5x5 (28x56 -> 26x54 -> 12x26 -> 5x12), 64 channels, then ``features_dim``.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class SmallCNN(BaseFeaturesExtractor):
    """Three 3x3 convolutions (stride 1, 2, 2; 32, 64, 64 channels; ReLU), flatten, linear to ``features_dim``, ReLU.

    The input is channels-first (C, H, W); SB3 has already divided uint8 images by 255 when the policy's
    ``normalize_images`` is on. As with SB3's ``NatureCNN``, a float observation space is refused unless
    ``normalized_image=True`` says the images are scaled already (``policy_kwargs.features_extractor_kwargs``).
    The flattened size is computed with a dummy forward pass, so any C and any H, W >= 9 work: the union wrappers of
    ``rl.common_sense`` double the channels, and two-digit envs are 28x56.

    Example:
        >>> import numpy as np
        >>> space = spaces.Box(0, 255, (2, 28, 56), np.uint8)
        >>> SmallCNN(space)(torch.zeros(4, 2, 28, 56)).shape
        torch.Size([4, 128])
    """

    def __init__(
        self,
        observation_space: gym.Space,
        features_dim: int = 128,
        channels: tuple[int, int, int] = (32, 64, 64),
        normalized_image: bool = False,
    ):
        if not (isinstance(observation_space, spaces.Box) and len(observation_space.shape) == 3):
            raise ValueError(
                f"SmallCNN needs a channels-first image Box (C, H, W), got {observation_space}; "
                "use MlpPolicy for vector observations"
            )
        if not is_image_space(observation_space, check_channels=False, normalized_image=normalized_image):
            raise ValueError(
                f"SmallCNN needs a uint8 Box(0, 255) image space, got {observation_space}; if the images are scaled "
                "already, pass normalized_image=True (and normalize_images=False to the policy)"
            )
        c, h, w = observation_space.shape
        if h < 9 or w < 9:  # 9 -> 7 -> 3 -> 1: the smallest side that leaves the third convolution one output pixel
            raise ValueError(f"SmallCNN needs images of at least 9x9 pixels, got {h}x{w}; upscale the observation")
        super().__init__(observation_space, features_dim)
        c1, c2, c3 = channels
        self.cnn = nn.Sequential(
            nn.Conv2d(c, c1, kernel_size=3, stride=1),  # (B, c1, H-2, W-2)
            nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=3, stride=2),  # (B, c2, (H-3)//2, (W-3)//2)
            nn.ReLU(),
            nn.Conv2d(c2, c3, kernel_size=3, stride=2),  # (B, c3, 5, 5) for 28x28
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flatten = self.cnn(torch.zeros(1, c, h, w)).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_flatten, features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.linear(self.cnn(observations))  # (B, features_dim)


class ImageVectorExtractor(BaseFeaturesExtractor):
    """For a ``Dict`` observation ``{"image": uint8 (C, H, W), "code": float (K,)}`` (``rl.perception``): the image
    through ``SmallCNN`` (the extractor of every other condition, same settings), the vector concatenated after it
    unchanged. Output size ``features_dim + K``.

    Example:
        >>> import numpy as np
        >>> space = spaces.Dict({"image": spaces.Box(0, 255, (1, 28, 28), np.uint8),
        ...                      "code": spaces.Box(0.0, 1.0, (10,), np.float32)})
        >>> ImageVectorExtractor(space)({"image": torch.zeros(4, 1, 28, 28), "code": torch.zeros(4, 10)}).shape
        torch.Size([4, 138])
    """

    def __init__(
        self,
        observation_space: gym.Space,
        features_dim: int = 128,
        channels: tuple[int, int, int] = (32, 64, 64),
        normalized_image: bool = False,
    ):
        if not (isinstance(observation_space, spaces.Dict) and set(observation_space.spaces) == {"image", "code"}):
            raise ValueError(
                f"ImageVectorExtractor needs a Dict space with keys 'image' and 'code', got {observation_space}"
            )
        code = observation_space["code"]
        assert isinstance(code, spaces.Box) and len(code.shape) == 1, f"'code' must be a 1-D Box, got {code}"
        super().__init__(observation_space, features_dim + code.shape[0])
        self.cnn = SmallCNN(observation_space["image"], features_dim, channels, normalized_image)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([self.cnn(observations["image"]), observations["code"].float()], dim=1)
