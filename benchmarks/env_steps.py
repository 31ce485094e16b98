"""Environment stepping speed: steps per second of each registered ``fsae/`` environment, one process, one env.

Contents:
    measure_env_steps -- steps/s per environment id (median of repeats after a warm-up), as a dict.

Each environment is made with ``gymnasium.make`` (so the default wrappers, order enforcing and the passive checker,
are included, as a user gets them) with default corruption, reset with a seed, and stepped with pre-drawn random
actions (so the policy's cost is not measured), resetting when an episode ends. The target is >= 20,000 steps/s.

    python benchmarks/env_steps.py            # 20,000 steps per repeat, 5 repeats
    python benchmarks/env_steps.py --steps 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np

import envs

TARGET_STEPS_PER_S = 20_000


def _time_steps(env: gym.Env, actions: np.ndarray) -> float:
    """Seconds to take ``actions`` in ``env``, resetting at episode ends."""
    step, reset = env.step, env.reset
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = step(a)
        if terminated or truncated:
            reset()
    return time.perf_counter() - start


def measure_env_steps(
    n_steps: int = 20_000, repeats: int = 5, env_ids: tuple[str, ...] = envs.ENV_IDS, seed: int = 0
) -> dict[str, float]:
    """Steps per second of each environment: the median over ``repeats`` timed runs, after one untimed warm-up run.

    Args:
        n_steps: steps per timed run.
        repeats: timed runs per environment.
        env_ids: the environments to measure.
        seed: seeds the environments and the random actions.

    Returns:
        ``{env_id: steps_per_second}``.
    """
    results = {}
    for env_id in env_ids:
        env = gym.make(env_id)
        env.reset(seed=seed)
        actions = np.random.default_rng(seed).integers(env.action_space.n, size=n_steps).tolist()
        _time_steps(env, actions[: max(n_steps // 10, 100)])  # warm-up: caches, the passive checker's first step
        times = [_time_steps(env, actions) for _ in range(repeats)]
        results[env_id] = n_steps / statistics.median(times)
        env.close()
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20_000, help="steps per timed run (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per environment (default: %(default)s)")
    args = p.parse_args(argv)
    for env_id, rate in measure_env_steps(args.steps, args.repeats).items():
        verdict = "ok" if rate >= TARGET_STEPS_PER_S else f"BELOW the {TARGET_STEPS_PER_S:,} target"
        print(f"{env_id:<22} {rate:>10,.0f} steps/s  {verdict}")


if __name__ == "__main__":
    main()
