"""How exact is the regenerator's lookup on real data? Differing uint8 pixels between the lookup and the forward pass.

    python benchmarks/lookup_exact.py --checkpoint runs/pretrain/fast/fsae_round.pt --out lookup.json

For each precision and batch size (1 is the per-environment wrapper, 8 the batched one with 8 envs), the MNIST test
images go through ``Regenerator`` with its lookup (the default for a round model without jumps) and without it (the
full forward pass); the count of uint8 pixels that differ is reported (batch 1: the first 5,000 images).
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
from rl.common_sense import Regenerator


def count_differences(model, obs: np.ndarray, batches=(1, 2, 8, 64)) -> dict[str, dict[str, int]]:
    """``{f"{dtype}/batch{b}": {"images", "differing_pixels"}}`` over ``obs`` (N, C, H, W) uint8."""
    out = {}
    for dtype in ("float32", "float64"):
        lookup, forward = Regenerator(model, dtype=dtype), Regenerator(model, dtype=dtype, lookup=False)
        if not lookup.lookup:
            raise SystemExit("error: the checkpoint has no lookup (it needs round and no jump connections)")
        for b in batches:
            n = min(len(obs), 5000) if b == 1 else len(obs)
            diff = sum(int((lookup(obs[i : i + b]) != forward(obs[i : i + b])).sum()) for i in range(0, n, b))
            out[f"{dtype}/batch{b}"] = {"images": n, "differing_pixels": diff}
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a round FSAE without jumps, e.g. fsae_round.pt")
    p.add_argument("--out", default=None, help="write the counts as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    images, _ = load_mnist("test")
    result = {"command": " ".join([sys.executable, *sys.argv]), "checkpoint": args.checkpoint}
    result |= count_differences(load_fsae(args.checkpoint), np.ascontiguousarray(images[:, None]))
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
