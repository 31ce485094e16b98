"""The characteristics the paper discusses, as measurable experiments: memory (familiarity), lethe, concepts.

Contents:
    familiarity        -- similarity(x, F(x)) per image, negative MSE or cosine: higher means more familiar.
    roc_auc            -- ROC AUC of two score sets from the Mann-Whitney U statistic (ties count half).
    select_classes     -- the images and targets of some classes.
    train_variants     -- one abstract network and a concrete network per variant, with ``fsae.train``'s loops.
    save_image_grid    -- a PNG of an (R, C) grid of images with row and column labels, tiled into one picture.
    FamiliarityOptions, run_familiarity -- train on seen classes only; how well familiarity separates seen from unseen
                          test classes (AUC) per variant, against the conventional autoencoder's reconstruction error.
    LetheOptions, run_lethe -- the concrete network trained on old classes, then on new ones only (or with a replay of
                          a little old data); the old classes' regeneration MSE as a curve over the second phase.
    continue_concrete  -- keep training a trained concrete network, measuring probe sets every N steps (lethe's loop).
    mixture, interpolation_codes, all_attribute_codes -- code vectors built from labels (generation from a concept);
                          interpolation in code space (the paper's mixture) or log space (linear in f^{-1}(code)).
    ConceptOptions, run_concepts -- prototypes, mixtures of two labels, interpolation between every pair of classes,
                          attribute combinations (sigmoid head) and two-digit codes (groups head), each classified back.

The paper: "the concrete network is the memory stored by the parameters"; a scene was seen before when "the
intersection of the old scene and the new scene" is large, i.e. when the regeneration F(x) resembles x. "Lethe is
that when new knowledge input, the training process makes the parameters change."

Each ``run_*`` writes into its run folder ``config.yaml`` (the ``PretrainConfig``, loadable again), ``options.yaml``,
``command.txt``, ``run_info.json`` (provenance), TensorBoard events, PNGs and ``metrics.json``, and returns the
metrics.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter

from fsae import train as T
from fsae.checkpoint import load_fsae
from fsae.config import to_dict
from fsae.model import FSAE
from fsae.pretrain import PretrainConfig, baseline_config, load_dataset, start_run, variant_config
from fsae.provenance import write_run_info

Log = Callable[[str, float, int], None]

# --------------------------------------------------------------------------------------------------------------------
# Scores


@torch.no_grad()
def familiarity(model: FSAE, x: torch.Tensor, kind: str = "mse", batch_size: int = 1000) -> torch.Tensor:
    """How familiar each image is to the model: the similarity of x and its regeneration, (B,), higher = more familiar.

    ``kind='mse'`` gives -MSE(x, F(x)), ``'cosine'`` the cosine similarity over all pixels. F is ``model.regenerate``
    in the model's configured variant (with negative feedback if its config asks for it).
    """
    assert kind in ("mse", "cosine"), f"kind must be 'mse' or 'cosine', got '{kind}'"
    model.eval()
    scores = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        m = T.image_metrics(xb, model.regenerate(xb))
        scores.append(-m["mse"] if kind == "mse" else m["cosine"])
    return torch.cat(scores)


def roc_auc(scores_pos: torch.Tensor, scores_neg: torch.Tensor) -> float:
    """P(score of a positive > score of a negative) + 0.5 P(equal), from the Mann-Whitney U statistic.

    U = R_pos - n_pos (n_pos + 1) / 2, with R_pos the sum of the positives' ranks in the pooled sample (tied values get
    their average rank), and AUC = U / (n_pos n_neg). O(n log n), no pairwise matrix.
    """
    pos, neg = scores_pos.detach().double().flatten().cpu(), scores_neg.detach().double().flatten().cpu()
    assert len(pos) > 0 and len(neg) > 0, "roc_auc needs at least one positive and one negative score"
    pooled = torch.cat([pos, neg])
    assert torch.isfinite(pooled).all(), "roc_auc: scores must be finite"
    values, inverse, counts = torch.unique(pooled, sorted=True, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()  # 1-based rank of the last element of each tie group
    avg_rank = last - (counts.double() - 1) / 2  # (U,) average rank of each distinct value
    r_pos = avg_rank[inverse[: len(pos)]].sum().item()
    u = r_pos - len(pos) * (len(pos) + 1) / 2
    return u / (len(pos) * len(neg))


# --------------------------------------------------------------------------------------------------------------------
# Shared pieces of the runs


def select_classes(x: torch.Tensor, y: torch.Tensor, classes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and targets of ``classes`` (class targets (N,) only)."""
    assert y.dim() == 1, f"select_classes needs class targets (N,), got shape {tuple(y.shape)}"
    keep = torch.isin(y, torch.tensor(list(classes), device=y.device))
    return x[keep], y[keep]


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
    variants = [v for v in cfg.variants if names is None or v.name in names]
    missing = set(names or []) - {v.name for v in variants}
    assert not missing, f"variants {sorted(missing)} are not in the config's variants {[v.name for v in cfg.variants]}"
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


