"""What pretraining trains on: the images, and the targets of each head, checked against the model before training.

Contents:
    TARGETS        -- the targets MNIST can give: 'class', 'attributes', 'center_of_mass'.
    DataConfig     -- where the images and labels come from (MNIST or a task-data ``.npz``), and how much of them.
    mnist_targets  -- the class, three binary attributes, or the ink's centre of mass of MNIST images.
    load_dataset   -- (x_train, y_train, x_test, y_test): float images (N, C, H, W) in [0, 1] and their targets.
    check_targets  -- refuse targets that do not fit the model's head (shape, dtype, class range), in one line.
    scale_targets  -- regression targets to [0, 1] or standardised, with the training set's statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fsae.config import ConfigError, check
from fsae.data import load_mnist, to_float_images
from fsae.model import FSAEConfig
from fsae.task_data import load_task_data

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
        if self.source == "mnist":  # settings of the other source would be silently ignored
            check(not self.test_source, f"data.test_source '{self.test_source}' applies to task data, not MNIST")
        else:
            check(self.target == "class", f"data.target '{self.target}' is MNIST's; task data brings its own labels")


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
        if model is not None and model.head == "softmax" and t.dim() == 2 and t.shape[1] == 1:
            t = t[:, 0]  # one column of classes (collect's labels.info with one key) is the softmax head's (N,)
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
    "(N, K); linear: values (N, K)), or collect labels that fit the model (data.source; data.target for MNIST)"
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
