"""CNN features extractors for SB3's ``CnnPolicy``: SmallCNN for small images, SB3's NatureCNN for large ones.

Contents:
    EXTRACTORS, NATURE_MIN_SIDE -- the settings of ``policy.extractor``, and the smallest side NatureCNN takes (36).
    extractor_class -- 'auto' (by the image's size), 'small' or 'nature' -> the class, checked against the space.
    SmallCNN -- conv 3x3 s1 -> conv 3x3 s2 -> conv 3x3 s2 -> flatten -> linear, for any channel count and any image
                of at least 9x9 pixels (28x28 and 28x56 here).
    ImageVectorExtractor -- for ``{"image", "code"}`` observations (``rl.perception``): the image through the same
                extractor as the other conditions, the vector concatenated after it.

SB3's default ``NatureCNN`` (8x8 stride 4, 4x4 stride 2, 3x3 stride 1) needs images of at least 36x36 and fails on
28x28 with a shape error. SmallCNN keeps the same idea (a few strided convs, ReLU, one linear layer) at a scale that
fits digits: 28x28 -> 26x26 -> 12x12 -> 5x5 (28x56 -> 26x54 -> 12x26 -> 5x12), 64 channels, then ``features_dim``.
On large images its stride-1 first layer is costly (on 4x84x84 Pong stacks PPO ran at 20 steps/s with SmallCNN
against 202 with NatureCNN on one core, issue 17), so 'auto' takes NatureCNN from 36x36 up (84x84 Atari frames) and
SmallCNN below (28x28 digits and MiniGrid views).
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import torch
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, NatureCNN
from torch import nn

from fsae.config import ConfigError

EXTRACTORS = ("auto", "small", "nature")
NATURE_MIN_SIDE = 36  # 36 -> 8 (8x8 s4) -> 3 (4x4 s2) -> 1 (3x3 s1)
SMALL_MIN_SIDE = 9  # 9 -> 7 (3x3 s1) -> 3 (3x3 s2) -> 1 (3x3 s2)


def extractor_class(space: gym.Space, kind: str = "auto") -> type[BaseFeaturesExtractor]:
    """The image extractor for ``space`` (channels-first (C, H, W)): 'nature' (SB3's NatureCNN), 'small'
    (SmallCNN), or 'auto': NatureCNN when both sides are at least ``NATURE_MIN_SIDE``, else SmallCNN. ``ConfigError``
    when the image is too small for the one chosen."""
    if kind not in EXTRACTORS:
        raise ConfigError(f"policy.extractor must be one of {list(EXTRACTORS)}, got '{kind}'")
    shape = getattr(space, "shape", None) or ()
    side = min(shape[1:]) if len(shape) == 3 else 0
    if kind == "nature" and side < NATURE_MIN_SIDE:
        raise ConfigError(
            f"policy.extractor 'nature' (SB3's NatureCNN) needs images of at least {NATURE_MIN_SIDE}x"
            f"{NATURE_MIN_SIDE}, got {shape}; use 'small' or 'auto'"
        )
    if kind == "nature" or (kind == "auto" and side >= NATURE_MIN_SIDE):
        return NatureCNN
    if side < SMALL_MIN_SIDE:
        raise ConfigError(
            f"the policy's images {shape} are smaller than SmallCNN's {SMALL_MIN_SIDE}x{SMALL_MIN_SIDE}; use larger "
            "images (e.g. MiniGrid's RGBImgPartialObsWrapper: 7 tiles x tile_size pixels)"
        )
    return SmallCNN


class SmallCNN(BaseFeaturesExtractor):
    """Three 3x3 convolutions (stride 1, 2, 2; 32, 64, 64 channels; ReLU), flatten, linear to ``features_dim``, ReLU.

    With ``channels_last`` (the default) the convolutions run on channels-last tensors (the same logical
    (B, C, H, W) images and weights, stored pixel by pixel), oneDNN's preferred layout on CPU: forward + backward of
    the agents' policies 1.16-1.27x faster on the project's CPU (``python benchmarks/extractor.py``); outputs equal
    the channels-first ones to float rounding. ``channels_last=False`` (``policy_kwargs.features_extractor_kwargs``)
    keeps the plain layout.

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
        channels_last: bool = True,
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
        if h < SMALL_MIN_SIDE or w < SMALL_MIN_SIDE:  # the smallest side that leaves the third conv one output pixel
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
        self.channels_last = channels_last
        if channels_last:  # the same weights, stored (out, kH, kW, in), oneDNN's preferred layout, converted once here
            self.cnn.to(memory_format=torch.channels_last)

    def apply(self, fn: Callable[[nn.Module], None]) -> SmallCNN:
        """``nn.Module.apply`` on the weights in the plain layout: SB3 initialises a policy by applying orthogonal
        init, which views each weight as a matrix and cannot view a channels-last one."""
        if not self.channels_last:
            return super().apply(fn)
        self.cnn.to(memory_format=torch.contiguous_format)
        super().apply(fn)
        self.cnn.to(memory_format=torch.channels_last)
        return self

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            observations = observations.contiguous(memory_format=torch.channels_last)
        return self.linear(self.cnn(observations))  # (B, features_dim); Flatten reads (C, H, W) order either way


class ImageVectorExtractor(BaseFeaturesExtractor):
    """For a ``Dict`` observation ``{"image": uint8 (C, H, W), "code": float (K,)}`` (``rl.perception``): the image
    through the extractor every other condition uses (``extractor_class``: SmallCNN or NatureCNN, same settings), the
    vector concatenated after it unchanged. Output size ``features_dim + K``.

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
        extractor: str = "small",
        channels_last: bool = True,
    ):
        if not (isinstance(observation_space, spaces.Dict) and set(observation_space.spaces) == {"image", "code"}):
            raise ValueError(
                f"ImageVectorExtractor needs a Dict space with keys 'image' and 'code', got {observation_space}"
            )
        code = observation_space["code"]
        assert isinstance(code, spaces.Box) and len(code.shape) == 1, f"'code' must be a 1-D Box, got {code}"
        super().__init__(observation_space, features_dim + code.shape[0])
        image = observation_space["image"]
        cls = extractor_class(image, extractor)
        if cls is SmallCNN:
            self.cnn: BaseFeaturesExtractor = SmallCNN(image, features_dim, channels, normalized_image, channels_last)
        else:
            self.cnn = cls(image, features_dim, normalized_image=normalized_image)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([self.cnn(observations["image"]), observations["code"].float()], dim=1)