def _finish(
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
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_image_grid(path: Path, images: torch.Tensor, rows: list[str], cols: list[str], title: str = "") -> None:
    """A PNG of images (R, C, 1, H, W) in [0, 1], tiled into one picture (one ``imshow``: fast for hundreds of tiles),
    with row and column labels."""
    plt = _plt()
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


# --------------------------------------------------------------------------------------------------------------------
# Memory: familiarity


@dataclass
class FamiliarityOptions:
    """What ``run_familiarity`` measures, beyond the ``PretrainConfig`` that says how to train."""

    seen: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    """Classes the networks train on; every other test class is unseen."""
    kinds: list[str] = field(default_factory=lambda: ["mse", "cosine"])
    """Familiarity scores to evaluate (see ``familiarity``)."""


def _plot_familiarity(path: Path, scores: dict[tuple[str, str], torch.Tensor], is_seen: torch.Tensor, kind: str):
    """Histograms of one score kind, seen vs unseen, one panel per detector, AUC in the title."""
    plt = _plt()
    panels = [(name, s) for (name, k), s in scores.items() if k == kind]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.4), squeeze=False)
    for ax, (name, s) in zip(axes[0], panels):
        lim = (s.min().item(), s.max().item())  # the same bins for both groups
        ax.hist(s[is_seen].cpu().numpy(), 40, range=lim, alpha=0.6, density=True, label="seen")
        ax.hist(s[~is_seen].cpu().numpy(), 40, range=lim, alpha=0.6, density=True, label="unseen")
        ax.set_title(f"{name}: AUC {roc_auc(s[is_seen], s[~is_seen]):.3f}", fontsize=8)
        ax.set_xlabel(f"familiarity ({kind})", fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_familiarity(
    cfg: PretrainConfig, run_dir: str | Path, options: FamiliarityOptions | None = None, command: str | None = None
) -> dict[str, Any]:
    """Train on the seen classes only; AUC of familiarity for seen (positive) vs unseen (negative) test images.

    Detectors: every variant of ``cfg`` (abstract and concrete networks both trained on seen classes only), the
    conventional autoencoder of the same size (``cfg.baseline_ae``), and two references that need no memory of
    shapes: the distance to the mean seen training image (does the score just measure ink?) and the abstract
    network's maximum softmax probability (the usual out-of-distribution baseline; not a regeneration).
    Keys: ``familiarity/<detector>/auc_<kind>``, ``.../seen_mean_<kind>``, ``.../unseen_mean_<kind>``.
    """
    opts = options or FamiliarityOptions()
    assert cfg.model.head == "softmax" and cfg.data.target == "class", "familiarity needs a class (softmax) config"
    t_start, run_dir = time.time(), Path(run_dir)
    device, gen, writer = start_run(cfg, run_dir, command, to_dict(opts))
    x_train, y_train, x_test, y_test = (t.to(device) for t in load_dataset(cfg.data, cfg.seed))
    x_seen, y_seen = select_classes(x_train, y_train, opts.seen)
    is_seen = torch.isin(y_test, torch.tensor(opts.seen, device=device))
    assert is_seen.any() and (~is_seen).any(), "the test set needs both seen and unseen classes"
    metrics: dict[str, Any] = {"familiarity/n_train": len(x_seen), "familiarity/n_seen": int(is_seen.sum())}
    metrics["familiarity/n_unseen"] = int((~is_seen).sum())

    def log(tag: str, value: float, step: int) -> None:
        writer.add_scalar(tag, value, step)

    detectors: dict[str, Callable[[str], torch.Tensor]] = {}
    models = train_variants(cfg, x_seen, y_seen, gen, log)
    for name, model in models.items():
        detectors[name] = lambda kind, m=model: familiarity(m, x_test, kind, cfg.train.eval_batch_size)
    if cfg.baseline_ae:
        ae = FSAE(baseline_config(cfg.model)).to(device)
        T.train_autoencoder(ae, x_seen, cfg.train, gen, log)
        detectors["autoencoder"] = lambda kind: familiarity(ae, x_test, kind, cfg.train.eval_batch_size)
    mean_image = x_seen.mean(0, keepdim=True).expand_as(x_test)
    detectors["mean_image"] = lambda kind: (
        -T.image_metrics(x_test, mean_image)["mse"] if kind == "mse" else T.image_metrics(x_test, mean_image)["cosine"]
    )

    with torch.no_grad():
        scores = {(name, kind): score(kind) for name, score in detectors.items() for kind in opts.kinds}
        if models:  # the abstract network's confidence, shared by all variants
            abstract = next(iter(models.values())).abstract
            bs = cfg.train.eval_batch_size
            probs = torch.cat([abstract(x_test[i : i + bs])[0].softmax(-1) for i in range(0, len(x_test), bs)])
            scores[("abstract_msp", "prob")] = probs.max(-1).values
    for (name, kind), s in scores.items():
        auc = roc_auc(s[is_seen], s[~is_seen])
        metrics[f"familiarity/{name}/auc_{kind}"] = auc
        metrics[f"familiarity/{name}/seen_mean_{kind}"] = s[is_seen].mean().item()
        metrics[f"familiarity/{name}/unseen_mean_{kind}"] = s[~is_seen].mean().item()
        for c in torch.unique(y_test).tolist():
            metrics[f"familiarity/{name}/class{c}_mean_{kind}"] = s[y_test == c].mean().item()
        writer.add_scalar(f"eval/familiarity_auc_{kind}/{name}", auc, 0)
    _plot_familiarity(run_dir / "familiarity.png", scores, is_seen, opts.kinds[0])
    return _finish(run_dir, metrics, writer, t_start)


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
        assert not set(self.old) & set(self.new), f"old {self.old} and new {self.new} classes must not overlap"
        assert 0.0 <= self.replay_fraction < 1.0, f"replay_fraction must be in [0, 1), got {self.replay_fraction}"
        assert self.epochs >= 0 and self.lr >= 0 and self.eval_every > 0 and self.eval_size >= 0


@torch.no_grad()
def _mse(model: FSAE, x: torch.Tensor, batch_size: int) -> float:
    return T.evaluate_regeneration(model.eval(), x, batch_size)["test_mse"]


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
    assert cfg.model.head == "softmax" and cfg.data.target == "class", "lethe needs a class (softmax) config"
    t_start, run_dir = time.time(), Path(run_dir)
    device, gen, writer = start_run(cfg, run_dir, command, to_dict(opts))
    x_train, y_train, x_test, y_test = (t.to(device) for t in load_dataset(cfg.data, cfg.seed))
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
    (run_dir / "lethe_curves.json").write_text(json.dumps(curves) + "\n")
    _plot_lethe(run_dir / "lethe.png", curves, opts)
    return _finish(run_dir, metrics, writer, t_start)


def _plot_lethe(path: Path, curves: dict[str, dict[str, dict[str, list[float]]]], opts: LetheOptions) -> None:
    plt = _plt()
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


# --------------------------------------------------------------------------------------------------------------------
# Concepts: generation from mixtures of labels, interpolations, attribute and two-digit codes


def mixture(model: FSAE, labels: Sequence[Any], weights: Sequence[float]) -> torch.Tensor:
    """The code sum_i w_i code(label_i), (1, K): e.g. ``mixture(model, [3, 8], [0.5, 0.5])`` for 0.5 "3" + 0.5 "8".

    Labels are what ``model.code_from_labels`` takes for one sample: a class (softmax), a pair of classes (groups),
    a 0/1 vector (sigmoid) or values (linear). With weights summing to 1 a softmax code still sums to 1 (per group).
    """
    assert len(labels) == len(weights) > 0, "mixture needs one weight per label"
    codes = torch.cat([model.code_from_labels(torch.as_tensor(lab).view(1, -1)) for lab in labels])  # (M, K)
    return (torch.as_tensor(weights, dtype=codes.dtype).view(-1, 1) * codes).sum(0, keepdim=True)


def interpolation_codes(model: FSAE, a: Any, b: Any, steps: int, space: str = "code") -> torch.Tensor:
    """Codes (steps, K) from label a to label b, alpha = 0..1.

    ``space='code'``: (1 - alpha) code(a) + alpha code(b), the paper's mixture of labels. ``space='log'`` (softmax and
    groups heads): exp((1 - alpha) ln code(a) + alpha ln code(b)), codes clipped at eps first, so the concrete
    network's input f^{-1}(code) = ln(max(code, eps)) moves linearly from one label to the other. In code space it
    does not: ln maps every weight in [0.1, 1] to [-2.3, 0] but a weight of 0 to ln(eps) = -13.8, so any nonzero
    share of b already draws most of the way to the blend.
    """
    assert space in ("code", "log"), f"space must be 'code' or 'log', got '{space}'"
    alphas = torch.linspace(0, 1, steps).view(-1, 1)  # (steps, 1)
    if space == "code":
        return torch.cat([mixture(model, [a, b], [1 - t, t]) for t in alphas.view(-1).tolist()])
    assert model.config.head in ("softmax", "groups"), "space='log' interpolates softmax codes; use 'code'"
    za, zb = (mixture(model, [lab], [1.0]).clamp_min(model.config.eps).log() for lab in (a, b))  # (1, K) each
    return ((1 - alphas) * za + alphas * zb).exp()  # unnormalised on purpose: ln of it is exactly the blend


def all_attribute_codes(k: int) -> torch.Tensor:
    """Every 0/1 combination of k attributes, (2^k, k), in binary counting order."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=k)))


@dataclass
class ConceptOptions:
    """Where ``run_concepts`` gets its generators and what it draws."""

    checkpoint: str = ""
    """An FSAE checkpoint (e.g. a pretraining run's ``fsae_round.pt``); '' = train the generators from the config."""
    generators: list[str] = field(default_factory=lambda: ["round", "plain"])
    """Without a checkpoint: the config's variants to train and draw with."""
    steps: int = 9
    """Interpolation steps between two labels (softmax head), alpha from 0 to 1."""
    pairs: list[list[int]] = field(default_factory=lambda: [[3, 8], [1, 7], [4, 9]])
    """Groups head: (left, right) digit pairs shown, each with the pair swapped and their 50/50 mixture."""


@torch.no_grad()
def _softmax_concepts(model: FSAE, name: str, run_dir: Path, opts: ConceptOptions) -> dict[str, float]:
    """Prototypes, 50/50 mixtures of every pair (``mixtures_<name>.png``, a K x K matrix whose diagonal holds the
    prototypes) and interpolations between every pair in code space (``concept_grid_<name>.png``) and in log space
    (``concept_grid_log_<name>.png``, see ``interpolation_codes``), each classified back."""
    k = model.config.code_size
    protos = model.generate_labels(torch.arange(k))
    pairs = list(itertools.combinations(range(k), 2))
    mixes = torch.cat([model.generate(mixture(model, [i, j], [0.5, 0.5])) for i, j in pairs])  # (P, C, H, W)
    probs = model.abstract(mixes)[0].softmax(-1)  # (P, K)
    top2 = probs.topk(2, -1).indices
    parents = torch.tensor(pairs)
    metrics = {
        "prototype_cycle_accuracy": (model.classify(protos) == torch.arange(k)).float().mean().item(),
        "mix_parent_rate": (top2[:, :1] == parents).any(-1).float().mean().item(),
        "mix_top2_rate": (top2.sort(-1).values == parents).all(-1).float().mean().item(),
        "mix_parent_prob": probs.gather(1, parents).sum(-1).mean().item(),
    }
    matrix = torch.zeros(k, k, *protos.shape[1:])
    matrix[torch.arange(k), torch.arange(k)] = protos
    for (i, j), img in zip(pairs, mixes):
        matrix[i, j] = matrix[j, i] = img
    labels = [str(c) for c in range(k)]
    save_image_grid(run_dir / f"mixtures_{name}.png", matrix, labels, labels, f"0.5 x row + 0.5 x column ({name})")
    alphas = torch.linspace(0, 1, opts.steps)
    cols = [f"{a:.2f}" for a in alphas.tolist()]
    for space, suffix in (("code", ""), ("log", "_log")):
        grid = torch.stack([model.generate(interpolation_codes(model, i, j, opts.steps, space)) for i, j in pairs])
        flips = model.classify(grid.flatten(0, 1)).view(len(pairs), opts.steps)  # (P, steps)
        # where along alpha the abstract network's answer first turns from i to j (0.5-0.625 for a symmetric blend)
        first_j = [
            (f == j).nonzero()[0].item() if (f == j).any() else opts.steps - 1 for f, (_, j) in zip(flips, pairs)
        ]
        metrics[f"interp{suffix}_switch_alpha_mean"] = sum(alphas[s].item() for s in first_j) / len(pairs)
        ends = (flips[:, 0] == parents[:, 0]) & (flips[:, -1] == parents[:, 1])
        metrics[f"interp{suffix}_endpoint_ok"] = ends.float().mean().item()
        ln = "ln " if suffix else ""
        title = f"{name}: (1 - alpha) x {ln}code(row[0]) + alpha x {ln}code(row[-1])"
        save_image_grid(
            run_dir / f"concept_grid{suffix}_{name}.png", grid, [f"{i}->{j}" for i, j in pairs], cols, title
        )
    return metrics


@torch.no_grad()
def _sigmoid_concepts(model: FSAE, name: str, run_dir: Path) -> dict[str, Any]:
    """Every attribute combination (``attributes_<name>.png``), classified back attribute by attribute."""
    codes = all_attribute_codes(model.config.code_size)
    imgs = model.generate(codes)
    back = model.classify(imgs).float()
    cols = ["".join(str(int(v)) for v in c.tolist()) for c in codes]
    save_image_grid(run_dir / f"attributes_{name}.png", imgs.unsqueeze(0), [], cols, "attribute codes")
    metrics: dict[str, Any] = {"attribute_cycle_accuracy": (back == codes).float().mean().item(),
                               "attribute_cycle_exact": (back == codes).all(-1).float().mean().item()}  # fmt: skip
    for name_in, b in zip(cols, back):  # what the abstract network reads back, code by code
        metrics[f"attribute_back_{name_in}"] = "".join(str(int(v)) for v in b.tolist())
    return metrics


@torch.no_grad()
def _groups_concepts(model: FSAE, name: str, run_dir: Path, opts: ConceptOptions) -> dict[str, float]:
    """Two-group codes: every (left, right) digit pair (``digit_pairs_<name>.png``, 10 x 10), and for each of
    ``opts.pairs`` the pair, its swap and their 50/50 mixture (``digit_mixtures_<name>.png``). ``mix_parent_rate``:
    the share of groups in which the abstract network reads the mixture as one of its two digits."""
    sizes = model.config.groups
    labels = torch.cartesian_prod(*[torch.arange(n) for n in sizes])  # (N, G)
    imgs = model.generate_labels(labels)
    back = model.classify(imgs)
    metrics = {"pair_cycle_accuracy": (back == labels).all(-1).float().mean().item()}
    if len(sizes) == 2:
        grid = imgs.view(sizes[0], sizes[1], *imgs.shape[1:])
        rows = [f"L{i}" for i in range(sizes[0])]
        save_image_grid(run_dir / f"digit_pairs_{name}.png", grid, rows, [f"R{j}" for j in range(sizes[1])])
    rows_imgs, row_names, parent_hits = [], [], []
    for a, b in opts.pairs:
        ab, ba = model.code_from_labels(torch.tensor([[a, b]])), model.code_from_labels(torch.tensor([[b, a]]))
        codes = torch.cat([ab, ba, 0.5 * ab + 0.5 * ba])  # (3, K)
        rows_imgs.append(model.generate(codes))
        row_names.append(f"{a}|{b}")
        mixed_back = model.classify(rows_imgs[-1][2:]).view(-1)  # (G,) per-group reading of the 50/50 mixture
        parent_hits.append(torch.isin(mixed_back, torch.tensor([a, b])).float().mean())
    metrics["mix_parent_rate"] = torch.stack(parent_hits).mean().item() if parent_hits else float("nan")
    cols = ["a|b", "b|a", "0.5 a|b + 0.5 b|a"]
    save_image_grid(run_dir / f"digit_mixtures_{name}.png", torch.stack(rows_imgs), row_names, cols)
    return metrics


def run_concepts(
    cfg: PretrainConfig, run_dir: str | Path, options: ConceptOptions | None = None, command: str | None = None
) -> dict[str, Any]:
    """Generation from concepts with the concrete network: what each head's codes draw, and whether the abstract
    network names the drawing as the code it came from. Keys: ``concepts/<generator>/<metric>``.

    softmax: prototypes, 50/50 mixtures of every pair of classes (``mix_parent_rate``: the drawing is classified as
    one of its two parents; ``mix_top2_rate``: its two most probable classes are exactly the parents) and
    interpolations; sigmoid: every attribute combination; groups: every digit pair, swaps and mixtures.
    """
    opts = options or ConceptOptions()
    t_start, run_dir = time.time(), Path(run_dir)
    device, gen, writer = start_run(cfg, run_dir, command, to_dict(opts))
    if opts.checkpoint:
        model = load_fsae(opts.checkpoint)
        models = {str(model.checkpoint_meta.get("variant", "checkpoint")): model}
    else:
        x_train, y_train, _, _ = load_dataset(cfg.data, cfg.seed)

        def log(tag: str, value: float, step: int) -> None:
            writer.add_scalar(tag, value, step)

        models = train_variants(cfg, x_train.to(device), y_train.to(device), gen, log, names=opts.generators)
    metrics: dict[str, Any] = {}
    for name, model in models.items():
        model = model.cpu().eval()
        head = model.config.head
        if head == "softmax":
            found = _softmax_concepts(model, name, run_dir, opts)
        elif head == "sigmoid":
            found = _sigmoid_concepts(model, name, run_dir)
        elif head == "groups":
            found = _groups_concepts(model, name, run_dir, opts)
        else:
            raise ValueError(
                f"concepts: head '{head}' has no labels to draw from; use a softmax, sigmoid or groups model"
            )
        metrics.update({f"concepts/{name}/{k}": v for k, v in found.items()})
    depends_on = {"checkpoint": opts.checkpoint} if opts.checkpoint else None
    return _finish(run_dir, metrics, writer, t_start, depends_on)
