"""Copy finished agent runs between a sweep's logdir and the repository, without the agents' weights.

python scripts/archive_runs.py runs/sweeps/verdict_minigrid results/verdict_minigrid/runs   # keep what finished
python scripts/archive_runs.py results/verdict_minigrid/runs runs/sweeps/verdict_minigrid   # carry it on elsewhere

A run folder (<env>/<condition>/seed<N>) is copied when it finished (done.json or metrics.json), whole or not at all,
leaving out SB3's model zips and checkpoints/ (so a carried run can be compared, not evaluated again or resumed). A run
the destination holds already (the same metrics.json) is left as it is. Refused before anything is copied: another
finished run in a run's place, an unfinished one or anything else there, a destination a sweep is running on. A sweep
on the destination then skips the copied runs as finished (and refuses them if its settings or checkpoints differ).
"""

from __future__ import annotations

import argparse
import sys

from fsae.console import error, one_line_warnings
from rl.archive import ArchiveError, copy_finished


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="root of the run folders to copy from")
    p.add_argument("dest", help="root to copy them into (created if missing)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = copy_finished(args.src, args.dest)
    except (ArchiveError, OSError) as e:
        return error(e, 2)
    for rel in report.copied:
        print(f"copied {rel}")
    print(
        f"{len(report.copied)} finished run(s) copied from {args.src} to {args.dest} (model zips left out), "
        f"{len(report.already)} there already, {len(report.unfinished)} unfinished left behind"
    )
    return 0


if __name__ == "__main__":
    one_line_warnings()
    sys.exit(main())
