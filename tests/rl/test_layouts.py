"""Image layouts through the wrappers (channels-first, channels-last, grey (H, W), frame stacks), against transposing
and regenerating by hand; refused shapes; the feature extractor's choice by size.

The images are 12 x 16 (never square), so a transposition that swapped H and W could not pass. The model runs in
float64, where its output does not depend on the batch size (``rl.common_sense``), so frame-by-frame and batched
regenerations can be compared bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.wrappers import FrameStackObservation, ReshapeObservation
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.preprocessing import is_image_space_channels_first
from stable_baselines3.common.torch_layers import NatureCNN
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

from fsae.checkpoint import CheckpointError
from fsae.config import ConfigError
from fsae.layout import detect_layout
from fsae.model import FSAE, FSAEConfig, LayerSpec
from rl.common_sense import CommonSense, Regenerator, VecCommonSense, union_space
from rl.extractor import ImageVectorExtractor, SmallCNN, extractor_class
from rl.images import VecChannelsFirst, frames_of, image_layout
from rl.perception import Encoder, VecPerception

H, W = 12, 16


def tiny_fsae(c: int, seed: int = 0) -> FSAE:
    torch.manual_seed(seed)
    model = FSAE(FSAEConfig((c, H, W), [LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 5)]))
    with torch.no_grad():  # a regeneration that spans [0, 1], so a wrong pixel shows
        for p in model.concrete.parameters():
            p.mul_(4.0)
    return model


def fake_env(c: int, channel_first: bool, seed: int) -> FakeImageEnv:
    """SB3's fake Atari-like env: uniform random uint8 images, episodes of 10 steps (truncated)."""
    env = FakeImageEnv(screen_height=H, screen_width=W, n_channels=c, channel_first=channel_first)
    env.observation_space.seed(seed)  # its observations are the space's samples
    return env


def by_hand(regen: Regenerator, x: np.ndarray) -> np.ndarray:
    """Regenerate one channels-first observation (C, H, W), frame by frame (each frame alone, a batch of one), as
    round(clamp(model(x / 255), 0, 1) * 255)."""
    mc = regen.model.config.input_shape[0]
    frames = []
    for f in x.reshape(-1, mc, H, W):
        with torch.no_grad():
            xhat = regen.model(torch.from_numpy(f[None]).double() / 255)[0].numpy()
        frames.append(np.round(np.clip(xhat, 0, 1) * 255).astype(np.uint8))
    return np.concatenate(frames)


def transpose_by_hand(obs: np.ndarray, channels_last: bool) -> np.ndarray:
    """One observation to (C, H, W): (H, W, C) -> (C, H, W) with np.moveaxis, (H, W) -> (1, H, W)."""
    if obs.ndim == 2:
        return obs[None]
    return np.moveaxis(obs, -1, 0) if channels_last else obs


# --------------------------------------------------------------------------------------------------------------------
# SB3's FakeImageEnv in both layouts, 1 and 3 channels, through both wrappers


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("channel_first", [True, False])
def test_per_env_wrapper_is_the_union_of_transposing_by_hand(c, channel_first):
    regen = Regenerator(tiny_fsae(c), dtype="float64")
    raw, wrapped = fake_env(c, channel_first, 7), CommonSense(fake_env(c, channel_first, 7), regen)
    assert wrapped.layout.channels_last == (not channel_first)
    assert wrapped.observation_space == spaces.Box(0, 255, (2 * c, H, W), np.uint8)
    assert is_image_space_channels_first(wrapped.observation_space)  # SB3 takes it as it is: no VecTransposeImage
    outs = [(raw.reset(seed=0)[0], wrapped.reset(seed=0)[0])]
    outs += [(raw.step(0)[0], wrapped.step(0)[0]) for _ in range(3)]
    for x, out in outs:
        x_chw = transpose_by_hand(x, not channel_first)
        assert wrapped.observation_space.contains(out)
        np.testing.assert_array_equal(out, np.concatenate([x_chw, by_hand(regen, x_chw)]))


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("channel_first", [True, False])
def test_vec_wrapper_is_the_union_of_transposing_by_hand(c, channel_first):
    """Current and terminal observations (episodes of 10 steps), all in one batch."""
    regen = Regenerator(tiny_fsae(c), dtype="float64")
    n = 3
    raw = DummyVecEnv([lambda i=i: fake_env(c, channel_first, i) for i in range(n)])
    venv = VecCommonSense(DummyVecEnv([lambda i=i: fake_env(c, channel_first, i) for i in range(n)]), regen)
    assert venv.observation_space.shape == (2 * c, H, W)

    def expected(batch: np.ndarray) -> np.ndarray:
        return np.stack([np.concatenate([x, by_hand(regen, x)]) for x in (transpose_by_hand(o, not channel_first)
                                                                           for o in batch)])  # fmt: skip

    np.testing.assert_array_equal(venv.reset(), expected(raw.reset()))
    ended = 0
    for _ in range(11):
        actions = np.zeros(n, dtype=np.int64)
        raw.step_async(actions)
        venv.step_async(actions)
        (x, _, dones, raw_infos), (out, _, _, infos) = raw.step_wait(), venv.step_wait()
        np.testing.assert_array_equal(out, expected(x))
        for i in np.flatnonzero(dones):
            terminal = raw_infos[i]["terminal_observation"]
            np.testing.assert_array_equal(infos[i]["terminal_observation"], expected(terminal[None])[0])
            ended += 1
    assert ended == n, "every env ends its 10-step episode once in 11 steps"


