"""The paper's experiment end to end: train the abstract half, freeze it, train a concrete half per variant, measure.

Contents:
    DataConfig, VariantConfig, PretrainConfig -- what to train on, which variants, and how.
    load_dataset      -- MNIST or task data (``.npz``) as float tensors (N, C, H, W) in [0, 1] and targets.
    check_targets     -- refuse targets that do not fit the model's head (shape, dtype, class range), in one line.
    scale_targets     -- regression targets to [0, 1] or standardised, with the training set's statistics.
    class_mean_reference -- MSE of outputting the mean training image of the predicted class (the round optimum).
    pretrain          -- the whole run: checkpoints, TensorBoard, ``fig2.png``, ``metrics.json``, ``run_info.json``
                         (provenance and the checkpoints' SHA-256); returns the metrics. Resumable after a kill
                         (``resume=True``): ``train_state.pt`` is saved after every epoch (``fsae.resume``).

Metric keys (``metrics.json``): ``abstract/test_accuracy`` (and ``_group<i>`` per group) or ``abstract/test_r2`` (and
``_<i>`` per target), ``concrete/<variant>/test_mse`` (``_mae``, ``_cosine``, ``_psnr``),
``feedback/<variant>/T<t>/test_mse``, ``prototype/cycle_accuracy``, ``reference/class_mean_mse`` (class heads, and a
linear head rounded to ``model.round_grid``: the cells of the grid are its classes), ``baseline_ae/test_mse``,
``data/target_offset_<i>`` and ``data/target_scale_<i>`` (``data.target_scale``), ``time/total_seconds``.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.tensorboard import SummaryWriter

from fsae import train as T
from fsae.checkpoint import CheckpointError, atomic_write_json, save_fsae
from fsae.config import ConfigError, check, to_dict
from fsae.data import load_mnist, load_task_data, to_float_images
from fsae.model import FSAE, FSAEConfig
from fsae.provenance import write_run_info
from fsae.resume import STATE_FILE, TrainingState

TARGETS = ("class", "attributes", "center_of_mass")
SCALES = ("none", "minmax", "standard")


@dataclass
class DataConfig:
    """Where the images and labels come from."""

    source: str = "mnist"
    """'mnist', or the path of a task-data ``.npz`` (obs, labels) collected from an environment."""
    root: str = ""
    """MNIST folder ('' = $FSAE_MNIST_DIR, else ~/.cache/fsae-rl/mnist)."""
    download: bool = True
    """Download MNIST from the public mirrors when it is not in ``root``."""
    test_source: str = ""
    """Task data only: a separate ``.npz`` for testing ('' = hold out ``test_fraction`` of ``source``)."""
    test_fraction: float = 0.1
    """Task data only: fraction held out for testing when there is no ``test_source``."""
    train_size: int = 0
    """Use only the first N training samples (0 = all)."""
    test_size: int = 0
    """Use only the first N test samples (0 = all)."""
    target: str = "class"
    """MNIST only: 'class' (10 classes), 'attributes' (even, >= 5, has a loop: 3 binary), 'center_of_mass'
    (row and column of the ink's centre, in [0, 1]: 2 regression targets)."""
    target_scale: str = "none"
    """Linear head only: rescale each target with the training set's statistics before training, 'minmax' (to
    [0, 1]: (y - min) / (max - min)), 'standard' ((y - mean) / std) or 'none'; the offsets and scales are recorded
    in metrics.json (``data/target_offset_<i>``, ``data/target_scale_<i>``), R^2 does not depend on them."""

    def __post_init__(self):
        check(0.0 < self.test_fraction < 1.0, f"test_fraction must be in (0, 1), got {self.test_fraction}")
        check(self.train_size >= 0 and self.test_size >= 0, "train_size and test_size must be >= 0")
        check(self.target in TARGETS, f"target must be one of {TARGETS}, got '{self.target}'")
        check(self.target_scale in SCALES, f"target_scale must be one of {SCALES}, got '{self.target_scale}'")


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
    train: T.TrainConfig = field(default_factory=T.TrainConfig)
    variants: list[VariantConfig] = field(default_factory=default_variants)
    """The concrete networks to train, each saved as its own complete checkpoint."""
    feedback_steps: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4, 5])
    """Negative-feedback steps T at which every variant is evaluated."""
    feedback_gain: float = 1.0
    """Feedback gain k."""
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
    """CPU threads for torch (0 = torch's default). On a small shared CPU, 1 can be many times faster."""

    def __post_init__(self):
        names = [v.name for v in self.variants]
        check(len(set(names)) == len(names), f"variant names must be unique, got {names}")
        check(all(t >= 0 for t in self.feedback_steps), "feedback_steps must be >= 0")
        check(self.feedback_gain > 0, f"feedback_gain must be > 0, got {self.feedback_gain}")
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


