"""A grid of agent runs (environments x conditions x seeds): its config, its plan, and which runs finished.

Contents:
    SweepEnv, RayConfig, SweepConfig -- typed configs (``configs/sweeps/*.yaml``); unknown keys and wrong types are
                          refused.
    Run, RunResult     -- one planned run (its resolved ``AgentConfig``, from which its folder and its
                          ``scripts/train_agent.py`` command line both follow), and its outcome.
    plan               -- the grid as a list of ``Run``; every run's agent config is checked before anything starts.
    train_command      -- the ``train_agent.py`` command line that builds exactly a run's config.
    env_identity       -- what makes a run's environments (id, packages, wrappers, kwargs), as a key.
    checkpoint_sha256  -- a checkpoint's SHA-256, computed once per file version.
    is_finished        -- whether a planned run finished earlier (``rl.run_folder.run_finished``).
    settings_changed   -- how a finished run differs from the sweep's plan for it (settings, retrained checkpoint).
    split_finished     -- finished runs (skipped) and the rest; finished runs with other settings are refused.

The backends run the pending runs: ``rl.sweep_local`` (subprocesses on this machine) and ``rl.sweep_ray`` (trials of
Ray Tune on a cluster). Each run's folder is ``<logdir>/<env>/<label>/seed<N>`` (``rl.run_folder.run_dir_for``), with
the label from ``rl.run_folder.condition_label``, e.g. 'none', 'copy', 'autoencoder', 'fsae-<variant>' with the
variant from the checkpoint's file name (``fsae_round.pt`` -> 'fsae-round'); the sweep sets ``run_name`` itself, so it
knows each folder before the run starts.

Restarting: a run is finished when its folder holds ``done.json``, which a backend writes (atomically) after the run
succeeded, or else a readable ``metrics.json``, which ``rl.agent.train_agent`` writes as its very last file (this
covers a sweep killed between the two). Finished runs are skipped, unless they were made with other settings than
the sweep plans (an edited sweep config on the same logdir, or a checkpoint retrained since: refused, so that old
results are not reported as new; see ``settings_changed``). One sweep at a time may work on a logdir: a second one is
refused (``rl.sweep_lock``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from fsae.checkpoint import CheckpointError, sha256_file
from fsae.config import ConfigError, apply_overrides, check, from_dict, load_config, load_yaml, to_dict
from fsae.data import DatasetError
from rl import CONDITIONS, Condition
from rl.config import AgentConfig, check_hyperparams
from rl.run_folder import condition_label, env_folder, recorded_sha256, run_dir_for, run_finished

ROOT = Path(__file__).resolve().parent.parent
TRAIN_SCRIPT = ROOT / "scripts" / "train_agent.py"


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
class RayConfig:
    """The ``ray`` backend (``rl.sweep_ray``); the command line's ``--cpus-per-run`` etc. override these."""

    cpus_per_run: float = 1
    """CPUs Ray reserves for each run (its trial). Its torch threads are the run's ``torch_threads`` (0: one, the
    agents' rule of ``fsae.threads``: more threads slow an agent's small networks down)."""
    gpus_per_run: float = 0
    """GPUs Ray reserves for each run; a fraction (e.g. 0.25) lets runs share a GPU."""
    max_failures: int = 3
    """Times a run is restarted (from its newest agent checkpoint) after its worker or machine was lost; -1: always.
    A run that fails by itself (an exception) is reported, not restarted."""
    storage_path: str | None = None
    """Where the run folders land: a folder every node sees at the same path (e.g. NFS), or a URI that Ray Tune
    accepts (s3://..., gs://...); None: the sweep's ``logdir``."""
    env_vars: dict[str, str] = field(default_factory=dict)
    """More environment variables for the runs on every node (FSAE_MNIST_DIR is passed on by itself)."""

    def __post_init__(self):
        check(self.cpus_per_run > 0, f"ray.cpus_per_run must be > 0, got {self.cpus_per_run}")
        check(self.gpus_per_run >= 0, f"ray.gpus_per_run must be >= 0, got {self.gpus_per_run}")
        check(self.max_failures >= -1, f"ray.max_failures must be >= -1, got {self.max_failures}")


