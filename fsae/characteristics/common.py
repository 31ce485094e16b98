"""Pieces shared by the characteristics experiments: class subsets, training the variants, finishing a run folder,
image grids."""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter

from fsae import train as T
from fsae.checkpoint import atomic_write_json
from fsae.config import ConfigError, check, to_dict
from fsae.model import FSAE
from fsae.pretrain_config import PretrainConfig, variant_config
from fsae.provenance import write_run_info
from fsae.run_folder import start_run
from fsae.targets import load_dataset

Log = Callable[[str, float, int], None]

# --------------------------------------------------------------------------------------------------------------------
# Shared pieces of the runs


def start_class_run(
    cfg: PretrainConfig, run_dir: Path, command: str | None, options: Any, what: str
) -> tuple[torch.device, torch.Generator, SummaryWriter, tuple[torch.Tensor, ...]]:
    """``start_run`` for an experiment on class labels (familiarity, lethe): refuses other heads and targets, then
    returns the device, the generator, the writer and (x_train, y_train, x_test, y_test) on the device."""
    if cfg.model.head != "softmax" or cfg.data.target != "class":
        raise ConfigError(
            f"{what} needs a class config (model.head softmax, data.target class), got head '{cfg.model.head}' and "
            f"target '{cfg.data.target}'; use configs/pretrain/mnist_fast.yaml or mnist.yaml"
        )
    device, gen, writer = start_run(cfg, run_dir, command, to_dict(options))
    data = tuple(t.to(device) for t in load_dataset(cfg.data, cfg.seed, cfg.model))
    return device, gen, writer, data


def select_classes(x: torch.Tensor, y: torch.Tensor, classes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and targets of ``classes`` (class targets (N,) only)."""
    check(y.dim() == 1, f"select_classes needs class targets (N,), got shape {tuple(y.shape)}")
    keep = torch.isin(y, torch.tensor(list(classes), device=y.device))
    return x[keep], y[keep]


def check_variant_names(cfg: PretrainConfig, names: Sequence[str] | None, option: str = "--variants") -> None:
    """Refuse (``ConfigError``) names that are not variants of ``cfg``; call it before a run starts."""
    missing = sorted(set(names or []) - {v.name for v in cfg.variants})
    if missing:
        raise ConfigError(f"{option} {missing}: not among the config's variants {[v.name for v in cfg.variants]}")


def train_variants(
    cfg: PretrainConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator,
    log: Log | None = None,
    x_concrete: torch.Tensor | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, FSAE]:
    """Phase 1 on (x, y), then one concrete network per variant of ``cfg`` (or those in ``names``) on ``x_concrete``
    (default x), all sharing the frozen abstract network: ``pretrain``'s two phases without its measurements."""
    check_variant_names(cfg, names)
    variants = [v for v in cfg.variants if names is None or v.name in names]
    base = FSAE(cfg.model).to(x.device)
    T.train_abstract(base, x, y, cfg.train, generator, log)
    state = copy.deepcopy(base.abstract.state_dict())
    models = {}
    for v in variants:
        model = FSAE(variant_config(cfg.model, v, cfg.feedback_gain)).to(x.device)
        model.abstract.load_state_dict(state)
        T.train_concrete(
            model, x if x_concrete is None else x_concrete, cfg.train, generator, log, f"concrete_{v.name}"
        )
        models[v.name] = model.eval()
    return models


def finish_run(
    run_dir: Path,
    metrics: dict[str, Any],
    writer: SummaryWriter,
    t_start: float,
    depends_on: dict[str, str] | None = None,
) -> dict[str, Any]:
    write_run_info(run_dir, depends_on=depends_on)  # code version, machine, and the SHA-256 of a checkpoint used
    metrics["time/total_seconds"] = time.time() - t_start
    for k, v in metrics.items():
        if isinstance(v, float):
            writer.add_scalar(f"final/{k}", v, 0)
    writer.close()
    atomic_write_json(run_dir / "metrics.json", metrics)
    return metrics


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_image_grid(path: Path, images: torch.Tensor, rows: list[str], cols: list[str], title: str = "") -> None:
    """A PNG of images (R, C, 1, H, W) in [0, 1], tiled into one picture (one ``imshow``: fast for hundreds of tiles),
    with row and column labels."""
    plt = pyplot()
    n_rows, n_cols, _, h, w = images.shape
    pad = 2
    canvas = torch.ones(n_rows * (h + pad) - pad, n_cols * (w + pad) - pad)  # white separators
    for r, c in itertools.product(range(n_rows), range(n_cols)):
        canvas[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = images[r, c, 0].cpu()
    scale = 2.2 / 110  # inches per image pixel: about 2 output pixels each at 110 dpi
    fig, ax = plt.subplots(figsize=(canvas.shape[1] * scale + 1.0, canvas.shape[0] * scale + 0.6))
    ax.imshow(canvas.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([c * (w + pad) + w / 2 for c in range(n_cols)] if cols else [], cols, fontsize=7)
    ax.set_yticks([r * (h + pad) + h / 2 for r in range(n_rows)] if rows else [], rows, fontsize=7)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_xlabel(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
