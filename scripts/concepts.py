"""Generation from concepts: label mixtures, interpolation between every pair of classes, attribute and digit codes.

python scripts/concepts.py                                   # trains round + plain on configs/pretrain/mnist_fast.yaml
python scripts/concepts.py --checkpoint runs/pretrain/<run>/fsae_round.pt --out runs/concepts_ckpt

With --checkpoint nothing is trained: the checkpoint's head decides what is drawn (softmax: mixtures and
interpolations; sigmoid: every attribute combination; groups: every two-digit code, swaps and mixtures). Every
drawing is classified back by the abstract network; the rates are in metrics.json.
"""

from __future__ import annotations

import sys

from fsae.characteristics import ConceptOptions, run_concepts
from fsae.cli import config_parser, run_experiment
from fsae.console import one_line_warnings

d = ConceptOptions()
parser = config_parser(__doc__, "concepts")
parser.add_argument("--checkpoint", default="", help="draw with this FSAE checkpoint instead of training")
parser.add_argument("--generators", nargs="+", default=d.generators, help="variants to train (default: %(default)s)")
parser.add_argument("--steps", type=int, default=d.steps, help="interpolation steps (default: %(default)s)")
parser.add_argument("--pairs", nargs="+", default=["3,8", "1,7", "4,9"], help="groups head: left,right digit pairs")


def options(args) -> ConceptOptions:
    try:
        pairs = [[int(v) for v in p.split(",")] for p in args.pairs]
    except ValueError:
        raise ValueError(f"--pairs takes left,right digit pairs such as 3,8; got {args.pairs}") from None
    return ConceptOptions(checkpoint=args.checkpoint, generators=args.generators, steps=args.steps, pairs=pairs)


def main(argv: list[str] | None = None) -> int:
    return run_experiment(parser, options, run_concepts, argv, fmt=".4f")


if __name__ == "__main__":
    one_line_warnings()
    sys.exit(main())
