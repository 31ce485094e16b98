"""Resuming an interrupted agent run (``scripts/train_agent.py --resume``) from its newest checkpoint.

Contents:
    resume            -- the one call ``train_agent`` makes: load the newest checkpoint into the model, record the
                         command, reopen the logs and evaluation history up to its step; returns the step.
    check_resumable   -- the run folder holds an unfinished run of the same config (a checkpoint moved with the same
                         bytes is the same); refuses anything else.
    resumable         -- the same as a yes or no, for the sweeps.
    config_differences -- the settings in which two agent configs differ (``rl.sweep`` uses it too).
    load_latest       -- the newest checkpoint in ``checkpoints/`` that loads (a file cut short by ``kill -9`` is
                         skipped with a warning), into a model built from the run's config, without unpickling;
                         ``match_state_layout`` gives the optimiser's statistics their weights' memory layout.
    UNREADABLE_ZIP, why_unreadable -- what an agent zip that does not load raises, and its one-line reason (shared
                         with ``rl.shift``).
    read_counters     -- a checkpoint's step counters (num_timesteps, ...), read from its ``data`` as plain JSON.
    restore_progress  -- put back ``progress.csv``'s rows up to the checkpoint (SB3's CSV logger truncates the file),
                         and mark the restart in TensorBoard so that points logged after the checkpoint are dropped.
    restore_evaluations -- the evaluation history (``eval/evaluations.npz``) up to the checkpoint, and the best mean
                         reward, into a ``SplitEvalCallback``, so that neither starts again from nothing.

The resumed run continues the step count (``learn(remaining, reset_num_timesteps=False)``). It is not bit-identical to
an uninterrupted run: SB3 checkpoints hold no RNG or environment state, so the environments restart from a reset,
seeded with seed + the checkpoint's step. An off-policy agent's (DQN's) replay buffer is not saved either (it would be
buffer_size observations per checkpoint): the resumed agent collects ``learning_starts`` new transitions before its
gradient steps start again, as at the start of the first run, instead of training on a buffer of a few dozen. As at
that start, SB3 acts uniformly at random while it collects them, which shows as a dip in ``rollout/ep_rew_mean``.

A checkpoint is loaded without ``BaseAlgorithm.load``, which unpickles (cloudpickle) the classes, spaces and schedules
stored in the zip's ``data``, so a planted file could run code. Instead the model is built again from the run's
config (``check_resumable`` has made sure it is the same), its weights and optimiser state are read with
``set_parameters`` (``torch.load(weights_only=True)``), and its step counters from ``data`` as plain JSON.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import time
import warnings
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from fsae.config import ConfigError, load_yaml, to_dict
from fsae.console import kind_and_reason
from fsae.provenance import check_dependencies, sha256_file
from rl.callbacks import SplitEvalCallback
from rl.config import AgentConfig, PolicyConfig
from rl.run_folder import open_logger, recorded_sha256

_CHECKPOINT = re.compile(r"agent_(\d+)_steps\.zip")
# Settings that do not change what is trained: where the files are (the folder is found from the others), how fast
# it runs, what it prints.
_MAY_DIFFER = {"overwrite", "progress_bar", "verbose", "cuda_graph", "logdir", "device", "torch_threads", "vec_env"}
_CHECKPOINTS = ("fsae_checkpoint", "autoencoder_checkpoint")  # compared by their bytes where moved (``_moved``)


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of each ``checkpoints/agent_<step>_steps.zip``, newest first."""
    matches = ((_CHECKPOINT.fullmatch(p.name), p) for p in (run_dir / "checkpoints").glob("agent_*_steps.zip"))
    return sorted(((int(m.group(1)), p) for m, p in matches if m), reverse=True)


