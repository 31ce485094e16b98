"""Pretrain the FSAE: abstract network (supervised), then one concrete network per variant (abstract frozen).

python scripts/pretrain.py                                   # the paper's experiment (configs/pretrain/mnist.yaml)
python scripts/pretrain.py --config configs/pretrain/mnist_fast.yaml --set train.abstract_epochs=1

The run folder keeps train_state.pt, written after every epoch: after a crash or kill, the same command (with the same
--out) plus --resume continues from the last finished epoch. A folder that holds a run is refused without --resume.
"""

from __future__ import annotations

import sys

from fsae.cli import config_parser, run_experiment
from fsae.console import one_line_warnings
from fsae.pretrain import pretrain

parser = config_parser(__doc__, "pretrain", default_config="mnist.yaml")
parser.add_argument("--resume", action="store_true", help="continue the killed run in --out from its last epoch")


def resume_option(args) -> bool:
    if args.resume and not args.out:
        raise ValueError("--resume needs --out RUN_DIR, the folder of the run to continue")
    return args.resume


def main(argv: list[str] | None = None) -> int:
    return run_experiment(
        parser, resume_option, lambda cfg, out, resume, command: pretrain(cfg, out, command, resume), argv
    )


if __name__ == "__main__":
    one_line_warnings()
    sys.exit(main())
