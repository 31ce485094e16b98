"""SB3 callbacks of an agent run: evaluation on the test split, and checkpoints written atomically.

Contents:
    SplitEvalCallback        -- ``EvalCallback`` whose ``evaluations.npz`` and success rate stay well formed when only
                                some episodes report ``is_success``; written atomically.
    AtomicCheckpointCallback -- ``CheckpointCallback`` whose zips are written through a temporary file and renamed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
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
    """SB3's ``CheckpointCallback`` (agent only: no replay buffer or VecNormalize here), but each
    ``agent_<step>_steps.zip`` is written through a temporary file and renamed: a kill mid-save leaves the older
    checkpoints and no partial zip for ``--resume`` to trip over."""

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            atomic_write(self._checkpoint_path(extension="zip"), self.model.save)
        return True