def check_resumable(run_dir: Path, config: dict[str, Any], checkpoint: str | None = None) -> None:
    """Refuse (``ConfigError``) a folder without a run, a finished run, no checkpoint, or another config.

    ``checkpoint`` is the file the resumed run's condition reads (``rl.agent.resolve_checkpoint``); when given, a
    checkpoint path that changed is the same model if that file has the SHA-256 the run recorded (``_moved``)."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise ConfigError(f"--resume: {run_dir} holds no run (no config.yaml); start it without --resume")
    if (run_dir / "metrics.json").is_file():
        raise ConfigError(f"--resume: the run in {run_dir} has finished (metrics.json); nothing to resume")
    if not checkpoints(run_dir):
        raise ConfigError(
            f"--resume: no checkpoint in {run_dir / 'checkpoints'} (checkpoint_freq decides how often one is written); "
            "start the run again with overwrite=true"
        )
    saved = load_yaml(saved_path)
    moved = _moved(run_dir, saved, config, checkpoint)
    differ = ", ".join(filter(None, (config_differences(saved, config, _CHECKPOINTS), moved)))
    if differ:
        raise ConfigError(f"--resume: the config differs from the run's config.yaml in {differ}; resume with the same")


def _moved(run_dir: Path, saved: dict[str, Any], config: dict[str, Any], checkpoint: str | None) -> str:
    """The checkpoint paths that differ between the run's config and ``config`` ('' when none does), unless the
    frozen model has only moved: ``checkpoint``, the file the resumed run reads, has the SHA-256 the run recorded for
    the file it read (``fsae.json``), as ``rl.sweep.settings_changed`` compares them (a repository or logdir moved, a
    checkpoint copied into the repository)."""
    differ = [f"{k}: {saved.get(k)!r} -> {config.get(k)!r}" for k in _CHECKPOINTS if saved.get(k) != config.get(k)]
    if not differ or checkpoint is None or not Path(checkpoint).is_file():
        return ", ".join(differ)
    recorded = recorded_sha256(run_dir)
    return "" if recorded and sha256_file(checkpoint) == recorded else ", ".join(differ)


def resumable(run_dir: Path, agent: AgentConfig, checkpoint: str | None = None) -> bool:
    """Whether ``run_dir`` holds an unfinished run of ``agent`` that ``train_agent(..., resume=True)`` continues
    (``check_resumable`` passes, ``checkpoint`` as there): what the sweeps ask of a folder left by a killed or stopped
    try. False for a config that writes no checkpoints (``checkpoint_freq`` 0)."""
    if not agent.checkpoint_freq:
        return False
    try:
        check_resumable(run_dir, yaml.safe_load(yaml.safe_dump(to_dict(agent))), checkpoint)
    except (ConfigError, OSError, ValueError):
        return False
    return True


def config_differences(saved: dict[str, Any], config: dict[str, Any], ignore: Collection[str] = ()) -> str:
    """``'key: old -> new, ...'`` for each setting (top-level key of two ``AgentConfig`` dicts) that changes what is
    trained, '' when none does; ``ignore`` names more keys to leave out. A key missing on one side (a config written
    before the key existed) counts as its default."""
    defaults = _defaults(AgentConfig)
    old, new = {**defaults, **saved}, {**defaults, **config}
    for d in (old, new):  # the policy section too: a key added since (policy.extractor) counts as its default
        d["policy"] = {**_defaults(PolicyConfig), **(d.get("policy") or {})}
    skip = _MAY_DIFFER | set(ignore)
    differ = sorted(k for k in set(old) | set(new) if k not in skip and old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in differ)


def _defaults(cls: type) -> dict[str, Any]:
    """Each field's default as ``to_dict`` writes it (default factories called)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = to_dict(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = to_dict(f.default_factory())
    return out


_COUNTERS = ("num_timesteps", "_n_updates", "_episode_num", "_n_calls", "exploration_rate")
"""What a checkpoint's ``data`` holds beyond the config and the weights that training continues from (``_n_calls``
and ``exploration_rate``: DQN's target-update clock and epsilon)."""


def read_counters(path: Path) -> dict[str, int | float]:
    """The step counters saved in an SB3 checkpoint's ``data``, read as JSON (its pickled entries are not touched)."""
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data"))
    counters = {k: data[k] for k in _COUNTERS if isinstance(data.get(k), (int, float))}
    if "num_timesteps" not in counters:
        raise KeyError(f"no num_timesteps in {path.name}'s data")
    return counters


# What SB3's set_parameters raises for an agent zip that is truncated, not a zip, or of another network.
UNREADABLE_ZIP = (zipfile.BadZipFile, EOFError, KeyError, ValueError, RuntimeError, OSError)


why_unreadable = kind_and_reason  # 'Type: first line', for one-line reports of an agent zip that did not load


def load_latest(model: BaseAlgorithm, run_dir: Path, device: Any) -> int:
    """Load the newest checkpoint that loads into ``model`` (built from the run's config): weights, optimiser state
    and step counters. Older ones are tried when a newer one is unreadable (a kill during ``model.save`` leaves a
    partial zip). An off-policy model's ``learning_starts`` is moved past the step (its replay buffer starts empty).
    Returns the checkpoint's step; ``ConfigError`` naming why each failed when none loads."""
    unreadable = []
    for step, path in checkpoints(run_dir):
        try:
            counters = read_counters(path)
            model.set_parameters(str(path), exact_match=True, device=device)
        except UNREADABLE_ZIP as e:
            unreadable.append(f"{path.name}: {why_unreadable(e)}")
            continue
        for why in unreadable:  # warned only when an older checkpoint stands in for them
            warnings.warn(f"checkpoint {why}; resumed from the older {path.name}", stacklevel=2)
        match_state_layout(model.policy.optimizer)
        for key, value in counters.items():
            setattr(model, key, value)
        if isinstance(model, OffPolicyAlgorithm):  # its replay buffer is not saved: refill it before learning again
            model.learning_starts += step
        return step
    raise ConfigError(f"--resume: no checkpoint in {run_dir / 'checkpoints'} could be loaded ({'; '.join(unreadable)})")


