"""What a sweep on Ray runs on the cluster's nodes: one run as a Ray Tune trial, and the preflight check of a node.

Contents:
    is_uri        -- whether a storage path is a URI (s3://, gs://, file://, ...) rather than a folder.
    run_trial     -- the trainable: one run of the plan, in-process (``rl.agent.train_agent``), its evaluations and
                     checkpoints reported to Tune; resumed from its newest agent checkpoint when it was cut short.
    preflight     -- on one node: can it make each environment (MNIST, environment packages), read each checkpoint
                     (the same SHA-256 as the driver's), and reach the storage; returns its problems.

The project's code reaches the nodes through the job's ``runtime_env`` (``rl.ray_cluster``), and so does this module.

Where a run's folder is. With a storage folder (one every node sees at the same path, e.g. NFS), it is the planned
``<storage>/<env>/<label>/seed<N>`` itself: the run writes there directly, and a restarted trial resumes from the
``checkpoints/`` it finds there. With a URI, the run writes into a folder on its node (``<tmp>/fsae-rl-sweeps/...``);
each agent checkpoint is reported to Tune as a checkpoint holding the whole run folder (Tune uploads it to the
storage), a restarted trial gets it back from ``tune.get_checkpoint()``, and the finished folder is uploaded to
``<uri>/<env>/<label>/seed<N>``.

A run that fails by itself (an exception: a bad setting, NaNs, a missing file) ends its trial normally with
``status: failed``, so Tune does not restart it; only a lost worker or node (the trial's process is gone) counts as
one of ``FailureConfig.max_failures``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import socket
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from fsae.checkpoint import atomic_write_json, sha256_file
from fsae.config import ConfigError, from_dict
from rl.config import AgentConfig
from rl.run_folder import DONE_MARKER, run_dir_for, run_finished

LOG_FILE = "train.log"


def is_uri(storage: str) -> bool:
    """``s3://bucket/x`` and ``file:///x`` are URIs; ``/x`` and ``runs/x`` are folders."""
    return "://" in storage


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"[:500]


def _uri_fs(uri: str) -> tuple[Any, str]:
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(uri)


def _uri_exists(fs: Any, path: str) -> bool:
    import pyarrow.fs

    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def staging_root(storage: str) -> Path:
    """The node-local root of the run folders of a sweep whose storage is the URI ``storage`` (the same path on every
    node, so that a resumed run's config matches the one it started with)."""
    return Path(tempfile.gettempdir()) / "fsae-rl-sweeps" / hashlib.sha1(storage.encode()).hexdigest()[:12]


def _relative(agent: AgentConfig) -> str:
    return run_dir_for(agent).relative_to(agent.logdir).as_posix()


def finished_at(storage: str, agent: AgentConfig) -> bool:
    """Whether the run of ``agent`` (as planned: its folder under ``agent.logdir``) finished in the storage: its folder
    there holds ``done.json`` or ``metrics.json``."""
    if not is_uri(storage):
        return run_finished(run_dir_for(agent))
    fs, base = _uri_fs(storage)
    rel = _relative(agent)
    return any(_uri_exists(fs, f"{base}/{rel}/{name}") for name in (DONE_MARKER, "metrics.json"))


