"""Collect task data: roll out a random policy in an environment and save observations with their labels (.npz).

python scripts/collect.py --env fsae/DigitSum-v0 --steps 50000 --out data/sum_train.npz
python scripts/collect.py --env fsae/DigitSum-v0 --steps 10000 --out data/sum_test.npz --split test --seed 1
python scripts/collect.py --env fsae/DigitBandit-v0 --steps 20000 --out data/bandit.npz --env-kwargs noise=0.1

The file holds ``obs`` (N, C, H, W) uint8 and ``labels`` ((N,) or (N, 2) int64), the format ``fsae.data``'s
``load_task_data`` reads and pretraining trains on (``data.source: <file>``), plus ``env_id``, ``split``, ``seed``
and ``env_kwargs`` (JSON) recording how it was made. An existing ``--out`` is refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from gymnasium.error import Error as GymError

from envs.collect import collect, parse_env_kwargs
from fsae.console import error
from fsae.data import DatasetError, save_task_data


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", required=True, help="environment id, e.g. fsae/DigitBandit-v0")
    p.add_argument("--steps", type=int, required=True, help="number of observations to collect")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--split", default="train", choices=["train", "test"], help="MNIST split (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seeds the environment and the policy (default: %(default)s)")
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE", help="constructor arguments")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if Path(args.out).expanduser().exists() and not args.overwrite:
        return error(f"{args.out} already exists; pass --overwrite to replace it, or choose another --out", 2)
    try:
        env_kwargs = parse_env_kwargs(args.env_kwargs)
        obs, labels = collect(args.env, args.steps, args.split, args.seed, env_kwargs, progress=not args.no_progress)
    except (ValueError, TypeError, KeyError, GymError) as e:  # bad or unknown kwargs, unknown env id
        return error(e, 2)
    except DatasetError as e:
        return error(e, 1)
    kwargs_json = json.dumps(env_kwargs, default=repr)
    meta = {"env_id": args.env, "split": args.split, "seed": args.seed, "env_kwargs": kwargs_json}
    try:
        path = save_task_data(args.out, obs, labels, **{k: np.array(v) for k, v in meta.items()})
    except DatasetError as e:
        return error(e, 1)
    print(f"wrote {path}: obs {obs.shape} {obs.dtype}, labels {labels.shape} {labels.dtype}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
