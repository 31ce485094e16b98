"""Re-evaluate finished agents on changed environments, e.g. stronger corruption than they were trained on.

python scripts/evaluate_shift.py runs/sweeps/common_sense --envs DigitBandit-v0 --shift noise=0.45 noise=0.6
python scripts/evaluate_shift.py runs/sweeps/common_sense --shift "noise=0.6 occlusion=1.0" --out docs/img/shift

LOGDIR holds run folders <env>/<condition>/seed<N> (as scripts/train_agent.py and scripts/sweep.py write them). Each
--shift is one setting: space-separated env kwargs (key=value, values parsed as YAML) that replace the runs' evaluation
kwargs; 'as trained' (no change) is always evaluated too. Every run's final policy plays --episodes episodes of its
evaluation environment (the test split, seeded seed + 10000) under each shift. Prints the table and writes
results.md and results.csv into --out (default: LOGDIR/shift).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fsae.checkpoint import CheckpointError
from fsae.config import ConfigError, apply_overrides
from fsae.console import error, one_line_warnings
from fsae.data import DatasetError
from fsae.run_folder import check_no_file_in_way
from rl.shift import evaluate_shifts, save


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logdir", help="root of the run folders")
    p.add_argument("--shift", nargs="+", default=[], metavar="'KEY=VALUE ...'", help="env kwargs of one shift each")
    p.add_argument("--episodes", type=int, default=50, help="episodes per run and shift (default: %(default)s)")
    p.add_argument("--baseline", default="none", help="condition that P(improvement) compares with (%(default)s)")
    p.add_argument("--envs", nargs="+", default=None, metavar="ENV", help="only these environments (e.g. DigitSum-v0)")
    p.add_argument("--conditions", nargs="+", default=None, metavar="LABEL", help="only these condition folders")
    p.add_argument("--out", default=None, help="output folder (default: LOGDIR/shift)")
    p.add_argument("--n-resamples", type=int, default=2000, help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device of the policies and FSAEs")
    p.add_argument(
        "--allow-changed",
        action="store_true",
        help="evaluate runs whose FSAE checkpoint has changed since they were trained (refused otherwise)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.episodes < 1 or args.n_resamples < 1:
        return error("--episodes and --n-resamples must be >= 1", 2)
    out = Path(args.out) if args.out else Path(args.logdir) / "shift"
    try:
        check_no_file_in_way(out)  # before the evaluations, not after them
        shifts = {s: apply_overrides({}, s.split()) for s in args.shift}
        rows = evaluate_shifts(
            args.logdir, shifts, args.episodes, args.baseline, args.envs, args.conditions, args.n_resamples,
            device=args.device, log=lambda msg: print(msg, file=sys.stderr), allow_changed=args.allow_changed,
        )  # fmt: skip
    except (ConfigError, CheckpointError, FileNotFoundError) as e:
        return error(e, 2)
    except DatasetError as e:
        return error(e, 1)
    path = save(rows, out, args.baseline, args.episodes)
    print(path.read_text(), end="")
    print(f"wrote {path}, {path.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    one_line_warnings()
    sys.exit(main())
