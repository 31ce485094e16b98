"""The ray backend of a sweep: the runs not yet finished as trials of Ray Tune, on a cluster or on this machine.

Contents:
    run_ray -- connect (``rl.ray_cluster``), check every node, then Tune's grid over the runs: resources per trial,
               restarts from the newest agent checkpoint after a lost worker or node (``FailureConfig``),
               ``Tuner.restore`` of an interrupted sweep, finished runs skipped.

Needs the optional extra: ``pip install -e '.[ray]'``. What runs on the nodes is ``rl.sweep_trial``.

Tune's own files (its experiment state, one folder per attempt at the sweep) are in ``<storage>/.ray_tune/sweep-<N>``,
beside the run folders; ``<storage>/.ray_tune/sweep-<N>.json`` lists the runs of that attempt and whether it ended.
When the newest attempt was interrupted (Ctrl-C, SIGTERM, a crash of the driver) and holds every run still to do, the
sweep continues it with ``Tuner.restore``; runs it does not cover, or that failed in it, get a new attempt.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from fsae.config import ConfigError, to_dict
from rl.ray_cluster import EXPERIMENTS, check_nodes, connect, runtime_env
from rl.sweep import RayConfig, Run, RunResult, split_finished
from rl.sweep_local import report
from rl.sweep_lock import sweep_lock
from rl.sweep_trial import finished_at, is_uri, read_text, run_trial, write_text

# --------------------------------------------------------------------------------------------------------------------
# Storage and attempts


def _attempts(storage: str) -> list[tuple[int, dict[str, Any]]]:
    """``(N, index)`` of each earlier attempt ``sweep-<N>``, newest first."""
    found = []
    for n in range(1, 1000):
        text = read_text(storage, f"{EXPERIMENTS}/sweep-{n}.json")
        if text is None:
            break
        try:
            found.append((n, json.loads(text)))
        except ValueError:
            found.append((n, {}))
    return found[::-1]


def _trial_dirname(trial: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", trial.config["run"])


def _storage_of(runs: list[Run], cfg: RayConfig) -> str:
    if cfg.storage_path and is_uri(cfg.storage_path):
        return cfg.storage_path.rstrip("/")
    storage = Path(cfg.storage_path).expanduser().resolve() if cfg.storage_path else runs[0].logdir
    outside = [r.name for r in runs if r.logdir != storage]
    if outside:
        raise ConfigError(
            f"runs {outside[:3]} are planned outside the storage path {storage}; plan with logdir={storage}"
        )
    return str(storage)


# --------------------------------------------------------------------------------------------------------------------
# The sweep


_LIVE: dict[str, Any] = {"runs": {}, "log": print}
"""The runs by name and the log function of the sweep in progress, for ``_Progress`` (which Tune pickles with the
experiment, so it holds no references of its own)."""


class _Progress(tune.Callback):
    """One line per run that ends and per restart after a lost worker or node (Tune's own output is off)."""

    def __init__(self, total: int, max_failures: int):
        self.total, self.max_failures, self.ended = total, max_failures, 0

    def setup(self, **info: Any) -> None:
        self.ended = 0

    def _line(self, trial: Any, status: str, seconds: float, error: str) -> None:
        self.ended += 1
        run = _LIVE["runs"].get(trial.config["run"])
        if run is not None:
            report(RunResult(run, status, None, seconds, error), self.ended, self.total, _LIVE["log"])

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        self._line(trial, result.get("status", "failed"), result.get("seconds") or 0.0, result.get("error", ""))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trial, "failed", 0.0, f"its worker or node was lost {trial.num_failures} time(s)")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        limit = "unlimited" if self.max_failures < 0 else self.max_failures
        _LIVE["log"](
            f"ray: {trial.config['run']}: its worker or node was lost; restarting it from its newest agent checkpoint, "
            "if it wrote one "
            f"(failure {trial.num_failures} of {limit})"
        )


def _outcome(run: Run, result: Any, since: float) -> RunResult | None:
    """A trial's result as a ``RunResult``; None when the trial did not end in this fit (interrupted, or a failure
    left from an earlier attempt, whose last report predates ``since``)."""
    metrics = result.metrics or {}
    if result.error is not None:
        return RunResult(run, "failed", None, 0.0, " ".join(str(result.error).split())[:300])
    status = metrics.get("status")
    if status == "done" or (status == "failed" and metrics.get("timestamp", 0) >= int(since)):
        return RunResult(run, status, None, float(metrics.get("seconds") or 0.0), metrics.get("error", ""))
    return None


def _attempt(tuner: Any, n: int, todo: set[str], storage: str, fitting: threading.Event) -> tuple[dict, bool]:
    """Fit ``tuner`` (attempt ``n`` over the runs ``todo``): the outcomes by run name, and whether it was
    interrupted (a trial neither done nor failed)."""
    write_text(storage, f"{EXPERIMENTS}/sweep-{n}.json", json.dumps({"runs": sorted(todo), "ended": False}))
    since = time.time()
    fitting.set()
    try:
        grid = tuner.fit()
    finally:
        fitting.clear()
    outcomes, interrupted = {}, False
    for result in grid:
        name = (result.config or {}).get("run")
        if name not in _LIVE["runs"]:
            continue
        outcome = _outcome(_LIVE["runs"][name], result, since)
        if outcome is not None:
            outcomes[name] = outcome
        elif (result.metrics or {}).get("status") != "failed":
            interrupted = True
    if not interrupted:
        write_text(storage, f"{EXPERIMENTS}/sweep-{n}.json", json.dumps({"runs": sorted(todo), "ended": True}))
    return outcomes, interrupted


