"""Lethe (forgetting): a trained concrete network keeps training on new classes only (or with a replay of a little old
data); the old classes' regeneration MSE is measured as a curve over the second phase."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter

from fsae.atomic import atomic_write_json
from fsae.characteristics.common import (
    Log,
    check_variant_names,
    finish_run,
    pyplot,
    select_classes,
    start_class_run,
    train_variants,
)
from fsae.config import ConfigError, check
from fsae.evaluate import evaluate_regeneration
from fsae.model import FSAE
from fsae.pretrain_config import PretrainConfig

# --------------------------------------------------------------------------------------------------------------------
# Lethe: forgetting under sequential training


@dataclass
class LetheOptions:
    """What ``run_lethe`` trains in its second phase and how often it measures."""

    old: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    """Classes of the first phase (the old knowledge)."""
    new: list[int] = field(default_factory=lambda: [5, 6, 7, 8, 9])
    """Classes of the second phase (the new knowledge)."""
    variants: list[str] = field(default_factory=lambda: ["plain"])
    """Variants of the config whose concrete network is trained sequentially."""
    replay_fraction: float = 0.05
    """Share of the old training images kept and mixed into the second phase's data (the replay condition)."""
    epochs: int = 0
    """Second-phase epochs over the new classes' images (0 = ``train.concrete_epochs``)."""
    lr: float = 0.0
    """Second-phase Adam learning rate, constant (0 = ``train.concrete_lr``)."""
    eval_every: int = 25
    """Measure the old and new classes' test MSE every this many second-phase steps."""
    eval_size: int = 2000
    """Test images per group (old, new) used for the curve (0 = all)."""

    def __post_init__(self):
        check(not set(self.old) & set(self.new), f"old {self.old} and new {self.new} classes must not overlap")
        check(0.0 <= self.replay_fraction < 1.0, f"replay_fraction must be in [0, 1), got {self.replay_fraction}")
        check(
            self.epochs >= 0 and self.lr >= 0 and self.eval_every > 0 and self.eval_size >= 0,
            f"epochs, lr and eval_size must be >= 0 and eval_every > 0, got epochs={self.epochs}, lr={self.lr}, "
            f"eval_size={self.eval_size}, eval_every={self.eval_every}",
        )


@torch.no_grad()
def _mse(model: FSAE, x: torch.Tensor, batch_size: int) -> float:
    return evaluate_regeneration(model.eval(), x, batch_size)["test_mse"]


