"""One markdown row per finished run: its periodic evaluations, its evaluation after training and its wall time.

The per-run tables of ``docs/results`` (``scripts/run_table.py``), read from the files every run folder keeps:
``eval/evaluations.npz`` (SB3's ``EvalCallback``: the mean reward of each periodic evaluation), ``metrics.json``
(``final_eval/mean_reward``, the evaluation after training) and the sweep's ``done.json`` (``seconds``, the run's wall
time as the sweep saw it; ``metrics.json``'s training seconds for a run without one).

Contents:
    RunRow    -- one finished run's figures.
    run_rows  -- the finished runs under a logdir (``<env>/<condition>/seed<N>``), in the order of ``rl.compare``'s
                 tables (condition, then seed); the unfinished ones by name.
    markdown  -- one table per environment, a column per evaluation step.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rl.compare import condition_key
from rl.run_folder import DONE_MARKER, env_folder, read_record, run_finished, run_folders, seed_of


@dataclass
class RunRow:
    env: str
    condition: str
    seed: int
    eval_steps: list[int]  # the periodic evaluations' steps, ...
    eval_means: list[float]  # ... and their mean rewards (empty without eval/evaluations.npz)
    final: float | None  # metrics.json's final_eval/mean_reward
    seconds: float | None  # done.json's seconds, else metrics.json's


def _corrupt(path: Path) -> ValueError:
    return ValueError(f"{path} is unreadable or corrupt; restore it from where the run was archived, or leave the run "
                      "out (--seeds, --conditions, --envs)")  # fmt: skip


def _record(path: Path) -> dict:
    """``read_record``, but a file that is there and cannot be read is an error naming it, never a blank cell."""
    try:
        return read_record(path, strict=True)
    except ValueError:
        raise _corrupt(path) from None


def _number(value: object, path: Path) -> float | None:
    try:
        return None if value is None else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _corrupt(path) from None


def _row(root: Path, rel: Path) -> RunRow:
    run = root / rel
    steps: list[int] = []
    means: list[float] = []
    evaluations = run / "eval" / "evaluations.npz"
    if evaluations.is_file():
        try:
            with np.load(evaluations) as ev:
                steps = [int(s) for s in ev["timesteps"]]
                means = [float(m) for m in ev["results"].mean(axis=1)]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            raise _corrupt(evaluations) from None
    metrics, done = _record(run / "metrics.json"), _record(run / DONE_MARKER)
    seconds = done.get("seconds", metrics.get("seconds"))
    return RunRow(
        env=rel.parts[0],
        condition=rel.parts[1],
        seed=seed_of(rel.parts[2]),
        eval_steps=steps,
        eval_means=means,
        final=_number(metrics.get("final_eval/mean_reward"), run / "metrics.json"),
        seconds=_number(seconds, run / (DONE_MARKER if "seconds" in done else "metrics.json")),
    )


def run_rows(
    logdir: str | Path,
    seeds: Sequence[int] | None = None,
    conditions: Sequence[str] | None = None,
    envs: Sequence[str] | None = None,
) -> tuple[list[RunRow], list[Path]]:
    """The finished runs under ``logdir`` (only ``seeds``, ``conditions``, ``envs`` where given), sorted by
    environment, condition (``rl.compare.condition_key``) and seed; and the unfinished run folders that matched,
    relative to ``logdir``. ``FileNotFoundError`` when ``logdir`` is not a folder; ``ValueError`` naming the file
    when a matched run's record is there but unreadable."""
    root = Path(logdir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder of runs")
    envs = envs and [env_folder(e) for e in envs]  # a full id (ALE/Pong-v5) names its folder too
    rows, unfinished = [], []
    for rel in run_folders(root):
        env, condition, seed = rel.parts[0], rel.parts[1], seed_of(rel.parts[2])
        if (envs and env not in envs) or (conditions and condition not in conditions) or (seeds and seed not in seeds):
            continue
        if run_finished(root / rel):
            rows.append(_row(root, rel))
        else:
            unfinished.append(rel)
    rows.sort(key=lambda r: (r.env, condition_key(r.condition), r.seed))
    return rows, unfinished


def _num(x: float, digits: int) -> str:
    """``digits`` significant digits of ``x`` rounded to ``digits`` decimals (0.96, 0.9123, 0); whole numbers from
    10^digits on (no exponent: 1234.5 -> 1234)."""
    return f"{x:.0f}" if abs(x) >= 10**digits else f"{round(x, digits):.{digits}g}"


def markdown(rows: Sequence[RunRow], labels: dict[str, str] | None = None, every: int = 0) -> str:
    """One table per environment: condition, seed, each evaluation step's mean reward (a column per step any of the
    environment's runs evaluated at, only the multiples of ``every`` where it is > 0; blank where a run did not), the
    evaluation after training (4 significant digits) and the seconds. ``labels`` renames conditions (default: raw
    (`none`), the others in backticks)."""
    labels = {"none": "raw (`none`)"} | (labels or {})
    out = []
    for env in dict.fromkeys(r.env for r in rows):
        env_rows = [r for r in rows if r.env == env]
        steps = sorted({s for r in env_rows for s in r.eval_steps if every <= 0 or s % every == 0})
        heads = [f"{s // 1000}k" if s % 1000 == 0 else str(s) for s in steps]
        lines = [
            f"{env}:",
            "",
            "| condition | seed | " + " | ".join(heads + ["after training", "seconds"]) + " |",
            "|---|---:|" + "---:|" * (len(steps) + 2),
        ]
        for r in env_rows:
            by_step = dict(zip(r.eval_steps, r.eval_means))
            cells = [_num(by_step[s], 3) if s in by_step else "" for s in steps]
            cells.append("n/a" if r.final is None else _num(r.final, 4))
            cells.append("n/a" if r.seconds is None else f"{r.seconds:,.0f}")
            label = labels.get(r.condition, f"`{r.condition}`")
            lines.append(f"| {label} | {r.seed} | " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"
