"""Print each finished run's evaluations as a markdown table: the per-run tables of docs/results.

python scripts/run_table.py results/verdict_minigrid/runs                      # every finished run
python scripts/run_table.py results/verdict_minigrid/runs --seeds 4 5          # the rows of seeds 4 and 5
python scripts/run_table.py runs/sweeps/tiny --conditions none fsae-round --envs DigitBandit-v0
python scripts/run_table.py results/verdict_minigrid_noise/plateau_600k --every 50000   # a column per 50k steps

LOGDIR holds run folders <env>/<condition>/seed<N> (as scripts/train_agent.py and scripts/sweep.py write them, or
scripts/archive_runs.py keeps them). A row: the mean reward of each periodic evaluation (eval/evaluations.npz), the
evaluation after training (metrics.json's final_eval/mean_reward) and the run's seconds (the sweep's done.json, else
metrics.json). Unfinished runs are named on stderr, not tabled.
"""

from __future__ import annotations

import argparse
import sys

from fsae.console import error, one_line_warnings
from rl.run_table import markdown, run_rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logdir", help="root of the run folders")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="only these seeds")
    p.add_argument("--conditions", nargs="+", default=None, help="only these condition folders (e.g. none fsae-round)")
    p.add_argument("--envs", nargs="+", default=None, metavar="ENV", help="only these environments (e.g. DigitSum-v0)")
    p.add_argument("--every", type=int, default=0, metavar="N", help="only the evaluations at multiples of N steps")
    args = p.parse_args(argv)
    try:
        rows, unfinished = run_rows(args.logdir, args.seeds, args.conditions, args.envs)
    except FileNotFoundError as e:
        return error(e, 2)
    except ValueError as e:  # a run's record that is there but unreadable
        return error(e, 1)
    for rel in unfinished:
        print(f"not finished (left out): {rel}", file=sys.stderr)
    if not rows:
        return error(f"{args.logdir}: no finished run matches", 1)
    print(markdown(rows, every=args.every), end="")
    return 0


if __name__ == "__main__":
    one_line_warnings()
    sys.exit(main())
