"""The configuration of a pretraining run: data, architecture, optimiser, the variants, and what to measure.

Contents:
    VariantConfig    -- one concrete network trained on the shared abstract network (round, jumps).
    default_variants -- plain, round, jump (last hidden layer), jump_all.
    PretrainConfig   -- the whole run, as loaded from ``configs/pretrain/*.yaml`` (unknown keys refused).
    variant_config   -- the ``FSAEConfig`` of one variant.
    baseline_config  -- the ``FSAEConfig`` of the conventional autoencoder of the same size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from fsae.config import ConfigError, check
from fsae.model import FSAEConfig
from fsae.targets import DataConfig
from fsae.train import TrainConfig


@dataclass
class VariantConfig:
    """One concrete network to train on top of the shared abstract network (``FSAEConfig``'s variant fields)."""

    name: str = "plain"
    """Used in metric keys and file names: concrete/<name>/..., fsae_<name>.pt."""
    round: bool = False
    """Round the code (paper Fig. 2b)."""
    jumps: list[int] | str = field(default_factory=list)
    """Jump connections (Fig. 2c): list of hidden layers, or 'last', 'all', 'none'."""


def default_variants() -> list[VariantConfig]:
    return [
        VariantConfig("plain"),
        VariantConfig("round", round=True),
        VariantConfig("jump", jumps="last"),
        VariantConfig("jump_all", jumps="all"),
    ]


@dataclass
class PretrainConfig:
    """A pretraining run: data, architecture, optimiser, variants and what to measure."""

    name: str = "mnist"
    """Experiment name, used in the run folder's name."""
    model: FSAEConfig = field(default_factory=FSAEConfig)
    """The abstract architecture (the concrete one is derived); variant fields here are overridden per variant."""
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    variants: list[VariantConfig] = field(default_factory=default_variants)
    """The concrete networks to train, each saved as its own complete checkpoint."""
    feedback_steps: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4, 5])
    """Negative-feedback steps T at which every variant is evaluated."""
    feedback_gain: float = 1.0
    """Feedback gain k."""
    feedback_test_images: int = 0
    """The feedback curve (``feedback/<variant>/T<t>/test_mse``) is measured on the first this many test images (0:
    all). Every step is a pass of the whole network over them, for every variant with feedback: most of a fast run's
    evaluation. The regeneration metrics (``concrete/<variant>/test_*``) always use the whole test set."""
    baseline_ae: bool = True
    """Also train the same-size conventional autoencoder (no labels) as a peer."""
    seed: int = 0
    """Seeds the weights, the batch order, augmentation and, for task data without ``test_source``, which samples are
    held out for testing. ``data.train_size``/``test_size`` always take the first N samples, whatever the seed."""
    device: str = "auto"
    """'auto' (CUDA when present), 'cpu' or 'cuda'."""
    deterministic: bool = False
    """Deterministic cuDNN kernels (slower on GPU; CPU runs are deterministic anyway)."""
    torch_threads: int = 0
    """CPU threads for torch (0 = the fastest count for pretraining on this machine: ``fsae.threads.pick_threads``)."""

    def __post_init__(self):
        names = [v.name for v in self.variants]
        check(len(set(names)) == len(names), f"variant names must be unique, got {names}")
        for n in names:  # they name files (fsae_<name>.pt) and metric keys; baseline_ae names the autoencoder
            ok = n and n != "baseline_ae" and all(c.isalnum() or c in "_-" for c in n)
            check(ok, f"variant name '{n}' must be letters, digits, '_' or '-', and not 'baseline_ae'")
        check(all(t >= 0 for t in self.feedback_steps), "feedback_steps must be >= 0")
        check(self.feedback_gain > 0, f"feedback_gain must be > 0, got {self.feedback_gain}")
        check(self.feedback_test_images >= 0, f"feedback_test_images must be >= 0, got {self.feedback_test_images}")
        check(self.torch_threads >= 0, f"torch_threads must be >= 0, got {self.torch_threads}")
        check(self.data.target_scale == "none" or self.model.head == "linear", f"data.target_scale "
              f"'{self.data.target_scale}' rescales regression targets: it needs model.head linear, not "
              f"'{self.model.head}'")  # fmt: skip
        m = self.model  # each variant sets these itself: a value here would be silently ignored
        check(
            not m.round and m.jumps in ([], "none") and m.feedback_steps == 0 and m.feedback_gain == 1.0,
            "model.round, model.jumps, model.feedback_steps and model.feedback_gain are set per variant; use "
            "variants[].round / variants[].jumps, and the top-level feedback_steps / feedback_gain",
        )
        for v in self.variants:  # a bad variant (e.g. jumps: foo) fails here, not after the abstract phase
            try:
                variant_config(self.model, v, self.feedback_gain)
            except ConfigError as e:
                raise ConfigError(f"variant '{v.name}': {e}") from None


def variant_config(base: FSAEConfig, v: VariantConfig, feedback_gain: float) -> FSAEConfig:
    return dataclasses.replace(base, round=v.round, jumps=v.jumps, feedback_gain=feedback_gain, feedback_steps=0)


def baseline_config(base: FSAEConfig) -> FSAEConfig:
    """The conventional autoencoder of the same size: same layers, a linear bottleneck of the code's size."""
    return dataclasses.replace(base, head="linear", groups=[], round=False, jumps=[], feedback_steps=0)
