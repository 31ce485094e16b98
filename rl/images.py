"""Image observations of any layout, for the wrappers and the policy: checked once, then handed on channels-first.

Contents:
    image_layout     -- the ``fsae.layout.ImageLayout`` of an observation space (a uint8 image, 2-D, 3-D or a stack),
                        or one line saying what it is not and which wrappers make it one (``envs.spec``'s, the one
                        check task data collection makes too).
    frames_of        -- how many frames of a model's (C, H, W) an observation holds (a frame stack: k >= 1), or one
                        line naming both shapes and the fix.
    check_readable   -- refuse a channels-first shape that SB3 would take for channels-last.
    VecChannelsFirst -- SB3 ``VecEnvWrapper`` handing any layout on as (C, H, W) (the raw condition 'none').

Every wrapper of the project returns channels-first uint8 images (C, H, W) (stacks along C), the layout SB3's
``CnnPolicy`` takes as it is: SB3 adds its own ``VecTransposeImage`` only to a space whose smallest axis is not the
first (``stable_baselines3.common.preprocessing.is_image_space_channels_first``), so ``check_readable`` makes sure C
is at most H and W.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from envs.spec import image_layout as image_layout  # re-exported: the one check of an image space
from fsae.checkpoint import CheckpointError
from fsae.config import ConfigError
from fsae.layout import ImageLayout


def frames_of(model_shape: tuple[int, ...], layout: ImageLayout, who: str, env_name: str) -> int:
    """How many frames of ``model_shape`` (C, H, W) one observation of ``layout`` holds: 1 for an image of the model's
    shape, k for a stack of k frames (its channels-first view has k * C channels). ``CheckpointError`` of one line
    naming both shapes and the fix when the model does not fit: for a 1-channel model on 3-channel images, alone or
    stacked (an RGB image is not three grey frames), and for a stack whose frames are not the model's (k frames of
    (C, H, W) are read as k model frames, or as one of k * C channels, never cut across)."""
    mc, mh, mw = model_shape
    c, h, w = layout.chw
    frame_c = layout.shape[-1] if layout.channels_last else layout.shape[-3] if len(layout.shape) > 2 else 1
    seen = f"{env_name} observes {layout.describe()}, read as (C, H, W) = {layout.chw}"
    fix = "use a model pretrained on this environment's observations"
    head = f"{who} takes (C, H, W) = {tuple(model_shape)}, but {seen}"
    if (h, w) != (mh, mw):
        raise CheckpointError(f"{head}; {fix} (model.input_shape: [{frame_c}, {h}, {w}])")
    if c % mc:
        raise CheckpointError(
            f"{head}: {c} channels are not a whole number of the model's {mc}-channel frames; {fix} "
            f"(model.input_shape: [{frame_c}, {h}, {w}])"
        )
    if mc == 1 and frame_c == 3 and len(layout.shape) > 2:
        raise CheckpointError(
            f"{head}: a 1-channel model does not read a 3-channel (RGB) image as three grey frames; {fix} "
            f"(model.input_shape: [3, {h}, {w}]) or make the frames grey (gymnasium.wrappers.GrayscaleObservation)"
        )
    if len(layout.shape) == 4 and mc not in (frame_c, c):
        raise CheckpointError(
            f"{head}: a stack of frames of {frame_c} channels, which the model's {mc}-channel frames would cut "
            f"across; {fix} (model.input_shape: [{frame_c}, {h}, {w}])"
        )
    return c // mc


def check_readable(chw: tuple[int, int, int], what: str) -> None:
    """Refuse a channels-first shape (C, H, W) that SB3 would read as channels-last (C larger than H or W) and
    silently transpose."""
    c, h, w = chw
    if c > min(h, w):
        raise ConfigError(
            f"{what} would be (C, H, W) = {tuple(chw)}, which SB3 reads as channels-last (it takes the smallest axis "
            "for the channels); use fewer channels (union max or mean, a shorter frame stack) or larger images"
        )


class VecChannelsFirst(VecEnvWrapper):
    """Observations of ``layout`` (grey, channels-last, a stack) handed on channels-first (C, H, W), terminal
    observations included: what the raw condition 'none' sees, the same raw half the union wrappers show.

    Example:
        >>> from stable_baselines3.common.vec_env import DummyVecEnv
        >>> from stable_baselines3.common.envs import FakeImageEnv
        >>> venv = DummyVecEnv([lambda: FakeImageEnv(screen_height=36, screen_width=36, n_channels=3)] * 2)
        >>> layout = image_layout(venv.observation_space)
        >>> VecChannelsFirst(venv, layout).reset().shape
        (2, 3, 36, 36)
    """

    def __init__(self, venv: VecEnv, layout: ImageLayout):
        self.layout = layout
        check_readable(layout.chw, f"the observation {layout.describe()}")
        super().__init__(venv, observation_space=spaces.Box(0, 255, layout.chw, np.uint8))

    def reset(self) -> np.ndarray:
        return self.layout.to_chw(self.venv.reset())

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        for i in np.flatnonzero(dones):
            if "terminal_observation" in infos[i]:
                infos[i]["terminal_observation"] = self.layout.to_chw(infos[i]["terminal_observation"][None])[0]
        return self.layout.to_chw(obs), rewards, dones, infos
