"""The agent's config: ``AgentConfig`` (``configs/agent/*.yaml``) with its ``PolicyConfig``, and its check against the
algorithm it names.

Contents:
    ALGOS             -- 'ppo', 'a2c', 'dqn' -> the SB3 classes.
    PolicyConfig, AgentConfig -- typed configs; unknown keys and wrong types are refused (``fsae.config``).
    check_hyperparams -- refuse hyperparameters the algorithm does not take (with a "did you mean").
    algo_kwargs       -- the hyperparameters as the algorithm's constructor takes them (a 'linear' schedule built).
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any, Literal

from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import LinearSchedule

from envs.spec import WrapperEntry, import_packages, resolve_wrappers
from fsae.config import ConfigError, check
from fsae.layout import LAYOUTS
from rl import CONDITIONS, PERCEPTIONS, Condition
from rl.common_sense import DTYPES, UNIONS
from rl.extractor import EXTRACTORS

ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "dqn": DQN}
# Set by train_agent itself; a YAML may not pass them through ``hyperparams``.
_RESERVED = {"policy", "env", "policy_kwargs", "seed", "device", "tensorboard_log", "verbose", "_init_setup_model"}


@dataclass
class PolicyConfig:
    """SB3 ``policy_kwargs`` as typed values (no strings evaluated as code)."""

    extractor: Literal["auto", "small", "nature"] = "auto"
    """The image features extractor (``rl.extractor``): 'small' (SmallCNN), 'nature' (SB3's NatureCNN, images of at
    least 36x36), or 'auto': NatureCNN when the observation's height and width are at least 36, else SmallCNN."""
    features_dim: int = 128
    """Output size of the features extractor (SB3's own NatureCNN default is 512)."""
    cnn_channels: tuple[int, int, int] = (32, 64, 64)
    """Channels of SmallCNN's three 3x3 convolutions (NatureCNN's are fixed: 32, 64, 64)."""
    net_arch: list[int] = field(default_factory=lambda: [64])
    """Hidden layers after the extractor: for both the policy and value heads (PPO, A2C), or the Q head (DQN)."""
    activation: Literal["relu", "tanh"] = "relu"
    """Activation of the ``net_arch`` layers."""
    channels_last: bool = True
    """SmallCNN's convolutions on channels-last tensors (the same network, faster on CPU, ``rl.extractor``; measured
    on CPU only). Not to be confused with ``image_layout: channels_last``, the order of the observation's axes."""


