"""SB3 callbacks of an agent run: evaluation on the test split, and checkpoints written atomically.

Contents:
    SplitEvalCallback        -- ``EvalCallback`` whose ``evaluations.npz`` and success rate stay well formed when only
                                some episodes report ``is_success``; written atomically.
    AtomicCheckpointCallback -- ``CheckpointCallback`` whose zips are written through a temporary file and renamed.
    ProgressCallback         -- hands each new evaluation and each new checkpoint to a function (a sweep's trial
                                reports them to Ray Tune through it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback, EvalCallback
from stable_baselines3.common.vec_env import VecEnv

from fsae.checkpoint import atomic_write


class SplitEvalCallback(EvalCallback):
    """SB3's ``EvalCallback`` with an ``evaluations.npz`` and success rate that stay well formed when only some
    episodes report ``info["is_success"]``.

    DigitLock reports it when the agent submits, not when an episode is truncated; SB3's own writer then stacks
    success lists of different lengths and ``np.savez`` fails ("inhomogeneous shape"), and its success rate averages
    over the submits alone. Here, when any episode of an evaluation reports success, those that do not count as
    failures (``eval/success_rate``); the file holds ``timesteps``, ``results`` and ``ep_lengths`` (n_evals,
    n_episodes) as SB3's does, and ``success_rate`` (n_evals,), NaN where no episode reported success.
    """

    def __init__(self, eval_env: VecEnv, npz_path: Path, **kwargs: Any):
        super().__init__(eval_env, log_path=None, **kwargs)
        self.npz_path = npz_path
        self._episodes: list[tuple[float, int, bool | None]] = []
        self._history: dict[str, list[Any]] = {"timesteps": [], "results": [], "ep_lengths": [], "success_rate": []}

    def _log_success_callback(self, locals_: dict[str, Any], globals_: dict[str, Any]) -> None:
        info = locals_["info"]
        if not (locals_["done"] and "episode" in info):  # Monitor's record: the whole episode
            return
        success = info.get("is_success")
        self._episodes.append((info["episode"]["r"], info["episode"]["l"], None if success is None else bool(success)))
        if len(self._episodes) == self.n_eval_episodes:  # evaluate_policy counts exactly this many episodes
            rewards, lengths, successes = zip(*self._episodes)
            reported = [s for s in successes if s is not None]
            rate = sum(reported) / len(successes) if reported else float("nan")
            if reported:  # recorded before EvalCallback dumps its eval/ values, so they share one step
                self.logger.record("eval/success_rate", rate)
            for key, value in zip(self._history, (self.num_timesteps, rewards, lengths, rate)):
                self._history[key].append(value)
            arrays = {k: np.asarray(v) for k, v in self._history.items()}
            atomic_write(self.npz_path, lambda f: np.savez(f, **arrays))  # a kill mid-write leaves the old file

    def _on_step(self) -> bool:
        self._episodes = []
        return super()._on_step()


class AtomicCheckpointCallback(CheckpointCallback):
    """SB3's ``CheckpointCallback`` (agent only: no replay buffer or VecNormalize here), with two changes.

    Each ``agent_<step>_steps.zip`` is written through a temporary file and renamed: a kill mid-save leaves the older
    checkpoints and no partial zip for ``--resume`` to trip over. And it is written after the update that follows
    its step, not at the step: SB3 calls ``on_step`` while it collects a rollout, before it trains on it, so a zip
    saved there counts the rollout's steps in ``num_timesteps`` with weights that have not learned from them, and a
    run resumed from it would never train on them. Here the step only marks a save as due; it happens at the start of
    the next rollout (after ``train()``) or at the end of training, named by the steps the weights have learned.
    ``saves`` counts the zips written (``ProgressCallback`` reports each)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._due = False
        self.saves = 0

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            self._due = True
        return True

    def _on_rollout_start(self) -> None:  # the previous rollout has been trained on
        self._save_if_due()

    def _on_training_end(self) -> None:
        self._save_if_due()

    def _save_if_due(self) -> None:
        if self._due:
            self.num_timesteps = self.model.num_timesteps
            atomic_write(self._checkpoint_path(extension="zip"), self.model.save)
            self._due = False
            self.saves += 1


class ProgressCallback(BaseCallback):
    """After each periodic evaluation of ``evaluation`` and each checkpoint of ``checkpoints`` (None: none), calls
    ``on_progress`` with ``{"timesteps", "eval_mean_reward", "best_eval_mean_reward", "checkpoint"}`` (the latest
    evaluation's mean reward, the best so far, None before the first; ``checkpoint``: a zip was written since the last
    call). It reports where checkpoints are written, after each update (the start of the next rollout, the end of
    training), so that a checkpoint reported is on disk; placed after both callbacks, it sees what they did there."""

    def __init__(
        self,
        evaluation: SplitEvalCallback,
        checkpoints: AtomicCheckpointCallback | None,
        on_progress: Callable[[dict], None],
    ):
        super().__init__()
        self.evaluation = evaluation
        self.checkpoints = checkpoints
        self.on_progress = on_progress
        self._evals_seen = 0
        self._saves_seen = 0

    def _on_training_start(self) -> None:
        self._evals_seen = len(self.evaluation._history["timesteps"])  # a resumed run's earlier ones are not new
        self._saves_seen = self._saves()

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        self._report()

    def _on_training_end(self) -> None:
        self._report()

    def _saves(self) -> int:
        return self.checkpoints.saves if self.checkpoints else 0

    def _report(self) -> None:
        history = self.evaluation._history
        new_eval = len(history["timesteps"]) > self._evals_seen
        saves = self._saves()
        checkpoint = saves > self._saves_seen
        if new_eval or checkpoint:
            self._evals_seen, self._saves_seen = len(history["timesteps"]), saves
            latest = float(np.mean(history["results"][-1])) if history["results"] else None
            best = self.evaluation.best_mean_reward
            self.on_progress(
                {
                    "timesteps": int(self.model.num_timesteps),
                    "eval_mean_reward": latest,
                    "best_eval_mean_reward": float(best) if np.isfinite(best) else None,
                    "checkpoint": checkpoint,
                }
            )
