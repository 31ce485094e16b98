"""Measurements of trained networks: the abstract network's predictions and the regenerations' image metrics.

Contents:
    predict               -- ``model.classify`` over a dataset in batches.
    evaluate_abstract     -- accuracy (per group / attribute) or R^2 on a dataset.
    image_metrics         -- per-image MSE, MAE, cosine similarity and PSNR.
    evaluate_regeneration -- their means over a dataset for any regeneration function.
    evaluate_variant      -- a variant's regeneration metrics and its MSE after each number of feedback steps, from
                             one traced regeneration per batch.
    class_mean_reference  -- the MSE of outputting the mean training image of each input's predicted class: the
                             optimum of any function of the rounded code (the round variant's floor).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from fsae.model import FSAE


@torch.no_grad()
def predict(model: FSAE, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """``model.classify`` over a dataset in batches, in eval mode."""
    model.eval()
    return torch.cat([model.classify(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def evaluate_abstract(model: FSAE, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> dict[str, float]:
    """Head-specific metrics: accuracy (softmax), per-group and joint accuracy (groups), per-attribute accuracy
    (sigmoid; a soft target counts as the attribute present above 0.5, as the prediction does), R^2 per target and
    overall (linear)."""
    pred = predict(model, x, batch_size)
    head = model.config.head
    if head == "softmax":
        return {"test_accuracy": (pred == y).float().mean().item()}
    if head in ("groups", "sigmoid"):
        kind = "group" if head == "groups" else "attr"
        truth = y.long() if head == "groups" else (y > 0.5).long()  # soft attributes (check_targets allows them)
        hit = (pred == truth).float()  # (N, G)
        out = {f"test_accuracy_{kind}{i}": hit[:, i].mean().item() for i in range(hit.shape[1])}
        out["test_accuracy"] = hit.mean().item()
        out["test_exact_match"] = hit.min(1).values.mean().item()
        return out
    y = y.float().view_as(pred)
    ss_res = (pred - y).pow(2).sum(0)
    ss_tot = (y - y.mean(0)).pow(2).sum(0).clamp_min(1e-12)
    r2 = 1 - ss_res / ss_tot
    out = {f"test_r2_{i}": r2[i].item() for i in range(len(r2))}
    out["test_r2"] = r2.mean().item()
    out["test_mse"] = (pred - y).pow(2).mean().item()
    return out


def image_metrics(x: torch.Tensor, xhat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image MSE, MAE, cosine similarity (over all pixels of an image, not per row) and PSNR; each (B,)."""
    d = (xhat - x).flatten(1)
    mse = d.pow(2).mean(1)
    return {
        "mse": mse,
        "mae": d.abs().mean(1),
        "cosine": F.cosine_similarity(xhat.flatten(1), x.flatten(1), dim=1, eps=1e-8),
        "psnr": 10 * torch.log10(1.0 / mse.clamp_min(1e-10)),
    }


@torch.no_grad()
def evaluate_regeneration(
    regenerate: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int = 1000
) -> dict[str, float]:
    """Mean image metrics of ``regenerate`` over a dataset (``test_mse``, ``test_mae``, ``test_cosine``, ...)."""
    sums: dict[str, float] = {}
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        for k, v in image_metrics(xb, regenerate(xb)).items():
            sums[k] = sums.get(k, 0.0) + v.sum().item()
    return {f"test_{k}": v / len(x) for k, v in sums.items()}


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


@torch.no_grad()
def evaluate_variant(
    model: FSAE, x: torch.Tensor, steps: int, batch_size: int = 1000, feedback_images: int = 0
) -> tuple[dict[str, float], list[float]]:
    """``evaluate_regeneration``'s metrics of the model's regeneration F(x) over all of ``x``, and the mean test MSE
    after 0..``steps`` negative-feedback steps over its first ``feedback_images`` (0: all), from one traced
    ``regenerate`` per batch (its first output is F(x)): ``steps`` + 1 passes over those images, one over the rest.
    A model whose feedback cannot change its output (``FSAE.feedback_is_inert``: round without jump connections)
    runs no feedback pass: every T gets the MSE of F(x), which is what the passes would give (tested)."""
    model.eval()
    passes = 0 if model.feedback_is_inert else steps
    n_fb = len(x) if feedback_images <= 0 else min(feedback_images, len(x))
    sums: dict[str, float] = {}
    mse_t = torch.zeros(passes + 1, dtype=torch.float64)  # sums of Python floats: no float32 rounding
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        k = max(0, min(len(xb), n_fb - i))  # how many of this batch the feedback curve is measured on
        outputs = model.regenerate(xb[:k], steps=passes, trace=True) if k else []
        first = outputs[0] if k == len(xb) else torch.cat([*outputs[:1], model(xb[k:])])
        for name, v in image_metrics(xb, first).items():
            sums[name] = sums.get(name, 0.0) + v.sum().item()
        for t, y in enumerate(outputs):
            mse_t[t] += (y - xb[:k]).pow(2).flatten(1).mean(1).sum().item()
    feedback = [mse_t[min(t, passes)].item() / n_fb for t in range(steps + 1)]
    return {f"test_{name}": v / len(x) for name, v in sums.items()}, feedback
