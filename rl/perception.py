"""The strongest alternative to common sense: hand the agent the frozen classifier's answer itself
(``docs/DESIGN.md`` section 2).

The round FSAE's regeneration is the abstract network's answer drawn as a prototype image. The usual way to give an
agent pretrained perception is to feed it the frozen network's output directly (PVR, Parisi et al. 2022; R3M). Two
conditions do that, from the same checkpoint as 'fsae':

    'code'     -- the abstract network's code h_L (softmax or group probabilities, sigmoid or linear outputs; with
                  ``code_round`` the rounded code, e.g. the one-hot of the predicted class) beside the raw image;
    'features' -- its last hidden layer h_{L-1} (the PVR way) beside the raw image.

The agent sees a ``Dict`` observation ``{"image": raw uint8 image, "code": float32 vector}`` and uses SB3's
``MultiInputPolicy`` with ``rl.extractor.ImageVectorExtractor``: the image through the same extractor
(``policy.extractor``) as every other condition, the vector concatenated after it.

Contents:
    PERCEPTIONS  -- the two conditions (defined in rl/__init__.py).
    Encoder      -- a frozen abstract network as a function on uint8 image batches -> float32 vectors.
    make_encoder -- load, freeze and check a checkpoint for 'code' or 'features'.
    Perception   -- ``gymnasium.ObservationWrapper``: one environment's ``{image, code}``.
    VecPerception -- SB3 ``VecEnvWrapper``: one forward pass per vector step, terminal observations included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from fsae.checkpoint import CheckpointError, load_fsae, sha256_file
from fsae.config import check
from fsae.layout import ImageLayout
from fsae.model import FSAE
from fsae.runtime import frozen_on
from rl import PERCEPTIONS, images
from rl.common_sense import step_batch


class Encoder:
    """A frozen abstract network: uint8 (B, C, H, W) -> float32 (B, size), its code or its last hidden layer.

    Example:
        >>> from fsae.model import FSAEConfig, LayerSpec
        >>> model = FSAE(FSAEConfig((1, 8, 8), [LayerSpec("conv", 2, 4, 2), LayerSpec("linear", 3)]))
        >>> enc = Encoder(model, "code")
        >>> out = enc(np.zeros((5, 1, 8, 8), np.uint8))
        >>> out.shape, out.dtype, bool(np.allclose(out.sum(1), 1.0))   # softmax probabilities
        ((5, 3), dtype('float32'), True)
        >>> Encoder(model, "features").size                              # h_1: 2 channels x 3 x 3
        18
    """

    def __init__(
        self,
        model: FSAE,
        what: str = "code",
        code_round: bool = False,
        device: str | torch.device = "cpu",
        checkpoint: str | None = None,
    ):
        check(what in PERCEPTIONS, f"what must be one of {PERCEPTIONS}, got '{what}'")
        check(not (code_round and what == "features"), "code_round applies to 'code', not to 'features'")
        self.what = what
        self.code_round = code_round
        self.device = torch.device(device)
        self.checkpoint = checkpoint
        self.model = frozen_on(model, self.device, torch.float32)
        shapes = model.abstract.shapes
        self.size = int(np.prod(shapes[-1] if what == "code" else shapes[-2]))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.model.config.input_shape)

    def check_space(self, space: gym.Space, env_name: str = "the environment", layout: str = "auto") -> ImageLayout:
        """The layout of ``space`` (any uint8 image, ``rl.images``), checked against the model as the regenerator
        checks it (a stack of k frames of its shape fits); one line naming both shapes otherwise."""
        image = images.image_layout(space, layout, env_name)
        images.frames_of(
            self.input_shape, image, f"checkpoint {self.checkpoint}" if self.checkpoint else "the model", env_name
        )
        return image

    def observation_space(self, image: ImageLayout) -> spaces.Dict:
        """``Dict(image=Box(0, 255, (C, H, W), uint8), code=Box(-inf, inf, (k * size,), float32))``: the image
        channels-first, and one vector per frame of a stack of k, concatenated."""
        c, h, w = image.chw
        images.check_readable(image.chw, f"the image {image.describe()}")
        k = c // self.input_shape[0]
        return spaces.Dict(
            {
                "image": spaces.Box(0, 255, image.chw, np.uint8),
                "code": spaces.Box(-np.inf, np.inf, (k * self.size,), np.float32),
            }
        )

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """uint8 (B, k * C, H, W) -> float32 (B, k * size), one forward pass of the abstract network over the B * k
        frames (k = 1 for an image of the model's shape)."""
        assert obs.dtype == np.uint8 and obs.ndim == 4, (
            f"expected a uint8 batch (B, C, H, W), got {obs.dtype} {obs.shape}"
        )
        b, c, h, w = obs.shape
        mc = self.input_shape[0]
        if c != mc:  # a stack: (B * k, C, H, W), each observation's frames consecutive
            return self(obs.reshape(b * (c // mc), mc, h, w)).reshape(b, -1)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(obs)).to(self.device).float().div_(255.0)  # as Regenerator
            _, hs = self.model.abstract(x)
            if self.what == "features":
                out = hs[-2].flatten(1)
            else:
                out = self.model.round_code(hs[-1]) if self.code_round else hs[-1]
            return out.float().cpu().numpy()

    def __deepcopy__(self, memo: dict) -> Encoder:
        """Frozen, so a deep copy (gymnasium's ``RecordConstructorArgs`` makes one per env spec) shares it."""
        return self

    def describe(self) -> dict[str, Any]:
        """What a run records about its encoder (``fsae.json``)."""
        meta = getattr(self.model, "checkpoint_meta", {}) or {}
        return {
            "condition": self.what,
            "checkpoint": str(Path(self.checkpoint).resolve()) if self.checkpoint else None,
            "sha256": sha256_file(self.checkpoint) if self.checkpoint else None,
            "variant": meta.get("variant"),
            "input_shape": list(self.input_shape),
            "head": self.model.config.head,
            "code_round": self.code_round,
            "size": self.size,
            "device": str(self.device),
        }


def make_encoder(
    condition: str,
    checkpoint: str | Path,
    device: str | torch.device = "cpu",
    observation_space: gym.Space | None = None,
    code_round: bool = False,
    env_name: str = "the environment",
    image_layout: str = "auto",
) -> Encoder:
    """Load ``checkpoint`` (an FSAE of any variant: only its abstract half is used), freeze it, and refuse one that
    does not fit ``observation_space`` or is the conventional autoencoder (whose 'code' was learned without labels,
    which would make this another condition)."""
    check(condition in PERCEPTIONS, f"condition must be one of {PERCEPTIONS}, got '{condition}'")
    model = load_fsae(checkpoint, map_location="cpu")
    if (getattr(model, "checkpoint_meta", {}) or {}).get("variant") == "autoencoder":
        raise CheckpointError(
            f"checkpoint {checkpoint} is the conventional autoencoder; '{condition}' reads the FSAE's supervised "
            "abstract network: pass an fsae_<variant>.pt file"
        )
    encoder = Encoder(model, condition, code_round, device, str(checkpoint))
    if observation_space is not None:
        encoder.check_space(observation_space, env_name, image_layout)
    return encoder


class Perception(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """One environment's observations as ``{"image": obs, "code": encoder(obs)}``, the image channels-first (any
    layout comes in, as for ``rl.common_sense.CommonSense``)."""

    def __init__(self, env: gym.Env, encoder: Encoder, image_layout: str = "auto"):
        gym.utils.RecordConstructorArgs.__init__(self, encoder=encoder, image_layout=image_layout)
        gym.ObservationWrapper.__init__(self, env)
        name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        self.layout = encoder.check_space(env.observation_space, name, image_layout)
        self.encoder = encoder
        self.observation_space = encoder.observation_space(self.layout)

    def observation(self, observation: np.ndarray) -> dict[str, np.ndarray]:
        image = self.layout.to_chw(observation[None])
        return {"image": image[0], "code": self.encoder(image)[0]}


class VecPerception(VecEnvWrapper):
    """All environments of an SB3 ``VecEnv`` at once: one forward pass per vector step, over the current observations
    and the terminal ones of the episodes that ended in the step (``infos[i]["terminal_observation"]``).

    Example:
        >>> from stable_baselines3.common.vec_env import DummyVecEnv
        >>> from fsae.model import FSAEConfig, LayerSpec
        >>> model = FSAE(FSAEConfig((1, 8, 8), [LayerSpec("conv", 2, 4, 2), LayerSpec("linear", 3)]))
        >>> class Blank(gym.Env):
        ...     observation_space = spaces.Box(0, 255, (1, 8, 8), np.uint8)
        ...     action_space = spaces.Discrete(2)
        ...     def reset(self, seed=None, options=None):
        ...         return np.zeros((1, 8, 8), np.uint8), {}
        >>> obs = VecPerception(DummyVecEnv([Blank] * 3), Encoder(model, "code")).reset()
        >>> obs["image"].shape, obs["code"].shape
        ((3, 1, 8, 8), (3, 3))
    """

    def __init__(self, venv: VecEnv, encoder: Encoder, image_layout: str = "auto"):
        self.layout = encoder.check_space(venv.observation_space, "the vector environment", image_layout)
        self.encoder = encoder
        super().__init__(venv, observation_space=encoder.observation_space(self.layout))

    def reset(self) -> dict[str, np.ndarray]:
        obs = self.layout.to_chw(self.venv.reset())
        return {"image": obs, "code": self.encoder(obs)}

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        batch, ended = step_batch(obs, dones, infos)
        batch = self.layout.to_chw(batch)
        codes = self.encoder(batch)
        for j, i in enumerate(ended):
            infos[i]["terminal_observation"] = {"image": batch[len(obs) + j], "code": codes[len(obs) + j]}
        return {"image": batch[: len(obs)], "code": codes[: len(obs)]}, rewards, dones, infos
