"""Which torch thread count is fastest for each job on this machine: the measurements behind ``fsae.threads``.

Contents:
    measure_threads -- for each thread count, pretraining's one-pass concrete phase (the fast config: every variant and
                       the autoencoder) in images/s and raw PPO on DigitBandit (8 envs, the shipped config) in steps/s;
                       the counts alternate inside each repeat, so a change of load hits all of them alike.

    python benchmarks/run.py --only threads --out threads.json
"""

from __future__ import annotations

import os
import statistics
import time

import torch
from fsae_speed import concrete_phase_runs
from wrapper import FAST_CONFIG, ppo_agent

from fsae.config import load_config
from fsae.pretrain_config import PretrainConfig


def measure_threads(
    counts: tuple[int, ...] | None = None, batches: int = 4, ppo_steps: int = 1024, repeats: int = 3
) -> dict[str, float]:
    """Images/s of the fast config's one-pass concrete phase (``batches`` batches) and steps/s of raw PPO
    (``ppo_steps`` per timing) at each of ``counts`` threads (default 1 and every core); the median of ``repeats``.

    Returns ``{f"pretrain/threads{n}_images_per_s", f"agent/threads{n}_steps_per_s", "pretrain/best_threads",
    "agent/best_threads", "load_1min_before", "load_1min_after"}``.
    """
    counts = counts or tuple(sorted({1, os.cpu_count() or 1}))
    before = torch.get_num_threads()
    load = os.getloadavg()[0]
    cfg = load_config(PretrainConfig, FAST_CONFIG)
    one_pass = concrete_phase_runs(cfg, torch.device("cpu"), batches)["one_pass"]
    agents = {n: ppo_agent(8, None, "cpu") for n in counts}
    times: dict[str, list[float]] = {f"{job}{n}": [] for job in ("pretrain", "agent") for n in counts}
    for n in counts:  # warm-up: one rollout and update per agent, one pass
        torch.set_num_threads(n)
        agents[n].learn(agents[n].n_steps * agents[n].n_envs)
    one_pass()
    try:
        for _ in range(repeats):
            for n in counts:
                torch.set_num_threads(n)
                t0 = time.perf_counter()
                one_pass()
                times[f"pretrain{n}"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                agents[n].learn(ppo_steps, reset_num_timesteps=False)
                times[f"agent{n}"].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
        for agent in agents.values():
            agent.get_env().close()
    images = batches * cfg.train.batch_size
    out: dict[str, float] = {}
    for n in counts:
        out[f"pretrain/threads{n}_images_per_s"] = images / statistics.median(times[f"pretrain{n}"])
        out[f"agent/threads{n}_steps_per_s"] = ppo_steps / statistics.median(times[f"agent{n}"])
    for job, unit in (("pretrain", "images_per_s"), ("agent", "steps_per_s")):
        out[f"{job}/best_threads"] = max(counts, key=lambda n: out[f"{job}/threads{n}_{unit}"])
    return out | {"load_1min_before": load, "load_1min_after": os.getloadavg()[0]}