def match_state_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give each optimiser statistic (Adam's moments, RMSprop's averages) its parameter's memory layout, in place: a
    checkpoint of a run from before SmallCNN went channels-last holds them in the plain layout, and the updates of a
    channels-last weight would otherwise mix the two at every step. The values are unchanged."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def restore_progress(logger: Logger, step: int, old_rows: list[dict[str, str]]) -> None:
    """Rewrite ``old_rows`` logged at steps <= ``step`` into the (just truncated) ``progress.csv``, and write a
    TensorBoard ``SessionLog.START`` at ``step + 1``, which makes TensorBoard drop the older files' later points."""
    from tensorboard.compat.proto.event_pb2 import Event, SessionLog

    kept = [r for r in old_rows if r.get("time/total_timesteps") and float(r["time/total_timesteps"]) <= step]
    for fmt in logger.output_formats:
        if isinstance(fmt, CSVOutputFormat) and kept:
            fmt.keys = list(kept[0])
            writer = csv.DictWriter(fmt.file, fieldnames=fmt.keys, lineterminator="\n")
            writer.writeheader()
            writer.writerows(kept)
            fmt.file.flush()
        if isinstance(fmt, TensorBoardOutputFormat):
            start = Event(wall_time=time.time(), step=step + 1, session_log=SessionLog(status=SessionLog.START))
            fmt.writer._get_file_writer().add_event(start)
            fmt.writer.flush()


def read_progress(run_dir: Path) -> list[dict[str, str]]:
    """``progress.csv``'s rows ([] when there is none)."""
    path = run_dir / "progress.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def restore_evaluations(callback: Any, npz_path: Path, step: int) -> None:
    """Load the evaluations up to ``step`` into ``callback`` (a ``SplitEvalCallback``): its history (so that
    ``evaluations.npz`` keeps them) and its best mean reward (so that ``best_model.zip`` is only replaced by a better
    model). A ``best_model.zip`` beside ``npz_path``'s folder that an evaluation after ``step`` wrote (one better than
    every evaluation kept) is removed: it is an agent of the steps the resumed run trains again, and would otherwise be
    taken for the agent of the best evaluation it reports."""
    if not npz_path.is_file():
        return
    with np.load(npz_path) as data:
        keep = data["timesteps"] <= step
        for key in callback._history:
            callback._history[key] = list(data[key][keep]) if key in data else []
        means = np.mean(data["results"], axis=1) if len(data["results"]) else np.zeros(0)
    best_kept = float(np.max(means[keep])) if keep.any() else -np.inf
    if keep.any():
        callback.best_mean_reward = best_kept
    if (~keep).any() and np.max(means[~keep]) > best_kept:
        (npz_path.parent.parent / "best_model.zip").unlink(missing_ok=True)


def resume(
    model: BaseAlgorithm,
    run_dir: Path,
    cfg: AgentConfig,
    callbacks: list[Any],
    command: str | None,
    device: Any,
) -> tuple[int, Logger]:
    """Continue the unfinished run in ``run_dir`` (``check_resumable`` has passed): load its newest checkpoint into
    ``model``, reseed it (not the first run's episodes again), append ``command`` to ``command.txt``, warn if a
    checkpoint it depends on changed, reopen its logs with the rows up to the step, give ``callbacks[0]`` (a
    ``SplitEvalCallback``) its evaluation history and every callback its clock. Returns the step and the logger,
    which ``model`` now uses."""
    step = load_latest(model, run_dir, device)
    model.set_random_seed(cfg.seed + step)
    with (run_dir / "command.txt").open("a") as f:
        f.write(f"# resumed at step {step}:\n{command or '(called from Python)'}\n")
    check_dependencies(run_dir)  # warns if the FSAE checkpoint changed since the run started
    old_rows = read_progress(run_dir)  # before the logger truncates progress.csv
    logger = open_logger(run_dir, cfg.verbose)
    restore_progress(logger, step, old_rows)
    model.set_logger(logger)
    assert isinstance(callbacks[0], SplitEvalCallback)
    restore_evaluations(callbacks[0], run_dir / "eval" / "evaluations.npz", step)
    for cb in callbacks:  # they fire on n_calls (vector steps): keep the first run's grid of steps
        cb.n_calls = step // cfg.n_envs
    return step, logger
