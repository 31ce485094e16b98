"""The run's figure, the paper's Fig. 2: a row per variant (inputs first), a column per test image.

Contents:
    label_grid   -- every label of a class head (softmax: 0..K-1; groups: all combinations), or None.
    fig2_columns -- which test images to show: the first of each class present (softmax), else the first ten.
    viewable     -- images of any number of channels as grey or RGB ones (TensorBoard and the figure take 1 or 3).
    save_fig2    -- the grid as one PNG, the columns titled with the classifier's prediction for each input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fsae.model import FSAE


def label_grid(model: FSAE) -> torch.Tensor | None:
    """Every label of a class head (softmax: 0..K-1; groups: all combinations), or None for other heads."""
    cfg = model.config
    if cfg.head == "softmax":
        return torch.arange(cfg.code_size)
    if cfg.head == "groups":
        return torch.cartesian_prod(*[torch.arange(n) for n in cfg.groups]).view(-1, len(cfg.groups))
    return None


def fig2_columns(y_test: torch.Tensor, head: str, code_size: int) -> tuple[torch.Tensor, list[int]]:
    """(indices of the test images to show, the class of each column for a softmax head, else [])."""
    if head != "softmax":
        return torch.arange(min(10, len(y_test)), device=y_test.device), []
    classes = [c for c in range(code_size) if (y_test == c).any()][:10]
    show = torch.tensor([int((y_test == c).nonzero()[0]) for c in classes], device=y_test.device)
    return show, classes


def prediction_titles(pred: torch.Tensor) -> list[str]:
    """The classifier's prediction for each column, as its title: 'pred 7', 'pred [3, 5]', 'pred [0.25, 0.5]'; more
    than two values of a linear head two a line, so that neighbouring titles do not overlap."""
    pred = pred.cpu()
    if not pred.is_floating_point():
        return [f"pred {p.tolist()}" for p in pred]
    titles = []
    for p in pred.tolist():  # a linear head's values: two decimals
        values = [str(round(v, 2)) for v in (p if isinstance(p, list) else [p])]
        lines = [", ".join(values[i : i + 2]) for i in range(0, len(values), 2)]
        titles.append(f"pred {values[0]}" if not isinstance(p, list) else "pred [" + ",\n".join(lines) + "]")
    return titles


def viewable(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) images as TensorBoard and ``save_fig2`` can draw them: grey (C = 1) and RGB (C = 3) as they are,
    any other C (a frame stack, RGBA, feature planes) as one grey image of its channels side by side, (B, 1, H, C W):
    nothing dropped and nothing read as colour that is not."""
    b, c, h, w = x.shape
    if c in (1, 3):
        return x
    return x.permute(0, 2, 1, 3).reshape(b, 1, h, c * w)


def save_fig2(path: Path, rows: dict[str, torch.Tensor], titles: list[str]) -> None:
    """The paper's Fig. 2 as one PNG: a row per variant (inputs first), a column per test image, titled with the
    abstract network's prediction for that input (``prediction_titles``), which the figure's heading says.

    The images are drawn as one mosaic on one set of axes, with white gaps between them, not as an axes per image:
    the same figure in a tenth of the time (4.2 s with 110 axes and ``tight_layout``, the slowest part of the fast
    config's evaluation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {k: viewable(v) for k, v in rows.items()}
    n_rows, n_cols = len(rows), len(titles)
    first = rows[next(iter(rows))]
    channels, h, w = first.shape[-3:]
    gap = max(2, h // 8)
    mosaic = np.ones((n_rows * (h + gap) - gap, n_cols * (w + gap) - gap, 3), dtype=np.float32)  # white gaps
    for r, imgs in enumerate(rows.values()):
        block = imgs[:n_cols].detach().float().cpu().clamp(0, 1).numpy()  # (n, C, h, w)
        block = np.repeat(block, 3, axis=1) if channels == 1 else block
        for c, img in enumerate(block):
            top, left = r * (h + gap), c * (w + gap)
            mosaic[top : top + h, left : left + w] = img.transpose(1, 2, 0)
    scale = 1.1 / w  # inches per pixel: an image is 1.1 inches wide, as before
    fig_w, fig_h = mosaic.shape[1] * scale + 1.5, mosaic.shape[0] * scale + 0.6
    fig = plt.figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((1.4 / fig_w, 0.1 / fig_h, mosaic.shape[1] * scale / fig_w, mosaic.shape[0] * scale / fig_h))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    for c, title in enumerate(titles):
        ax.text(c * (w + gap) + w / 2, -gap, title, ha="center", va="bottom", fontsize=8)
    for r, name in enumerate(rows):
        ax.text(-gap, r * (h + gap) + h / 2, name, ha="right", va="center", fontsize=8)
    top_margin = 1 - 0.08 / fig_h
    fig.suptitle("column titles: the abstract network's (the classifier's) prediction for each input", fontsize=8,
                 y=top_margin, va="top")  # fmt: skip
    fig.savefig(path, dpi=110)
    plt.close(fig)
