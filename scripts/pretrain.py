"""Pretrain the FSAE: abstract network (supervised), then one concrete network per variant (abstract frozen).

python scripts/pretrain.py                                   # the paper's experiment (configs/pretrain/mnist.yaml)
python scripts/pretrain.py --config configs/pretrain/mnist_fast.yaml --set train.abstract_epochs=1

The run folder keeps train_state.pt, written after every epoch: after a crash or kill, the same command (with the same
--out) plus --resume continues from the last finished epoch.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from fsae.checkpoint import CheckpointError
from fsae.config import ConfigError, load_config
from fsae.data import DatasetError
from fsae.pretrain import PretrainConfig, pretrain

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "pretrain" / "mnist.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config (default: %(default)s)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys, e.g. seed=1")
    p.add_argument("--out", default=None, help="run folder (default: runs/pretrain/<name>__<seed>__<unix time>)")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="overrides the config's device")
    p.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
    p.add_argument("--resume", action="store_true", help="continue the killed run in --out from its last epoch")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.set)
    if args.device is not None:
        overrides.append(f"device={args.device}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    try:
        cfg = load_config(PretrainConfig, args.config, overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.resume and not args.out:
        print("error: --resume needs --out RUN_DIR, the folder of the run to continue", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("runs") / "pretrain" / f"{cfg.name}__{cfg.seed}__{int(time.time())}"
    try:
        metrics = pretrain(cfg, out, command=shlex.join([sys.executable, *sys.argv]), resume=args.resume)
    except (ConfigError, CheckpointError) as e:  # a config or a run folder that cannot be used
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (DatasetError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    width = max(len(k) for k in metrics)
    for k, v in metrics.items():
        print(f"{k:<{width}}  {v:.6g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    print(f"run folder: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
