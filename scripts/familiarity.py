"""Memory as familiarity: train on digits 0-4 only, then ask how familiar each test digit looks to every variant.

python scripts/familiarity.py                                # configs/pretrain/mnist_fast.yaml, seen classes 0-4
python scripts/familiarity.py --seen 0 1 2 --set train.concrete_epochs=1 --out runs/fam
python scripts/familiarity.py --feedback 0 1 5               # also with 1 and 5 negative-feedback steps

Familiarity is the similarity of x and its regeneration F(x) (-MSE and cosine); the run reports the ROC AUC of seen
(0-4) vs unseen (5-9) test digits for every variant and for the conventional autoencoder, in metrics.json.
"""

from __future__ import annotations

import sys

from fsae.characteristics import FamiliarityOptions, run_familiarity
from fsae.cli import config_parser, run_experiment
from fsae.console import one_line_warnings

parser = config_parser(__doc__, "familiarity")
parser.add_argument("--seen", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="classes trained on (default: 0-4)")
parser.add_argument(
    "--feedback", type=int, nargs="+", default=[0], metavar="T",
    help="also score each regenerating detector after T negative-feedback steps, gain feedback_gain (0 is always "
    "scored; default: 0 only)",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return run_experiment(
        parser,
        lambda args: FamiliarityOptions(seen=args.seen, feedback_steps=args.feedback),
        run_familiarity,
        argv,
        fmt=".4f",
        keep=lambda k: "/auc" in k or k.startswith(("familiarity/n_", "time/")),
    )


if __name__ == "__main__":
    one_line_warnings()
    sys.exit(main())
