"""Run a grid of agent runs (environments x conditions x seeds) from a sweep YAML; finished runs are skipped.

python scripts/sweep.py --config configs/sweeps/tiny.yaml --workers 2            # a smoke test, about a minute
python scripts/sweep.py --config configs/sweeps/common_sense.yaml --workers 2    # the grid of docs/results/rl.md
python scripts/sweep.py --config configs/sweeps/common_sense.yaml --dry-run      # list the runs and their state
python scripts/sweep.py --config configs/sweeps/common_sense.yaml --backend ray --ray-address auto --gpus-per-run 0.25
python scripts/compare.py runs/sweeps/common_sense --threshold 12                # then compare the conditions

Start it again after a crash or Ctrl-C: runs with done.json (or metrics.json) in their folder are skipped, the others
start from scratch. --backend ray needs `pip install -e '.[ray]'` and, on several machines, the same paths on every node
(a shared filesystem). Exit status: 0 when every run finished, 1 when some failed (see their train.log), 2 on bad input.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from fsae.config import ConfigError
from fsae.console import error
from rl.sweep import is_finished, load_sweep, plan, run_local, run_ray, settings_changed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="sweep YAML (configs/sweeps/*.yaml)")
    p.add_argument("--backend", default="local", choices=["local", "ray"], help="default: %(default)s")
    p.add_argument("--workers", type=int, default=1, help="local backend: parallel runs (default: %(default)s)")
    p.add_argument("--ray-address", default=None, help="ray backend: cluster address ('auto', host:port; default: new)")
    p.add_argument("--cpus-per-run", type=float, default=1, help="ray backend: CPUs per run (default: %(default)s)")
    p.add_argument("--gpus-per-run", type=float, default=0, help="ray backend: GPUs per run (default: %(default)s)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override sweep keys, e.g. seeds=[0,1]")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check the plan (it makes each environment and loads each checkpoint: MNIST is needed) and list the runs "
        "(to run, finished, or CHANGED: finished with other settings), run nothing",
    )
    return p.parse_args(argv)


def _stop(signum, frame):  # SIGTERM -> the same clean-up as Ctrl-C: the running children are stopped
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {args.workers}")
        if args.cpus_per_run <= 0 or args.gpus_per_run < 0:
            raise ConfigError("--cpus-per-run must be > 0 and --gpus-per-run >= 0")
        runs = plan(load_sweep(args.config, args.set))
        if args.dry_run:
            try:
                for run in runs:
                    done = is_finished(run)
                    changed = done and settings_changed(run)
                    state = "CHANGED " if changed else "finished" if done else "to run  "
                    print(f"{state}  {run.name}  {run.run_dir}" + (f"  ({changed})" if changed else ""), flush=True)
            except BrokenPipeError:  # piped into head: stop quietly (Python's documented recipe)
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        signal.signal(signal.SIGTERM, _stop)
        if args.backend == "ray":
            results = run_ray(runs, args.ray_address, args.cpus_per_run, args.gpus_per_run)
        else:
            results = run_local(runs, args.workers)
    except ConfigError as e:
        return error(e, 2)
    except KeyboardInterrupt:
        print("sweep interrupted; start it again to finish the remaining runs", file=sys.stderr)
        return 130
    failed = [r for r in results if r.status == "failed"]
    print(f"sweep: {len(results) - len(failed)}/{len(results)} runs finished, {len(failed)} failed")
    for r in failed:
        print(f"  failed: {r.run.name} (exit {r.returncode}), see {r.run.run_dir / 'train.log'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
