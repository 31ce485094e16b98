"""Training loops and metrics for the two halves, in the paper's order.

Contents:
    seed_everything      -- seed random, numpy and torch (optionally deterministic kernels).
    rng_state, set_rng_state -- the torch RNG states (global, CUDA, the batch-order generator), to save and restore.
    resolve_device       -- 'auto' | 'cpu' | 'cuda' -> torch.device.
    TrainConfig          -- optimiser settings shared by both phases.
    abstract_loss        -- the supervised loss for each head (cross-entropy, per-group CE, BCE, MSE).
    train_abstract       -- phase 1: supervised training of the abstract network.
    train_concrete       -- phase 2: the abstract half frozen, the concrete network trained on MSE(xhat, x).
    train_autoencoder    -- the conventional-autoencoder baseline: both halves end to end on MSE, no labels.
    evaluate_abstract    -- accuracy (per group / attribute) or R^2 on a dataset.
    evaluate_regeneration -- MSE, MAE, cosine similarity (per image) and PSNR of a regeneration function.

The loops take in-memory tensors (MNIST is 188 MB as float32) and draw batches with ``torch.randperm`` from a seeded
generator: no DataLoader workers, so the same seed gives the same result and nothing forks.

Resuming: every ``train_*`` takes ``on_epoch``, called after each epoch with a plain dict (the weights, Adam's and the
schedule's state, the losses so far, every RNG state) that ``safe_load`` can read back, and ``resume``, such a dict:
training then continues after its last epoch, and on a CPU ends bit-identical to a run that was never stopped.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fsae.config import ConfigError, check
from fsae.model import FSAE


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


@dataclass
class TrainConfig:
    """Optimiser settings for both phases (Adam, as in the paper)."""

    abstract_epochs: int = 10
    """Phase 1 epochs (supervised)."""
    concrete_epochs: int = 10
    """Phase 2 epochs per variant (self-supervised, abstract frozen)."""
    baseline_epochs: int = 0
    """Epochs of the conventional-autoencoder baseline (0 = the same as ``concrete_epochs``)."""
    batch_size: int = 128
    """Minibatch size of both phases."""
    abstract_lr: float = 1e-3
    """Adam learning rate, phase 1."""
    concrete_lr: float = 1e-3
    """Adam learning rate, phase 2 and the baseline."""
    schedule: str = "cosine"
    """'cosine' (decay to 0 over the phase) or 'constant'."""
    eval_batch_size: int = 1000
    """Batch size for evaluation and inference."""
    augment_shift: int = 0
    """Phase 1 only: shift each training image by up to this many pixels (random, per image; 0 = off)."""

    def __post_init__(self):
        epochs = (self.abstract_epochs, self.concrete_epochs, self.baseline_epochs)
        check(min(epochs) >= 0, f"epochs must be >= 0, got abstract, concrete, baseline = {epochs}")
        check(self.batch_size > 0, f"batch_size must be > 0, got {self.batch_size}")
        check(self.eval_batch_size > 0, f"eval_batch_size must be > 0, got {self.eval_batch_size}")
        lrs = (self.abstract_lr, self.concrete_lr)
        check(all(0 < lr < math.inf for lr in lrs), f"learning rates must be finite and > 0, got {lrs}")
        check(self.schedule in ("cosine", "constant"), f"schedule must be cosine or constant, got '{self.schedule}'")
        check(self.augment_shift >= 0, f"augment_shift must be >= 0, got {self.augment_shift}")


# --------------------------------------------------------------------------------------------------------------------


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    perm = torch.randperm(n, generator=generator)
    for i in range(0, n, batch_size):
        yield perm[i : i + batch_size]


def _optimizer(params, lr: float, steps: int, schedule: str):
    opt = torch.optim.Adam(params, lr=lr)
    lam = (lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1)))) if schedule == "cosine" else None
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lam or (lambda s: 1.0))
    return opt, sched


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image (B, C, H, W) by its own random integer offset in [-max_shift, max_shift], zero fill."""
    b, _, h, w = x.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (2, b), generator=generator).to(x.device)
    rows = (torch.arange(h, device=x.device).view(1, h) - shifts[0].view(b, 1)).clamp(-1, h)  # source row per output
    cols = (torch.arange(w, device=x.device).view(1, w) - shifts[1].view(b, 1)).clamp(-1, w)
    padded = F.pad(x, (1, 1, 1, 1))  # index -1 and h/w land on the zero border
    bi = torch.arange(b, device=x.device).view(b, 1, 1)
    return padded.permute(0, 2, 3, 1)[bi, rows.view(b, h, 1) + 1, cols.view(b, 1, w) + 1].permute(0, 3, 1, 2)