# --------------------------------------------------------------------------------------------------------------------
# Data


_LOOP_DIGITS = (0, 6, 8, 9)


def mnist_targets(images: np.ndarray, labels: np.ndarray, target: str) -> np.ndarray:
    """Targets derived from MNIST: the class, three binary attributes, or the ink's centre of mass."""
    if target == "class":
        return labels
    if target == "attributes":  # even, >= 5, has a closed loop
        return np.stack([labels % 2 == 0, labels >= 5, np.isin(labels, _LOOP_DIGITS)], 1).astype(np.int64)
    ink = images.astype(np.float64)
    mass = ink.sum((1, 2)).clip(min=1.0)
    rows = (ink.sum(2) * np.arange(28)).sum(1) / mass / 27.0
    cols = (ink.sum(1) * np.arange(28)).sum(1) / mass / 27.0
    return np.stack([rows, cols], 1).astype(np.float32)


def load_dataset(
    cfg: DataConfig, seed: int, model: FSAEConfig | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test): images float32 (N, C, H, W) in [0, 1], integer targets as int64 (what
    cross-entropy takes), others float. With ``model``, the targets are checked against its head (``check_targets``)."""
    if cfg.source == "mnist":
        (xtr, ytr), (xte, yte) = (load_mnist(s, cfg.root or None, cfg.download) for s in ("train", "test"))
        ytr, yte = mnist_targets(xtr, ytr, cfg.target), mnist_targets(xte, yte, cfg.target)
    else:
        obs, labels = load_task_data(cfg.source)
        if cfg.test_source:
            xtr, ytr = obs, labels
            xte, yte = load_task_data(cfg.test_source)
        else:
            perm = np.random.default_rng(seed).permutation(len(obs))
            n_test = max(1, int(round(cfg.test_fraction * len(obs))))
            xtr, ytr, xte, yte = obs[perm[n_test:]], labels[perm[n_test:]], obs[perm[:n_test]], labels[perm[:n_test]]
    if cfg.train_size:
        xtr, ytr = xtr[: cfg.train_size], ytr[: cfg.train_size]
    if cfg.test_size:
        xte, yte = xte[: cfg.test_size], yte[: cfg.test_size]

    classes = model is not None and model.head in ("softmax", "groups")

    def targets(y: np.ndarray, split: str) -> torch.Tensor:
        t = torch.from_numpy(np.array(y))  # a writable copy of the (read-only, cached) labels
        if classes and t.is_floating_point():  # the head reads the labels: whole-number floats as class indices
            frac = t[t != t.round()]
            if len(frac):
                raise ConfigError(
                    f"model.head {model.head} needs class indices, but the {split} labels are "
                    f"{str(t.dtype).replace('torch.', '')} with fractional values (e.g. {frac[0].item():.4g}); use "
                    "head linear for regression targets, or collect integer labels"
                )
            t = t.long()
        t = t if t.is_floating_point() else t.long()  # task data may hold int32 or uint8 classes
        if model is not None:
            check_targets(t, model, split)
        return t

    return to_float_images(xtr), targets(ytr, "training"), to_float_images(xte), targets(yte, "test")


def scale_targets(
    y_train: torch.Tensor, y_test: torch.Tensor, how: str
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Rescale regression targets column by column with the training set's statistics (``DataConfig.target_scale``):
    y' = (y - offset) / scale, offset/scale = min/(max - min) for 'minmax', mean/std for 'standard'. A constant column
    keeps scale 1. Returns both sets and the recorded ``data/target_offset_<i>``, ``data/target_scale_<i>``."""
    if how == "none":
        return y_train, y_test, {}
    ytr, yte = y_train.float(), y_test.float()
    flat = ytr.view(len(ytr), -1)
    if how == "minmax":
        offset, scale = flat.min(0).values, flat.max(0).values - flat.min(0).values
    else:
        offset, scale = flat.mean(0), flat.std(0, unbiased=False)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    record = {f"data/target_offset_{i}": o for i, o in enumerate(offset.tolist())}
    record |= {f"data/target_scale_{i}": s for i, s in enumerate(scale.tolist())}
    shape = (1, -1) if ytr.dim() == 2 else (-1,)
    return (ytr - offset.view(shape)) / scale.view(shape), (yte - offset.view(shape)) / scale.view(shape), record