@dataclass
class AgentConfig:
    """One agent training run: environment, algorithm, budget, evaluation and the common-sense condition."""

    env_id: str = "fsae/DigitBandit-v0"
    """A Gymnasium id; ``fsae/`` ids are registered by ``import envs``, others by ``env_packages``."""
    env_packages: list[str] = field(default_factory=list)
    """Modules imported before the environments are made, so that their ids register (e.g. ale_py for ``ALE/``,
    minigrid for ``MiniGrid-``); one that is not installed is named with its pip extra (``envs.spec``)."""
    env_wrappers: list[WrapperEntry] = field(default_factory=list)
    """Gymnasium wrappers applied in order after ``gym.make``, in rl-zoo3's YAML convention: a dotted import path, or
    one with its kwargs (``- gymnasium.wrappers.FrameStackObservation: {stack_size: 4}``); each path and kwarg is
    checked when the config is loaded (``envs.spec.resolve_wrappers``)."""
    env_kwargs: dict[str, bool | int | float | str] = field(default_factory=dict)
    """Keyword arguments of the training environments (e.g. noise, occlusion; frameskip for ``ALE/``)."""
    eval_env_kwargs: dict[str, bool | int | float | str] = field(default_factory=dict)
    """Overrides of ``env_kwargs`` for the evaluation environment; the digit configs set ``{split: test}`` (the
    held-out MNIST digits)."""
    image_layout: Literal["auto", "channels_first", "channels_last"] = "auto"
    """Which axis of the observations holds the channels (``fsae.layout``): 'auto' reads it as SB3 does (the smallest
    axis). The wrappers hand the agent channels-first images whatever comes in."""
    algo: Literal["ppo", "a2c", "dqn"] = "ppo"
    """The SB3 algorithm."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """Features extractor and heads (``CnnPolicy``, or ``MultiInputPolicy`` for 'code' and 'features'; the extractor
    by ``extractor``; ``normalize_images=True``)."""
    hyperparams: dict[str, bool | int | float | str] = field(default_factory=dict)
    """Passed to the algorithm's constructor (e.g. learning_rate, n_steps, gamma); checked against its signature."""
    lr_schedule: Literal["constant", "linear"] = "constant"
    """'linear' decays the learning rate (``hyperparams.learning_rate`` or the algorithm's default) linearly to 0 over
    ``total_steps``, as rl-zoo3's ``lin_<lr>``; the run folder's label gets '-lin'."""
    total_steps: int = 50_000
    """Environment steps, summed over all training environments."""
    n_envs: int = 8
    """Parallel training environments."""
    vec_env: Literal["dummy", "subproc"] = "dummy"
    """'dummy' (one process, best for cheap envs) or 'subproc' (one process per env)."""
    eval_freq: int = 10_000
    """Evaluate every this many environment steps (0 = only at the end)."""
    eval_episodes: int = 20
    """Episodes per evaluation, with the deterministic policy, on the eval split."""
    checkpoint_freq: int = 25_000
    """Save the agent every this many environment steps into ``checkpoints/`` (0 = only the final model)."""
    condition: Condition = "none"
    """What the agent sees besides the raw observation (see ``rl.agent``): 'code' and 'features' (``rl.perception``)
    hand over the frozen abstract network's code or last hidden layer instead of a regenerated image."""
    fsae_checkpoint: str | None = None
    """The FSAE checkpoint for 'fsae', 'code' and 'features' (e.g. runs/pretrain/<run>/fsae_round.pt)."""
    autoencoder_checkpoint: str | None = None
    """The conventional autoencoder for 'autoencoder' (default: autoencoder.pt beside ``fsae_checkpoint``)."""
    code_round: bool = False
    """Condition 'code': hand over the rounded code (the one-hot of the predicted class) instead of the probabilities;
    the run folder's label is 'code-round'."""
    union: Literal["stack", "max", "mean"] = "stack"
    """How raw and regenerated images are united: channel stack (2C channels), elementwise max, or mean."""
    feedback_steps: int = 0
    """Negative-feedback steps T of the regeneration (paper Fig. 2d); each costs one more forward pass."""
    regen_dtype: Literal["float64", "float32"] = "float32"
    """Precision of the regeneration (float64: slower, batch-size invariant; see ``rl.common_sense``)."""
    cuda_graph: bool = True
    """On a GPU, replay the regeneration as a CUDA graph per batch shape (same output, fewer launches; see
    ``rl.common_sense.Regenerator``). Ignored on the CPU."""
    run_name: str = ""
    """Folder name of the condition ('' = the condition, e.g. 'fsae-round', plus '-max'/'-fb2' when not default)."""
    seed: int = 0
    """Seeds torch, numpy, the algorithm and the environments (evaluation envs get seed + 10000)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Device of the agent and the regenerator."""
    torch_threads: int = 0
    """torch.set_num_threads (0 = one thread whatever the load, so the same seed gives the same agent:
    ``fsae.threads.pick_threads``; 2 may be faster on an idle 2-core machine, with other numbers)."""
    logdir: str = "runs/agents"
    """Root of the run folders."""
    overwrite: bool = False
    """Allow writing into a run folder that already holds a run."""
    progress_bar: bool = True
    """Show SB3's progress bar (tqdm + rich)."""
    verbose: int = 0
    """SB3 verbosity: 1 also prints the logged tables to stdout."""

    def __post_init__(self):
        self.policy = PolicyConfig(**self.policy) if isinstance(self.policy, dict) else self.policy
        import_packages(self.env_packages)  # the wrappers may live in them
        resolve_wrappers(self.env_wrappers)
        check(self.image_layout in LAYOUTS, f"image_layout must be one of {list(LAYOUTS)}, got '{self.image_layout}'")
        check(self.policy.extractor in EXTRACTORS, f"policy.extractor must be one of {list(EXTRACTORS)}")
        check(self.total_steps > 0 and self.n_envs > 0, "total_steps and n_envs must be positive")
        check(self.eval_freq >= 0 and self.checkpoint_freq >= 0, "eval_freq and checkpoint_freq must be >= 0")
        check(self.eval_episodes > 0, f"eval_episodes must be positive, got {self.eval_episodes}")
        check(self.feedback_steps >= 0, f"feedback_steps must be >= 0, got {self.feedback_steps}")
        check(self.torch_threads >= 0, f"torch_threads must be >= 0, got {self.torch_threads}")
        check(
            self.condition in CONDITIONS and self.union in UNIONS and self.regen_dtype in DTYPES,
            f"condition, union, regen_dtype must be in {CONDITIONS}, {UNIONS}, {list(DTYPES)}",
        )
        check(
            not (self.condition == "copy" and self.union != "stack"),
            f"condition 'copy' controls for the extra channels of union 'stack'; with union '{self.union}' "
            "it would equal 'none'",
        )
        check(
            not (self.code_round and self.condition != "code"),
            f"code_round applies to condition 'code', not '{self.condition}'",
        )
        check(
            not (self.condition in PERCEPTIONS and self.union != "stack"),
            f"condition '{self.condition}' hands over a vector, not an image: union '{self.union}' does not apply",
        )
        check("/" not in self.run_name, f"run_name must be a plain folder name, got '{self.run_name}'")


def check_hyperparams(cfg: AgentConfig) -> None:
    """Refuse hyperparameters the algorithm's constructor does not take ("did you mean" the nearest), or that
    ``train_agent`` sets itself (and a 'linear' ``lr_schedule`` without a numeric learning rate)."""
    valid = set(inspect.signature(ALGOS[cfg.algo].__init__).parameters) - _RESERVED - {"self"}
    for key in cfg.hyperparams:
        if key in _RESERVED:
            raise ConfigError(f"hyperparams.{key} is set by train_agent; use the config's own field instead")
        if key not in valid:
            near = difflib.get_close_matches(key, sorted(valid), n=1)
            hint = f"did you mean '{near[0]}'? " if near else ""
            raise ConfigError(f"unknown {cfg.algo.upper()} hyperparameter '{key}'; {hint}valid: {sorted(valid)}")
    algo_kwargs(cfg)  # a linear schedule needs a numeric learning rate


def algo_kwargs(cfg: AgentConfig) -> dict[str, Any]:
    """``cfg.hyperparams`` for the algorithm's constructor, with the learning rate as a schedule when
    ``lr_schedule`` is 'linear' (SB3 calls it with the remaining progress, 1 at the start and 0 at the end)."""
    kwargs: dict[str, Any] = dict(cfg.hyperparams)
    if cfg.lr_schedule == "linear":
        default = inspect.signature(ALGOS[cfg.algo].__init__).parameters["learning_rate"].default
        lr = kwargs.get("learning_rate", default)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)):
            raise ConfigError(f"lr_schedule 'linear' needs a numeric hyperparams.learning_rate, got {lr!r}")
        kwargs["learning_rate"] = LinearSchedule(float(lr), 0.0, 1.0)
    return kwargs
