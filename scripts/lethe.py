"""Lethe (forgetting): the concrete network learns digits 0-4, then 5-9 only; how much of 0-4 does it still draw?

python scripts/lethe.py                                      # configs/pretrain/mnist_fast.yaml, variant plain
python scripts/lethe.py --variants plain jump_all --replay-fraction 0.1 --out runs/lethe

The abstract network trains on all ten classes and stays frozen; the concrete network trains on the old classes,
then continues on the new ones, once without and once with a replay of a small fraction of old images. The old and
new classes' test MSE are logged along the second phase (TensorBoard eval/old_class_mse, eval/new_class_mse; lethe.png).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from fsae.characteristics import LetheOptions, run_lethe
from fsae.config import ConfigError, load_config
from fsae.data import DatasetError
from fsae.pretrain import PretrainConfig

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "pretrain" / "mnist_fast.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = LetheOptions()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="pretraining YAML config (default: %(default)s)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys, e.g. seed=1")
    p.add_argument("--out", default=None, help="run folder (default: runs/lethe/<name>__<seed>__<unix time>)")
    p.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="overrides the config's device")
    p.add_argument("--old", type=int, nargs="+", default=d.old, help="first-phase classes (default: %(default)s)")
    p.add_argument("--new", type=int, nargs="+", default=d.new, help="second-phase classes (default: %(default)s)")
    p.add_argument("--variants", nargs="+", default=d.variants, help="config variants to test (default: %(default)s)")
    p.add_argument("--replay-fraction", type=float, default=d.replay_fraction, help="default: %(default)s")
    p.add_argument("--epochs", type=int, default=d.epochs, help="second-phase epochs (0 = train.concrete_epochs)")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="steps between measurements (%(default)s)")
    p.add_argument("--eval-size", type=int, default=d.eval_size, help="test images per group (0 = all; %(default)s)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.set) + [
        f"{k}={v}" for k, v in (("seed", args.seed), ("device", args.device)) if v is not None
    ]
    try:
        cfg = load_config(PretrainConfig, args.config, overrides)
        opts = LetheOptions(old=args.old, new=args.new, variants=args.variants, replay_fraction=args.replay_fraction,
                            epochs=args.epochs, eval_every=args.eval_every, eval_size=args.eval_size)  # fmt: skip
    except (ConfigError, AssertionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out or f"runs/lethe/{cfg.name}__{cfg.seed}__{int(time.time())}")
    try:
        metrics = run_lethe(cfg, out, opts, shlex.join([sys.executable, *sys.argv]))
    except (DatasetError, ConfigError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for k, v in metrics.items():
        print(f"{k:<42}  {v:.6g}" if isinstance(v, float) else f"{k:<42}  {v}")
    print(f"run folder: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
