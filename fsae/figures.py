"""The run's figure, the paper's Fig. 2: a row per variant (inputs first), a column per test image.

Contents:
    label_grid   -- every label of a class head (softmax: 0..K-1; groups: all combinations), or None.
    fig2_columns -- which test images to show: the first of each class present (softmax), else the first ten.
    save_fig2    -- the grid as one PNG, the columns titled with the classifier's prediction for each input.
"""

from __future__ import annotations

from pathlib import Path

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


def save_fig2(path: Path, rows: dict[str, torch.Tensor], titles: list[str]) -> None:
    """The paper's Fig. 2 as one PNG: a row per variant (inputs first), a column per test image, titled with the
    abstract network's prediction for that input (``prediction_titles``), which the figure's heading says."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), len(titles)
    first = rows[next(iter(rows))]
    aspect = first.shape[-1] / first.shape[-2]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.1 * n_cols * aspect + 1.5, 1.2 * n_rows + 0.3), squeeze=False)
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
    fig.suptitle("column titles: the abstract network's (the classifier's) prediction for each input", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
