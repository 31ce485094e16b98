"""Experiment (GPU only): does replaying the regenerator as a CUDA graph close the gap between augmented and raw PPO?

On a GPU the fast FSAE's forward pass for one vector step (8 images) is a few dozen tiny kernels, each launched from
Python; the PPO target of the performance issue (augmented >= 0.8x raw) is about that launch cost. A CUDA graph
captures the kernels of one call once and replays them with one launch. This script

1. checks that the graphed regenerator returns exactly the plain one's uint8 regeneration (batch 1, 8, 64);
2. times PPO on DigitBandit raw, augmented, and augmented with the graphed regenerator, alternating inside each repeat
   (``wrapper.time_learn``), and prints the two ratios.

    python benchmarks/cuda_graph.py --quick --out graph.json

The graphed regenerator lives here, not in ``rl/``, until a GPU run has shown it helps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wrapper import _ppo, fast_fsae, time_learn  # noqa: E402

from rl.common_sense import Regenerator  # noqa: E402


class GraphedRegenerator(Regenerator):
    """``Regenerator`` whose forward pass (uint8 in, uint8 out, no feedback) is one CUDA graph per batch shape."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.device.type != "cuda" or self.model is None or self.feedback_steps:
            raise ValueError("GraphedRegenerator needs a model on a CUDA device and feedback_steps=0")
        self._graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def _forward(self, x_u8: torch.Tensor) -> torch.Tensor:
        x = x_u8.to(self.dtype).div_(255.0)
        return self.model.regenerate(x, steps=0).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)

    def _capture(self, shape: tuple[int, ...]):
        static_in = torch.zeros(shape, dtype=torch.uint8, device=self.device)
        side = torch.cuda.Stream(self.device)  # warm-up on a side stream, as torch.cuda.graph's docs ask
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._forward(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self._forward(static_in)
        return graph, static_in, static_out

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            if obs.shape not in self._graphs:
                self._graphs[obs.shape] = self._capture(obs.shape)
            graph, static_in, static_out = self._graphs[obs.shape]
            static_in.copy_(torch.from_numpy(obs))
            graph.replay()
            return static_out.cpu().numpy()


def check_equal(plain: Regenerator, graphed: GraphedRegenerator, batches=(1, 8, 64)) -> dict[str, int]:
    """Number of differing uint8 values between the two regenerators on random images, per batch size."""
    rng = np.random.default_rng(0)
    out = {}
    for b in batches:
        for _ in range(2):  # the second call replays the captured graph on new data
            obs = rng.integers(0, 256, (b, *plain.input_shape), dtype=np.uint8)
            out[f"batch{b}/differing_values"] = int((plain(obs) != graphed(obs)).sum())
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
    plain, graphed = Regenerator(model, "cuda"), GraphedRegenerator(model, "cuda")
    results: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, **check_equal(plain, graphed)}
    print("graphed vs plain regeneration, differing uint8 values:", results)
    models = {k: _ppo(args.n_envs, r, "cuda") for k, r in (("raw", None), ("plain", plain), ("graphed", graphed))}
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
