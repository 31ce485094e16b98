"""Finished agents re-evaluated on changed environments: is the FSAE's "common sense" robust to stronger corruption
than the agents were trained on?

Contents:
    FinalAgent, load_final_agent -- a finished run's final policy, its config and regenerator, loaded once; its
                        ``env(kwargs)`` is the run's evaluation environment with some env kwargs changed, ``evaluate``
                        the policy's mean return there. The model is rebuilt from the run's ``config.yaml`` and the
                        weights of ``final_model.zip`` are read with ``set_parameters`` (nothing is unpickled), as
                        ``rl.resume`` does.
    evaluate_run     -- load and evaluate in one call.
    evaluate_shifts  -- every finished run under a logdir (<env>/<condition>/seed<N>) under each named shift: per
                        (env, shift, condition) the IQM over seeds with a bootstrap CI and P(improve over a baseline),
                        the statistics of ``rl.compare``.
    markdown_table, save -- those rows as a table; written as ``results.md`` and ``results.csv``.

Every run is evaluated with the same environment seed under every shift (seed + 10000, as ``train_agent`` seeds its
evaluation environment; the environments draw the same random numbers whatever the corruption level, so DigitBandit
shows the same digits), so a shift changes the corruption and nothing else. One exception: with ``noise=0`` the
environments draw no noise bank, so their random stream, and the digits, differ from those of a noisy setting. The
shift 'as trained' (no change) is the reference: its numbers differ a little from the runs' own final evaluation,
which came after the periodic ones on the same environment and so saw other episodes.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv

from fsae.atomic import atomic_write
from fsae.checkpoint import CheckpointError
from fsae.config import ConfigError, load_config
from fsae.provenance import ProvenanceWarning, check_dependencies
from rl.agent import build_model, resolve_checkpoint
from rl.common_sense import Regenerator
from rl.compare import condition_key, fmt_ci
from rl.config import AgentConfig
from rl.env_factory import make_observer, make_vec_env_for, probe_env
from rl.perception import Encoder
from rl.resume import UNREADABLE_ZIP, why_unreadable
from rl.run_folder import env_folder, run_finished, run_folders, seed_of
from rl.stats import improvement_ci, iqm_ci

AS_TRAINED = "as trained"
COLUMNS = ["env", "shift", "condition", "seeds", "iqm", "ci_low", "ci_high", "p_improve", "p_low", "p_high"]


@dataclass
class FinalAgent:
    """A finished run's final policy with its config and regenerator, loaded once and evaluated on any environment."""

    cfg: AgentConfig
    model: BaseAlgorithm
    regen: Regenerator | Encoder | None

    def env(self, env_kwargs: dict[str, Any] | None = None) -> VecEnv:
        """One evaluation environment: the run's evaluation kwargs updated with ``env_kwargs``, its condition's
        wrapper, seeded seed + 10000 as ``train_agent`` seeds it. Close it when done."""
        return _eval_env(self.cfg, self.regen, env_kwargs)

    def evaluate(self, env_kwargs: dict[str, Any] | None = None, episodes: int = 50) -> float:
        """Mean return of the policy (deterministic) over ``episodes`` episodes of a fresh ``env(env_kwargs)``."""
        venv = self.env(env_kwargs)
        try:
            mean, _ = evaluate_policy(self.model, venv, n_eval_episodes=episodes, deterministic=True)
        finally:
            venv.close()
        return float(mean)


def _eval_env(cfg: AgentConfig, regen: Regenerator | Encoder | None, env_kwargs: dict[str, Any] | None) -> VecEnv:
    kwargs = {**cfg.env_kwargs, **cfg.eval_env_kwargs, **(env_kwargs or {})}
    return make_vec_env_for(cfg, regen, 1, cfg.seed + 10_000, kwargs)