def test_copy_on_channels_last_stacks_along_channels():
    regen = Regenerator(None)  # condition 'copy'
    env = CommonSense(fake_env(3, False, 0), regen)
    obs, _ = env.reset(seed=0)
    x = np.moveaxis(fake_env(3, False, 0).reset(seed=0)[0], -1, 0)
    assert obs.shape == (6, H, W)
    np.testing.assert_array_equal(obs, np.concatenate([x, x]))
    venv = VecCommonSense(DummyVecEnv([lambda: fake_env(3, False, 0)]), regen, "stack")
    assert venv.reset().shape == (1, 6, H, W)


def test_grey_frames_without_a_channel_axis():
    """(H, W) frames read as (1, H, W), through both wrappers."""
    regen = Regenerator(tiny_fsae(1), dtype="float64")

    def grey(seed: int):
        return ReshapeObservation(fake_env(1, False, seed), (H, W))

    env = CommonSense(grey(3), regen, union="max")
    assert env.observation_space.shape == (1, H, W)
    x = grey(3).reset(seed=0)[0][None]
    np.testing.assert_array_equal(env.reset(seed=0)[0], np.maximum(x, by_hand(regen, x)))
    venv = VecCommonSense(DummyVecEnv([lambda: grey(3)]), regen, "stack")
    np.testing.assert_array_equal(venv.reset()[0], np.concatenate([x, by_hand(regen, x)]))


# --------------------------------------------------------------------------------------------------------------------
# Frame stacks: a one-frame model regenerates every frame, in one forward pass


