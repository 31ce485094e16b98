"""Comparing conditions across seeds from TensorBoard runs, with the statistics of Agarwal et al. (2021).

Contents:
    RunData, load_runs        -- every run folder <env>/<condition>/seed<N> under a logdir, with its scalar series.
    compare                   -- the statistics of ``rl.stats`` (IQM, bootstrap CIs, AUC, steps to threshold,
                                 P(improve), mean curves) per (env, condition): ``results.md``, ``results.csv``,
                                 ``<env>.png``.
    condition_key, fmt_ci, markdown_table -- ordering and formatting of the tables.

Series: the evaluation curve is ``eval/mean_reward`` (SB3's EvalCallback: deterministic policy, test split), with
``eval/final_mean_reward`` (``rl.agent``'s evaluation after training) appended when it lies at a later step; the final
evaluation reward of a run is the last point of that curve. The training curve is ``rollout/ep_rew_mean``. AUC and
steps-to-threshold are computed per seed on one of them (``curve``, default the dense training curve). Runs that
``rl.agent`` started but did not finish (``config.yaml`` without ``metrics.json``/``done.json``) are left out.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fsae.run_folder import check_no_file_in_way
from rl import CONDITIONS
from rl.run_folder import check_event_files, env_folder, run_finished
from rl.stats import auc, improvement_ci, iqm_ci, mean_curve, steps_to_threshold

EVAL_TAG = "eval/mean_reward"
FINAL_TAG = "eval/final_mean_reward"
TRAIN_TAG = "rollout/ep_rew_mean"
TAGS = (EVAL_TAG, FINAL_TAG, TRAIN_TAG)
BASELINE = "none"


@dataclass
class RunData:
    """One run folder: where it sits in the <env>/<condition>/seed<N> layout, and its scalar series."""

    env: str
    condition: str
    seed: int
    path: Path
    scalars: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """tag -> (steps, values), sorted by step; only the tags of ``TAGS`` that the run logged."""

    def eval_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """``eval/mean_reward``, plus the after-training evaluation when it comes later (see the module docstring)."""
        steps, values = self.scalars.get(EVAL_TAG, (np.zeros(0), np.zeros(0)))
        if FINAL_TAG in self.scalars:
            fs, fv = self.scalars[FINAL_TAG]
            if len(fs) and (len(steps) == 0 or fs[-1] > steps[-1]):
                steps, values = np.append(steps, fs[-1]), np.append(values, fv[-1])
        return steps, values

    def curve(self, which: Literal["train", "eval"]) -> tuple[np.ndarray, np.ndarray]:
        return self.eval_curve() if which == "eval" else self.scalars.get(TRAIN_TAG, (np.zeros(0), np.zeros(0)))


def _read_scalars(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(run_dir), size_guidance={ea.SCALARS: 0})  # 0: keep every point
    acc.Reload()
    out = {}
    for tag in set(acc.Tags().get("scalars", [])) & set(TAGS):
        events = acc.Scalars(tag)
        steps = np.array([e.step for e in events], dtype=np.int64)
        values = np.array([e.value for e in events], dtype=np.float64)
        order = np.argsort(steps, kind="stable")
        out[tag] = (steps[order], values[order])
    return out


def load_runs(logdir: str | Path, warn: Callable[[str], None] = print) -> list[RunData]:
    """Every folder under ``logdir`` holding TensorBoard event files, laid out as ``<env>/<condition>/seed<N>``.

    Folders in another layout, and unfinished ``rl.agent`` runs, are skipped with a message through ``warn``; folders
    below a hidden one are skipped silently (a sweep on Ray keeps Tune's state, whose checkpoints copy run folders, in
    ``<logdir>/.ray_tune``). An event file of a kept run that is cut short raises ``ValueError`` naming it.
    """
    logdir = Path(logdir)
    events = (p for p in logdir.rglob("events.out.tfevents.*") if p.is_file())
    folders = sorted({p.parent for p in events if not any(s.startswith(".") for s in p.relative_to(logdir).parts)})
    runs = []
    for folder in folders:
        parts = folder.relative_to(logdir).parts
        m = re.fullmatch(r"seed(-?\d+)", parts[-1]) if len(parts) >= 3 else None
        if m is None:
            warn(f"skipped {folder}: not laid out as <env>/<condition>/seed<N>")
            continue
        if (folder / "config.yaml").is_file() and not run_finished(folder):
            warn(f"skipped {folder}: the run did not finish (no metrics.json or done.json)")
            continue
        check_event_files(folder)
        runs.append(RunData(parts[-3], parts[-2], int(m.group(1)), folder, _read_scalars(folder)))
    return runs


# --------------------------------------------------------------------------------------------------------------------
# Statistics


def condition_key(label: str) -> tuple[int, str]:
    base = label.split("-")[0]
    return (CONDITIONS.index(base) if base in CONDITIONS else len(CONDITIONS), label)  # other labels after these


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def fmt_ci(value: float, low: float, high: float) -> str:
    return f"{_fmt(value)} [{_fmt(low)}, {_fmt(high)}]" if math.isfinite(low) else _fmt(value)


def _threshold_for(threshold: float | dict[str, float] | None, env: str) -> float | None:
    if isinstance(threshold, dict):
        return threshold.get(env)
    return threshold


def _plot(env: str, groups: dict[str, list[RunData]], threshold: float | None, path: Path, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True, constrained_layout=True)
    for ax, which, title in ((axes[0], "train", TRAIN_TAG), (axes[1], "eval", EVAL_TAG)):
        for i, (condition, runs) in enumerate(groups.items()):
            grid, mean, low, high = mean_curve([r.curve(which) for r in runs], seed=seed)
            if len(grid) == 0:
                continue
            color = f"C{i}"
            ax.plot(
                grid, mean, color=color, marker="o" if len(grid) < 20 else None, label=f"{condition} (n={len(runs)})"
            )
            if np.isfinite(low).all():
                ax.fill_between(grid, low, high, color=color, alpha=0.2, linewidth=0)
        if threshold is not None:
            ax.axhline(threshold, color="gray", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        ax.set_title(f"{env}: {title}")
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("episode return")
    fig.suptitle("mean over seeds, 95% bootstrap band", fontsize=9)
    axes[1].legend(loc="best", fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


COLUMNS = [
    "env",
    "condition",
    "seeds",
    "final_iqm",
    "final_ci_low",
    "final_ci_high",
    "auc_iqm",
    "auc_ci_low",
    "auc_ci_high",
    "threshold",
    "steps_to_threshold_median",
    "reached",
    "p_improve",
    "p_improve_ci_low",
    "p_improve_ci_high",
    "score",
]
SCORES = ("final", "best")
"""What each seed contributes to the reward columns and P(improve): its final evaluation, or its best one."""


def compare(
    logdir: str | Path,
    out: str | Path | None = None,
    threshold: float | dict[str, float] | None = None,
    curve: Literal["train", "eval"] = "train",
    baseline: str = BASELINE,
    n_resamples: int = 2000,
    seed: int = 0,
    warn: Callable[[str], None] = print,
    envs: Sequence[str] | None = None,
    score: Literal["final", "best"] = "final",
    seeds: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """One row per (env, condition) of the runs under ``logdir`` (of ``envs`` and ``seeds`` only, when given: a grid's
    comparison as it stood at fewer seeds); writes ``results.md``,
    ``results.csv`` and one ``<env>.png`` per environment into ``out`` (default: ``logdir``).

    Row: the final evaluation reward as IQM over seeds with a 95% bootstrap CI; the AUC of ``curve`` (IQM and CI);
    the median over seeds of the steps to ``threshold`` (a number, or ``{env: number}``; inf for a seed that never
    reaches it; a median of inf means at least half of the seeds never did) and how many seeds reached it; the
    probability that the condition's final reward beats ``baseline``'s, with its CI (left out, with a warning, where
    ``baseline`` has no runs). With ``score='best'`` each seed counts with its best evaluation during training
    instead of its last (the ``score`` column says which): an optimistic figure, for telling agents that fell back
    from what they reached from agents that never reached it. Raises ``FileNotFoundError`` when no run is found.
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {list(SCORES)}, got '{score}'")
    logdir = Path(logdir)
    if not logdir.is_dir():
        raise FileNotFoundError(f"{logdir} is not a folder")
    runs = load_runs(logdir, warn)
    if isinstance(threshold, dict):  # an env's full id names its folder too (ALE/Breakout-v5: Breakout-v5)
        threshold = {env_folder(k): v for k, v in threshold.items()}
    if envs is not None:
        envs = [env_folder(e) for e in envs]
        unknown = sorted(set(envs) - {r.env for r in runs})
        if unknown:
            found = sorted({r.env for r in runs})
            raise FileNotFoundError(f"no finished runs of {unknown} under {logdir} (there are {found})")
        runs = [r for r in runs if r.env in envs]
    if seeds is not None:
        runs = [r for r in runs if r.seed in seeds]
    if not runs:
        among = f" of seeds {list(seeds)}" if seeds is not None else ""
        raise FileNotFoundError(
            f"no finished runs{among} with TensorBoard event files under {logdir} (<env>/<condition>/seed<N>)"
        )
    out = Path(out) if out is not None else logdir
    check_no_file_in_way(out)
    out.mkdir(parents=True, exist_ok=True)

    by_env: dict[str, dict[str, list[RunData]]] = {}
    for run in sorted(runs, key=lambda r: (r.env, condition_key(r.condition), r.seed)):
        by_env.setdefault(run.env, {}).setdefault(run.condition, []).append(run)

    if isinstance(threshold, dict):
        for env in sorted(set(threshold) - set(by_env)):
            warn(f"threshold for '{env}': no such environment under {logdir} (there are {sorted(by_env)})")

    rows: list[dict[str, Any]] = []
    for env, groups in by_env.items():
        if baseline not in groups:
            warn(f"{env}: no runs of the baseline '{baseline}' (there are {sorted(groups)}); P(improve) is left out")
        thr = _threshold_for(threshold, env)
        finals: dict[str, np.ndarray] = {}
        for condition, group in groups.items():
            evals = [r.eval_curve() for r in group]
            missing = [r.path for r, (_, v) in zip(group, evals) if len(v) == 0]
            for path in missing:
                warn(f"{path}: no {EVAL_TAG} or {FINAL_TAG}; left out of the final reward and P(improve)")
            finals[condition] = np.array([v[-1] if score == "final" else v.max() for _, v in evals if len(v)])
        for condition, group in groups.items():
            final = finals[condition]
            curves = [r.curve(curve) for r in group]
            aucs = np.array([auc(s, v) for s, v in curves if len(s)])
            row: dict[str, Any] = {"env": env, "condition": condition, "seeds": len(group), "score": score}
            row["evaluated"] = len(final)  # seeds with an evaluation (results.md shows it where fewer than seeds)
            row["final_iqm"], row["final_ci_low"], row["final_ci_high"] = iqm_ci(final, n_resamples, seed)
            row["auc_iqm"], row["auc_ci_low"], row["auc_ci_high"] = iqm_ci(aucs, n_resamples, seed)
            row["threshold"] = thr
            if thr is not None:
                hits = np.array([steps_to_threshold(s, v, thr) for s, v in curves if len(s)])
                row["steps_to_threshold_median"] = float(np.median(hits)) if len(hits) else math.nan
                row["reached"] = int(np.isfinite(hits).sum())
            else:
                row["steps_to_threshold_median"], row["reached"] = math.nan, None
            base = finals.get(baseline, []) if condition != baseline else []
            row["p_improve"], row["p_improve_ci_low"], row["p_improve_ci_high"] = improvement_ci(
                final, base, n_resamples, seed
            )
            rows.append(row)
        _plot(env, groups, thr, out / f"{env}.png", seed)

    _write_csv(rows, out / "results.csv")
    (out / "results.md").write_text(markdown_table(rows, curve, baseline, n_resamples, score))
    return rows


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in COLUMNS})