_HEADS_TAKE = (
    "set model.head to fit them (softmax: classes (N,); groups: a class per group (N, G); sigmoid: 0/1 attributes "
    "(N, K); linear: values (N, K)), or data.source / data.target to fit the model"
)


def check_targets(y: torch.Tensor, model: FSAEConfig, split: str = "training") -> None:
    """Refuse (``ConfigError``, one line) targets the model's head cannot train on, before training: softmax takes
    class indices (N,) in 0..K-1, groups (N, G) indices within each group, sigmoid (N, K) values in [0, 1], linear
    (N, K) values (or (N,) when K = 1). K is the code size, the last layer's ``out``."""
    head, k = model.head, model.code_size
    got = f"the {split} labels are {tuple(y.shape)} {str(y.dtype).replace('torch.', '')}"
    if head in ("softmax", "groups"):
        n_cols = 1 if head == "softmax" else len(model.groups)
        shape_ok = y.dim() == 1 if head == "softmax" else (y.dim() == 2 and y.shape[1] == n_cols)
        want = "(N,) class indices" if head == "softmax" else f"(N, {n_cols}) class indices, one per group"
        check(shape_ok and not y.is_floating_point(), f"model.head {head} needs {want}, but {got}; {_HEADS_TAKE}")
        if len(y):
            cols = y.view(len(y), n_cols)
            lows, highs = cols.min(0).values.tolist(), cols.max(0).values.tolist()
            check(min(lows) >= 0, f"the {split} labels include {min(lows)}; class indices start at 0")
            for i, (hi, n) in enumerate(zip(highs, [k] if head == "softmax" else model.groups)):
                if head == "softmax":
                    fix = f"the model has {n} classes (the last layer's out); make it {hi + 1}"
                else:
                    fix = f"model.groups[{i}] is {n}; make it {hi + 1} (and the last layer's out their sum)"
                where = "" if head == "softmax" else f" of group {i}"
                check(hi < n, f"the {split} labels{where} go up to {hi} but {fix}")
    elif head == "sigmoid":
        check(y.dim() == 2 and y.shape[1] == k, f"model.head sigmoid needs (N, {k}) 0/1 attributes, but {got}; "
              f"set the last layer's out to the number of attributes, or {_HEADS_TAKE}")  # fmt: skip
        if len(y):
            lo, hi = y.min().item(), y.max().item()
            check(lo >= 0 and hi <= 1, f"model.head sigmoid needs attributes in [0, 1], but the {split} labels "
                  f"range over {lo}..{hi}; {_HEADS_TAKE}")  # fmt: skip
    else:
        ok = (y.dim() == 2 and y.shape[1] == k) or (y.dim() == 1 and k == 1)
        check(ok, f"model.head linear needs (N, {k}) targets, but {got}; set the last layer's out to the number of "
              f"targets, or {_HEADS_TAKE}")  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# References and figures


@torch.no_grad()
def class_mean_reference(
    pred_train: torch.Tensor, x_train: torch.Tensor, pred_test: torch.Tensor, x_test: torch.Tensor
) -> float:
    """MSE on the test set of outputting the mean training image of each input's predicted class (or combination of
    group classes / attributes). Under MSE this conditional mean is the best any function of the rounded code can do,
    so it is the floor the round variant should reach (the paper's "mean of the same class")."""
    keys_tr, keys_te = pred_train.view(len(pred_train), -1), pred_test.view(len(pred_test), -1)
    uniq, inv = torch.unique(keys_tr, dim=0, return_inverse=True)
    flat = x_train.flatten(1)
    sums = torch.zeros(len(uniq), flat.shape[1], dtype=flat.dtype, device=flat.device).index_add_(0, inv, flat)
    means = sums / torch.bincount(inv, minlength=len(uniq)).unsqueeze(1)
    # match each test key to its training key; unseen combinations fall back to the overall mean image
    match = (keys_te.unsqueeze(1) == uniq.unsqueeze(0)).all(-1)  # (N_test, K)
    found = match.any(1)
    out = torch.where(found.unsqueeze(1), means[match.float().argmax(1)], flat.mean(0, keepdim=True))
    return (out - x_test.flatten(1)).pow(2).mean().item()