@dataclass
class SweepConfig:
    """A grid of ``train_agent`` runs: every environment x condition x seed."""

    envs: list[SweepEnv] = field(default_factory=list)
    """The environments, each with its agent config and checkpoints."""
    conditions: list[Condition] = field(default_factory=lambda: list(CONDITIONS))
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
    ray: RayConfig = field(default_factory=RayConfig)
    """Resources, restarts and storage of the ``ray`` backend."""

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
    """One planned run: ``agent`` is its config as ``train_agent`` will resolve and record it."""

    env: str
    """The environment's label in messages (``SweepEnv.name``)."""
    agent: AgentConfig
    command: list[str]
    """``train_agent.py``'s command line for ``agent`` (``train_command``); the local backend runs it."""
    checkpoint: str | None = None
    """The checkpoint its condition reads (None for 'none' and 'copy')."""

    @property
    def run_dir(self) -> Path:
        return run_dir_for(self.agent)

    @property
    def logdir(self) -> Path:
        return Path(self.agent.logdir)

    @property
    def condition(self) -> str:
        return self.agent.condition

    @property
    def seed(self) -> int:
        return self.agent.seed

    @property
    def config(self) -> dict[str, Any]:
        """The config as the run writes it to its ``config.yaml``."""
        return yaml.safe_load(yaml.safe_dump(to_dict(self.agent)))

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
    error: str = ""
    """Why it failed, when a backend knows more than an exit code (one line)."""


# --------------------------------------------------------------------------------------------------------------------
# Planning


