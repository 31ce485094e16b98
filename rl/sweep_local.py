"""The local backend of a sweep: the runs not yet finished, as parallel ``train_agent.py`` subprocesses.

Contents:
    execute    -- one run's command into its run folder, resumed or fresh (output to ``train.log``); ``done.json``
                  on exit 0.
    run_local  -- the unfinished runs of a plan (``rl.sweep.plan``), up to ``workers`` at a time.

Each run is ``python scripts/train_agent.py --config <agent yaml> --set ...`` (``rl.sweep.train_command``), its stdout
and stderr going to ``train.log`` in its run folder. An unfinished run (a try killed, stopped or failed) whose folder
holds an agent checkpoint of the same config continues from the newest one (the same command with ``--resume``, as the
ray backend's trials do: ``rl.resume`` keeps its curves up to that step and drops what was logged after it); any
other unfinished folder is removed and the run starts again from scratch, so no stale TensorBoard events mix into its
curves. Sweeps with ``checkpoint_freq: 0`` (most of the project's grids: a digit run takes minutes) always start over.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable

from fsae.checkpoint import atomic_write_json
from fsae.config import check
from rl.resume import resumable
from rl.run_folder import DONE_MARKER
from rl.sweep import Run, RunResult, split_finished
from rl.sweep_lock import sweep_lock

LOG_FILE = "train.log"


def _child_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # torch's intra-op threads; a user's own setting wins
        env.setdefault(var, str(threads))
    env.update(extra or {})
    return env


def _prepare(run: Run) -> bool:
    """The run's folder, ready for it: kept when it holds an unfinished try of the same config with an agent checkpoint
    (True: the run resumes from it), else removed and made again (False: the run starts from scratch)."""
    if run.run_dir.exists():
        if resumable(run.run_dir, run.agent, run.checkpoint):
            return True
        shutil.rmtree(run.run_dir)
    run.run_dir.mkdir(parents=True)
    return False


def _finish(run: Run, returncode: int, seconds: float, resumed: bool) -> None:
    if returncode == 0:
        marker = {"returncode": 0, "seconds": round(seconds, 3), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        marker |= {"host": socket.gethostname(), "command": run.command, "resumed": resumed}
        atomic_write_json(run.run_dir / DONE_MARKER, marker)


def execute(run: Run, threads: int = 1, on_start: Callable[[subprocess.Popen], None] | None = None) -> int:
    """Run ``run.command`` into its folder (output to ``train.log``), from its newest agent checkpoint when an earlier
    try left one (``--resume``, its log appended to), else from scratch; write ``done.json`` on exit 0.

    Returns the exit code. ``on_start`` receives the child process (``run_local`` keeps it to stop it on exit).
    """
    resumed = _prepare(run)
    command = [*run.command, "--resume"] if resumed else run.command
    t0 = time.time()
    with open(run.run_dir / LOG_FILE, "a" if resumed else "w") as log:
        if resumed:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} resumed by the sweep from its newest checkpoint\n")
            log.flush()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_child_env(threads))
        if on_start is not None:
            on_start(proc)
        returncode = proc.wait()
    _finish(run, returncode, time.time() - t0, resumed)
    return returncode


def log_tail(run: Run, lines: int = 5) -> str:
    """The last ``lines`` lines of the run's ``train.log``, indented ('' when there is none)."""
    try:
        text = (run.run_dir / LOG_FILE).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


def report(result: RunResult, i: int, n: int, log: Callable[[str], None]) -> None:
    """One line per run that ended (with the tail of its log when it failed)."""
    run = result.run
    if result.status == "done":
        log(f"[{i}/{n}] done    {run.name} in {result.seconds:.0f} s")
    else:
        why = f"exit {result.returncode}" if result.returncode is not None else result.error or "no exit code"
        log(f"[{i}/{n}] FAILED  {run.name} ({why}); log: {run.run_dir / LOG_FILE}")
        tail = log_tail(run)
        if tail:
            log(tail)


def run_local(runs: list[Run], workers: int = 1, log: Callable[[str], None] = print) -> list[RunResult]:
    """The unfinished ``runs`` as up to ``workers`` parallel subprocesses; a failed run is reported, not fatal.

    Each run's ``OMP_NUM_THREADS`` is ``cpu_count // workers`` (unless already set), for the libraries that read it;
    torch's threads are the run's ``torch_threads`` (0: one, ``fsae.threads``' rule for agents). When the sweep itself
    is interrupted (Ctrl-C, SIGTERM through the CLI), its running children are stopped and their folders stay
    unfinished.
    """
    check(workers >= 1, f"workers must be >= 1, got {workers}")
    threads = max(1, (os.cpu_count() or 1) // workers)
    with sweep_lock({r.logdir for r in runs}):
        results, pending = split_finished(runs, log)
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
                report(results[-1], i, len(pending), log)
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
