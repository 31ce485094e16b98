"""Memory under load: the batched common-sense wrapper stepped for a long time; does the process's memory grow?

``VecCommonSense`` over a ``DummyVecEnv`` of 64 ``fsae/DigitBandit-v0`` environments, with an FSAE of the fast
configuration (``configs/pretrain/mnist_fast.yaml``, untrained: memory does not depend on the weights), is stepped with
uniformly random actions. At each checkpoint of environment steps (summed over all environments: 10k and 100k by
default, ``--steps`` for others) it records the current RSS (``/proc/self/statm``), the peak RSS so far
(``getrusage``'s ``ru_maxrss``, which only grows) and the steps/s since the previous checkpoint; on CUDA also the
allocator's current and peak bytes. A row "0" is taken after set-up and one vector step, before the timed stepping.

How to read it: the absolute numbers are mostly the baseline of Python, torch, SB3 and MNIST (several hundred MB) and
say little about the wrapper. What matters is the growth between 10k and 100k steps. After the first thousands of
steps (allocator warm-up, episode statistics) current RSS should stay flat, within a few MB of noise; a leak (terminal
observations or tensors kept alive per step, a growing buffer) shows as current RSS rising with the steps, reported as
KB per 1,000 environment steps. A peak well above the current RSS points to transient spikes rather than a leak.
``--python-heap`` also traces Python's allocations (``tracemalloc``, several times slower): RSS growing while the
traced Python heap stays flat means native memory (the C allocator, torch), not Python objects kept alive.

    python benchmarks/memory.py                                   # 10k and 100k env steps
    python benchmarks/memory.py --steps 10000 100000 1000000 --out runs/benchmarks/memory_1m.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wrapper import ENV_ID, fast_fsae  # noqa: E402  (benchmarks/wrapper.py)

from rl.common_sense import Regenerator, VecCommonSense  # noqa: E402
from rl.env_factory import make_env  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    """Current resident set size of this process, in MiB (``/proc/self/statm``, second field, in pages)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(
    checkpoints: list[int],
    n_envs: int = 64,
    device: str = "cpu",
    dtype: str = "float32",
    union: str = "stack",
    seed: int = 0,
    python_heap: bool = False,
) -> list[dict[str, Any]]:
    """Step the batched wrapper to each checkpoint of total environment steps; one row of memory per checkpoint.

    Each checkpoint is reached in whole vector steps, so ``env_steps`` can exceed ``target`` by up to ``n_envs - 1``.
    """
    regen = Regenerator(fast_fsae(), device, dtype=dtype)
    venv = VecCommonSense(DummyVecEnv([lambda: make_env(ENV_ID)] * n_envs), regen, union)
    venv.seed(seed)
    venv.reset()
    rng = np.random.default_rng(seed)
    n_actions = int(venv.action_space.n)  # type: ignore[attr-defined]
    cuda = torch.device(device).type == "cuda"

    def row(target: int, steps: int, seconds: float, new_steps: int) -> dict[str, Any]:
        r = {"target": target, "env_steps": steps, "rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb()}
        r["steps_per_s"] = new_steps / seconds if seconds > 0 else None
        if python_heap:
            gc.collect()
            r["python_heap_mb"] = tracemalloc.get_traced_memory()[0] / 2**20
        if cuda:
            r["cuda_mb"] = torch.cuda.memory_allocated() / 2**20
            r["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        return r

    venv.step(rng.integers(0, n_actions, n_envs))  # first step: lazy allocations
    if python_heap:
        tracemalloc.start()
    steps = n_envs
    rows = [row(0, steps, 0.0, 0)]
    print(_format(rows[-1]), flush=True)
    for target in sorted(checkpoints):
        t0, start = time.perf_counter(), steps
        while steps < target:
            venv.step(rng.integers(0, n_actions, n_envs))
            steps += n_envs
        rows.append(row(target, steps, time.perf_counter() - t0, steps - start))
        print(_format(rows[-1]), flush=True)
    venv.close()
    if python_heap:
        tracemalloc.stop()
    return rows


def _format(r: dict[str, Any]) -> str:
    rate = f"{r['steps_per_s']:>10,.0f}" if r["steps_per_s"] else f"{'':>10}"
    line = f"{r['env_steps']:>12,} {r['rss_mb']:>10.1f} {r['peak_rss_mb']:>10.1f} {rate}"
    if "cuda_mb" in r:
        line += f" {r['cuda_mb']:>9.1f} {r['cuda_peak_mb']:>9.1f}"
    if "python_heap_mb" in r:
        line += f" {r['python_heap_mb']:>11.2f}"
    return line


def growth(rows: list[dict[str, Any]], first: int, last: int) -> dict[str, float]:
    """Current-RSS growth between the rows of checkpoints ``first`` and ``last``, absolute and per 1,000 env steps."""
    a, b = (next(r for r in rows if r["target"] == t) for t in (first, last))
    mb = b["rss_mb"] - a["rss_mb"]
    per_1k = mb * 1024 / max((b["env_steps"] - a["env_steps"]) / 1000, 1e-9)
    out = {"from_steps": a["env_steps"], "to_steps": b["env_steps"], "rss_growth_mb": mb, "kb_per_1k_steps": per_1k}
    if "python_heap_mb" in a:
        out["python_heap_growth_mb"] = b["python_heap_mb"] - a["python_heap_mb"]
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, nargs="+", default=[10_000, 100_000], help="checkpoints, total env steps")
    p.add_argument("--n-envs", type=int, default=64, help="environments in the vector env (default: %(default)s)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="the regenerator's device")
    p.add_argument("--dtype", default="float32", choices=["float64", "float32"], help="the regenerator's precision")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    p.add_argument("--python-heap", action="store_true", help="also trace Python's heap (tracemalloc; slower)")
    p.add_argument("--out", default="runs/benchmarks/memory.json", help="JSON output (default: %(default)s)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"VecCommonSense over {args.n_envs} x {ENV_ID}, fast FSAE ({args.device}, {args.dtype}), random actions")
    header = f"{'env steps':>12} {'RSS MB':>10} {'peak MB':>10} {'steps/s':>10}"
    header += f" {'CUDA MB':>9} {'peak':>9}" if args.device == "cuda" else ""
    print(header + (f" {'Python MB':>11}" if args.python_heap else ""))
    rows = measure(args.steps, args.n_envs, args.device, args.dtype, python_heap=args.python_heap)
    result = {
        "benchmark": "memory",
        "env_id": ENV_ID,
        "n_envs": args.n_envs,
        "device": args.device,
        "dtype": args.dtype,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "rows": rows,
    }
    if len(args.steps) >= 2:
        result["growth"] = growth(rows, min(args.steps), max(args.steps))
        g = result["growth"]
        print(f"current RSS growth {g['from_steps']:,} -> {g['to_steps']:,} env steps: {g['rss_growth_mb']:+.1f} MB "
              f"({g['kb_per_1k_steps']:+.1f} KB per 1,000 env steps)")  # fmt: skip
        if "python_heap_growth_mb" in g:
            print(f"traced Python heap growth over the same steps: {g['python_heap_growth_mb']:+.2f} MB")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
