"""A grid of agent runs (environments x conditions x seeds), run as local processes or as Ray tasks.

Contents:
    SweepEnv, SweepConfig -- typed configs (``configs/sweeps/*.yaml``); unknown keys and wrong types are refused.
    Run, RunResult        -- one planned ``scripts/train_agent.py`` run (its command line and folder), and its outcome.
    plan                  -- the grid as a list of ``Run``; every run's agent config is checked before anything starts.
    is_finished       -- whether a planned run finished earlier (``rl.run_folder.run_finished``).
    settings_changed      -- how a finished run differs from the sweep's plan for it (settings, retrained checkpoint).
    run_local             -- the runs not yet finished, as parallel subprocesses on this machine.
    run_ray               -- the same on a Ray cluster, one task (with CPU/GPU resources) per run (``pip install -e
                             '.[ray]'``).

Each run is the same subprocess on both backends: ``python scripts/train_agent.py --config ... --augment <condition>
--seed <N> --logdir <logdir> ... --set progress_bar=false ... overwrite=true run_name=<label>``, its stdout and stderr
going to ``train.log`` in its run folder ``<logdir>/<env>/<label>/seed<N>``. The sweep passes ``run_name`` itself, so
it knows each folder before the run starts: ``rl.run_folder.condition_label``, e.g. 'none', 'copy', 'autoencoder',
'fsae-<variant>' with the variant from the checkpoint's file name (``fsae_round.pt`` -> 'fsae-round').

Restarting: a run is finished when its folder holds ``done.json``, which the sweep writes (atomically) after the run's
process exited 0, or else a readable ``metrics.json``, which ``rl.agent.train_agent`` writes as its very last file (this
covers a sweep killed between the two). Finished runs are skipped, unless they were made with other settings than
the sweep plans (an edited sweep config on the same logdir, or a checkpoint retrained since: refused, so that old
results are not reported as new; see ``settings_changed``). The folder of an unfinished run (killed or failed) is
removed and the run starts again from scratch, so no stale TensorBoard events mix into its curves. One sweep at a time
may work on a logdir: a second one is refused (an ``flock`` on ``<logdir>/.sweep.lock``, released when the process
dies, however it dies).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import fcntl
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from fsae.checkpoint import CheckpointError, atomic_write_json, sha256_file
from fsae.config import ConfigError, apply_overrides, check, from_dict, load_config, load_yaml, to_dict
from fsae.data import DatasetError
from rl import CONDITIONS
from rl.run_folder import DONE_MARKER, run_finished

ROOT = Path(__file__).resolve().parent.parent
TRAIN_SCRIPT = ROOT / "scripts" / "train_agent.py"
LOG_FILE = "train.log"
LOCK_FILE = ".sweep.lock"
RAY_HINT = "backend 'ray' needs Ray, an optional extra: pip install -e '.[ray]'"


@dataclass
class SweepEnv:
    """One environment of the grid: its agent config and the pretrained models its conditions use."""

    config: str
    """Agent YAML (e.g. configs/agent/digit_bandit.yaml); relative paths are taken from the working directory."""
    name: str = ""
    """Label in the sweep's messages ('' = the config's env id without namespace, e.g. DigitBandit-v0)."""
    fsae_checkpoint: str | None = None
    """FSAE checkpoint for condition 'fsae' (e.g. runs/pretrain/digit_bandit/fsae_round.pt)."""
    autoencoder_checkpoint: str | None = None
    """Conventional autoencoder for 'autoencoder' (None = autoencoder.pt beside ``fsae_checkpoint``)."""
    set: list[str] = field(default_factory=list)
    """``key=value`` overrides of this environment's agent config, applied after the sweep's own ``set``."""


@dataclass
class SweepConfig:
    """A grid of ``train_agent`` runs: every environment x condition x seed."""

    envs: list[SweepEnv] = field(default_factory=list)
    """The environments, each with its agent config and checkpoints."""
    conditions: list[Literal["none", "fsae", "copy", "autoencoder", "code", "features"]] = field(
        default_factory=lambda: list(CONDITIONS)
    )
    """Conditions to compare (see ``rl.agent``); 'none' is the baseline of ``rl.compare``."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    """Seeds of every (environment, condition); at least 5 for a comparison, 10 for a claim
    (docs/DESIGN.md section 2)."""
    total_steps: int | None = None
    """Environment steps per run (None = each agent config's own)."""
    n_envs: int | None = None
    """Training environments per run (None = each agent config's own)."""
    device: Literal["auto", "cpu", "cuda"] | None = None
    """Device of each run (None = each agent config's own)."""
    logdir: str = "runs/sweeps/default"
    """Root of the run folders: <logdir>/<env>/<condition>/seed<N>."""
    set: list[str] = field(default_factory=list)
    """``key=value`` overrides for every run's agent config (e.g. eval_freq=5000)."""

    def __post_init__(self):
        check(self.envs, "a sweep needs at least one entry in envs")
        check(self.conditions, "a sweep needs at least one condition")
        check(self.seeds, "a sweep needs at least one seed")
        check(len(set(self.seeds)) == len(self.seeds), f"seeds repeat: {self.seeds}")
        check(len(set(self.conditions)) == len(self.conditions), f"conditions repeat: {self.conditions}")
        check(self.total_steps is None or self.total_steps > 0, "total_steps must be positive")
        check(self.n_envs is None or self.n_envs > 0, "n_envs must be positive")


@dataclass
class Run:
    """One planned run: ``command`` (an argv list) writes the run folder ``run_dir``."""

    env: str
    condition: str
    seed: int
    run_dir: Path
    command: list[str]
    logdir: Path
    config: dict[str, Any] = field(default_factory=dict)
    """The resolved agent config the run will write to its ``config.yaml`` ({}: unknown)."""
    checkpoint: str | None = None
    """The checkpoint its condition reads (None for 'none' and 'copy')."""

    @property
    def name(self) -> str:
        return f"{self.env}/{self.run_dir.parent.name}/seed{self.seed}"


@dataclass
class RunResult:
    """What became of a run: 'skipped' (already finished), 'done' (exit 0) or 'failed'."""

    run: Run
    status: Literal["skipped", "done", "failed"]
    returncode: int | None = None
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------------------------------
# Planning


def _abs(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def plan(cfg: SweepConfig, check_files: bool = True) -> list[Run]:
    """Every (env, condition, seed) of ``cfg`` as a ``Run``, in that order.

    Each run's agent config is built exactly as ``scripts/train_agent.py`` will build it and checked (keys, types,
    hyperparameters, the checkpoint a condition needs, and with ``check_files`` that the checkpoint exists, that each
    environment can be made with its kwargs, and that each checkpoint fits its environment), so that a typo fails here
    and not in 60 runs. Paths in the commands are absolute (Ray workers run in another folder). Raises ``ConfigError``.
    """
    from rl.agent import resolve_checkpoint
    from rl.config import AgentConfig, check_hyperparams
    from rl.env_factory import make_observer, probe_env
    from rl.run_folder import condition_label, run_dir_for

    logdir = Path(_abs(cfg.logdir))  # type: ignore[arg-type]
    runs: list[Run] = []
    spaces: dict[str, Any] = {}  # observation space of each environment made once (by id and kwargs)
    fitted: set[tuple[str, str, str]] = set()  # (checkpoint, condition, environment) loaded against it once
    for env in cfg.envs:
        agent_yaml = _abs(env.config)
        fsae_ckpt, ae_ckpt = _abs(env.fsae_checkpoint), _abs(env.autoencoder_checkpoint)
        base = load_yaml(agent_yaml)  # type: ignore[arg-type]
        for condition in cfg.conditions:
            for seed in cfg.seeds:
                flags: dict[str, Any] = {"condition": condition, "seed": seed, "logdir": str(logdir)}
                argv = ["--config", agent_yaml, "--augment", condition, "--seed", str(seed), "--logdir", str(logdir)]
                for key, flag, value in (
                    ("total_steps", "--total-steps", cfg.total_steps),
                    ("n_envs", "--n-envs", cfg.n_envs),
                    ("device", "--device", cfg.device),
                ):
                    if value is not None:
                        flags[key] = value
                        argv += [flag, str(value)]
                if condition in ("fsae", "autoencoder", "code", "features") and fsae_ckpt:
                    flags["fsae_checkpoint"] = fsae_ckpt
                    argv += ["--fsae", fsae_ckpt]
                sets = ["progress_bar=false", *cfg.set, *env.set]
                if condition == "autoencoder" and ae_ckpt:
                    sets.append(f"autoencoder_checkpoint={ae_ckpt}")
                where = f"{env.name or env.config} / {condition} / seed {seed}"
                try:
                    d = apply_overrides({**base, **flags}, sets)
                    agent = from_dict(AgentConfig, d)
                    check_hyperparams(agent)
                    ckpt = resolve_checkpoint(agent)
                    label = condition_label(dataclasses.replace(agent, run_name=""))
                except ConfigError as e:
                    raise ConfigError(f"{where}: {e}") from None
                if check_files and ckpt is not None and not Path(ckpt).is_file():
                    raise ConfigError(
                        f"{where}: checkpoint {ckpt} does not exist; make it with scripts/pretrain.py (see "
                        "configs/pretrain/ and the sweep config's header), or drop the conditions that need it"
                    )
                if check_files:
                    try:
                        env_key = repr((agent.env_id, agent.env_kwargs, agent.eval_env_kwargs))
                        if env_key not in spaces:
                            spaces[env_key] = probe_env(agent)
                        if ckpt is not None and (ckpt, condition, env_key) not in fitted:  # does it fit the env?
                            make_observer(agent, ckpt, "cpu", spaces[env_key])
                            fitted.add((ckpt, condition, env_key))
                    except (ConfigError, CheckpointError, DatasetError) as e:
                        raise ConfigError(f"{where}: {e}") from None
                sets += ["overwrite=true", f"run_name={label}"]
                run_dir = run_dir_for(dataclasses.replace(agent, run_name=label))
                env_name = env.name or agent.env_id.split("/")[-1]
                command = [sys.executable, str(TRAIN_SCRIPT), *argv, "--set", *sets]
                final = dataclasses.replace(agent, run_name=label, overwrite=True)
                config = yaml.safe_load(yaml.safe_dump(to_dict(final)))  # as train_agent writes it
                runs.append(Run(env_name, condition, seed, run_dir, command, logdir, config, ckpt))
    seen: dict[Path, Run] = {}
    for run in runs:
        if run.run_dir in seen:
            raise ConfigError(
                f"runs {seen[run.run_dir].name} and {run.name} would share the folder {run.run_dir}; give the "
                "environments different env ids or the sweeps different logdirs"
            )
        seen[run.run_dir] = run
    return runs


# --------------------------------------------------------------------------------------------------------------------
# Finished runs


def is_finished(run: Run) -> bool:
    """Whether ``run`` finished in an earlier sweep (see ``run_finished``)."""
    return run_finished(run.run_dir)


@contextlib.contextmanager
def _lock(logdirs: set[Path]) -> Iterator[None]:
    """Hold ``<logdir>/.sweep.lock`` for each logdir; a second sweep on the same logdir is refused."""
    handles = []
    try:
        for logdir in sorted(logdirs):
            logdir.mkdir(parents=True, exist_ok=True)
            f = open(logdir / LOCK_FILE, "a+")  # noqa: SIM115  (held open for the whole sweep; not truncated yet)
            handles.append(f)
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "unknown"
                where = logdir / LOCK_FILE
                raise ConfigError(f"another sweep is running on {logdir} ({holder} holds {where})") from None
            f.seek(0)
            f.truncate()
            f.write(f"{socket.gethostname()} pid {os.getpid()}\n")
            f.flush()
        yield
    finally:
        for f in handles:
            f.close()  # also releases the lock


# --------------------------------------------------------------------------------------------------------------------
# Executing one run (the same function on both backends)


def _child_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # torch's intra-op threads; a user's own setting wins
        env.setdefault(var, str(threads))
    env.update(extra or {})
    return env


def _prepare(run: Run) -> None:
    """An unfinished run's folder (a killed or failed earlier try) is removed: the run starts again from scratch."""
    if run.run_dir.exists():
        shutil.rmtree(run.run_dir)
    run.run_dir.mkdir(parents=True)


def _finish(run: Run, returncode: int, seconds: float) -> None:
    if returncode == 0:
        marker = {"returncode": 0, "seconds": round(seconds, 3), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        marker |= {"host": socket.gethostname(), "command": run.command}
        atomic_write_json(run.run_dir / DONE_MARKER, marker)


def execute(run: Run, threads: int = 1, on_start: Callable[[subprocess.Popen], None] | None = None) -> int:
    """Run ``run.command`` into a fresh run folder (output to ``train.log``); write ``done.json`` on exit 0.

    Returns the exit code. ``on_start`` receives the child process (the local backend keeps it to stop it on exit).
    """
    _prepare(run)
    t0 = time.time()
    with open(run.run_dir / LOG_FILE, "w") as log:
        proc = subprocess.Popen(run.command, stdout=log, stderr=subprocess.STDOUT, env=_child_env(threads))
        if on_start is not None:
            on_start(proc)
        returncode = proc.wait()
    _finish(run, returncode, time.time() - t0)
    return returncode


def _log_tail(run: Run, lines: int = 5) -> str:
    try:
        text = (run.run_dir / LOG_FILE).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


def _report(result: RunResult, i: int, n: int, log: Callable[[str], None]) -> None:
    run = result.run
    if result.status == "done":
        log(f"[{i}/{n}] done    {run.name} in {result.seconds:.0f} s")
    else:
        log(f"[{i}/{n}] FAILED  {run.name} (exit {result.returncode}); log: {run.run_dir / LOG_FILE}")
        tail = _log_tail(run)
        if tail:
            log(tail)


_WHERE = {"logdir", "device", "torch_threads", "vec_env", "fsae_checkpoint", "autoencoder_checkpoint"}
"""Settings that say where a run's files are and how fast it runs, not what it trains; a checkpoint is compared by
its SHA-256 instead of its path (a moved repository or logdir changes every path, not the runs)."""


@functools.lru_cache(maxsize=64)
def _sha256(path: str, mtime_ns: int) -> str:
    return sha256_file(path)


def settings_changed(run: Run) -> str:
    """How a finished run differs from the sweep's plan for it ('' when it does not, or when that is unknown): the
    settings of its ``config.yaml`` that change what is trained, and the SHA-256 of the checkpoint it read
    (``fsae.json``) against the planned checkpoint's now (retrained since)."""
    from rl.resume import config_differences

    try:
        saved = yaml.safe_load((run.run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return ""
    if not isinstance(saved, dict) or not run.config:
        return ""
    try:
        recorded = json.loads((run.run_dir / "fsae.json").read_text()).get("sha256")
    except (OSError, ValueError, AttributeError):
        recorded = None
    differ = [config_differences(saved, run.config, ignore=_WHERE)]
    if run.checkpoint and recorded and Path(run.checkpoint).is_file():
        now = _sha256(run.checkpoint, Path(run.checkpoint).stat().st_mtime_ns)
        if now != recorded:
            differ.append(f"checkpoint {run.checkpoint}: SHA-256 {recorded[:12]}... -> {now[:12]}... (retrained)")
    return ", ".join(d for d in differ if d)


def _split(runs: list[Run], log: Callable[[str], None]) -> tuple[list[RunResult], list[Run]]:
    """Finished runs (skipped) and the rest. A finished run made with other settings (an edited sweep config on the
    same logdir, or a checkpoint retrained since) is refused, not skipped: its results would be reported as this
    sweep's."""
    finished, pending = [], []
    for r in runs:
        (finished if is_finished(r) else pending).append(r)
    stale = [(r, d) for r in finished if (d := settings_changed(r))]
    if stale:
        run, diff = stale[0]
        raise ConfigError(
            f"{len(stale)} finished run(s) in {run.logdir} were made with other settings, e.g. {run.name} in {diff}; "
            "give the sweep another logdir, or remove those run folders to run them again"
        )
    log(f"sweep: {len(runs)} runs, {len(finished)} already finished (skipped), {len(pending)} to run")
    return [RunResult(r, "skipped") for r in finished], pending


# --------------------------------------------------------------------------------------------------------------------
# Backends


def run_local(runs: list[Run], workers: int = 1, log: Callable[[str], None] = print) -> list[RunResult]:
    """The unfinished ``runs`` as up to ``workers`` parallel subprocesses; a failed run is reported, not fatal.

    Each run gets ``cpu_count // workers`` threads (``OMP_NUM_THREADS``, unless already set). When the sweep itself is
    interrupted (Ctrl-C, SIGTERM through the CLI), its running children are stopped and their folders stay unfinished.
    """
    check(workers >= 1, f"workers must be >= 1, got {workers}")
    threads = max(1, (os.cpu_count() or 1) // workers)
    with _lock({r.logdir for r in runs}):
        results, pending = _split(runs, log)
        live: set[subprocess.Popen] = set()
        guard = threading.Lock()
        stopping = threading.Event()

        def one(run: Run) -> RunResult:
            if stopping.is_set():
                return RunResult(run, "failed", None)

            def keep(proc: subprocess.Popen) -> None:
                with guard:
                    if stopping.is_set():  # started just as the sweep was stopped: stop it too
                        proc.send_signal(signal.SIGTERM)
                    live.add(proc)

            t0 = time.time()
            rc = execute(run, threads, on_start=keep)
            with guard:
                live.difference_update([p for p in live if p.returncode is not None])
            return RunResult(run, "done" if rc == 0 else "failed", rc, time.time() - t0)

        pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
        try:
            futures = [pool.submit(one, r) for r in pending]
            for i, fut in enumerate(concurrent.futures.as_completed(futures), 1):
                results.append(fut.result())
                _report(results[-1], i, len(pending), log)
        except BaseException:
            with guard:
                stopping.set()
                for proc in live:
                    if proc.poll() is None:
                        proc.send_signal(signal.SIGTERM)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    return results


def _ray_execute(run: Run, threads: int) -> tuple[int, float]:
    t0 = time.time()
    return execute(run, threads), time.time() - t0


def run_ray(
    runs: list[Run],
    address: str | None = None,
    cpus_per_run: float = 1,
    gpus_per_run: float = 0,
    log: Callable[[str], None] = print,
) -> list[RunResult]:
    """The unfinished ``runs`` as Ray tasks, each reserving ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs.

    Connects to the cluster at ``address`` (None: the Ray instance already initialised in this process, else
    ``RAY_ADDRESS`` or a new local one). Every node must see the same paths (the repository, the Python environment and
    the logdir, e.g. on a shared filesystem): the tasks run the same command lines as the local backend and write the
    run folders where they are, and the driver reads them to skip finished runs.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_HINT) from None
    with _lock({r.logdir for r in runs}):
        results, pending = _split(runs, log)
        if not pending:
            return results
        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False)
        threads = max(1, int(cpus_per_run))
        # Workers import rl.sweep to run the task: give them this checkout even where the package is not installed.
        pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        task = ray.remote(_ray_execute).options(
            num_cpus=cpus_per_run,
            num_gpus=gpus_per_run,
            max_retries=0,  # a failed run is reported, not retried behind the user's back
            runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},
        )
        refs = {task.remote(run, threads): run for run in pending}
        remaining = list(refs)
        try:
            for i in range(1, len(pending) + 1):
                ready, remaining = ray.wait(remaining, num_returns=1)
                run = refs[ready[0]]
                try:
                    rc, seconds = ray.get(ready[0])
                except ray.exceptions.RayError as e:  # the worker died, the node was lost, ...
                    log(f"ray: {run.name}: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}")
                    rc, seconds = None, 0.0
                results.append(RunResult(run, "done" if rc == 0 else "failed", rc, seconds))
                _report(results[-1], i, len(pending), log)
        except BaseException:
            for ref in remaining:
                ray.cancel(ref, force=True)
            raise
    return results


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    """A sweep YAML (+ ``key=value`` overrides) as a checked ``SweepConfig``; raises ``ConfigError``."""
    return load_config(SweepConfig, path, overrides)
