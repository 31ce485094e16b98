"""The process's random state, device and float mode: what a training run seeds, saves, restores and runs on.

Contents:
    seed_everything          -- seed random, numpy and torch (optionally deterministic kernels).
    rng_state, set_rng_state -- the torch RNG states (global, CUDA, the batch-order generator), to save and restore.
    resolve_device           -- 'auto' | 'cpu' | 'cuda' -> torch.device.
    flush_denormals          -- CPU arithmetic treats subnormal floats as zero (agents: Adam's moments of dead units).
    place                    -- a model on its device, channels-last on a CPU: how pretraining trains and evaluates.
    frozen_on                -- a model frozen on a device in a dtype, copied rather than moved (the RL wrappers').

(The process's CPU settings are ``fsae.threads`` and ``fsae.memory``.)
"""

from __future__ import annotations

import copy
import random
from typing import Any, TypeVar

import numpy as np
import torch

from fsae.config import ConfigError

# On a CPU the networks run in channels-last layout (NHWC), which oneDNN's convolutions take without reordering every
# activation and weight on each call (measured in docs/PERFORMANCE.md).
# The saved weights are the same tensors either way.
CHANNELS_LAST_ON_CPU = True
ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def place(model: ModuleT, device: str | torch.device) -> ModuleT:
    """``model`` (in place, as ``nn.Module.to``) on ``device``, its 4-D weights channels-last on a CPU
    (``CHANNELS_LAST_ON_CPU``). The same values: only the order in memory, and so the float rounding of a
    convolution, changes. Pretraining trains and evaluates every network this way."""
    device = torch.device(device)
    model = model.to(device)
    if device.type == "cpu" and CHANNELS_LAST_ON_CPU:
        model = model.to(memory_format=torch.channels_last)
    return model


def frozen_on(model: ModuleT, device: torch.device, dtype: torch.dtype) -> ModuleT:
    """``model`` frozen (eval mode, no gradients) on ``device`` in ``dtype``: the model itself where its weights already
    are so, else a frozen copy there. A caller's model is frozen but never moved or cast, so that two holders of one
    model (the RL wrappers' regenerators at two dtypes, a regenerator and an encoder) do not change it under each
    other."""
    model.eval().requires_grad_(False)
    here = all(
        t.device.type == device.type
        and (device.index is None or t.device.index == device.index)
        and (t.dtype == dtype or not t.is_floating_point())
        for t in [*model.parameters(), *model.buffers()]
    )
    return model if here else copy.deepcopy(model).to(device=device, dtype=dtype)


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed ``random``, ``numpy`` and ``torch``; return a CPU generator for batch order (SB3 ``set_random_seed``)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002  (seeds the legacy global RNG that libraries still use)
    torch.manual_seed(seed)
    # cuDNN autotuning picks the fastest conv kernels for the fixed shapes here, at the price of bitwise repeatability
    # on GPU; ``deterministic`` turns it off. CPU runs are repeatable either way.
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    return torch.Generator().manual_seed(seed)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """The RNG states a training step depends on: torch's global CPU (and CUDA) state and the batch-order generator."""
    state = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    """Put back what ``rng_state`` saved."""
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present; asking for 'cuda' without one is an error with a hint."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no GPU; use --device cpu or auto")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got '{device}'")
    return torch.device(device)


def flush_denormals() -> bool:
    """Treat subnormal floats (below 1.2e-38 in float32) as zero in CPU arithmetic, inputs and results (x86 FTZ and
    DAZ, ``torch.set_flush_denormal``); True where the CPU supports it. Call it before torch starts its threads: the
    flag is per thread, and new threads copy their creator's. It stays set for the rest of the process (an agent
    trained in a notebook or a Ray worker leaves it on); ``torch.set_flush_denormal(False)`` turns it off.

    Why: an agent's dead ReLU units get zero gradients, so Adam's first moment of their weights decays by 0.9 a step
    into the subnormal range within about a thousand updates, and x86 CPUs take a slow path for every subnormal
    operand. At the end of an A2C DigitBandit run (50k steps, 1,560 updates) 63% of one layer's first moment was
    subnormal; an Adam step on such a layer took 8.5x as long, and the run's training, continued from its final
    state, ran 1.03-1.12x faster with the flag (three runs of ``benchmarks/denormals.py``, docs/PERFORMANCE.md). A
    value that small moves no weight: Adam divides it by at least its eps.
    """
    return torch.set_flush_denormal(True)