class CountingRegenerator(Regenerator):
    """Counts the forward passes and the frames each one saw."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []

    def _regenerate(self, obs):
        self.batches.append(len(obs))
        return super()._regenerate(obs)


@pytest.mark.parametrize(
    "stack, c, k, frame_shape",
    [
        ("gymnasium-grey", 1, 4, (4, H, W)),  # FrameStackObservation of (H, W) frames -> (k, H, W)
        ("gymnasium-rgb", 3, 2, (2, H, W, 3)),  # FrameStackObservation of (H, W, 3) frames -> (k, H, W, 3)
        ("sb3-grey", 1, 4, (H, W, 4)),  # SB3's VecFrameStack of (H, W, 1) -> (H, W, k), stacked along channels
    ],
)
def test_a_frame_stack_is_regenerated_frame_by_frame(stack, c, k, frame_shape):
    """A one-frame model on a stack of k frames (two of RGB: 2 x 2 x 3 channels is the most a 12-pixel-high union
    can hold, see test_a_union_sb3_would_misread_is_refused)."""
    regen = CountingRegenerator(tiny_fsae(c), dtype="float64")
    n = 2

    def env(seed: int):
        if stack == "gymnasium-grey":
            return FrameStackObservation(ReshapeObservation(fake_env(1, False, seed), (H, W)), k)
        return (
            FrameStackObservation(fake_env(c, False, seed), k) if stack == "gymnasium-rgb" else fake_env(c, False, seed)
        )

    def vec():
        v = DummyVecEnv([lambda i=i: env(i) for i in range(n)])
        return VecFrameStack(v, k) if stack == "sb3-grey" else v

    raw, venv = vec(), VecCommonSense(vec(), regen)
    assert raw.observation_space.shape == frame_shape
    assert venv.observation_space.shape == (2 * k * c, H, W)
    layout = detect_layout(frame_shape)
    x, out = raw.reset(), venv.reset()
    for _ in range(3):
        raw.step_async(np.zeros(n, np.int64))
        venv.step_async(np.zeros(n, np.int64))
        x, out = raw.step_wait()[0], venv.step_wait()[0]
    regen.batches.clear()
    raw.step_async(np.zeros(n, np.int64))
    venv.step_async(np.zeros(n, np.int64))
    x, out = raw.step_wait()[0], venv.step_wait()[0]
    assert regen.batches == [n * k], "one forward pass over the B * k frames"
    for b in range(n):
        if stack == "gymnasium-rgb":
            frames = [np.moveaxis(f, -1, 0) for f in x[b]]  # (k, H, W, 3) -> k x (3, H, W)
        elif stack == "gymnasium-grey":
            frames = [f[None] for f in x[b]]  # (k, H, W) -> k x (1, H, W)
        else:
            frames = [x[b][..., i][None] for i in range(k)]  # (H, W, k) -> k x (1, H, W), oldest first
        x_chw = np.concatenate(frames)
        np.testing.assert_array_equal(layout.to_chw(x[b][None])[0], x_chw)
        alone = np.concatenate([by_hand(regen, f) for f in frames])  # each frame regenerated alone
        np.testing.assert_array_equal(out[b], np.concatenate([x_chw, alone]))
        assert (x_chw[:c] != x_chw[c : 2 * c]).any(), "the frames differ, so a mix-up would show"


def test_perception_reads_layouts_and_stacks():
    """'code' on a channels-last 4-frame RGB stack: the image channels-first, one code per frame, each as the encoder
    gives it for that frame alone."""
    enc = Encoder(tiny_fsae(3), "code")
    venv = VecPerception(DummyVecEnv([lambda: FrameStackObservation(fake_env(3, False, 1), 4)]), enc)
    assert venv.observation_space["image"].shape == (12, H, W) and venv.observation_space["code"].shape == (20,)
    raw = DummyVecEnv([lambda: FrameStackObservation(fake_env(3, False, 1), 4)]).reset()[0]
    obs = venv.reset()
    frames = [np.moveaxis(f, -1, 0) for f in raw]
    np.testing.assert_array_equal(obs["image"][0], np.concatenate(frames))
    expected = np.concatenate([enc(f[None])[0] for f in frames])
    np.testing.assert_allclose(obs["code"][0], expected, rtol=0, atol=1e-6)  # float32, batch of 4 against 1


def test_raw_condition_sees_the_same_channels_first_images():
    venv = VecChannelsFirst(
        DummyVecEnv([lambda: fake_env(3, False, 2)]), image_layout(fake_env(3, False, 2).observation_space)
    )
    x = fake_env(3, False, 2).reset(seed=0)[0]
    np.testing.assert_array_equal(venv.reset()[0], np.moveaxis(x, -1, 0))
    assert venv.observation_space.shape == (3, H, W)


# --------------------------------------------------------------------------------------------------------------------
# Refused: one line naming both shapes and the fix


def test_a_model_that_does_not_fit_is_refused_in_one_line():
    model = FSAE(FSAEConfig((3, 56, 56), [LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 5)]))
    env = FakeImageEnv(screen_height=28, screen_width=28, n_channels=3)
    with pytest.raises(CheckpointError) as e:
        CommonSense(env, Regenerator(model))
    assert str(e.value) == (
        "the model takes (C, H, W) = (3, 56, 56), but FakeImageEnv observes (28, 28, 3) channels-last (H, W, C), "
        "read as (C, H, W) = (3, 28, 28); use a model pretrained on this environment's observations "
        "(model.input_shape: [3, 28, 28])"
    )


def test_channels_that_are_not_whole_frames_are_refused():
    env = FrameStackObservation(ReshapeObservation(fake_env(1, False, 0), (H, W)), 4)  # (4, H, W)
    with pytest.raises(CheckpointError) as e:
        CommonSense(env, Regenerator(tiny_fsae(3)))
    assert str(e.value) == (
        "the model takes (C, H, W) = (3, 12, 16), but FakeImageEnv observes (4, 12, 16) channels-first (C, H, W), "
        "read as (C, H, W) = (4, 12, 16): 4 channels are not a whole number of the model's 3-channel frames; use a "
        "model pretrained on this environment's observations (model.input_shape: [4, 12, 16])"
    )


def test_a_grey_model_on_an_rgb_image_is_refused():
    with pytest.raises(CheckpointError, match=r"a 1-channel model does not read a 3-channel \(RGB\) image as three"):
        VecCommonSense(DummyVecEnv([lambda: fake_env(3, False, 0)]), Regenerator(tiny_fsae(1)))


@pytest.mark.parametrize(
    ("stack", "model_c", "why"),
    [
        ((2, H, W, 3), 1, r"a 1-channel model does not read a 3-channel \(RGB\) image as three grey frames"),
        ((2, 3, H, W), 1, r"a 1-channel model does not read a 3-channel \(RGB\) image as three grey frames"),
        ((4, 1, H, W), 2, r"a stack of frames of 1 channels, which the model's 2-channel frames would cut across"),
        ((2, 2, H, W), 1, r"a stack of frames of 2 channels, which the model's 1-channel frames would cut across"),
    ],
)
def test_a_stack_of_other_frames_is_refused(stack, model_c, why):
    """A stack of k frames is k frames of the model's channels, or one input of all its channels (a model pretrained
    on the stacks, as ``envs.collect`` stores them): never two RGB frames read as six grey ones, nor grey frames read
    two at a time."""
    space = spaces.Box(0, 255, stack, np.uint8)
    with pytest.raises(CheckpointError, match=why):
        frames_of((model_c, H, W), image_layout(space), "the model", "Stack-v0")


def test_a_stack_of_the_models_frames_or_of_its_channels_is_read():
    cases = [((2, H, W, 3), 3, 2), ((4, 1, H, W), 1, 4), ((2, 3, H, W), 6, 1), ((3, 1, H, W), 3, 1)]
    for stack, model_c, frames in cases:
        assert frames_of((model_c, H, W), image_layout(spaces.Box(0, 255, stack, np.uint8)), "m", "Env") == frames


def test_a_union_sb3_would_misread_is_refused():
    """(4, 3, 3, 2) stacks to 8 channels of 3x3, which SB3 would take for channels-last."""
    space = spaces.Box(0, 255, (4, 3, 3, 2), np.uint8)
    with pytest.raises(ConfigError, match=r"would be \(C, H, W\) = \(16, 3, 3\), which SB3 reads as channels-last"):
        union_space(space, "stack")


def test_layouts_detected_as_sb3_detects_them_or_stated():
    assert detect_layout((3, 12, 16)).channels_last is False and detect_layout((12, 16, 3)).channels_last is True
    assert detect_layout((12, 16, 3), "channels_first").chw == (12, 16, 3)  # stated wins
    with pytest.raises(ValueError, match=r"cannot tell which axis of \(12, 3, 16\) holds the channels"):
        detect_layout((12, 3, 16))
    # A tie for the smallest axis is refused too: MinAtar's (10, 10, 10) channels-last, or (12, 12, 16), which SB3's
    # rule (and 'auto' before) read channels-first, the rows taken for channels, without a word.
    for shape, tie in (((10, 10, 10), "0, 1, 2"), ((12, 12, 16), "0, 1"), ((2, 12, 12, 16), "0, 1")):
        with pytest.raises(ValueError, match=rf"holds the channels \(axes {tie} of .* tie\); set image_layout"):
            detect_layout(shape)
    assert detect_layout((10, 10, 10), "channels_last").chw == (10, 10, 10)
    assert detect_layout((12, 12, 16), "channels_last").chw == (16, 12, 12)
    with pytest.raises(
        ConfigError,
        match=r"not an image .* add env_wrappers \[minigrid.wrappers.ImgObsWrapper\].*"
        r"for MiniGrid.* put \{minigrid.wrappers.RGBImgPartialObsWrapper: \{tile_size: 4\}\} before it",
    ):
        image_layout(spaces.Dict({"image": spaces.Box(0, 255, (7, 7, 3), np.uint8), "direction": spaces.Discrete(4)}))


# --------------------------------------------------------------------------------------------------------------------
# The features extractor scales with the image


def test_extractor_choice_by_size():
    def box(*shape):
        return spaces.Box(0, 255, shape, np.uint8)

    assert extractor_class(box(4, 84, 84)) is NatureCNN
    assert extractor_class(box(3, 36, 36)) is NatureCNN
    assert extractor_class(box(3, 35, 36)) is SmallCNN
    assert extractor_class(box(2, 28, 28)) is SmallCNN and extractor_class(box(3, 28, 28), "auto") is SmallCNN
    assert extractor_class(box(4, 84, 84), "small") is SmallCNN
    with pytest.raises(ConfigError, match=r"'nature' \(SB3's NatureCNN\) needs images of at least 36x36, got \(3, 28"):
        extractor_class(box(3, 28, 28), "nature")
    dict_space = spaces.Dict({"image": box(4, 84, 84), "code": spaces.Box(0, 1, (10,), np.float32)})
    ext = ImageVectorExtractor(dict_space, 512, extractor="auto")
    assert isinstance(ext.cnn, NatureCNN)
    assert ext({"image": torch.zeros(2, 4, 84, 84), "code": torch.zeros(2, 10)}).shape == (2, 522)