def run_trial(config: dict[str, Any], spec: dict[str, Any]) -> None:
    """Tune's trainable for the run named ``config["run"]``; ``spec`` (shipped with ``tune.with_parameters``) holds
    ``runs`` (name -> resolved agent config and command line) and ``storage``."""
    from ray import tune
    from ray.runtime_context import get_runtime_context

    from rl.agent import resolve_checkpoint
    from rl.resume import resumable

    name = config["run"]
    entry = spec["runs"][name]
    storage = spec["storage"]
    try:  # imports its env_packages: missing on this node (the preflight checks for that), a failure, not a retry
        agent = from_dict(AgentConfig, entry["agent"])
    except ConfigError as e:
        tune.report({"status": "failed", "error": _one_line(e), "seconds": 0.0})
        return
    if finished_at(storage, agent):  # finished after the driver looked, e.g. before a crash of the driver
        tune.report({"status": "done", "seconds": 0.0, "note": "finished before"})
        return
    if is_uri(storage):
        agent = dataclasses.replace(agent, logdir=str(staging_root(storage)))
    run_dir = run_dir_for(agent)
    shipped = tune.get_checkpoint() if is_uri(storage) else None
    if shipped is not None:  # a restarted trial: the run folder as of its newest agent checkpoint
        shutil.rmtree(run_dir, ignore_errors=True)
        shipped.to_directory(str(run_dir))
    try:
        checkpoint = resolve_checkpoint(agent)
    except ConfigError:
        checkpoint = None  # train_agent refuses the run below, in one line
    resume = resumable(run_dir, agent, checkpoint)
    if not resume:  # never started, or cut short before its first checkpoint: from scratch
        shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    node = get_runtime_context().get_node_id()
    where = f"node {node} ({socket.gethostname()}, pid {os.getpid()})"
    command = entry["command"] + f"   # Ray Tune trial on {where}"

    def on_progress(metrics: dict[str, Any]) -> None:
        checkpoint = None
        if is_uri(storage) and metrics["checkpoint"]:
            checkpoint = tune.Checkpoint.from_directory(str(run_dir))
        tune.report({**metrics, "status": "running"}, checkpoint=checkpoint)

    t0 = time.time()
    with open(run_dir / LOG_FILE, "a") as log:
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {'resumed' if resume else 'started'} on {where}\n")
        log.flush()
        try:
            from rl.agent import train_agent

            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                metrics = train_agent(agent, command=command, resume=resume, on_progress=on_progress)
        except Exception as e:  # the run failed by itself: reported, not restarted (see the module's docstring)
            log.write(traceback.format_exc())
            tune.report({"status": "failed", "error": _one_line(e), "seconds": time.time() - t0})
            return
    seconds = time.time() - t0
    marker = {"returncode": 0, "seconds": round(seconds, 3), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_json(run_dir / DONE_MARKER, marker | {"host": socket.gethostname(), "node": node, "backend": "ray"})
    if is_uri(storage):
        fs, base = _uri_fs(storage)
        import pyarrow.fs

        dest = f"{base}/{_relative(agent)}"
        fs.create_dir(dest, recursive=True)
        pyarrow.fs.copy_files(str(run_dir), dest, destination_filesystem=fs)
    final = {k: metrics.get(k) for k in ("timesteps", "final_eval/mean_reward", "best_eval/mean_reward")}
    tune.report({"status": "done", "seconds": seconds, **{k.replace("/", "_"): v for k, v in final.items()}})


def preflight(spec: dict[str, Any]) -> dict[str, Any]:
    """Check this node for the sweep ``spec``: ``envs`` (one agent config per environment, made once each: the MNIST
    data and any environment package), ``checkpoints`` (path -> the driver's SHA-256) and ``storage`` (with ``token``,
    a file the driver wrote there, for a folder, and ``reply``, a file to write back). Returns the node's ``problems``
    (one line each) and its ``versions``."""
    import platform

    import gymnasium
    import stable_baselines3
    import torch

    from fsae.data import DatasetError, default_mnist_root
    from rl.env_factory import probe_env

    problems: list[str] = []
    for agent_dict in spec["envs"]:
        try:  # the config imports its env_packages
            probe_env(from_dict(AgentConfig, agent_dict))
        except (ConfigError, DatasetError, ImportError, OSError) as e:
            where = f"MNIST is looked up in {default_mnist_root()}"
            problems.append(f"cannot make {agent_dict['env_id']} ({_one_line(e)}; {where})")
    for path, sha in spec["checkpoints"].items():
        if not Path(path).is_file():
            problems.append(f"checkpoint {path} does not exist here")
        elif sha256_file(path) != sha:
            problems.append(f"checkpoint {path} differs from the driver's (SHA-256 {sha[:12]}...)")
    storage = spec["storage"]
    try:
        if is_uri(storage):
            fs, base = _uri_fs(storage)
            if not _uri_exists(fs, f"{base}/{spec['token']}"):
                problems.append(f"storage {storage}: the driver's test file is not visible here")
        else:
            token = Path(storage) / spec["token"]
            if not token.is_file():
                problems.append(f"storage {storage}: not the driver's folder (its test file is not visible here)")
            else:
                (Path(storage) / spec["reply"]).write_text(socket.gethostname())
    except OSError as e:
        problems.append(f"storage {storage}: {_one_line(e)}")
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "gymnasium": gymnasium.__version__,
    }
    return {"host": socket.gethostname(), "problems": problems, "versions": versions}


def write_text(storage: str, rel: str, text: str) -> None:
    """``text`` into the file ``rel`` of the storage (a folder or a URI), replaced whole."""
    if is_uri(storage):
        fs, base = _uri_fs(storage)
        fs.create_dir(f"{base}/{rel}".rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(f"{base}/{rel}") as f:
            f.write(text.encode())
        return
    path = Path(storage) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_text(storage: str, rel: str) -> str | None:
    """The file ``rel`` of the storage (None when it is not there)."""
    try:
        if is_uri(storage):
            fs, base = _uri_fs(storage)
            with fs.open_input_stream(f"{base}/{rel}") as f:
                return f.read().decode()
        return (Path(storage) / rel).read_text()
    except OSError:
        return None


def delete(storage: str, rels: list[str]) -> None:
    """Remove the files ``rels`` of the storage (those that are there)."""
    for rel in rels:
        try:
            if is_uri(storage):
                fs, base = _uri_fs(storage)
                fs.delete_file(f"{base}/{rel}")
            else:
                (Path(storage) / rel).unlink()
        except OSError:
            pass
