"""The agents' image extractor (``rl.extractor.SmallCNN``) in the plain and the channels-last layout, in one run:
forward + backward of the policy's CNN on the batches agents train on, and raw PPO's training steps/s on shipped
configs (``policy.channels_last`` true and false).

    python benchmarks/extractor.py            # DigitBandit, and MiniGrid-DoorKey-5x5 where minigrid is installed
    python benchmarks/extractor.py --configs configs/agent/digit_sum.yaml --steps 4096

Both layouts alternate within each round; each figure is the median over rounds, after an untimed warm-up; one torch
thread (the agents' rule on a loaded machine, ``fsae.threads``), memory and float settings as agents train
(``fsae.memory.retain_freed_memory``; ``wrapper.time_learn`` flushes subnormals while PPO learns).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import machine  # noqa: E402  (benchmarks/run.py)
from wrapper import time_learn  # noqa: E402  (benchmarks/wrapper.py)

from fsae.config import load_config  # noqa: E402
from fsae.memory import retain_freed_memory  # noqa: E402
from rl.agent import build_model  # noqa: E402
from rl.config import AgentConfig  # noqa: E402
from rl.env_factory import make_vec_env_for  # noqa: E402
from rl.extractor import SmallCNN  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# (batch, channels): PPO minibatches on digits (raw 1 channel, augmented 2), MiniGrid's (RGB 3, augmented 6), and one
# vector step of 8 observations (the rollout's forward pass, timed here with its backward too).
SHAPES = ((256, 1), (256, 2), (64, 3), (64, 6), (8, 2))
LAYOUTS = {"plain": False, "channels_last": True}


def _median_ms(fns: dict[str, Callable[[], None]], rounds: int, calls: int) -> dict[str, float]:
    for fn in fns.values():
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times[k].append((time.perf_counter() - t0) / calls * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def cnn_step_ms(batch: int, channels: int, rounds: int = 5, calls: int = 10) -> dict[str, float]:
    """ms of SmallCNN forward + backward on ``batch`` 28x28 images of ``channels`` channels, per layout, and the
    plain over channels-last ratio (same weights)."""
    space = spaces.Box(0, 255, (channels, 28, 28), np.uint8)
    torch.manual_seed(0)
    nets = {k: SmallCNN(space, channels_last=v) for k, v in LAYOUTS.items()}
    nets["plain"].load_state_dict(nets["channels_last"].state_dict())
    x = torch.rand(batch, channels, 28, 28)

    def step(net: SmallCNN) -> Callable[[], None]:
        def fn() -> None:
            net.zero_grad(set_to_none=True)
            net(x).square().mean().backward()

        return fn

    ms = _median_ms({k: step(n) for k, n in nets.items()}, rounds, calls)
    return ms | {"plain_over_channels_last": ms["plain"] / ms["channels_last"]}


def ppo_steps_per_s(config: str | Path, steps: int, rounds: int) -> dict[str, float]:
    """Raw PPO's training steps/s on ``config`` (its hyperparameters and envs) per layout, and their ratio."""
    models = {}
    for name, flag in LAYOUTS.items():
        cfg = load_config(AgentConfig, config, [f"policy.channels_last={str(flag).lower()}", "condition=none"])
        models[name] = build_model(cfg, make_vec_env_for(cfg, None, cfg.n_envs, cfg.seed, {}), "cpu")
    rates = time_learn(models, steps, rounds)
    return rates | {"channels_last_over_plain": rates["channels_last"] / rates["plain"]}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = ["configs/agent/digit_bandit.yaml"]
    if importlib.util.find_spec("minigrid") is not None:
        default.append("configs/agent/minigrid_doorkey5.yaml")
    p.add_argument("--configs", nargs="*", default=default, help="agent configs whose raw PPO to time ('' for none)")
    p.add_argument("--steps", type=int, default=2048, help="PPO steps per timed learn() call")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    retain_freed_memory()  # as agents run (rl.agent.train_agent); time_learn flushes subnormals as they do
    cpu = machine(torch.device("cpu"))
    results: dict = {"command": "python " + " ".join(sys.argv), "machine": cpu, "cnn": {}, "ppo": {}}
    for batch, channels in SHAPES:
        r = results["cnn"][f"b{batch}_c{channels}"] = cnn_step_ms(batch, channels, args.rounds)
        print(f"SmallCNN fwd+bwd, batch {batch:>3} x {channels} x 28 x 28: plain {r['plain']:7.2f} ms, channels-last "
              f"{r['channels_last']:7.2f} ms: {r['plain_over_channels_last']:.2f}x")  # fmt: skip
    for config in filter(None, args.configs):
        r = results["ppo"][config] = ppo_steps_per_s(ROOT / config, args.steps, args.rounds)
        print(f"raw PPO, {config}: plain {r['plain']:,.0f} steps/s, channels-last {r['channels_last']:,.0f} steps/s: "
              f"{r['channels_last_over_plain']:.2f}x")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
