"""Run a grid of agent runs (environments x conditions x seeds) from a sweep YAML; finished runs are skipped.

python scripts/sweep.py --config configs/sweeps/tiny.yaml --workers 2            # a smoke test, about a minute
python scripts/sweep.py --config configs/sweeps/common_sense.yaml --workers 2    # the grid of docs/results/rl.md
python scripts/sweep.py --config configs/sweeps/common_sense.yaml --dry-run      # list the runs and their state
python scripts/sweep.py --config configs/sweeps/common_sense.yaml --backend ray --ray-address HEAD:6379 \
    --storage-path /shared/sweeps/common_sense --gpus-per-run 0.25                # on a Ray cluster (README)
python scripts/compare.py runs/sweeps/common_sense --threshold 12                # then compare the conditions

Start it again after a crash, Ctrl-C or SIGTERM: runs with done.json (or metrics.json) in their folder are skipped;
the others resume from their newest agent checkpoint (written every checkpoint_freq steps; without one they start from
scratch), on both backends (on Ray, Tune's interrupted experiment is continued with Tuner.restore). --backend ray
needs `pip install -e '.[ray]'`; a run whose worker or machine is lost is restarted on another node up to
--max-failures times. Exit status: 0 when every run
finished, 1 when some failed (see their train.log), 2 on bad input (also: no cluster at --ray-address, a token it
refuses, a node that lacks the data or checkpoints), 130 after Ctrl-C or SIGTERM (a clean stop).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from fsae.config import ConfigError
from fsae.console import error, one_line_warnings
from rl.sweep import is_finished, load_sweep, plan, settings_changed
from rl.sweep_local import run_local

RAY_HINT = "backend 'ray' needs Ray and Ray Tune, an optional extra: pip install -e '.[ray]'"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="sweep YAML (configs/sweeps/*.yaml)")
    p.add_argument("--backend", default="local", choices=["local", "ray"], help="default: %(default)s")
    p.add_argument("--workers", type=int, default=1, help="local backend: parallel runs (default: %(default)s)")
    p.add_argument("--ray-address", default=None, help="ray backend: the head's host:port, or 'auto' (default: new)")
    p.add_argument("--cpus-per-run", type=float, default=None, help="ray backend: CPUs per run (default: ray.*, 1)")
    p.add_argument("--gpus-per-run", type=float, default=None, help="ray backend: GPUs per run (default: ray.*, 0)")
    p.add_argument("--max-failures", type=int, default=None, help="ray backend: restarts of a lost run (default: 3)")
    p.add_argument(
        "--storage-path",
        default=None,
        help="ray backend: where the run folders land, a folder every node sees or a URI (default: the logdir)",
    )
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override sweep keys, e.g. seeds=[0,1]")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check the plan (it makes each environment and loads each checkpoint: MNIST is needed) and list the runs "
        "(to run, finished, or CHANGED: finished with other settings; a run to run over an unfinished try of other "
        "settings says so), run nothing",
    )
    return p.parse_args(argv)


def _stop(signum, frame):  # SIGTERM -> the same clean-up as Ctrl-C: the running children are stopped
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {args.workers}")
        if args.storage_path == "":
            raise ConfigError("--storage-path is empty (an unset variable?); give the folder every node sees")
        given = [f for f in ("ray_address", "cpus_per_run", "gpus_per_run", "max_failures", "storage_path")
                 if getattr(args, f) is not None]  # fmt: skip
        if args.backend == "local" and given:
            flags = ", ".join("--" + f.replace("_", "-") for f in given)
            raise ConfigError(f"{flags}: for --backend ray only; add --backend ray, or drop them to run here")
        if args.backend == "ray" and args.workers != 1:
            raise ConfigError("--workers is the local backend's; on Ray, --cpus-per-run and --gpus-per-run set "
                              "how many runs share a node")  # fmt: skip
        ray_flags = {
            "ray.cpus_per_run": args.cpus_per_run,
            "ray.gpus_per_run": args.gpus_per_run,
            "ray.max_failures": args.max_failures,
            "ray.storage_path": args.storage_path,
        }
        sets = [f"{k}={json.dumps(v)}" for k, v in ray_flags.items() if v is not None]
        cfg = load_sweep(args.config, [*args.set, *sets])
        if args.backend == "ray" and cfg.ray.storage_path and "://" not in cfg.ray.storage_path:
            cfg.logdir = cfg.ray.storage_path  # the run folders are written there directly
        runs = plan(cfg)
        if args.dry_run:
            try:
                for run in runs:
                    done = is_finished(run)
                    changed = settings_changed(run)
                    state = ("CHANGED " if changed else "finished") if done else "to run  "
                    note = f"  ({changed})" if done and changed else ""
                    note = f"  (starts over: an unfinished try had {changed})" if changed and not done else note
                    print(f"{state}  {run.name}  {run.run_dir}{note}", flush=True)
            except BrokenPipeError:  # piped into head: stop quietly (Python's documented recipe)
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        signal.signal(signal.SIGTERM, _stop)
        if args.backend == "ray":
            try:
                from rl.sweep_ray import run_ray
            except ImportError:
                raise ConfigError(RAY_HINT) from None
            results = run_ray(runs, cfg.ray, args.ray_address)
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
        why = f"exit {r.returncode}" if r.returncode is not None else r.error or "no exit code"
        print(f"  failed: {r.run.name} ({why}), see {r.run.run_dir / 'train.log'}")
    return 1 if failed else 0


if __name__ == "__main__":
    one_line_warnings()
    sys.exit(main())
