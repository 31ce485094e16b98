"""Training loops for the two halves, in the paper's order (their measurements are in ``fsae.evaluate``).

Contents:
    autocast             -- the context of a training step: bfloat16 autocast or nothing (``TrainConfig.precision``).
    TrainConfig          -- optimiser settings shared by both phases.
    abstract_loss        -- the supervised loss for each head (cross-entropy, per-group CE, BCE, MSE).
    train_abstract       -- phase 1: supervised training of the abstract network.
    train_concrete       -- phase 2: the abstract half frozen, the concrete network trained on MSE(xhat, x).
    train_concretes      -- phase 2 for several variants (and the autoencoder) in one pass over the batches, the
                            frozen abstract network run once per batch for all of them.
    train_autoencoder    -- the conventional-autoencoder baseline: both halves end to end on MSE, no labels.

The loops take in-memory tensors (MNIST is 188 MB as float32) and draw batches with ``torch.randperm`` from a seeded
generator: no DataLoader workers, so the same seed gives the same result and nothing forks.

Resuming: every ``train_*`` takes ``on_epoch``, called after each epoch with a plain dict (the weights, Adam's and the
schedule's state, the losses so far, every RNG state) that ``safe_load`` can read back, and ``resume``, such a dict:
training then continues after its last epoch, and on a CPU ends bit-identical to a run that was never stopped.
Seeding, the RNG states and the device are ``fsae.runtime``'s.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fsae.config import check
from fsae.model import FSAE
from fsae.runtime import rng_state, set_rng_state

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}  # training precision -> autocast dtype


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context a training step runs in: ``torch.autocast`` for 'bfloat16', nothing for 'float32'."""
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


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
    """Minibatch size of both phases (of phase 2 only when ``abstract_batch_size`` is set)."""
    abstract_batch_size: int = 0
    """Minibatch size of phase 1 (0 = ``batch_size``)."""
    abstract_lr: float = 1e-3
    """Adam learning rate, phase 1."""
    concrete_lr: float = 1e-3
    """Adam learning rate, phase 2 (and the baseline, unless ``baseline_lr`` is set)."""
    baseline_lr: float = 0.0
    """Adam learning rate of the conventional-autoencoder baseline (0 = ``concrete_lr``)."""
    schedule: str = "cosine"
    """'cosine' (decay to 0 over the phase) or 'constant'."""
    eval_batch_size: int = 1000
    """Batch size for evaluation and inference."""
    augment_shift: int = 0
    """Phase 1 only: shift each training image by up to this many pixels (random, per image; 0 = off)."""
    precision: str = "float32"
    """'float32', or 'bfloat16': every training step runs under ``torch.autocast`` in bfloat16 (mixed precision: the
    weights, the optimiser and the evaluation stay float32). On a CPU with AMX or AVX-512 BF16 the fast config's
    concrete steps run about 1.7x faster (docs/PERFORMANCE.md); elsewhere it may be slower."""

    def __post_init__(self):
        epochs = (self.abstract_epochs, self.concrete_epochs, self.baseline_epochs)
        check(min(epochs) >= 0, f"epochs must be >= 0, got abstract, concrete, baseline = {epochs}")
        check(self.batch_size > 0, f"batch_size must be > 0, got {self.batch_size}")
        check(self.abstract_batch_size >= 0, f"abstract_batch_size must be >= 0, got {self.abstract_batch_size}")
        check(self.eval_batch_size > 0, f"eval_batch_size must be > 0, got {self.eval_batch_size}")
        lrs = (self.abstract_lr, self.concrete_lr)
        check(all(0 < lr < math.inf for lr in lrs), f"learning rates must be finite and > 0, got {lrs}")
        check(0 <= self.baseline_lr < math.inf, f"baseline_lr must be finite and >= 0, got {self.baseline_lr}")
        check(self.schedule in ("cosine", "constant"), f"schedule must be cosine or constant, got '{self.schedule}'")
        check(self.augment_shift >= 0, f"augment_shift must be >= 0, got {self.augment_shift}")
        check(self.precision in PRECISIONS, f"precision must be one of {list(PRECISIONS)}, got '{self.precision}'")


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
    params: list[torch.nn.Parameter] | list[dict[str, Any]],
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
    names: list[str] | None = None,
    batch_size: int | None = None,
) -> list[Any]:
    """Generic Adam loop over index batches of ``params`` (of ``module``; or param groups, each with its own learning
    rate, ``lr`` the default); returns the mean training loss per epoch.

    ``step_loss`` returns the loss of a batch, or with ``names`` one loss per name (several networks trained on the
    same batches: their sum is minimised, the history holds a list per epoch, each is logged as train/<name>_loss).
    ``resume`` (a dict ``on_epoch`` was given) restores ``module``'s weights, the optimiser, the schedule, the losses
    and the RNG states, and continues after its last epoch.
    """
    batch_size = batch_size or cfg.batch_size
    per_epoch = math.ceil(n / batch_size)
    steps = epochs * per_epoch
    opt, sched = _optimizer(params, lr, steps, cfg.schedule)
    history: list[Any] = []
    if resume is not None:
        module.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        history = list(resume["history"])
        set_rng_state(resume["rng"], generator)
    first = params[0]["params"][0] if isinstance(params[0], dict) else params[0]  # a tensor or a param group
    step, device = len(history) * per_epoch, first.device
    tags = names or [desc]
    for epoch in range(len(history), epochs):
        total = torch.zeros(len(names) if names else (), device=device)  # summed on the device: no sync per step
        bar = tqdm(_batches(n, batch_size, generator), total=per_epoch, leave=False)
        bar.set_description(f"{desc} {epoch + 1}/{epochs}")
        for idx in bar:
            with autocast(cfg.precision, device):
                losses = step_loss(idx.to(device, non_blocking=True)).float()
            loss = losses.sum() if names else losses
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += losses.detach() * len(idx)
            step += 1
            if step % 50 == 0 or step == steps:
                values = losses.detach().view(-1).tolist()
                for tag, value in zip(tags, values):
                    if not math.isfinite(value):
                        raise FloatingPointError(
                            f"{tag}: the loss became {value} by step {step} (epoch {epoch + 1}); "
                            "lower the learning rate or check the data for NaN"
                        )
                bar.set_postfix(loss=f"{sum(values):.4f}")
                if log:
                    for tag, value in zip(tags, values):
                        log(f"train/{tag}_loss", value, step)
        means = [v / n for v in total.view(-1).tolist()]
        history.append(means if names else means[0])
        for tag, value in zip(tags, means):
            if not math.isfinite(value):  # a NaN between two checks must not reach a saved epoch
                raise FloatingPointError(
                    f"{tag}: the mean loss of epoch {epoch + 1} is {value} (by step {step}); "
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
    bs = cfg.abstract_batch_size or cfg.batch_size
    return _fit(
        model, params, step_loss, len(x), cfg, epochs, lr, generator, "abstract", log, resume, on_epoch, batch_size=bs
    )


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


def train_concretes(
    models: dict[str, FSAE],
    x: torch.Tensor,
    cfg: TrainConfig,
    generator: torch.Generator,
    log: Callable[[str, float, int], None] | None = None,
    autoencoder: FSAE | None = None,
    resume: dict[str, Any] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    dedupe: bool = True,
) -> dict[str, list[float]]:
    """Phase 2 for several variants in one pass over the data: every concrete network (and ``autoencoder``, the
    conventional peer, when given) is trained on the same stream of batches, and the frozen abstract network, which
    all variants share, runs once per batch for all of them. Returns each network's mean loss per epoch.

    Each network's gradient is that of its own loss (the losses are summed, their graphs are disjoint) and Adam works
    element by element (the autoencoder in its own param group, at ``baseline_lr``), so each gets the updates
    ``train_concrete`` (``train_autoencoder`` for ``concrete_epochs``: a ``baseline_epochs`` of its own trains it
    apart, ``fsae.phases.baseline_in_one_pass``) would give it on the same batches, from the same initialisation batch;
    bit for bit with ``dedupe=False`` (tested). What differs from
    training the variants one after another is only that they share the batch order instead of each drawing its own.
    With ``dedupe``, a network whose output depends on the rounded code alone (``FSAE.feedback_is_inert``) runs its
    concrete half once per distinct code in the batch (10 rows for a softmax head, not ``batch_size``): the same
    function and gradient, summed in another order (equal to float precision).
    """
    first = next(iter(models.values()))
    abstract = first.abstract
    for name, m in models.items():
        same = all(torch.equal(a, b) for a, b in zip(m.abstract.state_dict().values(), abstract.state_dict().values()))
        if not same:
            raise ValueError(f"train_concretes: variant '{name}' has another abstract network than the first one")
        m.freeze_abstract()
    sample = x[torch.randperm(len(x), generator=generator)[:1024]]  # the initialisation batch, shared
    for m in models.values():
        m.init_concrete(sample)
        m.train()
    nets = torch.nn.ModuleDict(models)
    if autoencoder is not None:
        autoencoder.abstract.requires_grad_(True)
        autoencoder.init_concrete(sample)
        autoencoder.train()
        nets["baseline_ae"] = autoencoder  # a name no variant may take (see PretrainConfig)
    names = [f"concrete_{k}" for k in models] + ["baseline_ae"] * (autoencoder is not None)

    def regenerate(m: FSAE, hs: list[torch.Tensor]) -> torch.Tensor:
        code = m.round_code(hs[-1]) if m.config.round else hs[-1]
        if dedupe and m.feedback_is_inert:
            codes, row = torch.unique(code, dim=0, return_inverse=True)
            return m.concrete(codes)[row]
        return m.concrete(code, hs, m.jumps)

    def step_loss(idx: torch.Tensor) -> torch.Tensor:
        xb = x[idx]
        with torch.no_grad():
            _, hs = abstract(xb)
        losses = [F.mse_loss(regenerate(m, hs), xb) for m in models.values()]
        if autoencoder is not None:
            losses.append(F.mse_loss(autoencoder(xb), xb))
        return torch.stack(losses)

    params: list[dict[str, Any]] = [{"params": [p for m in models.values() for p in m.concrete.parameters()]}]
    if autoencoder is not None:
        params.append({"params": list(autoencoder.parameters()), "lr": cfg.baseline_lr or cfg.concrete_lr})
    epochs, lr = cfg.concrete_epochs, cfg.concrete_lr
    history = _fit(
        nets, params, step_loss, len(x), cfg, epochs, lr, generator, "concrete", log, resume, on_epoch, names
    )
    return {name: [epoch[i] for epoch in history] for i, name in enumerate(nets)}


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
    lr = cfg.baseline_lr or cfg.concrete_lr
    return _fit(model, params, step_loss, len(x), cfg, epochs, lr, generator, "baseline_ae", log, resume, on_epoch)
