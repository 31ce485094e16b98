"""Lethe (forgetting): the concrete network learns digits 0-4, then 5-9 only; how much of 0-4 does it still draw?

python scripts/lethe.py                                      # configs/pretrain/mnist_fast.yaml, variant plain
python scripts/lethe.py --variants plain jump_all --replay-fraction 0.1 --out runs/lethe

The abstract network trains on all ten classes and stays frozen; the concrete network trains on the old classes,
then continues on the new ones, once without and once with a replay of a small fraction of old images. The old and
new classes' test MSE are logged along the second phase (TensorBoard eval/old_class_mse, eval/new_class_mse; lethe.png).
"""

from __future__ import annotations

import sys

from fsae.characteristics import LetheOptions, run_lethe
from fsae.cli import config_parser, run_experiment
from fsae.console import one_line_warnings

d = LetheOptions()
parser = config_parser(__doc__, "lethe")
parser.add_argument("--old", type=int, nargs="+", default=d.old, help="first-phase classes (default: %(default)s)")
parser.add_argument("--new", type=int, nargs="+", default=d.new, help="second-phase classes (default: %(default)s)")
parser.add_argument("--variants", nargs="+", default=d.variants, help="config variants to test (default: %(default)s)")
parser.add_argument("--replay-fraction", type=float, default=d.replay_fraction, help="default: %(default)s")
parser.add_argument("--epochs", type=int, default=d.epochs, help="second-phase epochs (0 = train.concrete_epochs)")
parser.add_argument("--eval-every", type=int, default=d.eval_every, help="steps between measurements (%(default)s)")
parser.add_argument("--eval-size", type=int, default=d.eval_size, help="test images per group (0 = all; %(default)s)")


def options(args) -> LetheOptions:
    return LetheOptions(old=args.old, new=args.new, variants=args.variants, replay_fraction=args.replay_fraction,
                        epochs=args.epochs, eval_every=args.eval_every, eval_size=args.eval_size)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return run_experiment(parser, options, run_lethe, argv)


if __name__ == "__main__":
    one_line_warnings()
    sys.exit(main())
