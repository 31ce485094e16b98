"""How exact is the regenerator's lookup on real data? Differing uint8 pixels between the lookup and the forward pass.

    python benchmarks/lookup_exact.py --checkpoint runs/pretrain/fast/fsae_round.pt --out lookup.json
    python benchmarks/lookup_exact.py --checkpoint results/verdict_minigrid/pretrain/fsae_round.pt \
        --data data/minigrid_doorkey5.npz                 # task data instead of the MNIST test images

For each precision and batch size (1 is the per-environment wrapper, 8 the batched one with 8 envs), the images (the
MNIST test set, or the observations of a task-data file) go through ``Regenerator`` with its lookup (the default for a
round model without jumps) and without it (the full forward pass); the count of uint8 pixels that differ is reported
(batch 1: the first 5,000 images). With each count, how the lookup's GEMM pass on a CPU (``fsae.gemm``) fared against
``AbstractNet``: the largest difference of their logits, the same as a fraction of the margin the lookup asks a
winning class to lead by (``max_diff_over_margin``: the margin is 1 / that times larger), and how many batches had a
closer call and were computed again by ``AbstractNet`` (``exact_batches``, of ``batches``); and ``gemm_check``, the
same fraction as the lookup measures it on random images when it is made (``rl.lookup.Lookup.check_gemm``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from fsae.checkpoint import load_fsae
from fsae.data import load_mnist
from fsae.task_data import load_task_data
from rl.common_sense import Regenerator


def count_differences(model, obs: np.ndarray, batches=(1, 2, 8, 64)) -> dict[str, dict[str, float]]:
    """``{f"{dtype}/batch{b}": {"images", "differing_pixels", "batches", "exact_batches", "max_logit_diff",
    "max_diff_over_margin"}}`` over ``obs`` (N, C, H, W) uint8."""
    out = {}
    for dtype in ("float32", "float64"):
        lookup, forward = Regenerator(model, dtype=dtype), Regenerator(model, dtype=dtype, lookup=False)
        if not lookup.lookup:
            raise SystemExit("error: the checkpoint has no lookup (it needs round and no jump connections)")
        table = lookup._lookup
        for b in batches:
            n = min(len(obs), 5000) if b == 1 else len(obs)
            before, diff, worst, ratio = table.exact_batches, 0, 0.0, 0.0
            for i in range(0, n, b):
                diff += int((lookup(obs[i : i + b]) != forward(obs[i : i + b])).sum())
                if table.gemm is not None:  # the two passes' logits, as the lookup computes them
                    d, r = table.gap(torch.from_numpy(obs[i : i + b]).to(lookup.dtype).div_(255.0))
                    worst, ratio = max(worst, d.max().item()), max(ratio, r.max().item())
            out[f"{dtype}/batch{b}"] = {
                "images": n,
                "differing_pixels": diff,
                "batches": -(-n // b),
                "exact_batches": table.exact_batches - before,
                "max_logit_diff": worst,
                "max_diff_over_margin": ratio,
            }
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a round FSAE without jumps, e.g. fsae_round.pt")
    p.add_argument("--data", default=None, help="task data (.npz): its observations, not MNIST's")
    p.add_argument("--out", default=None, help="write the counts as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    images = load_task_data(args.data)[0] if args.data else load_mnist("test")[0][:, None]
    model = load_fsae(args.checkpoint)
    result = {"command": " ".join([sys.executable, *sys.argv]), "checkpoint": args.checkpoint, "data": args.data}
    result["gemm_check"] = Regenerator(model).describe()["gemm_check"]  # the lookup's own check when it is made
    result |= count_differences(model, np.ascontiguousarray(images))
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
