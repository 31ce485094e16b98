"""Pretrain the FSAE: abstract network (supervised), then one concrete network per variant (abstract frozen).

python scripts/pretrain.py                                   # the paper's experiment (configs/pretrain/mnist.yaml)
python scripts/pretrain.py --config configs/pretrain/mnist_fast.yaml --set train.abstract_epochs=1

The run folder keeps train_state.pt, written after every epoch: after a crash or kill, the same command (with the same
--out) plus --resume continues from the last finished epoch.
"""

from __future__ import annotations

import shlex
import sys

from fsae.checkpoint import CheckpointError
from fsae.cli import config_parser, error, load_pretrain_config, print_metrics, run_dir
from fsae.config import ConfigError
from fsae.data import DatasetError
from fsae.pretrain import pretrain

parser = config_parser(__doc__, "pretrain", default_config="mnist.yaml")
parser.add_argument("--resume", action="store_true", help="continue the killed run in --out from its last epoch")


def main(argv: list[str] | None = None) -> int:
    args = parser.parse_args(argv)
    try:
        cfg = load_pretrain_config(args)
    except ConfigError as e:
        return error(e, 2)
    if args.resume and not args.out:
        return error("--resume needs --out RUN_DIR, the folder of the run to continue", 2)
    out = run_dir(args, cfg)
    try:
        metrics = pretrain(cfg, out, command=shlex.join([sys.executable, *sys.argv]), resume=args.resume)
    except (ConfigError, CheckpointError) as e:  # a config or a run folder that cannot be used
        return error(e, 2)
    except (DatasetError, FloatingPointError) as e:
        return error(e, 1)
    print_metrics(metrics)
    print(f"run folder: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