def abstract_loss(model: FSAE, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The supervised loss of the configured head, on the logits z_L (numerically stable forms)."""
    head = model.config.head
    if head == "softmax":
        return F.cross_entropy(logits, y)
    if head == "groups":
        return sum(F.cross_entropy(g, y[:, i]) for i, g in enumerate(logits.split(model.config.groups, -1)))
    if head == "sigmoid":
        return F.binary_cross_entropy_with_logits(logits, y.float())
    return F.mse_loss(logits, y.float().view_as(logits))


def _fit(
    module: torch.nn.Module,
    params: list[torch.nn.Parameter],
    step_loss: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    cfg: TrainConfig,
    epochs: int,
    lr: float,
    generator: torch.Generator,
    desc: str,
    log: Callable[[str, float, int], None] | None,
    resume: dict[str, Any] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> list[float]:
    """Generic Adam loop over index batches of ``params`` (of ``module``); returns the mean training loss per epoch.

    ``resume`` (a dict ``on_epoch`` was given) restores ``module``'s weights, the optimiser, the schedule, the losses
    and the RNG states, and continues after its last epoch.
    """
    per_epoch = math.ceil(n / cfg.batch_size)
    steps = epochs * per_epoch
    opt, sched = _optimizer(params, lr, steps, cfg.schedule)
    history: list[float] = []
    if resume is not None:
        module.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        history = list(resume["history"])
        set_rng_state(resume["rng"], generator)
    step, device = len(history) * per_epoch, params[0].device
    for epoch in range(len(history), epochs):
        total = torch.zeros((), device=device)  # summed on the device: no host sync per step
        bar = tqdm(_batches(n, cfg.batch_size, generator), total=per_epoch, leave=False)
        bar.set_description(f"{desc} {epoch + 1}/{epochs}")
        for idx in bar:
            loss = step_loss(idx.to(device, non_blocking=True))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach() * len(idx)
            step += 1
            if step % 50 == 0 or step == steps:
                value = loss.item()
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"{desc}: the loss became {value} by step {step} (epoch {epoch + 1}); "
                        "lower the learning rate or check the data for NaN"
                    )
                bar.set_postfix(loss=f"{value:.4f}")
                if log:
                    log(f"train/{desc}_loss", value, step)
        history.append(total.item() / n)
        if not math.isfinite(history[-1]):  # a NaN between two checks must not reach a saved epoch
            raise FloatingPointError(
                f"{desc}: the mean loss of epoch {epoch + 1} is {history[-1]} (by step {step}); "
                "lower the learning rate or check the data for NaN"
            )
        if on_epoch is not None:
            on_epoch(
                {
                    "model": module.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "history": list(history),  # a copy: the caller keeps it, and a later epoch must not change it
                    "rng": rng_state(generator),
                }
            )
    return history


def train_abstract(
    model: FSAE,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    generator: torch.Generator,
    log: Callable[[str, float, int], None] | None = None,
    resume: dict[str, Any] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> list[float]:
    """Phase 1: supervised training of the abstract half on (x, y). Returns per-epoch mean losses."""
    model.abstract.requires_grad_(True).train()

    def step_loss(idx: torch.Tensor) -> torch.Tensor:
        xb = random_shift(x[idx], cfg.augment_shift, generator) if cfg.augment_shift else x[idx]
        logits, _ = model.abstract(xb)
        return abstract_loss(model, logits, y[idx])

    params = list(model.abstract.parameters())
    epochs, lr = cfg.abstract_epochs, cfg.abstract_lr
    return _fit(model, params, step_loss, len(x), cfg, epochs, lr, generator, "abstract", log, resume, on_epoch)


def train_concrete(
    model: FSAE,
    x: torch.Tensor,
    cfg: TrainConfig,
    generator: torch.Generator,
    log: Callable[[str, float, int], None] | None = None,
    desc: str = "concrete",
    resume: dict[str, Any] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> list[float]:
    """Phase 2: freeze the abstract half, init and train the concrete half on MSE(F(x), x) in the model's variant."""
    model.freeze_abstract()
    model.init_concrete(x[torch.randperm(len(x), generator=generator)[:1024]])
    model.train()

    def step_loss(idx: torch.Tensor) -> torch.Tensor:
        xb = x[idx]
        return F.mse_loss(model(xb), xb)

    params = list(model.concrete.parameters())
    epochs, lr = cfg.concrete_epochs, cfg.concrete_lr
    return _fit(model, params, step_loss, len(x), cfg, epochs, lr, generator, desc, log, resume, on_epoch)


def train_autoencoder(
    model: FSAE,
    x: torch.Tensor,
    cfg: TrainConfig,
    generator: torch.Generator,
    log: Callable[[str, float, int], None] | None = None,
    resume: dict[str, Any] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> list[float]:
    """The conventional-autoencoder peer: the same two halves trained together on MSE, without labels.

    ``model`` should have a 'linear' head (a plain bottleneck); its concrete half is the mirrored decoder.
    """
    model.abstract.requires_grad_(True)
    model.init_concrete(x[torch.randperm(len(x), generator=generator)[:1024]])
    model.train()

    def step_loss(idx: torch.Tensor) -> torch.Tensor:
        xb = x[idx]
        return F.mse_loss(model(xb), xb)

    epochs = cfg.baseline_epochs or cfg.concrete_epochs
    params = list(model.parameters())
    lr = cfg.concrete_lr
    return _fit(model, params, step_loss, len(x), cfg, epochs, lr, generator, "baseline_ae", log, resume, on_epoch)


# --------------------------------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def predict(model: FSAE, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """``model.classify`` over a dataset in batches, in eval mode."""
    model.eval()
    return torch.cat([model.classify(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def evaluate_abstract(model: FSAE, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> dict[str, float]:
    """Head-specific metrics: accuracy (softmax), per-group and joint accuracy (groups), per-attribute accuracy
    (sigmoid), R^2 per target and overall (linear)."""
    pred = predict(model, x, batch_size)
    head = model.config.head
    if head == "softmax":
        return {"test_accuracy": (pred == y).float().mean().item()}
    if head in ("groups", "sigmoid"):
        kind = "group" if head == "groups" else "attr"
        hit = (pred == y.long()).float()  # (N, G)
        out = {f"test_accuracy_{kind}{i}": hit[:, i].mean().item() for i in range(hit.shape[1])}
        out["test_accuracy"] = hit.mean().item()
        out["test_exact_match"] = hit.min(1).values.mean().item()
        return out
    y = y.float().view_as(pred)
    ss_res = (pred - y).pow(2).sum(0)
    ss_tot = (y - y.mean(0)).pow(2).sum(0).clamp_min(1e-12)
    r2 = 1 - ss_res / ss_tot
    out = {f"test_r2_{i}": r2[i].item() for i in range(len(r2))}
    out["test_r2"] = r2.mean().item()
    out["test_mse"] = (pred - y).pow(2).mean().item()
    return out


def image_metrics(x: torch.Tensor, xhat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image MSE, MAE, cosine similarity (over all pixels of an image, not per row) and PSNR; each (B,)."""
    d = (xhat - x).flatten(1)
    mse = d.pow(2).mean(1)
    return {
        "mse": mse,
        "mae": d.abs().mean(1),
        "cosine": F.cosine_similarity(xhat.flatten(1), x.flatten(1), dim=1, eps=1e-8),
        "psnr": 10 * torch.log10(1.0 / mse.clamp_min(1e-10)),
    }


@torch.no_grad()
def evaluate_regeneration(
    regenerate: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int = 1000
) -> dict[str, float]:
    """Mean image metrics of ``regenerate`` over a dataset (``test_mse``, ``test_mae``, ``test_cosine``, ...)."""
    sums: dict[str, float] = {}
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        for k, v in image_metrics(xb, regenerate(xb)).items():
            sums[k] = sums.get(k, 0.0) + v.sum().item()
    return {f"test_{k}": v / len(x) for k, v in sums.items()}
