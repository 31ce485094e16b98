"""The abstract network's pass over one vector step's observations, the cost the lookup regenerator leaves to an agent.

With the lookup (``rl.common_sense.Regenerator``) the batched wrapper's work per vector step is the abstract pass over
the n_envs new observations, the rounding and a table lookup; the pass is almost all of it. This times that pass for
networks of one config that differ in their two conv layers' channels, each as ``AbstractNet`` runs it and as the
lookup runs it on a CPU (``fsae.gemm``: gathers and GEMMs, labelled "GEMM"), alternating in each round (so a change in
the machine's load hits all alike), median over rounds; one torch thread, float32, fresh weights (speed does not
depend on them).

    python benchmarks/abstract_pass.py                                   # the fast config's network, and 32/64
    python benchmarks/abstract_pass.py --arch 24/32 32/64 16/32 32/32 --batch 8 --rounds 15
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from wrapper import FAST_CONFIG  # benchmarks/wrapper.py

from fsae.config import ConfigError, check, load_config
from fsae.gemm import GemmAbstract
from fsae.model import FSAE
from fsae.pretrain_config import PretrainConfig


def network(config: Path, arch: str | None) -> FSAE:
    """The round FSAE of ``config``, its two conv layers' channels set to ``arch`` ('a/b') if given."""
    cfg = load_config(PretrainConfig, config).model
    if arch:
        channels = [int(c) for c in arch.split("/")]
        convs = [i for i, spec in enumerate(cfg.layers) if spec.type == "conv"]
        check(len(channels) == len(convs), f"--arch {arch}: the config has {len(convs)} conv layers")
        for i, c in zip(convs, channels):
            cfg.layers[i] = dataclasses.replace(cfg.layers[i], out=c)
    cfg.round = True
    torch.manual_seed(0)
    return FSAE(cfg).eval()


def time_passes(models: dict[str, Any], batch: int, rounds: int, calls: int) -> dict[str, float]:
    """Microseconds per abstract pass over ``batch`` images, per model (anything with ``abstract(x)`` and ``config``):
    median over ``rounds`` of ``calls`` calls."""
    x = torch.rand(batch, *models[next(iter(models))].config.input_shape)
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for _ in range(rounds):
            for k, m in models.items():
                for _ in range(calls // 6):  # warm-up in each round: the caches hold the other network's weights
                    m.abstract(x)
                t0 = time.perf_counter()
                for _ in range(calls):
                    m.abstract(x)
                times[k].append((time.perf_counter() - t0) / calls * 1e6)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=FAST_CONFIG)
    p.add_argument("--arch", nargs="+", default=["", "32/64"], help="conv channels 'a/b' ('' = the config's own)")
    p.add_argument("--batch", type=int, default=8, help="images per pass (8: one vector step of 8 envs)")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    models = {}
    for arch in args.arch:
        model = network(args.config, arch)
        models[label(model, arch)] = model
        gemm = SimpleNamespace(abstract=GemmAbstract(model.abstract), config=model.config)  # the lookup's pass
        models[f"{label(model, arch)} GEMM"] = gemm
    us = time_passes(models, args.batch, args.rounds, args.calls)
    for k, v in us.items():
        print(f"{k:>19}  {v:8.1f} us per abstract pass of {args.batch} images")
    if args.out:
        settings = {"config": str(args.config), "batch": args.batch, "rounds": args.rounds, "calls": args.calls}
        args.out.write_text(json.dumps({**settings, "us_per_pass": us}, indent=2) + "\n")
    return us


def label(model: FSAE, arch: str | None) -> str:
    """'24/32', the conv channels, and ' (config)' for the config's own network."""
    channels = "/".join(str(s.out) for s in model.config.layers if s.type == "conv")
    return channels if arch else f"{channels} (config)"


if __name__ == "__main__":
    try:
        main()
    except ConfigError as e:  # a wrong --arch or config: one line, not a traceback
        sys.exit(f"error: {e}")
