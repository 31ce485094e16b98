"""How many CPU threads torch should use for a job on this machine.

Contents:
    JOBS         -- the kinds of job the rule knows: 'pretrain' (convolutions on batches of 128 and more) and 'agent'
                    (an RL agent's small networks on batches of a few observations).
    pick_threads -- the thread count for a job: the one asked for, else the rule below.
    set_threads  -- ``torch.set_num_threads(pick_threads(...))``; returns the count.

The rule (``torch_threads: 0``, the default of pretraining and agent configs), from measurements on the project's
2-core CPU (``docs/PERFORMANCE.md``, "Threads"):

- Agents get **one thread**, whatever the load, so that the same seed gives the same agent: one and two threads give
  other numbers (the first PPO update's loss differs in the third significant digit, the curves part a few rollouts
  later), and a count that followed the load would make a run's result depend on what else the machine ran when it
  started. It is not always the fastest: on the VM of 2026-11-30 PPO ran 2.1-2.5x faster with one thread than with
  two, on that of 2026-12-02, idle, 1.5-1.7x slower (docs/PERFORMANCE.md, ninth round); ``torch_threads: 2`` pins two.
- Pretraining's convolutions on batches of 128 images split well: it gets **every core no other job is using**, the
  machine's cores less the load (the other runnable threads now, ``current_load``, rounded), and at least one. On
  the idle 2-core machine that is 2 (the fast config took 204 s with two threads and 315 s with one); with other jobs
  running, 1: torch's threads wait for each other at every operation, so one that shares its core with another job
  stalls them all (with other jobs on the machine, the one-pass concrete phase ran 3x faster with one thread than
  with two).

The load is read once, when the job starts: a job that starts on an idle machine keeps its threads when another
starts later (set ``torch_threads`` to pin a count). It is the load of now, not ``os.getloadavg()``'s last minute: that
average lags by a minute, so a run started just after another job ended got one thread on the idle machine (the fast
config took 126 s instead of 73 s that way, docs/PERFORMANCE.md).
"""

from __future__ import annotations

import os
import statistics
import time

import torch

from fsae.config import check

JOBS = ("pretrain", "agent")


def _cores() -> int:
    """The cores this process may run on (its affinity mask, which containers and ``taskset`` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def current_load(samples: int = 20, interval: float = 0.01, stat: str = "/proc/stat") -> float:
    """How many threads of other jobs want a core now: the kernel's count of runnable threads (``procs_running`` in
    ``/proc/stat``, which counts the reading thread too, hence the 1 taken off), the median of ``samples`` readings
    ``interval`` seconds apart. Where there is no ``/proc/stat`` (not Linux), the one-minute load average."""
    readings = []
    try:
        for i in range(samples):
            with open(stat) as f:
                line = next(ln for ln in f if ln.startswith("procs_running "))
            readings.append(int(line.split()[1]) - 1)
            if i + 1 < samples:
                time.sleep(interval)
    except (OSError, StopIteration, ValueError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(0.0, statistics.median(readings))


def pick_threads(job: str, requested: int = 0, cores: int | None = None, load: float | None = None) -> int:
    """The torch thread count for ``job`` (one of ``JOBS``): ``requested`` when it is > 0, else the module's rule.
    ``cores`` and ``load`` (threads of other jobs that want a core, ``current_load``) default to this machine's, now."""
    check(job in JOBS, f"job must be one of {JOBS}, got '{job}'")
    check(requested >= 0, f"torch_threads must be >= 0, got {requested}")
    if requested:
        return requested
    if job == "agent":
        return 1
    cores = _cores() if cores is None else cores
    load = current_load() if load is None else load
    return max(1, min(cores, cores - round(load)))


def set_threads(job: str, requested: int = 0) -> int:
    """Set torch's intra-op threads to ``pick_threads(job, requested)``; return the count."""
    n = pick_threads(job, requested)
    torch.set_num_threads(n)
    return n