def load_final_agent(run_dir: str | Path, device: str = "cpu", allow_changed: bool = False) -> FinalAgent:
    """The final policy of the finished run in ``run_dir``, rebuilt from its config with the weights of
    ``final_model.zip``, and its condition's regenerator.

    A checkpoint the run read that has changed since (``run_info.json``'s SHA-256) is refused (``ConfigError``): the
    agent was trained on the old model's regenerations. ``allow_changed`` evaluates it with the new one anyway. A
    ``final_model.zip`` that does not load (truncated, not a zip, another network) raises ``CheckpointError``."""
    run_dir = Path(run_dir)
    if not (run_dir / "final_model.zip").is_file():
        raise ConfigError(f"{run_dir} holds no final_model.zip: not a finished train_agent run")
    cfg = load_config(AgentConfig, run_dir / "config.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProvenanceWarning)
        changed = check_dependencies(run_dir)
    if changed and not allow_changed:
        raise ConfigError(f"{changed[0]}; the agent was trained with the old file: restore it, or allow_changed")
    checkpoint = resolve_checkpoint(cfg)
    regen = make_observer(cfg, checkpoint, device)
    venv = _eval_env(cfg, regen, None)  # for the spaces only: SB3 re-seeds the env a model is built on
    try:
        model = build_model(cfg, venv, device)
        model.set_parameters(str(run_dir / "final_model.zip"), exact_match=True, device=device)
    except UNREADABLE_ZIP as e:
        raise CheckpointError(
            f"{run_dir / 'final_model.zip'} cannot be loaded ({why_unreadable(e)}): not an intact agent of this run's "
            "config; train the run again"
        ) from None
    finally:
        venv.close()
    return FinalAgent(cfg, model, regen)


def evaluate_run(
    run_dir: str | Path,
    env_kwargs: dict[str, Any] | None = None,
    episodes: int = 50,
    device: str = "cpu",
    allow_changed: bool = False,
) -> float:
    """Mean return of the run's final policy (deterministic) over ``episodes`` episodes of the changed environment."""
    return load_final_agent(run_dir, device, allow_changed).evaluate(env_kwargs, episodes)


def finished_runs(logdir: str | Path) -> list[tuple[str, str, int, Path]]:
    """(env, condition, seed, folder) of each finished run under ``logdir`` with its agent (``final_model.zip``)."""
    runs = []
    for rel in run_folders(logdir):
        folder = Path(logdir) / rel
        if (folder / "final_model.zip").is_file() and run_finished(folder):
            runs.append((rel.parts[0], rel.parts[1], seed_of(rel.name), folder))
    return runs


def evaluate_shifts(
    logdir: str | Path,
    shifts: dict[str, dict[str, Any]],
    episodes: int = 50,
    baseline: str = "none",
    envs: Sequence[str] | None = None,
    conditions: Sequence[str] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    device: str = "cpu",
    log: Callable[[str], None] = print,
    allow_changed: bool = False,
) -> list[dict[str, Any]]:
    """One row per (env, shift, condition): ``seeds``, ``iqm`` of the seeds' mean returns with its 95% bootstrap CI
    (``ci_low``, ``ci_high``), and ``p_improve`` (with ``p_low``, ``p_high``) over ``baseline`` under the same shift
    (nan for the baseline itself, or where it has no runs). ``shifts`` maps a name to env kwargs, e.g.
    ``{"noise 0.6": {"noise": 0.6}}``; 'as trained' ({}) is always evaluated first. Every shift is tried on each
    environment before any evaluation (``ConfigError`` naming a kwarg the environment refuses). ``FileNotFoundError``
    when ``logdir`` holds no finished run (of ``envs`` and ``conditions``, when given)."""
    if not Path(logdir).is_dir():
        raise FileNotFoundError(f"{logdir} is not a folder")
    envs = None if envs is None else [env_folder(e) for e in envs]  # a full id (ALE/Pong-v5) names its folder too
    runs = [
        r
        for r in finished_runs(logdir)
        if (envs is None or r[0] in envs) and (conditions is None or r[1] in conditions)
    ]
    if not runs:
        raise FileNotFoundError(f"no finished runs (<env>/<condition>/seed<N> with final_model.zip) under {logdir}")
    shifts = {AS_TRAINED: {}, **{k: v for k, v in shifts.items() if k != AS_TRAINED}}
    for env in sorted({r[0] for r in runs}):
        cfg = load_config(AgentConfig, next(r[3] for r in runs if r[0] == env) / "config.yaml")
        for name, kwargs in shifts.items():
            try:
                probe_env(dataclasses.replace(cfg, eval_env_kwargs={**cfg.eval_env_kwargs, **kwargs}))
            except ConfigError as e:
                raise ConfigError(f"shift '{name}': {e}") from None
        if baseline not in {r[1] for r in runs if r[0] == env}:
            log(f"warning: {env} has no runs of the baseline '{baseline}'; P(improve) is left out (see --baseline)")
    returns: dict[tuple[str, str, str], list[float]] = {}
    for i, (env, condition, run_seed, folder) in enumerate(runs, 1):
        agent = load_final_agent(folder, device, allow_changed)  # once per run, then one fresh env per shift
        for name, kwargs in shifts.items():
            returns.setdefault((env, name, condition), []).append(agent.evaluate(kwargs, episodes))
        log(f"[{i}/{len(runs)}] {env}/{condition}/seed{run_seed}")

    rows = []
    order = sorted(returns, key=lambda k: (k[0], list(shifts).index(k[1]), condition_key(k[2])))
    for env, name, condition in order:
        x = returns[(env, name, condition)]
        row = {"env": env, "shift": name, "condition": condition, "seeds": len(x)}
        row["iqm"], row["ci_low"], row["ci_high"] = iqm_ci(x, n_resamples, seed)
        base = returns.get((env, name, baseline), []) if condition != baseline else []
        row["p_improve"], row["p_low"], row["p_high"] = improvement_ci(x, base, n_resamples, seed)
        rows.append(row)
    return rows


def markdown_table(rows: list[dict[str, Any]], baseline: str = "none", episodes: int = 50) -> str:
    lines = [
        f"| env | shift | condition | seeds | mean return, IQM over seeds [95% CI] "
        f"| P(improve over {baseline}) [95% CI] |",
        "|---|---|---|---:|---|---|",
    ]
    for r in rows:
        p = "—" if r["condition"] == baseline else fmt_ci(r["p_improve"], r["p_low"], r["p_high"])
        ci = fmt_ci(r["iqm"], r["ci_low"], r["ci_high"])
        lines.append(f"| {r['env']} | {r['shift']} | {r['condition']} | {r['seeds']} | {ci} | {p} |")
    lines += [
        "",
        f"Each seed's final policy, deterministic, {episodes} episodes of its evaluation environment (seeded seed + "
        "10000) with the shift's env kwargs; the same environment seeds (and, but for noise=0, digits) under every "
        "shift. IQM and percentile "
        "bootstrap CIs over seeds; P(improve): P(X > Y) + 0.5 P(X = Y) over pairs of seeds, Y the "
        f"{baseline} runs' under the same shift.",
        "",
    ]
    return "\n".join(lines)


def save(rows: list[dict[str, Any]], out: str | Path, baseline: str = "none", episodes: int = 50) -> Path:
    """Write ``results.md`` (``markdown_table``) and ``results.csv`` (``COLUMNS``) into ``out``; return results.md."""
    out = Path(out)
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / "results.csv", lambda f: f.write(table.getvalue().encode()))  # no half-written table
    text = markdown_table(rows, baseline, episodes)
    return atomic_write(out / "results.md", lambda f: f.write(text.encode()))
