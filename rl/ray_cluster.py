"""A Ray cluster for a sweep: connecting to it, and checking its nodes before the first run.

Contents:
    runtime_env       -- the job's runtime_env: this checkout as ``working_dir`` and FSAE_MNIST_DIR (+ more variables).
    connect           -- ``ray.init`` with it; a cluster that is not there, or that refuses this driver's token, is a
                         one-line ``ConfigError`` with the fix (``connection_error``).
    check_nodes       -- the preflight: one ``rl.sweep_trial.preflight`` task pinned to each node checks its data,
                         checkpoints and storage, and every node that lacks them is named (``node_problems``,
                         ``resources_problem``); a node lost meanwhile is a warning (``node_lost``).

Needs the optional extra: ``pip install -e '.[ray]'``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import tempfile
import uuid
from collections.abc import Callable
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from fsae.config import ConfigError, to_dict
from fsae.data import default_mnist_root
from rl.sweep import ROOT, RayConfig, Run, checkpoint_sha256, env_identity
from rl.sweep_trial import delete, is_uri, preflight, read_text, write_text

EXPERIMENTS = ".ray_tune"
"""Tune's experiments and the preflight's files, in the storage beside the run folders."""
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


def resources_problem(nodes: list[dict[str, Any]], cfg: RayConfig) -> str:
    """'' when some node (a ``ray.nodes()`` entry) has the CPUs and GPUs of one run, else what to do."""
    res = [(n["Resources"].get("CPU", 0), n["Resources"].get("GPU", 0)) for n in nodes]
    if any(cpu >= cfg.cpus_per_run and gpu >= cfg.gpus_per_run for cpu, gpu in res):
        return ""
    have = ", ".join(f"{_node(n)}: {cpu:g} CPUs, {gpu:g} GPUs" for n, (cpu, gpu) in zip(nodes, res))
    return (
        f"no node has the {cfg.cpus_per_run:g} CPUs and {cfg.gpus_per_run:g} GPUs of one run ({have}); lower "
        "--cpus-per-run / --gpus-per-run or add such a node"
    )


def node_problems(node: dict[str, Any], answer: dict[str, Any] | BaseException | None, reply_seen: bool) -> list[str]:
    """What one node's preflight says it lacks, each line naming the node: its ``answer`` (``rl.sweep_trial.
    preflight``'s dict, the error its task raised, or None when it did not answer), and whether the file it wrote
    into a storage folder reached this driver (``reply_seen``)."""
    if answer is None:
        return [f"{_node(node)}: no answer within {PREFLIGHT_TIMEOUT_S} s"]
    if isinstance(answer, BaseException):  # its runtime_env could not be set up, the node died, ...
        return [f"{_node(node)}: {type(answer).__name__}: {' '.join(str(answer).split())[:300]}"]
    problems = [f"{_node(node)}: {p}" for p in answer["problems"]]
    if not problems and not reply_seen:
        problems.append(f"{_node(node)}: what it writes into the storage does not reach this driver (not shared)")
    return problems


def check_nodes(pending: list[Run], storage: str, cfg: RayConfig, log: Callable[[str], None] = print) -> None:
    """One ``rl.sweep_trial.preflight`` task pinned to each live node (``NodeAffinitySchedulingStrategy``) before
    the first trial; a ``ConfigError`` naming each node that lacks data, a checkpoint, the storage, or (no node has)
    the resources of one run."""
    nodes = [n for n in ray.nodes() if n["Alive"]]
    problem = resources_problem(nodes, cfg)
    if problem:
        raise ConfigError(problem)
    envs = {env_identity(r.agent): to_dict(r.agent) for r in pending}
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
    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=PREFLIGHT_TIMEOUT_S)
    problems, versions, lost = [], {}, []
    for ref, n in refs.items():
        answer: Any = None
        if ref in ready:
            try:
                answer = ray.get(ref)
                versions[_node(n)] = answer["versions"]
            except ray.exceptions.RayError as e:
                answer = e
        if node_lost(answer):  # died since ray.nodes() listed it (the GCS may not know yet; Tune will)
            lost.append(n)
            continue
        reply_seen = is_uri(storage) or read_text(storage, f"{token}.{n['NodeID'][:12]}") is not None
        problems += node_problems(n, answer, reply_seen)
    delete(storage, [token, *(f"{token}.{n['NodeID'][:12]}" for n in nodes)])
    if lost:
        names = [_node(n) for n in lost]
        log(f"ray: warning: {len(lost)} node(s) lost during the preflight, the sweep goes on without them: {names}")
        left = [n for n in nodes if n not in lost]
        problem = resources_problem(left, cfg) if left else "every node was lost during the preflight"
        if problem:  # the nodes left must still fit a run
            problems.append(problem)
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) before the first run: " + "; ".join(problems))
    if len({json.dumps(v, sort_keys=True) for v in versions.values()}) > 1:
        log(f"ray: warning: the nodes run different versions: {versions}")
    log(f"ray: preflight passed on {len(nodes) - len(lost)} node(s) (data, {len(checkpoints)} checkpoint(s), storage)")


def node_lost(answer: dict[str, Any] | BaseException | None) -> bool:
    """Whether a node's preflight ``answer`` says the node itself is gone (it died, or its raylet is no longer there
    to run the task pinned to it), as opposed to a node that is there and lacks something. A crashed worker process
    (``WorkerCrashedError``) is not counted: its node may be there, with a problem of its own."""
    if isinstance(answer, ray.exceptions.NodeDiedError):
        return True
    return isinstance(answer, ray.exceptions.TaskUnschedulableError) and "doesn't exist any more" in str(answer)


def _node(n: dict[str, Any]) -> str:
    head = ", head" if "node:__internal_head__" in n["Resources"] else ""
    return f"node {n['NodeManagerAddress']} (id {n['NodeID'][:12]}{head})"
