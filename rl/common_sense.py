"""Common sense for RL (paper Fig. 4, ``docs/DESIGN.md`` section 2): the agent sees the union of each observation and a
frozen autoencoder's regeneration of it.

Contents:
    UNIONS             -- the union modes (the conditions, rl.CONDITIONS, are defined in rl/__init__.py).
    Regenerator        -- a frozen model (or the identity, for 'copy'): uint8 batch (B, C, H, W) -> uint8 regeneration;
                          where the regeneration depends on the rounded code alone, a lookup of prototype images
                          (``rl.lookup``).
    make_regenerator   -- the regenerator of a condition: loads, freezes and checks a checkpoint.
    union, union_space -- THE one implementation of "regenerate a uint8 batch and unite it with the raw batch", and
                          the observation space it produces. Both wrappers call ``union``, so they agree bit for bit.
    CommonSense        -- ``gymnasium.ObservationWrapper`` for one environment.
    VecCommonSense     -- SB3 ``VecEnvWrapper``: one forward pass per vector step for all environments, terminal
                          observations (``infos[i]["terminal_observation"]``) included in the same batch.

Layouts (``rl.images``, ``fsae.layout``). Observations may come channels-first (C, H, W), channels-last (H, W, C), as
grey frames (H, W) or as frame stacks ((k, H, W) from FrameStackObservation of grey frames, (k, H, W, C), SB3's
VecFrameStack along C); the wrappers read them as SB3 does (or as ``image_layout`` states), compute on channels-first
batches, and return the union channels-first, (C', H, W) uint8, the layout SB3's ``CnnPolicy`` takes as it is. A model
of (C, H, W) regenerates an observation of k * C channels as k frames of C, in one forward pass over all frames.

Union modes, for a raw uint8 observation x (C, H, W) and its quantised regeneration q = round(clamp(xhat, 0, 1) * 255):
    'stack' (default): concat(x, q) along channels, uint8 (2C, H, W); both halves are uint8 in [0, 255], so SB3's
                       image normalisation (divide by 255) treats them alike.
    'max':             elementwise max(x, q), (C, H, W): the union of two images.
    'mean':            elementwise mean, rounded half up: (x + q + 1) // 2, (C, H, W).

Batch invariance. The per-environment wrapper regenerates batches of one, the vector wrapper batches of n_envs; in
float32 the GEMMs sum in an order that depends on the batch size (measured on this CPU: 43159 of 50176 outputs differ
by up to 1e-6 between one batch of 64 and 64 batches of one, and 3 pixels round to a neighbouring uint8 grey level).
The regenerator computes in float32 by default (``dtype``), the fast choice: the batched wrapper ran at 2.8x the
per-environment wrapper's steps/s in float32 against 1.7x in float64 (8 envs, one thread, ``benchmarks/wrapper.py``).
``dtype='float64'`` makes both wrappers agree bit for bit (differences of about 1e-16 cannot change a rounded uint8
value in practice); the tests that compare the two wrappers use it.
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
from rl import CONDITIONS, images
from rl.lookup import Lookup, quantise

UNIONS = ("stack", "max", "mean")
DTYPES = {"float64": torch.float64, "float32": torch.float32}


class Regenerator:
    """A frozen autoencoder as a function on uint8 image batches, or the identity (condition 'copy').

    ``regen(obs)`` maps a uint8 array (B, C, H, W) to the uint8 regeneration round(clamp(xhat, 0, 1) * 255) of the same
    shape, with one forward pass on ``device`` (plus ``feedback_steps`` negative-feedback passes, see
    ``FSAE.regenerate``). The model is in ``eval()`` with gradients off and runs under ``torch.inference_mode``, in
    the layout it comes in (channels-last was tried for the abstract pass: faster alone, no gain measured inside PPO,
    ``docs/PERFORMANCE.md``).

    On a CUDA device (unless ``cuda_graph=False``) the whole call, uint8 in to uint8 out, feedback passes included, is
    captured once per batch shape as a CUDA graph and then replayed: one launch instead of a few dozen small kernels
    launched from Python, which is what a vector step of a few images costs on a GPU (the gain for PPO is in
    ``docs/PERFORMANCE.md``). It computes what the plain forward pass computes, with the same kernels: bit for bit
    under PyTorch's default cuDNN settings (``pytest -m gpu``; ``benchmarks/cuda_graph.py``). With
    ``cudnn.benchmark`` on (as ``seed_everything`` sets it for speed) cuDNN may pick other kernels per shape, and any
    two calls, graphed or not, may then differ in the last bits of a float and so, rarely, by one grey level.

    Each captured shape keeps its graph and its own memory: with the fast FSAE and 8 envs, PPO's peak GPU memory went
    from 164 to 262 MB (``docs/bench_gpu``); the paper's FSAE needs about 1 MB per image of a batch. ``VecCommonSense``
    meets up to n_envs + 1 shapes (n_envs + k rows: the current observations and the terminal ones of the k episodes
    that end in the step), so only the first ``max_graphs`` shapes are captured and any other runs the plain forward
    pass. A graph bakes in the model's parameters (their addresses), ``dtype``, ``device`` and ``feedback_steps``:
    don't change them after the first call, and don't call one regenerator from several threads. Graphs are used only
    while ``device`` is the current CUDA device (or names none); ``cuda_graph`` is the setting in effect. With the
    lookup the graph holds the abstract pass and the lookup.

    **The lookup** (``lookup=True``, the default; ``rl.lookup``). With round and no jump connections, the concrete
    network sees only the rounded code, so the regeneration is one of a handful of images: the regenerator computes them
    once, when it is made, and serves each observation by the abstract pass, the rounding, and a lookup of the image of
    its code; on a CPU that pass runs as GEMMs, checked by a margin (``gemm``; ``rl.lookup``). Negative feedback cannot
    change such a regeneration: a step is accepted only if it keeps the rounded code (the concept test of
    ``FSAE.regenerate``), and then the concrete network's output, and the residual, are what they were, so no step is
    ever accepted (tested for every T); the lookup serves any ``feedback_steps`` without running them. The lookup's
    images equal the forward pass's bit for bit, per environment and batched, in float64 and float32 (tested: three
    heads, batches of 1 to 64, with and without the GEMM pass). In float32 that is as exact as the forward pass itself,
    which depends on the batch size (the module docstring): the table is computed at the batch of all codes, and a batch
    of another size can run other GEMM kernels (seen at 1, 2, 3 and 32) whose last bits differ from it, which could move
    a pixel that lies within a rounding error of a grey level's boundary (as between the per-environment and the batched
    wrapper; counted on MNIST in ``docs/PERFORMANCE.md``). ``describe()`` says whether it is on; at most ``max_codes``
    images are kept (else the forward pass runs).
    """

    def __init__(
        self,
        model: FSAE | None,
        device: str | torch.device = "cpu",
        feedback_steps: int = 0,
        dtype: str = "float32",
        condition: str = "fsae",
        checkpoint: str | None = None,
        cuda_graph: bool = True,
        max_graphs: int = 16,
        lookup: bool = True,
        max_codes: int = 4096,
        gemm: bool = True,
    ):
        check(dtype in DTYPES, f"dtype must be one of {list(DTYPES)}, got '{dtype}'")
        check(feedback_steps >= 0, f"feedback_steps must be >= 0, got {feedback_steps}")
        check(max_graphs >= 0, f"max_graphs must be >= 0, got {max_graphs}")
        self.device = torch.device(device)
        self.dtype = DTYPES[dtype]
        self.feedback_steps = feedback_steps
        self.condition = condition
        self.checkpoint = checkpoint
        self.model = None if model is None else frozen_on(model, self.device, self.dtype)
        self.cuda_graph = cuda_graph and model is not None and self.device.type == "cuda"
        self.max_graphs = max_graphs
        self._graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self._lookup = Lookup.of(self.model, max_codes, gemm) if lookup and self.model is not None else None

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """(C, H, W) the model was built for; None for the identity."""
        return None if self.model is None else tuple(self.model.config.input_shape)

    def check_space(self, space: gym.Space, env_name: str = "the environment", layout: str = "auto") -> ImageLayout:
        """The layout of ``space`` (``rl.images.image_layout``: any uint8 image, 2-D, 3-D or a frame stack), checked
        against the model: its (H, W) must be the model's and its channels (channels-first) a whole number k of the
        model's (k frames). ``ConfigError`` / ``CheckpointError`` of one line naming both shapes otherwise."""
        image = images.image_layout(space, layout, env_name)
        if self.input_shape is not None:
            where = f"checkpoint {self.checkpoint}" if self.checkpoint else "the model"
            images.frames_of(self.input_shape, image, where, env_name)
        return image

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """uint8 (B, k * C, H, W) -> uint8 (B, k * C, H, W), for a model of (C, H, W): a stack of k frames is
        regenerated frame by frame, in one forward pass over the B * k frames."""
        if self.model is None:
            return obs
        b, c, h, w = obs.shape
        mc = self.input_shape[0]  # type: ignore[index]
        assert c % mc == 0 and (h, w) == self.input_shape[1:], f"batch {obs.shape} does not fit {self.input_shape}"
        if c != mc:  # (B, k * C, H, W) -> (B * k, C, H, W): the frames of each observation are consecutive
            return self(obs.reshape(b * (c // mc), mc, h, w)).reshape(obs.shape)
        obs = np.ascontiguousarray(obs)  # a view with negative strides (np.flipud) is not a tensor; else no copy
        with torch.inference_mode():
            captured = self._graph(obs.shape) if self.cuda_graph and self._on_current_device() else None
            if captured is None:
                if self.gemm:  # the lookup's CPU path: numpy in and out
                    return self._lookup.serve(obs)
                return self._regenerate(torch.from_numpy(obs).to(self.device)).cpu().numpy()
            graph, static_in, static_out = captured
            static_in.copy_(torch.from_numpy(obs))
            graph.replay()
            return static_out.cpu().numpy()

    @property
    def gemm(self) -> bool:
        """Whether the lookup picks rows by ``fsae.gemm``'s pass (on a CPU, for a model that passed its check)."""
        return self._lookup is not None and self._lookup.gemm is not None

    @property
    def lookup(self) -> bool:
        """Whether observations are served from the table of prototype images (see the class docstring)."""
        return self._lookup is not None

    def _regenerate(self, obs: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) on the device -> uint8 regeneration on the device."""
        x = obs.to(self.dtype).div_(255.0)  # in [0, 1]
        if self._lookup is not None:
            return self._lookup(x)
        return quantise(self.model.regenerate(x, steps=self.feedback_steps))

    def _on_current_device(self) -> bool:
        """A graph captures the current device's stream: on another device it would capture nothing."""
        return self.device.index is None or self.device.index == torch.cuda.current_device()

    def _graph(self, shape: tuple[int, ...]) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor] | None:
        """The graph of this batch shape, captured on its first call while fewer than ``max_graphs`` are held; None
        past the cap (that shape runs the plain forward pass)."""
        if shape not in self._graphs and len(self._graphs) < self.max_graphs:
            self._graphs[shape] = self._capture(shape)
        return self._graphs.get(shape)

    def _capture(self, shape: tuple[int, ...]) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        """A CUDA graph of ``_regenerate`` on a static input buffer of ``shape``: (graph, input, output)."""
        static_in = torch.zeros(shape, dtype=torch.uint8, device=self.device)
        side = torch.cuda.Stream(self.device)  # warm-up on a side stream before capture, as torch.cuda.graph asks
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._regenerate(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self._regenerate(static_in)
        return graph, static_in, static_out

    def __deepcopy__(self, memo: dict) -> Regenerator:
        """The regenerator is frozen, so a deep copy shares it: gymnasium's ``RecordConstructorArgs`` deep-copies each
        wrapper's arguments into ``env.spec``, which would otherwise copy the model once per environment (and fail
        on captured CUDA graphs, which cannot be copied)."""
        return self

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (say, inside a per-env ``CommonSense`` sent to a ``SubprocVecEnv`` worker) without its CUDA graphs,
        which cannot be pickled; they are captured again on use."""
        return {**self.__dict__, "_graphs": {}}

    def describe(self) -> dict[str, Any]:
        """What a run records about its regenerator (``fsae.json``): path, SHA-256, variant, shape, settings."""
        info: dict[str, Any] = {"condition": self.condition, "checkpoint": None, "sha256": None, "variant": None}
        if self.checkpoint is not None:
            info["checkpoint"] = str(Path(self.checkpoint).resolve())
            info["sha256"] = sha256_file(self.checkpoint)
        if self.model is not None:
            cfg = self.model.config
            meta = getattr(self.model, "checkpoint_meta", {}) or {}
            info["variant"] = meta.get("variant") or ("round" if cfg.round else f"jumps={cfg.jumps}")
            info["input_shape"] = list(cfg.input_shape)
            info["round"], info["jumps"] = cfg.round, cfg.jumps
        info["feedback_steps"] = self.feedback_steps
        info["dtype"] = str(self.dtype).removeprefix("torch.")
        info["device"] = str(self.device)
        info["cuda_graph"], info["max_graphs"] = self.cuda_graph, self.max_graphs
        info["lookup"], info["gemm"] = self.lookup, self.gemm
        table = self._lookup
        info["prototypes"], info["gemm_check"] = (len(table), table.gemm_check) if table is not None else (0, None)
        return info


def make_regenerator(
    condition: str,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    observation_space: gym.Space | None = None,
    feedback_steps: int = 0,
    dtype: str = "float32",
    env_name: str = "the environment",
    cuda_graph: bool = True,
    lookup: bool = True,
    image_layout: str = "auto",
) -> Regenerator | None:
    """The regenerator for a condition: None for 'none' (no wrapper), the identity for 'copy', else a loaded model.

    'fsae' and 'autoencoder' load ``checkpoint`` with ``load_fsae`` (eval mode), freeze it, and, when
    ``observation_space`` is given, refuse a model that does not fit it (``CheckpointError`` naming both shapes).
    A checkpoint whose recorded variant contradicts the condition (the autoencoder under 'fsae', or an FSAE variant
    under 'autoencoder') is refused too, since mixing them up would silently swap two experimental conditions.
    ``cuda_graph`` and ``lookup``: see ``Regenerator``; ``image_layout``: see ``rl.images``.
    """
    check(condition in CONDITIONS, f"condition must be one of {CONDITIONS}, got '{condition}'")
    if condition == "none":
        return None
    if condition == "copy":
        regen = Regenerator(None, device, 0, dtype, condition)
    else:
        if checkpoint is None:
            raise CheckpointError(f"condition '{condition}' needs a checkpoint")
        model = load_fsae(checkpoint, map_location="cpu")
        variant = (getattr(model, "checkpoint_meta", {}) or {}).get("variant")
        if condition == "fsae" and variant == "autoencoder":
            raise CheckpointError(
                f"checkpoint {checkpoint} is the conventional autoencoder; use condition 'autoencoder' for it, "
                "or pass an fsae_<variant>.pt file for 'fsae'"
            )
        if condition == "autoencoder" and variant not in (None, "autoencoder"):
            raise CheckpointError(
                f"checkpoint {checkpoint} is the FSAE variant '{variant}', not the conventional autoencoder; "
                "pass the autoencoder.pt written by the same pretraining run"
            )
        regen = Regenerator(model, device, feedback_steps, dtype, condition, str(checkpoint), cuda_graph, lookup=lookup)
    if observation_space is not None:
        regen.check_space(observation_space, env_name, image_layout)
    return regen


def union_space(space: gym.Space, mode: str, layout: str = "auto") -> spaces.Box:
    """The observation space the wrappers return for observations of ``space`` (any layout, ``rl.images``):
    channels-first uint8 (2C, H, W) for 'stack', (C, H, W) otherwise, C the channels of ``space`` read channels-first
    (a stack's frames along C). One that SB3 would take for channels-last is refused (``rl.images.check_readable``)."""
    check(mode in UNIONS, f"union must be one of {UNIONS}, got '{mode}'")
    image = images.image_layout(space, layout)
    c, h, w = image.chw
    shape = (2 * c if mode == "stack" else c, h, w)
    images.check_readable(shape, f"the union '{mode}' of {image.describe()}")
    return spaces.Box(0, 255, shape, np.uint8)


def step_batch(obs: np.ndarray, dones: np.ndarray, infos: list[dict]) -> tuple[np.ndarray, list[int]]:
    """A vector step's observations (n_envs, ...) and, after them, the terminal observations SB3 keeps in
    ``infos[i]["terminal_observation"]`` for the episodes that ended in the step: one batch (n_envs + k, ...), for one
    forward pass over both, and the k envs whose terminal observation is row n_envs + j. The batch is ``obs`` itself
    when no episode ended."""
    ended = [int(i) for i in np.flatnonzero(dones) if "terminal_observation" in infos[i]]
    if not ended:
        return obs, ended
    return np.concatenate([obs, np.stack([infos[i]["terminal_observation"] for i in ended])]), ended


def union(obs: np.ndarray, regen: Regenerator, mode: str = "stack") -> np.ndarray:
    """Raw uint8 batch (B, C, H, W), channels-first, -> its union with the regeneration: (B, 2C, H, W) for 'stack'
    (the raw channels, then the regenerated ones), else (B, C, H, W).

    The single implementation behind both wrappers: one call, one forward pass for the whole batch. The wrappers
    bring any other layout to channels-first first (``fsae.layout.ImageLayout.to_chw``).
    """
    assert obs.dtype == np.uint8 and obs.ndim == 4, f"expected a uint8 batch (B, C, H, W), got {obs.dtype} {obs.shape}"
    q = regen(obs)  # (B, C, H, W) uint8
    if mode == "stack":
        return np.concatenate([obs, q], axis=1)
    if mode == "max":
        return np.maximum(obs, q)
    if mode == "mean":
        return ((obs.astype(np.uint16) + q + 1) >> 1).astype(np.uint8)
    raise ValueError(f"union must be one of {UNIONS}, got '{mode}'")


class CommonSense(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """One environment's observations, united with their regeneration by a frozen autoencoder.

    Any image layout comes in (``rl.images``: grey (H, W), (C, H, W), (H, W, C), a frame stack, read as SB3 reads it or
    as ``image_layout`` states); the union goes out channels-first (``union_space``), which SB3's ``CnnPolicy`` takes
    as it is. A model of (C, H, W) regenerates a stack of k such frames frame by frame.

    Example:
        >>> from fsae.model import FSAEConfig, LayerSpec
        >>> model = FSAE(FSAEConfig((1, 8, 8), [LayerSpec("conv", 2, 4, 2), LayerSpec("linear", 3)]))
        >>> class Blank(gym.Env):
        ...     observation_space = spaces.Box(0, 255, (1, 8, 8), np.uint8)
        ...     action_space = spaces.Discrete(2)
        ...     def reset(self, seed=None, options=None):
        ...         return np.zeros((1, 8, 8), np.uint8), {}
        >>> env = CommonSense(Blank(), Regenerator(model), union="stack")
        >>> env.observation_space.shape, env.reset()[0].shape
        ((2, 8, 8), (2, 8, 8))
    """

    def __init__(self, env: gym.Env, regenerator: Regenerator, union: str = "stack", image_layout: str = "auto"):
        # Recorded in env.spec, so gym.make(env.spec) (used by Gymnasium's env checker) can rebuild the stack.
        gym.utils.RecordConstructorArgs.__init__(self, regenerator=regenerator, union=union, image_layout=image_layout)
        gym.ObservationWrapper.__init__(self, env)
        name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        self.layout = regenerator.check_space(env.observation_space, name, image_layout)
        self.regenerator = regenerator
        self.union = union
        self.observation_space = union_space(env.observation_space, union, image_layout)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return union(self.layout.to_chw(observation[None]), self.regenerator, self.union)[0]


class VecCommonSense(VecEnvWrapper):
    """All environments of an SB3 ``VecEnv`` at once: one forward pass per vector step.

    The batch holds the n_envs current observations and, after episode ends, the terminal observations SB3 keeps in
    ``infos[i]["terminal_observation"]`` (used to bootstrap truncated episodes), so both are transformed the same way
    in the same pass. Observations move to the regenerator's device once per step. Layouts as ``CommonSense``.

    Example:
        >>> from stable_baselines3.common.vec_env import DummyVecEnv
        >>> from fsae.model import FSAEConfig, LayerSpec
        >>> model = FSAE(FSAEConfig((1, 8, 8), [LayerSpec("conv", 2, 4, 2), LayerSpec("linear", 3)]))
        >>> class Blank(gym.Env):
        ...     observation_space = spaces.Box(0, 255, (1, 8, 8), np.uint8)
        ...     action_space = spaces.Discrete(2)
        ...     def reset(self, seed=None, options=None):
        ...         return np.zeros((1, 8, 8), np.uint8), {}
        >>> venv = VecCommonSense(DummyVecEnv([Blank] * 3), Regenerator(model), union="max")
        >>> venv.reset().shape
        (3, 1, 8, 8)
    """

    def __init__(self, venv: VecEnv, regenerator: Regenerator, union: str = "stack", image_layout: str = "auto"):
        self.layout = regenerator.check_space(venv.observation_space, "the vector environment", image_layout)
        self.regenerator = regenerator
        self.union = union
        super().__init__(venv, observation_space=union_space(venv.observation_space, union, image_layout))

    def reset(self) -> np.ndarray:
        return union(self.layout.to_chw(self.venv.reset()), self.regenerator, self.union)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()  # obs (n_envs, *layout.shape) uint8
        batch, ended = step_batch(obs, dones, infos)
        out = union(self.layout.to_chw(batch), self.regenerator, self.union)
        for j, i in enumerate(ended):
            infos[i]["terminal_observation"] = out[len(obs) + j]
        return out[: len(obs)], rewards, dones, infos
