"""GPU only: what replaying the regenerator as a CUDA graph (``Regenerator(cuda_graph=True)``, the default on CUDA)
buys augmented PPO, against the plain forward pass (``cuda_graph=False``).

On a GPU the fast FSAE's forward pass for one vector step (8 images) is a few dozen tiny kernels, each launched from
Python; the PPO target of the performance issue (augmented >= 0.8x raw) is about that launch cost. A CUDA graph
captures the kernels of one call once and replays them with one launch. This script

1. checks that the graphed regenerator returns exactly the plain one's uint8 regeneration (batch 1, 8, 64);
2. times PPO on DigitBandit raw, augmented (plain forward) and augmented (CUDA graph), alternating inside each repeat
   (``wrapper.time_learn``), and prints the two ratios.

    python benchmarks/cuda_graph.py --quick --out graph.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wrapper import fast_fsae, ppo_agent, time_learn  # noqa: E402

from rl.common_sense import Regenerator  # noqa: E402


def check_equal(plain: Regenerator, graphed: Regenerator, batches=(1, 8, 64)) -> dict[str, int]:
    """Number of differing uint8 values between the two regenerators on random images, per batch size."""
    rng = np.random.default_rng(0)
    out = {}
    for b in batches:
        for _ in range(2):  # the second call replays the captured graph on new data
            obs = rng.integers(0, 256, (b, *plain.input_shape), dtype=np.uint8)
            key = f"batch{b}/differing_values"
            out[key] = out.get(key, 0) + int((plain(obs) != graphed(obs)).sum())
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2048 steps x 3 repeats (else 8192 x 5)")
    p.add_argument("--n-envs", type=int, default=8)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("error: benchmarks/cuda_graph.py needs a CUDA GPU (torch.cuda.is_available() is False)")
    steps, repeats = (2048, 3) if args.quick else (8192, 5)
    model = fast_fsae()
    plain, graphed = Regenerator(model, "cuda", cuda_graph=False), Regenerator(model, "cuda")
    results: dict = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "date": datetime.date.today().isoformat(),
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        **check_equal(plain, graphed),
    }
    print("graphed vs plain regeneration, differing uint8 values:", results)
    models = {k: ppo_agent(args.n_envs, r, "cuda") for k, r in (("raw", None), ("plain", plain), ("graphed", graphed))}
    rates = time_learn(models, steps, repeats)
    results.update({f"ppo/{k}_steps_per_s": v for k, v in rates.items()})
    results["ppo/plain_over_raw"] = rates["plain"] / rates["raw"]
    results["ppo/graphed_over_raw"] = rates["graphed"] / rates["raw"]
    print(f"PPO steps/s ({args.n_envs} envs, float32): raw {rates['raw']:,.0f}, augmented {rates['plain']:,.0f} "
          f"({results['ppo/plain_over_raw']:.2f}x), augmented + CUDA graph {rates['graphed']:,.0f} "
          f"({results['ppo/graphed_over_raw']:.2f}x)")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
