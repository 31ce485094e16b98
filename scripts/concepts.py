"""Generation from concepts: label mixtures, interpolation between every pair of classes, attribute and digit codes.

python scripts/concepts.py                                   # trains round + plain on configs/pretrain/mnist_fast.yaml
python scripts/concepts.py --checkpoint runs/pretrain/<run>/fsae_round.pt --out runs/concepts_ckpt

With --checkpoint nothing is trained: the checkpoint's head decides what is drawn (softmax: mixtures and
interpolations; sigmoid: every attribute combination; groups: every two-digit code, swaps and mixtures). Every
drawing is classified back by the abstract network; the rates are in metrics.json.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from fsae.characteristics import ConceptOptions, run_concepts
from fsae.checkpoint import CheckpointError
from fsae.config import ConfigError, load_config
from fsae.data import DatasetError
from fsae.pretrain import PretrainConfig

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "pretrain" / "mnist_fast.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = ConceptOptions()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="pretraining YAML config (default: %(default)s)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys, e.g. seed=1")
    p.add_argument("--out", default=None, help="run folder (default: runs/concepts/<name>__<seed>__<unix time>)")
    p.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="overrides the config's device")
    p.add_argument("--checkpoint", default="", help="draw with this FSAE checkpoint instead of training")
    p.add_argument("--generators", nargs="+", default=d.generators, help="variants to train (default: %(default)s)")
    p.add_argument("--steps", type=int, default=d.steps, help="interpolation steps (default: %(default)s)")
    p.add_argument("--pairs", nargs="+", default=["3,8", "1,7", "4,9"], help="groups head: left,right digit pairs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.set) + [
        f"{k}={v}" for k, v in (("seed", args.seed), ("device", args.device)) if v is not None
    ]
    try:
        cfg = load_config(PretrainConfig, args.config, overrides)
        pairs = [[int(v) for v in p.split(",")] for p in args.pairs]
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    opts = ConceptOptions(checkpoint=args.checkpoint, generators=args.generators, steps=args.steps, pairs=pairs)
    out = Path(args.out or f"runs/concepts/{cfg.name}__{cfg.seed}__{int(time.time())}")
    try:
        metrics = run_concepts(cfg, out, opts, shlex.join([sys.executable, *sys.argv]))
    except (DatasetError, ConfigError, CheckpointError, FloatingPointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for k, v in metrics.items():
        print(f"{k:<48}  {v:.4f}" if isinstance(v, float) else f"{k:<48}  {v}")
    print(f"run folder: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
