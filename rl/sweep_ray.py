"""The ray backend of a sweep: the runs not yet finished as trials of Ray Tune, on a cluster or on this machine.

Contents:
    connect       -- ``ray.init`` with the job's ``runtime_env`` (the project's code, FSAE_MNIST_DIR); a cluster that is
                     not there, or that refuses this driver's token, is a one-line ``ConfigError`` with the fix.
    check_nodes   -- the preflight: one task pinned to each node checks its data, checkpoints and storage, and
                     names every node that lacks them, before the first trial.
    run_ray       -- the sweep on Tune: a grid over the runs, resources per trial, restarts from the newest agent
                     checkpoint (``FailureConfig``), ``Tuner.restore`` of an interrupted sweep.

Needs the optional extra: ``pip install -e '.[ray]'``. What runs on the nodes is ``rl.sweep_trial``.

Tune's own files (its experiment state, one folder per sweep attempt) are in ``<storage>/.ray_tune/sweep-<N>``,
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
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from fsae.config import ConfigError, to_dict
from fsae.data import default_mnist_root
from rl.sweep import ROOT, RayConfig, Run, RunResult, checkpoint_sha256, split_finished, sweep_lock
from rl.sweep_local import report
from rl.sweep_trial import finished_at, is_uri, preflight, read_text, run_trial, write_text

EXPERIMENTS = ".ray_tune"
PREFLIGHT_TIMEOUT_S = 600  # a node's first task sets up the runtime_env (downloads the code) and starts a worker
EXCLUDES = ["runs/", "data/", ".git/", "*.pt", "*.zip", "*.npz", "__pycache__/"]
AUTH_FIX = (
    "the cluster uses token authentication: export RAY_AUTH_MODE=token and give this driver the cluster's token "
    "(RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token; `ray get-auth-token` on the head prints it)"
)


# --------------------------------------------------------------------------------------------------------------------
# Connecting


def runtime_env(env_vars: dict[str, str] | None = None) -> dict[str, Any]:
    """The job's runtime_env: this checkout as ``working_dir`` (without runs/, data/, .git/ and model files) and
    FSAE_MNIST_DIR (this machine's MNIST folder: every node must hold MNIST at that path) plus ``env_vars``."""
    env = {"FSAE_MNIST_DIR": str(default_mnist_root().resolve())} | dict(env_vars or {})
    return {"working_dir": str(ROOT), "excludes": EXCLUDES, "env_vars": env}


def connection_error(address: str | None, error: BaseException, captured: str = "") -> ConfigError:
    """The one line for a failed ``ray.init``: a token refused (``AuthenticationError``, ``InvalidAuthToken``, also
    when only Ray's log lines in ``captured`` say so) or another reason, with what to do."""
    text = f"{error!r} {error.__cause__!r} {captured}"
    where = f"the Ray cluster at {address}" if address else "a new local Ray instance"
    if "InvalidAuthToken" in text or "AuthenticationError" in text or "Unauthenticated" in text:
        mode = os.environ.get("RAY_AUTH_MODE", "") or "unset"
        return ConfigError(
            f"{where} refused this driver's token (InvalidAuthToken; RAY_AUTH_MODE is {mode}); {AUTH_FIX}"
        )
    reason = " ".join((str(error) or type(error).__name__).split())[:300]
    return ConfigError(f"cannot connect to {where}: {reason}; is `ray status --address {address}` answering?")


def _probe(address: str) -> None:
    """A host:port that nothing listens on fails here in seconds, not after ray.init's minutes of retries."""
    m = re.fullmatch(r"(?:ray://)?\[?([^\]]+?)\]?:(\d+)", address)
    if m is None:
        return  # 'auto', or something Ray will judge
    host, port = m.group(1), int(m.group(2))
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as e:
        raise ConfigError(
            f"no Ray cluster answers at {address} ({e.strerror or e}); start its head there with `ray start --head "
            f"--port {port}`, or pass the head's address (--ray-address host:port)"
        ) from None


def connect(address: str | None, env: dict[str, Any], log: Callable[[str], None] = print) -> None:
    """``ray.init(address, runtime_env=env)`` unless Ray is already initialised in this process. Ray's own lines while
    it connects are kept back and shown only when it worked; any failure is one ``ConfigError``. ``ray.init``
    replaces the SIGTERM handler (a Ray driver dies on SIGTERM): the caller's handler is put back."""
    if ray.is_initialized():
        return
    if address and address != "auto":
        _probe(address)
    before = signal.getsignal(signal.SIGTERM)
    kwargs: dict[str, Any] = {
        "address": address,
        "runtime_env": env,
        "log_to_driver": False,
        "logging_level": "WARNING",
    }
    if address is None:
        kwargs["include_dashboard"] = False
    with tempfile.TemporaryFile("w+") as captured:
        saved = os.dup(2)
        if address is not None:  # connecting starts no daemons that would inherit the redirected stderr
            os.dup2(captured.fileno(), 2)
        try:
            ray.init(**kwargs)
        except Exception as e:
            os.dup2(saved, 2)
            captured.seek(0)
            raise connection_error(address, e, captured.read()) from None
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            signal.signal(signal.SIGTERM, before)
    nodes = [n for n in ray.nodes() if n["Alive"]]
    cpus = sum(n["Resources"].get("CPU", 0) for n in nodes)
    log(f"ray: connected to {len(nodes)} node(s) with {cpus:g} CPUs")


# --------------------------------------------------------------------------------------------------------------------
# Preflight


def check_nodes(pending: list[Run], storage: str, cfg: RayConfig, log: Callable[[str], None] = print) -> None:
    """One ``rl.sweep_trial.preflight`` task pinned to each live node (``NodeAffinitySchedulingStrategy``); a
    ``ConfigError`` naming each node that lacks data, a checkpoint, the storage or the resources of one run."""
    nodes = [n for n in ray.nodes() if n["Alive"]]
    fits = [n for n in nodes if n["Resources"].get("CPU", 0) >= cfg.cpus_per_run]
    fits = [n for n in fits if n["Resources"].get("GPU", 0) >= cfg.gpus_per_run]
    if not fits:
        have = ", ".join(
            f"{n['NodeManagerAddress']}: {n['Resources'].get('CPU', 0):g} CPUs, {n['Resources'].get('GPU', 0):g} GPUs"
            for n in nodes
        )
        raise ConfigError(
            f"no node has the {cfg.cpus_per_run:g} CPUs and {cfg.gpus_per_run:g} GPUs of one run ({have}); "
            "lower --cpus-per-run / --gpus-per-run or add such a node"
        )
    envs: dict[str, dict] = {}
    for run in pending:
        a = run.agent
        envs.setdefault(repr((a.env_id, a.env_kwargs, a.eval_env_kwargs)), to_dict(a))
    checkpoints = {run.checkpoint: checkpoint_sha256(run.checkpoint) for run in pending if run.checkpoint}
    token = f"{EXPERIMENTS}/preflight-{uuid.uuid4().hex[:12]}"
    write_text(storage, token, "fsae-rl preflight")
    task = ray.remote(num_cpus=0, max_retries=0)(preflight)
    refs = {}
    for n in nodes:
        spec = {"envs": list(envs.values()), "checkpoints": checkpoints, "storage": storage, "token": token}
        spec["reply"] = f"{token}.{n['NodeID'][:12]}"
        strategy = NodeAffinitySchedulingStrategy(node_id=n["NodeID"], soft=False)
        refs[task.options(scheduling_strategy=strategy).remote(spec)] = n
    ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=PREFLIGHT_TIMEOUT_S)
    problems, versions = [], {}
    for ref in late:
        problems.append(f"{_node(refs[ref])}: no answer within {PREFLIGHT_TIMEOUT_S} s")
    for ref in ready:
        n = refs[ref]
        try:
            answer = ray.get(ref)
        except ray.exceptions.RayError as e:  # its runtime_env could not be set up, the node died, ...
            problems.append(f"{_node(n)}: {type(e).__name__}: {' '.join(str(e).split())[:300]}")
            continue
        problems += [f"{_node(n)}: {p}" for p in answer["problems"]]
        if (
            not is_uri(storage)
            and not answer["problems"]
            and not (Path(storage) / f"{token}.{n['NodeID'][:12]}").is_file()
        ):
            problems.append(f"{_node(n)}: storage {storage}: what it writes there does not reach this driver")
        versions[_node(n)] = answer["versions"]
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) before the first run: " + "; ".join(problems))
    distinct = {json.dumps(v, sort_keys=True) for v in versions.values()}
    if len(distinct) > 1:
        log(f"ray: warning: the nodes run different versions: {versions}")
    log(f"ray: preflight passed on {len(nodes)} node(s) (data, {len(checkpoints)} checkpoint(s), storage)")


def _node(n: dict[str, Any]) -> str:
    head = ", head" if "node:__internal_head__" in n["Resources"] else ""
    return f"node {n['NodeManagerAddress']} (id {n['NodeID'][:12]}{head})"


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
            f"ray: {trial.config['run']}: its worker or node was lost; restarting it from its newest agent checkpoint "
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
    spec = {
        "runs": {r.name: {"agent": to_dict(r.agent), "command": shlex.join(r.command)} for r in runs},
        "storage": storage,
        "cpus": cfg.cpus_per_run,
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
