"""Generation from concepts: prototypes, mixtures of labels, interpolations between classes, attribute combinations
(sigmoid head) and two-digit codes (groups head), each classified back by the abstract network."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fsae.characteristics.common import check_variant_names, finish_run, save_image_grid, train_variants
from fsae.checkpoint import load_fsae
from fsae.config import ConfigError, check, to_dict
from fsae.model import FSAE
from fsae.pretrain_config import PretrainConfig
from fsae.run_folder import start_run
from fsae.targets import load_dataset

# --------------------------------------------------------------------------------------------------------------------
# Concepts: generation from mixtures of labels, interpolations, attribute and two-digit codes


def mixture(model: FSAE, labels: Sequence[Any], weights: Sequence[float]) -> torch.Tensor:
    """The code sum_i w_i code(label_i), (1, K): e.g. ``mixture(model, [3, 8], [0.5, 0.5])`` for 0.5 "3" + 0.5 "8".

    Labels are what ``model.code_from_labels`` takes for one sample: a class (softmax), a pair of classes (groups),
    a 0/1 vector (sigmoid) or values (linear). With weights summing to 1 a softmax code still sums to 1 (per group).
    """
    check(len(labels) == len(weights) > 0, "mixture needs one weight per label")
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
    check(space in ("code", "log"), f"space must be 'code' or 'log', got '{space}'")
    alphas = torch.linspace(0, 1, steps).view(-1, 1)  # (steps, 1)
    if space == "code":
        return torch.cat([mixture(model, [a, b], [1 - t, t]) for t in alphas.view(-1).tolist()])
    check(model.config.head in ("softmax", "groups"), "space='log' interpolates softmax codes; use 'code'")
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
    """Groups head of two groups: (left, right) digit pairs shown, each with the pair swapped and their 50/50 mixture
    (a head of other groups draws its combinations only)."""

    def __post_init__(self):
        check(self.steps >= 2, f"--steps {self.steps}: an interpolation needs at least its two ends (alpha 0 and 1)")
        bad = [p for p in self.pairs if len(p) != 2]
        check(not bad, f"--pairs {bad}: each pair is two digits, left and right, such as 3,8")


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
    if len(sizes) != 2:  # the pairs are (left digit, right digit): a head of other groups draws its combinations only
        return metrics
    bad = [p for p in opts.pairs if not all(0 <= v < n for v, n in zip(p, sizes))]
    if bad:
        raise ConfigError(f"--pairs {bad}: each (left, right) must be within the groups' sizes {sizes}")
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
    if not opts.checkpoint:
        check_variant_names(cfg, opts.generators, "--generators")
    t_start, run_dir = time.time(), Path(run_dir)
    device, gen, writer = start_run(cfg, run_dir, command, to_dict(opts))
    if opts.checkpoint:
        model = load_fsae(opts.checkpoint)
        models = {str(model.checkpoint_meta.get("variant", "checkpoint")): model}
    else:
        x_train, y_train, _, _ = load_dataset(cfg.data, cfg.seed, cfg.model)

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
    return finish_run(run_dir, metrics, writer, t_start, depends_on)