def continue_concrete(
    model: FSAE,
    x: torch.Tensor,
    steps: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
    probes: dict[str, torch.Tensor],
    eval_every: int,
    log: Log | None = None,
) -> dict[str, list[float]]:
    """Keep training an already trained concrete network on ``x`` (no re-init, fresh Adam, constant ``lr``).

    Every ``eval_every`` steps (and at steps 0 and ``steps``) the regeneration MSE of each probe set is recorded and
    logged as ``eval/<name>_mse``. Returns {"step": [...], <name>: [...]}.
    """
    opt = torch.optim.Adam(model.concrete.parameters(), lr=lr)
    curves: dict[str, list[float]] = {"step": [], **{k: [] for k in probes}}

    def measure(step: int) -> None:
        curves["step"].append(step)
        for name, xp in probes.items():
            curves[name].append(_mse(model, xp, 1000))
            if log:
                log(f"eval/{name}_mse", curves[name][-1], step)

    measure(0)
    order = torch.empty(0, dtype=torch.long)
    for step in range(1, steps + 1):
        if len(order) < batch_size:  # endless reshuffled epochs, so both conditions take the same number of steps
            order = torch.cat([order, torch.randperm(len(x), generator=generator)])
        idx, order = order[:batch_size], order[batch_size:]
        model.train()
        xb = x[idx.to(x.device)]
        loss = F.mse_loss(model(xb), xb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log and step % 50 == 0:
            log("train/concrete_loss", loss.item(), step)
        if step % eval_every == 0 or step == steps:
            measure(step)
    model.eval()
    return curves


def run_lethe(
    cfg: PretrainConfig, run_dir: str | Path, options: LetheOptions | None = None, command: str | None = None
) -> dict[str, Any]:
    """Sequential training of the concrete network: old classes, then new classes only, or new + a replay of old.

    The abstract network trains on all classes (old and new) first and stays frozen, so it can represent both and
    only the concrete network -- the paper's "memory stored by the parameters" -- learns sequentially. Phase A trains
    the concrete network on the old classes with ``train_concrete``; phase B continues from the same weights twice:
    on the new classes only ("no_replay"), and on the new classes plus ``replay_fraction`` of the old training images
    ("replay"), for the same number of steps. Keys: ``lethe/<variant>/old_mse_before``, ``new_mse_before``,
    ``<condition>/old_mse_after``, ``<condition>/old_mse_peak``, ``<condition>/new_mse_after``, ``replay_rise_ratio``
    (old-MSE rise with replay / without). Writes ``lethe.png`` and TensorBoard runs ``<variant>_<condition>/``.
    """
    opts = options or LetheOptions()
    check_variant_names(cfg, opts.variants)
    n_classes = cfg.model.code_size
    for option, classes in (("--old", opts.old), ("--new", opts.new)):
        if not classes or not set(classes) <= set(range(n_classes)):
            raise ConfigError(f"{option} {list(classes)}: give some of the classes 0..{n_classes - 1}")
    if set(opts.old) & set(opts.new):
        raise ConfigError(f"--old {list(opts.old)} and --new {list(opts.new)} share classes; give disjoint ones")
    t_start, run_dir = time.time(), Path(run_dir)
    device, gen, writer, (x_train, y_train, x_test, y_test) = start_class_run(cfg, run_dir, command, opts, "lethe")
    x_old, _ = select_classes(x_train, y_train, opts.old)
    x_new, _ = select_classes(x_train, y_train, opts.new)
    n_eval = opts.eval_size or len(x_test)
    probes = {"old_class": select_classes(x_test, y_test, opts.old)[0][:n_eval]}
    probes["new_class"] = select_classes(x_test, y_test, opts.new)[0][:n_eval]
    keep = torch.randperm(len(x_old), generator=gen)[: round(opts.replay_fraction * len(x_old))].to(device)
    phase_b = {"no_replay": x_new, "replay": torch.cat([x_new, x_old[keep]])}
    steps = (opts.epochs or cfg.train.concrete_epochs) * math.ceil(len(x_new) / cfg.train.batch_size)
    lr = opts.lr or cfg.train.concrete_lr
    metrics: dict[str, Any] = {"lethe/n_old": len(x_old), "lethe/n_new": len(x_new), "lethe/n_replay": len(keep)}
    metrics["lethe/phase_b_steps"] = steps

    models = train_variants(cfg, x_train, y_train, gen, x_concrete=x_old, names=opts.variants)
    curves: dict[str, dict[str, dict[str, list[float]]]] = {}
    for name, model in models.items():
        start = copy.deepcopy(model.concrete.state_dict())
        curves[name] = {}
        for cond, data in phase_b.items():
            model.concrete.load_state_dict(start)
            sub = SummaryWriter(str(run_dir / f"{name}_{cond}"))
            curves[name][cond] = continue_concrete(
                model, data, steps, lr, cfg.train.batch_size, torch.Generator().manual_seed(cfg.seed + 1), probes,
                opts.eval_every, lambda tag, v, s, w=sub: w.add_scalar(tag, v, s),
            )  # fmt: skip
            sub.close()
            c, key = curves[name][cond], f"lethe/{name}/{cond}"
            metrics[f"lethe/{name}/old_mse_before"] = c["old_class"][0]
            metrics[f"lethe/{name}/new_mse_before"] = c["new_class"][0]
            metrics[f"{key}/old_mse_after"] = c["old_class"][-1]
            metrics[f"{key}/old_mse_peak"] = max(c["old_class"])
            metrics[f"{key}/new_mse_after"] = c["new_class"][-1]
        before = metrics[f"lethe/{name}/old_mse_before"]
        rise = {cond: metrics[f"lethe/{name}/{cond}/old_mse_after"] - before for cond in phase_b}
        metrics[f"lethe/{name}/replay_rise_ratio"] = rise["replay"] / rise["no_replay"] if rise["no_replay"] else None
    atomic_write_json(run_dir / "lethe_curves.json", curves)
    _plot_lethe(run_dir / "lethe.png", curves, opts)
    return finish_run(run_dir, metrics, writer, t_start)


def _plot_lethe(path: Path, curves: dict[str, dict[str, dict[str, list[float]]]], opts: LetheOptions) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves), 3.2), squeeze=False)
    for ax, (name, conds) in zip(axes[0], curves.items()):
        for cond, c in conds.items():
            style = "-" if cond == "no_replay" else "--"
            label = "no replay" if cond == "no_replay" else f"replay {opts.replay_fraction:.0%} of old"
            ax.plot(c["step"], c["old_class"], style, color="C3", label=f"old {opts.old}: {label}")
            ax.plot(c["step"], c["new_class"], style, color="C0", label=f"new {opts.new}: {label}")
        ax.set_xlabel("phase-B step (training on new classes)")
        ax.set_ylabel("test regeneration MSE")
        ax.set_title(f"lethe, concrete network '{name}'", fontsize=9)
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
