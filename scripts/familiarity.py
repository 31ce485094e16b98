"""Memory as familiarity: train on digits 0-4 only, then ask how familiar each test digit looks to every variant.

python scripts/familiarity.py                                # configs/pretrain/mnist_fast.yaml, seen classes 0-4
python scripts/familiarity.py --seen 0 1 2 --set train.concrete_epochs=1 --out runs/fam

Familiarity is the similarity of x and its regeneration F(x) (-MSE and cosine); the run reports the ROC AUC of seen
(0-4) vs unseen (5-9) test digits for every variant and for the conventional autoencoder, in metrics.json.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from fsae.characteristics import FamiliarityOptions, run_familiarity
from fsae.config import ConfigError, load_config
from fsae.data import DatasetError
from fsae.pretrain import PretrainConfig

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "pretrain" / "mnist_fast.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="pretraining YAML config (default: %(default)s)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys, e.g. seed=1")
    p.add_argument("--out", default=None, help="run folder (default: runs/familiarity/<name>__<seed>__<unix time>)")
    p.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="overrides the config's device")
    p.add_argument("--seen", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="classes trained on (default: 0-4)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.set) + [
        f"{k}={v}" for k, v in (("seed", args.seed), ("device", args.device)) if v is not None
    ]
    try:
        cfg = load_config(PretrainConfig, args.config, overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out or f"runs/familiarity/{cfg.name}__{cfg.seed}__{int(time.time())}")
    try:
        metrics = run_familiarity(cfg, out, FamiliarityOptions(seen=args.seen), shlex.join([sys.executable, *sys.argv]))
    except (DatasetError, ConfigError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for k, v in metrics.items():
        if "/auc" in k or k.startswith(("familiarity/n_", "time/")):
            print(f"{k:<42}  {v:.4f}" if isinstance(v, float) else f"{k:<42}  {v}")
    print(f"run folder: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