def label_grid(model: FSAE) -> torch.Tensor | None:
    """Every label of a class head (softmax: 0..K-1; groups: all combinations), or None for other heads."""
    cfg = model.config
    if cfg.head == "softmax":
        return torch.arange(cfg.code_size)
    if cfg.head == "groups":
        return torch.cartesian_prod(*[torch.arange(n) for n in cfg.groups]).view(-1, len(cfg.groups))
    return None


def save_fig2(path: Path, rows: dict[str, torch.Tensor], titles: list[str]) -> None:
    """The paper's Fig. 2 as one PNG: a row per variant (inputs first), a column per test image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), len(titles)
    aspect = rows[next(iter(rows))].shape[-1] / rows[next(iter(rows))].shape[-2]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.1 * n_cols * aspect + 1.5, 1.2 * n_rows), squeeze=False)
    for r, (name, imgs) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r][c]
            img = imgs[c].cpu().numpy()
            ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
        axes[r][0].set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------------------------
# The run


def variant_config(base: FSAEConfig, v: VariantConfig, feedback_gain: float) -> FSAEConfig:
    return dataclasses.replace(base, round=v.round, jumps=v.jumps, feedback_gain=feedback_gain, feedback_steps=0)


def baseline_config(base: FSAEConfig) -> FSAEConfig:
    """The conventional autoencoder of the same size: same layers, a linear bottleneck of the code's size."""
    return dataclasses.replace(base, head="linear", groups=[], round=False, jumps=[], feedback_steps=0)


def _describe(pred: torch.Tensor) -> list[str]:
    return [str(p.tolist()) if p.dim() else str(p.item()) for p in pred]