def _abs(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def train_command(agent: AgentConfig, base_yaml: str) -> list[str]:
    """``python scripts/train_agent.py --config <base_yaml> --set key=value ...`` building exactly ``agent``: one
    ``--set`` for each top-level key whose value differs from the base YAML's (values as JSON, which YAML reads)."""
    base = to_dict(from_dict(AgentConfig, load_yaml(base_yaml)))
    sets = [f"{k}={json.dumps(v)}" for k, v in to_dict(agent).items() if base.get(k) != v]
    return [sys.executable, str(TRAIN_SCRIPT), "--config", base_yaml, "--set", *sets]


def env_identity(agent: AgentConfig) -> str:
    """What makes an agent config's environments: id, packages, wrappers and both kwargs (as a string key)."""
    keys = ("env_id", "env_packages", "env_wrappers", "env_kwargs", "eval_env_kwargs")
    return json.dumps({k: to_dict(getattr(agent, k)) for k in keys}, sort_keys=True, default=str)


def _check_files(agent: AgentConfig, ckpt: str | None, condition: str, cache: dict[str, Any], fitted: set) -> None:
    """The checkpoint exists, the environments can be made, and the checkpoint fits them (each checked once)."""
    from rl.env_factory import make_observer, probe_env

    if ckpt is not None and not Path(ckpt).is_file():
        raise ConfigError(
            f"checkpoint {ckpt} does not exist; make it with scripts/pretrain.py (see configs/pretrain/ and the sweep "
            "config's header), or drop the conditions that need it"
        )
    try:
        env_key = env_identity(agent)
        if env_key not in cache:
            cache[env_key] = probe_env(agent)
        if ckpt is not None and (ckpt, condition, env_key) not in fitted:  # does it fit the env?
            make_observer(agent, ckpt, "cpu", cache[env_key])
            fitted.add((ckpt, condition, env_key))
    except (CheckpointError, DatasetError) as e:
        raise ConfigError(str(e)) from None


def plan(cfg: SweepConfig, check_files: bool = True) -> list[Run]:
    """Every (env, condition, seed) of ``cfg`` as a ``Run``, in that order.

    Each run's agent config is resolved once (the agent YAML, the sweep's settings, its ``set`` and the environment's)
    and checked (keys, types, hyperparameters, the checkpoint a condition needs, and with ``check_files`` that the
    checkpoint exists, that each environment can be made with its kwargs, and that each checkpoint fits its
    environment), so that a typo fails here and not in 60 runs. Paths are absolute (runs may start in other folders).
    Raises ``ConfigError``.
    """
    from rl.agent import resolve_checkpoint

    logdir = _abs(cfg.logdir)
    runs: list[Run] = []
    spaces: dict[str, Any] = {}  # observation space of each environment made once (by id and kwargs)
    fitted: set[tuple[str, str, str]] = set()  # (checkpoint, condition, environment) loaded against it once
    for env in cfg.envs:
        agent_yaml = _abs(env.config)
        fsae_ckpt, ae_ckpt = _abs(env.fsae_checkpoint), _abs(env.autoencoder_checkpoint)
        base = load_yaml(agent_yaml)  # type: ignore[arg-type]
        for condition in cfg.conditions:
            for seed in cfg.seeds:
                flags: dict[str, Any] = {"condition": condition, "seed": seed, "logdir": logdir}
                flags |= {k: v for k, v in (("total_steps", cfg.total_steps), ("n_envs", cfg.n_envs)) if v is not None}
                flags |= {"device": cfg.device} if cfg.device is not None else {}
                if condition in ("fsae", "autoencoder", "code", "features") and fsae_ckpt:
                    flags["fsae_checkpoint"] = fsae_ckpt
                if condition == "autoencoder" and ae_ckpt:
                    flags["autoencoder_checkpoint"] = ae_ckpt
                where = f"{env.name or env.config} / {condition} / seed {seed}"
                try:
                    d = apply_overrides({**base, **flags, "progress_bar": False}, [*cfg.set, *env.set])
                    agent = from_dict(AgentConfig, d)
                    check_hyperparams(agent)
                    ckpt = resolve_checkpoint(agent)
                    if check_files:
                        _check_files(agent, ckpt, condition, spaces, fitted)
                    label = condition_label(dataclasses.replace(agent, run_name=""))
                except ConfigError as e:
                    raise ConfigError(f"{where}: {e}") from None
                agent = dataclasses.replace(agent, run_name=label, overwrite=True)
                env_name = env.name or env_folder(agent.env_id)
                runs.append(Run(env_name, agent, train_command(agent, agent_yaml), ckpt))  # type: ignore[arg-type]
    seen: dict[Path, Run] = {}
    for run in runs:
        if run.run_dir in seen:
            raise ConfigError(
                f"runs {seen[run.run_dir].name} and {run.name} would share the folder {run.run_dir}; give the "
                "environments different env ids or the sweeps different logdirs"
            )
        seen[run.run_dir] = run
    return runs


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    """A sweep YAML (+ ``key=value`` overrides) as a checked ``SweepConfig``; raises ``ConfigError``."""
    return load_config(SweepConfig, path, overrides)


# --------------------------------------------------------------------------------------------------------------------
# Finished runs


def is_finished(run: Run) -> bool:
    """Whether ``run`` finished in an earlier sweep (see ``run_finished``)."""
    return run_finished(run.run_dir)


_WHERE = {"logdir", "run_name", "device", "torch_threads", "vec_env", "fsae_checkpoint", "autoencoder_checkpoint"}
"""Settings that say where a run's files are and how fast it runs, not what it trains; a checkpoint is compared by
its SHA-256 instead of its path (a moved repository or logdir changes every path, not the runs). ``run_name`` names
the folder, which the run was found in: a ``train_agent.py`` run (no name) in the folder the sweep plans is its run."""


@functools.lru_cache(maxsize=64)
def _sha256(path: str, mtime_ns: int) -> str:
    return sha256_file(path)


def checkpoint_sha256(path: str) -> str:
    """SHA-256 of a checkpoint file, computed once per (path, modification time)."""
    return _sha256(path, Path(path).stat().st_mtime_ns)


def settings_changed(run: Run) -> str:
    """How a finished run differs from the sweep's plan for it ('' when it does not, or when it has no ``config.yaml``
    to tell): the settings of its ``config.yaml`` that change what is trained, and the SHA-256 of the checkpoint it
    read (``fsae.json``) against the planned checkpoint's now (retrained since). A ``config.yaml`` that does not read
    as a mapping is a difference too: the run's settings cannot be checked."""
    from rl.resume import config_differences

    path = run.run_dir / "config.yaml"
    if not path.is_file():
        return ""
    try:
        saved = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        saved = None
    if not isinstance(saved, dict):
        return f"{path}, which is unreadable or corrupt (its settings cannot be checked)"
    recorded = recorded_sha256(run.run_dir)
    differ = [config_differences(saved, run.config, ignore=_WHERE)]
    if run.checkpoint and recorded and Path(run.checkpoint).is_file():
        now = checkpoint_sha256(run.checkpoint)
        if now != recorded:
            differ.append(f"checkpoint {run.checkpoint}: SHA-256 {recorded[:12]}... -> {now[:12]}... (retrained)")
    return ", ".join(d for d in differ if d)


def split_finished(runs: list[Run], log: Callable[[str], None]) -> tuple[list[RunResult], list[Run]]:
    """Finished runs (skipped) and the rest. A finished run made with other settings (an edited sweep config on the
    same logdir, or a checkpoint retrained since) is refused, not skipped: its results would be reported as this
    sweep's. Unfinished tries of other settings start over, which is said in one line."""
    finished, pending = [], []
    for r in runs:
        (finished if is_finished(r) else pending).append(r)
    stale = [(r, d) for r in finished if (d := settings_changed(r))]
    if stale:
        run, diff = stale[0]
        raise ConfigError(
            f"{len(stale)} finished run(s) in {run.logdir} were made with other settings (or cannot be checked), "
            f"e.g. {run.name} in {diff}; "
            "give the sweep another logdir, or remove those run folders to run them again"
        )
    log(f"sweep: {len(runs)} runs, {len(finished)} already finished (skipped), {len(pending)} to run")
    over = [(r, d) for r in pending if (d := settings_changed(r))]
    if over:  # an unfinished try of other settings cannot be resumed: its folder is cleared when the run starts
        run, diff = over[0]
        log(f"sweep: {len(over)} of them start over: an earlier unfinished try had other settings, e.g. {run.name} "
            f"in {diff}")  # fmt: skip
    return [RunResult(r, "skipped") for r in finished], pending
