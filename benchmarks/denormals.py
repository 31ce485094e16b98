"""Subnormal floats in an agent's optimizer, and what they cost on this CPU (``fsae.runtime.flush_denormals``).

    python benchmarks/denormals.py                       # the Adam step, flush off and on, one run
    python benchmarks/denormals.py --run runs/sweeps/verdict_a2c/DigitBandit-v0/features/seed4
        # and the census of that finished agent, and its training continued from its final state, flush off and on

``--run`` continues the run's ``final_model.zip`` (its optimizer state as the run left it) on its own config for
``--steps`` steps, flush off and on alternating in each round: what the flag changes at the end of that run.

The census counts, for each tensor of a saved SB3 agent's optimizer state (Adam's exp_avg, exp_avg_sq), the values
that are subnormal in float32 (0 < |x| < 1.18e-38). The timing runs ``torch.optim.Adam.step`` on one parameter of
``--shape`` (default: the SmallCNN's linear layer of the digit agents, 128 x 1600) whose first moment holds a
``--fraction`` of subnormal values (default 0.63, what the census found in that layer of an A2C DigitBandit agent after
50k steps) and whose gradient is zero there, as for a dead unit: with subnormals computed in full and flushed to zero,
alternating within each of ``--rounds`` rounds, one torch thread; the median milliseconds per step and their ratio.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
import zipfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import machine  # noqa: E402  (benchmarks/run.py)

TINY = torch.finfo(torch.float32).tiny  # the smallest normal float32


def census(model_zip: str | Path) -> dict[str, dict[str, float]]:
    """Subnormal values per optimizer-state tensor of an SB3 ``.zip``: ``{"<param>/<key>": {"subnormal", "total",
    "fraction"}}`` for every floating tensor with any."""
    with zipfile.ZipFile(model_zip) as z:
        state = torch.load(io.BytesIO(z.read("policy.optimizer.pth")), map_location="cpu", weights_only=True)
    out = {}
    for param, tensors in state["state"].items():
        for key, t in tensors.items():
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() > 1:
                n = int(((t != 0) & (t.abs() < TINY)).sum())
                if n:
                    out[f"{param}/{key}"] = {"subnormal": n, "total": t.numel(), "fraction": n / t.numel()}
    return out


def adam_step_ms(shape: tuple[int, ...], fraction: float, rounds: int = 5, steps: int = 50) -> dict[str, float]:
    """Milliseconds per Adam step on one parameter whose exp_avg is ``fraction`` subnormal (zero gradient there),
    subnormals computed in full ('ieee') and flushed to zero ('flush'), alternating; and their ratio."""
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    dead = torch.rand(shape, generator=g) < fraction
    p = torch.nn.Parameter(torch.randn(shape, generator=g) * 0.01)
    opt = torch.optim.Adam([p], lr=1e-3)
    p.grad = torch.randn(shape, generator=g) * 1e-3
    opt.step()  # creates the state
    st = opt.state[p]
    p.grad[dead] = 0.0
    times: dict[str, list[float]] = {"ieee": [], "flush": []}
    for _ in range(rounds):
        for mode in times:
            torch.set_flush_denormal(mode == "flush")
            st["exp_avg"][dead] = 1e-39  # subnormal again (a flushed step leaves zeros)
            st["exp_avg_sq"][dead] = 1e-12
            t0 = time.perf_counter()
            for _ in range(steps):
                opt.step()
            times[mode].append((time.perf_counter() - t0) / steps * 1e3)
    torch.set_flush_denormal(False)
    ms = {k: statistics.median(v) for k, v in times.items()}
    return {"ieee_ms": ms["ieee"], "flush_ms": ms["flush"], "ieee_over_flush": ms["ieee"] / ms["flush"]}


def continued(run_dir: str | Path, steps: int = 1600, rounds: int = 3) -> dict[str, float]:
    """Steps/s of a finished agent's training continued for ``steps`` from its ``final_model.zip``, subnormals
    computed in full ('ieee') and flushed ('flush'), alternating; each call starts again from the saved state."""
    from fsae.config import load_config
    from rl.agent import resolve_checkpoint
    from rl.config import ALGOS, AgentConfig
    from rl.env_factory import make_observer, make_vec_env_for

    torch.set_num_threads(1)
    cfg = load_config(AgentConfig, Path(run_dir) / "config.yaml")
    venv = make_vec_env_for(cfg, make_observer(cfg, resolve_checkpoint(cfg), "cpu"), cfg.n_envs, cfg.seed, {})
    times: dict[str, list[float]] = {"ieee": [], "flush": []}
    for _ in range(rounds):
        for mode in times:
            torch.set_flush_denormal(mode == "flush")
            model = ALGOS[cfg.algo].load(Path(run_dir) / "final_model.zip", env=venv, device="cpu")
            t0 = time.perf_counter()
            model.learn(steps, reset_num_timesteps=False)
            times[mode].append(time.perf_counter() - t0)
    torch.set_flush_denormal(False)
    venv.close()
    rate = {k: steps / statistics.median(v) for k, v in times.items()}
    return {"ieee_steps_per_s": rate["ieee"], "flush_steps_per_s": rate["flush"],
            "flush_over_ieee": rate["flush"] / rate["ieee"]}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default=None, help="a finished agent's run folder: census and continued training")
    p.add_argument("--steps", type=int, default=1600, help="steps of continued training per timed call")
    p.add_argument("--shape", type=int, nargs="+", default=[128, 1600], help="the timed parameter's shape")
    p.add_argument("--fraction", type=float, default=0.63, help="fraction of its first moment that is subnormal")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    results: dict = {"command": "python " + " ".join(sys.argv), "machine": machine(torch.device("cpu"))}
    results["supported"] = torch.set_flush_denormal(True)
    torch.set_flush_denormal(False)
    if args.run:
        results["census"] = census(Path(args.run) / "final_model.zip")
        for name, c in results["census"].items():
            print(f"census  {name:<16} {c['subnormal']:>8,} of {c['total']:>8,} subnormal ({c['fraction']:.0%})")
        c = results["continued"] = continued(args.run, args.steps, args.rounds)
        print(f"continued {args.steps} steps: {c['ieee_steps_per_s']:,.0f} steps/s, flushed "
              f"{c['flush_steps_per_s']:,.0f}: {c['flush_over_ieee']:.2f}x")  # fmt: skip
    r = adam_step_ms(tuple(args.shape), args.fraction, args.rounds)
    results["adam"] = r | {"shape": args.shape, "fraction": args.fraction}
    print(f"adam    {tuple(args.shape)}, {args.fraction:.0%} subnormal: {r['ieee_ms']:.3f} ms per step, flushed "
          f"{r['flush_ms']:.3f} ms: {r['ieee_over_flush']:.1f}x")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