def start_run(
    cfg: PretrainConfig, run_dir: Path, command: str | None, options: dict[str, Any] | None = None
) -> tuple[torch.device, torch.Generator, SummaryWriter]:
    """Open a run folder: write config.yaml (and options.yaml), command.txt; pick the device; seed; open TensorBoard
    with the hyperparameters as text. Shared by ``pretrain`` and the experiments of ``fsae.characteristics``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = {"config": to_dict(cfg)} | ({"options": options} if options is not None else {})
    (run_dir / "config.yaml").write_text(yaml.safe_dump(resolved["config"], sort_keys=False))
    if options is not None:
        (run_dir / "options.yaml").write_text(yaml.safe_dump(options, sort_keys=False))
    (run_dir / "command.txt").write_text((command or " ".join(sys.argv)) + "\n")
    device = T.resolve_device(cfg.device)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    gen = T.seed_everything(cfg.seed, cfg.deterministic)
    writer = SummaryWriter(str(run_dir))
    text = yaml.safe_dump(resolved if options is not None else resolved["config"], sort_keys=False)
    writer.add_text("hyperparameters", "```yaml\n" + text + "\n```")
    return device, gen, writer


def pretrain(
    cfg: PretrainConfig, run_dir: str | Path, command: str | None = None, resume: bool = False
) -> dict[str, float]:
    """Run the whole experiment into ``run_dir``; return (and write) ``metrics.json``'s dict.

    With ``resume``, continue the run that ``run_dir`` holds from its ``train_state.pt``: the same config is required,
    but for the settings that do not change training (``fsae.resume.MAY_DIFFER``: device, threads, where MNIST is,
    the evaluation's batch size and feedback steps).
    """
    t_start = time.time()
    run_dir = Path(run_dir)
    if resume and (run_dir / "metrics.json").is_file():
        raise CheckpointError(f"{run_dir} holds a finished run (metrics.json); nothing to resume")
    held = [f for f in ("metrics.json", STATE_FILE) if (run_dir / f).is_file()]
    if held and not resume:
        raise CheckpointError(
            f"{run_dir} already holds a run ({', '.join(held)}); add --resume to continue an unfinished one, "
            "or choose another --out"
        )
    state = TrainingState(run_dir, to_dict(cfg), resume)  # refuses a folder that holds another run's state
    if resume:  # keep the first command, add this one
        previous = (run_dir / "command.txt").read_text() if (run_dir / "command.txt").is_file() else ""
        command = previous + "# resumed:\n" + (command or " ".join(sys.argv))
    device, gen, writer = start_run(cfg, run_dir, command)
    try:  # the TensorBoard writer is closed however the run ends (a non-finite loss, missing data, Ctrl-C)

        def log(tag: str, value: float, step: int) -> None:
            writer.add_scalar(tag, value, step)

        def stage(name: str, build: Callable[[], FSAE], train: Callable[..., Any]) -> FSAE:
            """Build a stage's model and train it (saving after every epoch), or load it if a resumed run did."""
            done = state.finished(name)
            if done is not None:
                model = build()
                model.load_state_dict(done)
                return model
            start = state.begin(name, gen)
            model = build()
            try:
                train(model, resume=start, on_epoch=lambda s: state.save_epoch(name, s))
            except FloatingPointError as e:
                last = state.describe_last()
                where = "no epoch finished before it, so there is no state to resume from"
                if last:  # resuming refuses a changed config, learning rate included
                    where = (
                        f"last good state: {last}; --resume continues from it only with the same config, so a lower "
                        "learning rate means a new run (another --out)"
                    )
                raise FloatingPointError(f"{e}; {where}") from None
            state.finish(name, model, gen)
            return model

        x_train, y_train, x_test, y_test = (t.to(device) for t in load_dataset(cfg.data, cfg.seed, cfg.model))
        if tuple(x_train.shape[1:]) != tuple(cfg.model.input_shape):
            raise ConfigError(
                f"data images are {tuple(x_train.shape[1:])} but model.input_shape is {tuple(cfg.model.input_shape)}; "
                "set model.input_shape to match (and the layers to fit it)"
            )
        y_train, y_test, scaling = scale_targets(y_train, y_test, cfg.data.target_scale)
        metrics: dict[str, float] = dict(scaling)
        bs = cfg.train.eval_batch_size

        # Phase 1: the abstract network, supervised.
        t0 = time.time()
        base = stage(
            "abstract",
            lambda: FSAE(cfg.model).to(device),
            lambda m, **kw: T.train_abstract(m, x_train, y_train, cfg.train, gen, log, **kw),
        )
        for k, v in T.evaluate_abstract(base, x_test, y_test, bs).items():
            metrics[f"abstract/{k}"] = v
            writer.add_scalar(f"eval/abstract_{k}", v, 0)
        metrics["time/abstract_seconds"] = time.time() - t0
        base.freeze_abstract()
        abstract_state = copy.deepcopy(base.abstract.state_dict())
        pred_train, pred_test = T.predict(base, x_train, bs), T.predict(base, x_test, bs)
        if cfg.model.head in ("softmax", "groups", "sigmoid"):
            metrics["reference/class_mean_mse"] = class_mean_reference(pred_train, x_train, pred_test, x_test)
        elif cfg.model.round_grid > 0:  # a linear code rounded to a grid: each grid cell is a "class"
            cells = [torch.round(p / cfg.model.round_grid).long() for p in (pred_train, pred_test)]
            metrics["reference/class_mean_mse"] = class_mean_reference(cells[0], x_train, cells[1], x_test)

        # Fig. 2 columns: the first test image of each class present (or simply the first ten).
        show = torch.arange(min(10, len(x_test)), device=device)
        classes: list[int] = []  # softmax head: the class of each column
        if cfg.model.head == "softmax":
            classes = [c for c in range(cfg.model.code_size) if (y_test == c).any()][:10]
            show = torch.tensor([int((y_test == c).nonzero()[0]) for c in classes], device=device)
        fig_rows = {"input": x_test[show]}
        writer.add_images("images/input", x_test[show], 0)

        # Phase 2: one concrete network per variant on the frozen abstract network.
        models: dict[str, FSAE] = {}
        for v in cfg.variants:
            t0 = time.time()

            def build(v: VariantConfig = v) -> FSAE:
                model = FSAE(variant_config(cfg.model, v, cfg.feedback_gain)).to(device)
                model.abstract.load_state_dict(abstract_state)
                return model

            model = stage(
                f"concrete/{v.name}",
                build,
                lambda m, v=v, **kw: T.train_concrete(m, x_train, cfg.train, gen, log, desc=f"concrete_{v.name}", **kw),
            )
            assert all(torch.equal(a, b) for a, b in zip(model.abstract.state_dict().values(), abstract_state.values()))
            model.eval()
            for k, val in T.evaluate_regeneration(model, x_test, bs).items():
                metrics[f"concrete/{v.name}/{k}"] = val
            steps = max(cfg.feedback_steps, default=0)
            mse_t = torch.zeros(steps + 1)
            with torch.no_grad():
                for i in range(0, len(x_test), bs):
                    xb = x_test[i : i + bs]
                    for t, y in enumerate(model.regenerate(xb, steps=steps, trace=True)):
                        mse_t[t] += (y - xb).pow(2).flatten(1).mean(1).sum().item()
            for t in cfg.feedback_steps:
                metrics[f"feedback/{v.name}/T{t}/test_mse"] = mse_t[t].item() / len(x_test)
                writer.add_scalar(f"eval/feedback_mse/{v.name}", mse_t[t].item() / len(x_test), t)
            writer.add_scalar(f"eval/concrete_mse/{v.name}", metrics[f"concrete/{v.name}/test_mse"], 0)
            metrics[f"time/concrete_{v.name}_seconds"] = time.time() - t0
            with torch.no_grad():
                fig_rows[v.name] = model(x_test[show])
                if steps:
                    fig_rows[f"{v.name}+fb{steps}"] = model.regenerate(x_test[show], steps=steps)
            writer.add_images(f"images/{v.name}", fig_rows[v.name], 0)
            save_fsae(run_dir / f"fsae_{v.name}.pt", model.cpu(), variant=v.name, name=cfg.name, seed=cfg.seed,
                      test_mse=metrics[f"concrete/{v.name}/test_mse"])  # fmt: skip
            models[v.name] = model.to(device)

        # Prototypes: the concrete network's image of each label; "cycle accuracy" asks the abstract network to name it.
        labels = label_grid(base)
        if labels is not None and models:
            gen_name = next((v.name for v in cfg.variants if v.round), cfg.variants[0].name)
            with torch.no_grad():
                protos = models[gen_name].eval().generate_labels(labels.to(device))
                again = models[gen_name].classify(protos).view(len(labels), -1).cpu()
            metrics["prototype/cycle_accuracy"] = (again == labels.view(len(labels), -1)).all(1).float().mean().item()
            metrics["prototype/generator"] = gen_name  # type: ignore[assignment]
            writer.add_images("images/prototypes", protos[:100], 0)
            if cfg.model.head == "softmax":  # label_grid is 0..K-1, so protos[c] is class c's prototype
                fig_rows["prototype"] = protos[torch.tensor(classes, device=protos.device)]

        # The conventional-autoencoder peer.
        if cfg.baseline_ae:
            t0 = time.time()
            ae = stage(
                "baseline_ae",
                lambda: FSAE(baseline_config(cfg.model)).to(device),
                lambda m, **kw: T.train_autoencoder(m, x_train, cfg.train, gen, log, **kw),
            )
            ae.eval()
            for k, val in T.evaluate_regeneration(ae, x_test, bs).items():
                metrics[f"baseline_ae/{k}"] = val
            with torch.no_grad():
                fig_rows["autoencoder"] = ae(x_test[show])
            save_fsae(run_dir / "autoencoder.pt", ae.cpu(), variant="autoencoder", name=cfg.name, seed=cfg.seed,
                      test_mse=metrics["baseline_ae/test_mse"])  # fmt: skip
            metrics["time/baseline_ae_seconds"] = time.time() - t0

        titles = _describe(pred_test[show].cpu())
        save_fig2(run_dir / "fig2.png", {k: v[: len(show)] for k, v in fig_rows.items()}, titles)
        names = [f"fsae_{v.name}.pt" for v in cfg.variants] + ["autoencoder.pt"] * cfg.baseline_ae
        write_run_info(run_dir, produced={n: run_dir / n for n in names})  # after writing them: it records SHA-256s
        metrics["time/total_seconds"] = time.time() - t_start
        metrics["device"] = str(device)  # type: ignore[assignment]
        for k, val in metrics.items():
            if isinstance(val, float):
                writer.add_scalar(f"final/{k}", val, 0)
        writer.close()  # events on disk before metrics.json marks the run finished (closing twice is harmless)
        atomic_write_json(run_dir / "metrics.json", metrics)  # a run with metrics.json is finished
        state.remove()  # the run is complete: everything it would resume is on disk
        return metrics
    finally:
        writer.close()