def _fit(
    runs: list[Run], pending: list[Run], storage: str, cfg: RayConfig, fitting: threading.Event
) -> list[RunResult]:
    """Tune's grid over ``pending``, continuing the newest attempt with ``Tuner.restore`` when it was interrupted and
    covers them; runs it leaves out (or had failed before) get a new attempt. Returns the runs' outcomes."""
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # no Tune event files among the run folders: JSON, CSV
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # with verbose=0: no tables (one line per run from _Progress instead)
    os.environ.setdefault(
        "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0"
    )  # short runs checkpoint often
    spec = {
        "runs": {r.name: {"agent": to_dict(r.agent), "command": shlex.join(r.command)} for r in runs},
        "storage": storage,
    }
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, spec=spec), {"cpu": cfg.cpus_per_run, "gpu": cfg.gpus_per_run}
    )
    root = f"{storage}/{EXPERIMENTS}"
    todo = {r.name for r in pending}
    outcomes: dict[str, RunResult] = {}
    attempts = _attempts(storage)
    if attempts:
        n, index = attempts[0]
        path = f"{root}/sweep-{n}"
        if not index.get("ended") and todo <= set(index.get("runs", [])) and tune.Tuner.can_restore(path):
            _LIVE["log"](f"ray: continuing the interrupted attempt {path} (Tuner.restore)")
            tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
            done, interrupted = _attempt(tuner, n, set(index["runs"]), storage, fitting)
            outcomes |= {k: v for k, v in done.items() if k in todo}
            if interrupted:
                return list(outcomes.values())
            todo -= set(done)
    if todo:
        n = attempts[0][0] + 1 if attempts else 1
        tuner = tune.Tuner(
            trainable,
            param_space={"run": tune.grid_search(sorted(todo))},
            tune_config=tune.TuneConfig(reuse_actors=True, trial_dirname_creator=_trial_dirname),
            run_config=tune.RunConfig(
                name=f"sweep-{n}",
                storage_path=root,
                failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[_Progress(len(todo), cfg.max_failures), JsonLoggerCallback(), CSVLoggerCallback()],
                verbose=0,
            ),
        )
        outcomes |= _attempt(tuner, n, todo, storage, fitting)[0]
    return list(outcomes.values())


def run_ray(
    runs: list[Run],
    cfg: RayConfig | None = None,
    address: str | None = None,
    log: Callable[[str], None] = print,
) -> list[RunResult]:
    """The unfinished ``runs`` as trials of Ray Tune, each reserving ``cfg.cpus_per_run`` CPUs and
    ``cfg.gpus_per_run`` GPUs, restarted up to ``cfg.max_failures`` times when its worker or node is lost.

    Connects to the cluster at ``address`` (None: the Ray instance already initialised in this process, else a new
    local one; 'auto': the one running on this machine), checks every node (``check_nodes``), then runs the grid. The
    run folders land in ``cfg.storage_path`` (None: the runs' logdir; see ``rl.sweep_trial``). A run that did not end
    (interrupted) is left out of the results. Raises ``KeyboardInterrupt`` after a clean stop on SIGINT or SIGTERM
    (the trials are stopped, Tune's state is saved, the next sweep continues it).
    """
    cfg = cfg or RayConfig()
    if not runs:
        return []
    storage = _storage_of(runs, cfg)
    with sweep_lock(set() if is_uri(storage) else {Path(storage)}):
        if is_uri(storage):
            pending = [r for r in runs if not finished_at(storage, r.agent)]
            results = [RunResult(r, "skipped") for r in runs if r not in pending]
            log(f"sweep: {len(runs)} runs, {len(results)} already finished (skipped), {len(pending)} to run")
        else:
            results, pending = split_finished(runs, log)
        if not pending:
            return results
        stop, fitting = threading.Event(), threading.Event()

        def on_sigterm(signum: int, frame: Any) -> None:
            stop.set()
            if fitting.is_set():
                os.kill(os.getpid(), signal.SIGINT)  # Tune's own stop: trials stopped, experiment state saved
            else:
                raise KeyboardInterrupt

        before = signal.signal(signal.SIGTERM, on_sigterm)
        _LIVE.update(runs={r.name: r for r in runs}, log=log)
        try:
            connect(address, runtime_env(cfg.env_vars), log)  # puts on_sigterm back after ray.init
            check_nodes(pending, storage, cfg, log)
            ended = _fit(runs, pending, storage, cfg, fitting)
        finally:
            signal.signal(signal.SIGTERM, before)
            _LIVE.update(runs={}, log=print)
        if stop.is_set() or len(ended) < len(pending):
            raise KeyboardInterrupt
    return results + ended
