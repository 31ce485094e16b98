"""Resuming a killed pretraining run (``scripts/pretrain.py --resume``): the run folder's ``train_state.pt``.

Contents:
    STATE_FILE    -- the file's name in the run folder.
    TrainingState -- runs the stages of a run (``run``), and is written after every epoch of every stage (atomically,
                     so a ``kill -9`` leaves the previous one): the weights of each finished stage, and for the stage
                     in progress its weights, Adam's and the schedule's state, its losses and every RNG state
                     (``fsae.runtime.rng_state``).

A pretraining run is a sequence of stages: 'abstract', then 'concrete' (every variant, and the conventional autoencoder
when it trains as long as they do, in one pass over the batches), then 'baseline_ae' if it trains for other epochs.
On resume, a finished stage is not trained again: its weights are loaded and its evaluation re-run (cheap, and
deterministic). The stage in progress continues after its last saved epoch. Before the first unfinished stage builds
its model, the RNG states are put back as they were when the state was saved, so the resumed run draws the same
random numbers as an uninterrupted one: on a CPU its metrics are identical (tested), on a GPU equal within noise.
The resumed process writes a new TensorBoard event file beside the first; the loss points the killed process logged
after its last saved epoch stay in the first file, so TensorBoard may show that stretch of a curve twice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fsae.checkpoint import CheckpointError, atomic_save, safe_load
from fsae.runtime import rng_state, set_rng_state

STATE_FILE = "train_state.pt"
STATE_FORMAT = "fsae-rl/pretrain-state"
STATE_VERSION = 2  # 2: the variants train in one stage, 'concrete' (1: one stage per variant)
# Settings (dotted paths) that do not change what is trained: where it runs, where MNIST is read from, and how the
# trained networks are evaluated (the evaluation is re-run with the resumed run's values).
MAY_DIFFER = (
    "device",
    "torch_threads",
    "train.eval_batch_size",
    "feedback_steps",
    "feedback_test_images",
    "data.root",
    "data.download",
)


def _config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    keys = sorted(set(saved) | set(current))
    out = []
    for k in keys:
        a, b = saved.get(k), current.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_differences(a, b, f"{prefix}{k}.")
        elif a != b and f"{prefix}{k}" not in MAY_DIFFER:
            out.append(f"{prefix}{k}")
    return out


class TrainingState:
    """The resumable state of one pretraining run (see the module docstring)."""

    def __init__(self, run_dir: Path, config: dict[str, Any], resume: bool):
        """Start a new state for ``config``, or with ``resume`` load the run folder's and check it is the same run."""
        self.path = Path(run_dir) / STATE_FILE
        self.state: dict[str, Any] = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "config": config,
            "finished": {},
            "current": None,
        }
        self._restore_pending = False
        if resume:
            if not self.path.is_file():
                raise CheckpointError(
                    f"nothing to resume in {self.path.parent}: it holds no {STATE_FILE} (the run finished, never "
                    "completed an epoch, or is another folder); run without --resume to start it"
                )
            saved = safe_load(self.path)
            if saved.get("format") != STATE_FORMAT:
                raise CheckpointError(f"{self.path} is not a pretraining state ({saved.get('format')!r})")
            if saved.get("version", 1) != STATE_VERSION:
                raise CheckpointError(
                    f"{self.path} was written by an older pretraining (state version {saved.get('version', 1)}, "
                    f"this code resumes {STATE_VERSION}, which trains the variants in one pass); start a new run"
                )
            diff = _config_differences(saved["config"], config)
            if diff:
                raise CheckpointError(
                    f"{self.path.parent} was started with another config (differs in: {', '.join(diff)}); resume "
                    "with the same --config and --set, or start a new run folder"
                )
            self.state = saved
            self.state["config"] = config
            self._restore_pending = saved["current"] is not None

    # ----------------------------------------------------------------------------------------------------------------

    def run(
        self, stage: str, model: torch.nn.Module, train: Callable[..., Any], generator: torch.Generator
    ) -> torch.nn.Module:
        """Train ``model`` as ``stage`` with ``train(model, resume=..., on_epoch=...)``, saving after every epoch, or,
        when a resumed run has finished the stage, load the weights it ended with. Returns the model.

        A non-finite loss is re-raised with where the last good state is (or that there is none)."""
        done = self.finished(stage)
        if done is not None:
            model.load_state_dict(done)
            return model
        start = self.begin(stage, generator)
        try:
            train(model, resume=start, on_epoch=lambda s: self.save_epoch(stage, s))
        except FloatingPointError as e:
            last = self.describe_last()
            where = "no epoch finished before it, so there is no state to resume from"
            if last:  # resuming refuses a changed config, learning rate included
                where = (
                    f"last good state: {last}; --resume continues from it only with the same config, so a lower "
                    "learning rate means a new run (another --out)"
                )
            raise FloatingPointError(f"{e}; {where}") from None
        self.finish(stage, model, generator)
        return model

    def finished(self, stage: str) -> dict[str, torch.Tensor] | None:
        """The weights a finished stage ended with, or None when it has not finished."""
        return self.state["finished"].get(stage)

    def begin(self, stage: str, generator: torch.Generator) -> dict[str, Any] | None:
        """Call before a stage builds its model. Returns the stage's saved epoch state to ``resume`` from (or None).

        At the first unfinished stage of a resumed run, this puts the saved RNG states back first.
        """
        assert self.finished(stage) is None, f"stage '{stage}' has finished; load its weights instead"
        current = self.state["current"]
        if self._restore_pending:
            set_rng_state(current["rng"], generator)
            self._restore_pending = False
        return current if current is not None and current["stage"] == stage else None

    def save_epoch(self, stage: str, fit_state: dict[str, Any]) -> None:
        """After each epoch: the stage in progress (``fsae.train`` ``on_epoch`` dict), written atomically."""
        self.state["current"] = {"stage": stage, **fit_state}
        atomic_save(self.state, self.path)

    def finish(self, stage: str, model: torch.nn.Module, generator: torch.Generator) -> None:
        """After a stage: keep its weights and the RNG states the next stage starts from."""
        self.state["finished"][stage] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        self.state["current"] = {"stage": None, "rng": rng_state(generator)}
        atomic_save(self.state, self.path)

    def describe_last(self) -> str | None:
        """Where a resumed run would continue, for error messages ('... (after epoch 3 of stage abstract)'); None
        before the first epoch has finished."""
        current = self.state["current"]
        if current is None:
            return None
        if current["stage"] is None:  # saved by ``finish``: at least one stage has finished
            return f"{self.path} (after stage {list(self.state['finished'])[-1]})"
        return f"{self.path} (after epoch {len(current['history'])} of stage {current['stage']})"

    def remove(self) -> None:
        """The run is complete: its products are on disk, the state is no longer needed."""
        self.path.unlink(missing_ok=True)
