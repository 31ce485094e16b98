"""Memory as familiarity (the paper: a scene was seen before when its regeneration F(x) resembles x): the score, its
ROC AUC, and the experiment that trains on some classes and asks how familiar seen and unseen test classes look."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fsae import train as T
from fsae.characteristics.common import finish_run, pyplot, select_classes, start_class_run, train_variants
from fsae.config import ConfigError, check
from fsae.evaluate import image_metrics
from fsae.model import FSAE
from fsae.pretrain_config import PretrainConfig, baseline_config

# --------------------------------------------------------------------------------------------------------------------
# Scores


def familiarity(
    model: FSAE,
    x: torch.Tensor,
    kind: str = "mse",
    batch_size: int = 1000,
    steps: int | None = None,
    gain: float | None = None,
) -> torch.Tensor:
    """How familiar each image is to the model: the similarity of x and its regeneration, (B,), higher = more familiar.

    ``kind='mse'`` gives -MSE(x, F(x)), ``'cosine'`` the cosine similarity over all pixels. F is ``model.regenerate``
    in the model's configured variant, with ``steps`` negative-feedback steps of gain ``gain`` (default: the model
    config's).
    """
    steps = model.config.feedback_steps if steps is None else steps
    return familiarity_by_steps(model, x, [kind], [steps], batch_size, gain)[(steps, kind)]


@torch.no_grad()
def familiarity_by_steps(
    model: FSAE,
    x: torch.Tensor,
    kinds: list[str],
    steps: list[int],
    batch_size: int = 1000,
    gain: float | None = None,
) -> dict[tuple[int, str], torch.Tensor]:
    """``familiarity`` for every T in ``steps`` and every kind, ``{(T, kind): (B,) scores}``, from one regeneration
    per batch: ``regenerate(..., steps=max(steps), trace=True)`` returns the output after each feedback step, the same
    as a regeneration with fewer steps would (max(steps) + 1 forward passes for all of them)."""
    for kind in kinds:
        check(kind in ("mse", "cosine"), f"kind must be 'mse' or 'cosine', got '{kind}'")
    check(bool(steps) and min(steps) >= 0, f"feedback steps must be >= 0, got {steps}")
    model.eval()
    parts: dict[tuple[int, str], list[torch.Tensor]] = {(t, kind): [] for t in steps for kind in kinds}
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        outputs = model.regenerate(xb, steps=max(steps), gain=gain, trace=True)
        for t in steps:
            m = image_metrics(xb, outputs[t])
            for kind in kinds:
                parts[(t, kind)].append(-m["mse"] if kind == "mse" else m["cosine"])
    return {key: torch.cat(p) for key, p in parts.items()}


def roc_auc(scores_pos: torch.Tensor, scores_neg: torch.Tensor) -> float:
    """P(score of a positive > score of a negative) + 0.5 P(equal), from the Mann-Whitney U statistic.

    U = R_pos - n_pos (n_pos + 1) / 2, with R_pos the sum of the positives' ranks in the pooled sample (tied values get
    their average rank), and AUC = U / (n_pos n_neg). O(n log n), no pairwise matrix.
    """
    pos, neg = scores_pos.detach().double().flatten().cpu(), scores_neg.detach().double().flatten().cpu()
    check(len(pos) > 0 and len(neg) > 0, "roc_auc needs at least one positive and one negative score")
    pooled = torch.cat([pos, neg])
    check(torch.isfinite(pooled).all(), "roc_auc: scores must be finite")
    values, inverse, counts = torch.unique(pooled, sorted=True, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()  # 1-based rank of the last element of each tie group
    avg_rank = last - (counts.double() - 1) / 2  # (U,) average rank of each distinct value
    r_pos = avg_rank[inverse[: len(pos)]].sum().item()
    u = r_pos - len(pos) * (len(pos) + 1) / 2
    return u / (len(pos) * len(neg))


# --------------------------------------------------------------------------------------------------------------------
# Memory: familiarity


@dataclass
class FamiliarityOptions:
    """What ``run_familiarity`` measures, beyond the ``PretrainConfig`` that says how to train."""

    seen: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    """Classes the networks train on; every other test class is unseen."""
    kinds: list[str] = field(default_factory=lambda: ["mse", "cosine"])
    """Familiarity scores to evaluate (see ``familiarity``)."""
    feedback_steps: list[int] = field(default_factory=lambda: [0])
    """Negative-feedback steps T at which every regenerating detector (the variants, the autoencoder) is scored, with
    the config's ``feedback_gain``. T = 0 is always scored (detector ``<name>``); each T > 0 adds ``<name>/T<T>``.
    (The config's top-level ``feedback_steps`` is pretraining's evaluation grid and is not read here.)"""


def _plot_familiarity(path: Path, scores: dict[tuple[str, str], torch.Tensor], is_seen: torch.Tensor, kind: str):
    """Histograms of one score kind, seen vs unseen, one panel per detector, AUC in the title."""
    plt = pyplot()
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
    Keys: ``familiarity/<detector>/auc_<kind>``, ``.../seen_mean_<kind>``, ``.../unseen_mean_<kind>``; with feedback
    (``options.feedback_steps``) the regenerating detectors again as ``<name>/T<T>``.
    """
    opts = options or FamiliarityOptions()
    check(all(t >= 0 for t in opts.feedback_steps), f"feedback steps must be >= 0, got {opts.feedback_steps}")
    steps = sorted({0, *opts.feedback_steps})
    n_classes = cfg.model.code_size
    if not set(opts.seen) < set(range(n_classes)) or not opts.seen:
        raise ConfigError(f"--seen {opts.seen}: give some but not all of the classes 0..{n_classes - 1}")
    t_start, run_dir = time.time(), Path(run_dir)
    device, gen, writer, (x_train, y_train, x_test, y_test) = start_class_run(
        cfg, run_dir, command, opts, "familiarity"
    )
    x_seen, y_seen = select_classes(x_train, y_train, opts.seen)
    is_seen = torch.isin(y_test, torch.tensor(opts.seen, device=device))
    check(is_seen.any() and (~is_seen).any(), "the test set needs both seen and unseen classes")
    metrics: dict[str, Any] = {"familiarity/n_train": len(x_seen), "familiarity/n_seen": int(is_seen.sum())}
    metrics["familiarity/n_unseen"] = int((~is_seen).sum())

    def log(tag: str, value: float, step: int) -> None:
        writer.add_scalar(tag, value, step)

    models = train_variants(cfg, x_seen, y_seen, gen, log)
    regenerators = dict(models)
    if cfg.baseline_ae:
        ae = FSAE(baseline_config(cfg.model)).to(device)
        T.train_autoencoder(ae, x_seen, cfg.train, gen, log)
        regenerators["autoencoder"] = ae
    bs = cfg.train.eval_batch_size
    scores: dict[tuple[str, str], torch.Tensor] = {}
    with torch.no_grad():
        for name, model in regenerators.items():
            by_steps = familiarity_by_steps(model, x_test, opts.kinds, steps, bs, cfg.feedback_gain)
            for (t, kind), s in by_steps.items():
                scores[(name if t == 0 else f"{name}/T{t}", kind)] = s
        mean_image = x_seen.mean(0, keepdim=True).expand_as(x_test)
        m = image_metrics(x_test, mean_image)
        for kind in opts.kinds:
            scores[("mean_image", kind)] = -m["mse"] if kind == "mse" else m["cosine"]
        if models:  # the abstract network's confidence, shared by all variants
            abstract = next(iter(models.values())).abstract
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
    with_feedback = {f"{name}/T{t}" for name in regenerators for t in steps if t > 0}
    plotted = {key: s for key, s in scores.items() if key[0] not in with_feedback}
    _plot_familiarity(run_dir / "familiarity.png", plotted, is_seen, opts.kinds[0])
    return finish_run(run_dir, metrics, writer, t_start)