def markdown_table(
    rows: list[dict[str, Any]],
    curve: str = "train",
    baseline: str = BASELINE,
    n_resamples: int = 2000,
    score: str = "final",
) -> str:
    """The rows as a Markdown table, with a note on how each column is computed."""
    tag = TRAIN_TAG if curve == "train" else EVAL_TAG
    lines = [
        f"| env | condition | seeds | {score} eval reward, IQM [95% CI] | AUC ({curve}), IQM [95% CI] "
        f"| steps to threshold, median (seeds reached) | P(improve over {baseline}) [95% CI] |",
        "|---|---|---:|---|---|---|---|",
    ]
    for r in rows:
        if r["threshold"] is None:
            steps = "n/a"
        else:
            median = r["steps_to_threshold_median"]
            steps = "never" if median == math.inf else _fmt(median, 6)
            steps = f"{steps} ({r['reached']}/{r['seeds']} reached {r['threshold']:g})"
        p = "—" if r["condition"] == baseline else fmt_ci(r["p_improve"], r["p_improve_ci_low"], r["p_improve_ci_high"])
        seeds = (
            r["seeds"] if r.get("evaluated", r["seeds"]) == r["seeds"] else f"{r['seeds']} ({r['evaluated']} evaluated)"
        )
        lines.append(
            f"| {r['env']} | {r['condition']} | {seeds} "
            f"| {fmt_ci(r['final_iqm'], r['final_ci_low'], r['final_ci_high'])} "
            f"| {fmt_ci(r['auc_iqm'], r['auc_ci_low'], r['auc_ci_high'])} | {steps} | {p} |"
        )
    which = (
        f"Final eval reward: the last point of {EVAL_TAG} (or {FINAL_TAG} when later)"
        if score == "final"
        else f"Best eval reward: the highest point of {EVAL_TAG} and {FINAL_TAG}, each seed's best evaluation during "
        "training (optimistic: a maximum over evaluations)"
    )
    lines += [
        "",
        f"{which}, deterministic policy on the test split. AUC: mean of {tag} over training (trapezoid / step range). "
        f"IQM: mean of the middle 50% of seeds. CIs: percentile bootstrap over seeds, {n_resamples} resamples; none "
        f"with fewer than 2 seeds. P(improve): P(X > Y) + 0.5 P(X = Y) over pairs of seeds, X this condition's "
        f"{score} reward, Y {baseline}'s.",
        "",
    ]
    return "\n".join(lines)
