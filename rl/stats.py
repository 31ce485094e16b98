"""The statistics of Agarwal et al. (2021) over seeds, as ``rl.compare`` and ``rl.shift`` use them.

Contents:
    iqm, bootstrap_ci         -- interquartile mean; percentile bootstrap confidence interval of any statistic.
    auc, steps_to_threshold   -- the mean reward over training (normalised trapezoid); the first step at a threshold.
    probability_of_improvement -- P(X > Y) + 0.5 P(X = Y) over all pairs of seeds (Mann-Whitney U / (n m)).
    iqm_ci, improvement_ci    -- the IQM and P(improve), each with its 95% bootstrap interval.
    mean_curve                -- the mean over seeds on a common step grid, with a 95% bootstrap band.

``rliable`` 1.2 fails to import beside pandas 3, so the statistics use scipy (``stats.trim_mean``, ``stats.bootstrap``
with the percentile method, as rliable does).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats


def iqm(x: Any, axis: int | None = -1) -> Any:
    """Interquartile mean: the mean of the middle 50% (``trim_mean(x, 0.25)``; 8 seeds -> the mean of the middle 4)."""
    return stats.trim_mean(np.asarray(x, dtype=np.float64), 0.25, axis=axis)


_RNG_KW = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"  # scipy < 1.15


def bootstrap_ci(
    x: Any,
    stat: Callable[..., Any] = iqm,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    axis: int = 0,
) -> tuple[Any, Any]:
    """Percentile bootstrap confidence interval of ``stat`` over ``axis`` (the seeds) of ``x``.

    ``stat(sample, axis=...)`` must reduce that axis (``iqm``, ``np.mean``). With fewer than 2 samples there is no
    interval: (nan, nan). For several samples ``x`` is a tuple of arrays (resampled independently) and ``stat`` takes
    them all, e.g. ``probability_of_improvement``.
    """
    samples = tuple(np.asarray(s, dtype=np.float64) for s in (x if isinstance(x, tuple) else (x,)))
    if min(s.shape[axis] for s in samples) < 2:
        shape = np.delete(np.array(samples[0].shape), axis)
        nan = np.full(tuple(shape), np.nan) if len(shape) else math.nan
        return nan, nan
    res = stats.bootstrap(
        samples,
        stat,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        axis=axis,
        **{_RNG_KW: np.random.default_rng(seed)},
    )
    return res.confidence_interval.low, res.confidence_interval.high


def auc(steps: Any, values: Any) -> float:
    """Area under the curve by the trapezoid rule, divided by the step range: the mean reward over training.

    One point gives its value; none gives nan.
    """
    steps, values = np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if len(steps) == 0:
        return math.nan
    if len(steps) == 1 or steps[-1] == steps[0]:
        return float(values[-1])
    area = np.sum((steps[1:] - steps[:-1]) * (values[1:] + values[:-1]) / 2)
    return float(area / (steps[-1] - steps[0]))


def steps_to_threshold(steps: Any, values: Any, threshold: float) -> float:
    """The first logged step whose value is >= ``threshold`` (no interpolation); ``inf`` if the curve never gets
    there."""
    hits = np.flatnonzero(np.asarray(values, dtype=np.float64) >= threshold)
    return float(np.asarray(steps)[hits[0]]) if len(hits) else math.inf


def probability_of_improvement(x: Any, y: Any, axis: int = -1) -> Any:
    """P(X > Y) + 0.5 P(X = Y) over all pairs of a seed of X and a seed of Y: the Mann-Whitney U statistic of X over
    Y divided by n m (Agarwal et al. 2021, with one task). Vectorised over the other axes (for ``bootstrap_ci``).
    A nan among either's seeds gives nan, as ``iqm`` does (a comparison with nan is neither a win nor a tie)."""
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)[..., :, None]  # (..., n, 1)
    y = np.moveaxis(np.asarray(y, dtype=np.float64), axis, -1)[..., None, :]  # (..., 1, m)
    p = np.mean((x > y) + 0.5 * (x == y), axis=(-2, -1))
    return np.where(np.isnan(x).any(axis=(-2, -1)) | np.isnan(y).any(axis=(-2, -1)), np.nan, p)[()]


def iqm_ci(x: Any, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(IQM of the seeds' values ``x``, its 95% bootstrap CI low, high); nan where ``x`` is empty (no CI below 2)."""
    x = np.asarray(x, dtype=np.float64)
    low, high = bootstrap_ci(x, iqm, 0.95, n_resamples, seed)
    return (float(iqm(x)) if len(x) else math.nan), float(low), float(high)


def improvement_ci(x: Any, y: Any, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(``probability_of_improvement`` of X over Y, its 95% bootstrap CI low, high); nan where either is empty."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not len(x) or not len(y):
        return math.nan, math.nan, math.nan
    low, high = bootstrap_ci((x, y), probability_of_improvement, 0.95, n_resamples, seed, axis=-1)
    return float(probability_of_improvement(x, y)), float(low), float(high)


def mean_curve(
    curves: list[tuple[np.ndarray, np.ndarray]], n_points: int = 100, n_resamples: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(grid, mean, low, high): each seed's curve interpolated onto a common grid over the steps that all seeds cover,
    their mean, and a 95% percentile bootstrap band of the mean (nan with a single seed)."""
    curves = [(s, v) for s, v in curves if len(s)]
    if not curves:
        empty = np.zeros(0)
        return empty, empty, empty, empty
    lo_step = max(float(s[0]) for s, _ in curves)
    hi_step = min(float(s[-1]) for s, _ in curves)
    all_steps = np.unique(np.concatenate([s for s, _ in curves]))
    grid = all_steps[(all_steps >= lo_step) & (all_steps <= hi_step)]
    if len(grid) > n_points:
        grid = np.linspace(lo_step, hi_step, n_points)
    if len(grid) == 0:  # the seeds' step ranges do not overlap
        grid = np.array([hi_step])
    y = np.stack([np.interp(grid, s, v) for s, v in curves])  # (seeds, points)
    low, high = bootstrap_ci(y, np.mean, n_resamples=n_resamples, seed=seed, axis=0)
    return grid, y.mean(axis=0), np.asarray(low), np.asarray(high)


# --------------------------------------------------------------------------------------------------------------------
# The report
