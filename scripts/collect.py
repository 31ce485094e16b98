"""Collect task data: roll out a random policy in an environment and save observations with their labels (.npz).

python scripts/collect.py --env fsae/DigitSum-v0 --steps 50000 --out data/sum_train.npz
python scripts/collect.py --env fsae/DigitSum-v0 --steps 10000 --out data/sum_test.npz --split test --seed 1
python scripts/collect.py --env fsae/DigitBandit-v0 --steps 20000 --out data/bandit.npz --env-kwargs noise=0.1
python scripts/collect.py --config configs/collect/minigrid_doorkey5.yaml --out data/minigrid_doorkey5.npz
python scripts/collect.py --config configs/collect/pong_ram.yaml --steps 5000 --out data/pong_ram.npz

A config (``envs.collect.CollectConfig``) names the env, its kwargs, packages and wrappers, and the label source; the
flags override it (``--set`` any key, e.g. ``--set labels.ram=[51,50]``). ``--labels`` picks the source in one word:
``info`` (``info["labels"]``/``["label"]``), ``info=KEY,KEY``, ``ram=pong`` / ``ram=breakout`` (the AtariARI tables)
or ``ram=51,50,49,54``, ``function=MODULE:FUNCTION`` (e.g. ``envs.labels:minigrid_concepts``).

The file holds ``obs`` (N, C, H, W) uint8 (channels-last and grey frames converted; ``layout`` says what was done)
and ``labels`` ((N,) or (N, K) int64 classes, or (N, K) float32 targets such as RAM bytes), the format pretraining
reads (``data.source: <file>``), plus ``label_names``, ``env_id``, ``seed``, ``env_kwargs`` and ``config`` (JSON)
recording how it was made. An existing ``--out`` is refused unless ``--overwrite``.
Exit status 2: a bad flag, config, env, wrapper, package or label source; 1: MNIST (for the digit environments) is
missing or corrupt, or the data could not be written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gymnasium.error import Error as GymError

from envs.collect import CollectConfig, collect, index_grid_warning, label_ceiling, parse_env_kwargs, save_collected
from envs.spec import unknown_id_hint
from fsae.config import ConfigError, apply_overrides, from_dict, load_yaml
from fsae.console import error, one_line_warnings
from fsae.data import DatasetError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="collect YAML (envs.collect.CollectConfig), e.g. configs/collect/...")
    p.add_argument("--env", default=None, help="environment id, e.g. fsae/DigitBandit-v0 (overrides env_id)")
    p.add_argument("--steps", type=int, default=None, help="number of observations to collect")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--split", default=None, choices=["train", "test"], help="digit envs: the MNIST split (env kwarg)")
    p.add_argument("--seed", type=int, default=None, help="seeds the environment and the policy (default 0)")
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE", help="constructor arguments")
    p.add_argument("--labels", default=None, metavar="SOURCE", help="info | info=K,K | ram=TABLE | ram=A,A | "
                   "function=MODULE:FUNCTION")  # fmt: skip
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys (YAML values)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    return p.parse_args(argv)


def parse_labels(spec: str) -> dict[str, Any]:
    """``--labels`` -> a ``labels`` section: 'info', 'info=a,b', 'ram=pong', 'ram=51,50', 'function=mod:fn'."""
    kind, _, value = spec.partition("=")
    if kind == "info":
        return {"info": [k for k in value.split(",") if k]}
    if kind == "ram" and value:
        parts = value.split(",")
        if all(p.strip().lstrip("-").isdigit() for p in parts):
            return {"ram": [int(p) for p in parts]}
        return {"ram": value}
    if kind == "function" and value:
        return {"function": value}
    raise ConfigError(f"--labels {spec!r}: use info, info=KEY,KEY, ram=pong, ram=51,50,49,54 or function=MODULE:FN")


def build_config(args: argparse.Namespace) -> CollectConfig:
    """The config file (if any), then the flags, then ``--set``; checked (``ConfigError`` naming the bad key)."""
    d = load_yaml(args.config) if args.config else {}
    if args.env is not None:
        d["env_id"] = args.env
    elif not args.config:
        raise ConfigError("give --env ENV_ID or --config FILE")
    if args.steps is not None:
        d["steps"] = args.steps
    if args.seed is not None:
        d["seed"] = args.seed
    kwargs = {**d.get("env_kwargs", {}), **parse_env_kwargs(args.env_kwargs)}
    if args.split is not None:
        kwargs["split"] = args.split
    d["env_kwargs"] = kwargs
    if args.labels is not None:
        d["labels"] = parse_labels(args.labels)
    return from_dict(CollectConfig, apply_overrides(d, args.set))


def _round(values: list[float] | None) -> list[float]:
    return [round(v, 5) for v in values or []]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if Path(args.out).expanduser().exists() and not args.overwrite:
        return error(f"{args.out} already exists; pass --overwrite to replace it, or choose another --out", 2)
    try:
        cfg = build_config(args)
        data = collect(cfg.env_id, cfg.steps, cfg.seed, cfg.env_kwargs, cfg.labels, cfg.image_layout, cfg.make_env,
                       progress=not args.no_progress, env_wrappers=cfg.env_wrappers)  # fmt: skip
    except DatasetError as e:  # MNIST missing or corrupt (the digit environments draw their digits from it)
        return error(e, 1)
    except (ValueError, TypeError, KeyError, GymError) as e:  # ConfigError, bad or unknown kwargs, unknown env id
        return error((" ".join(str(e).split()) if not isinstance(e, KeyError) else e.args[0]) + unknown_id_hint(e), 2)
    try:
        path = save_collected(data, cfg, args.out)
    except DatasetError as e:
        return error(e, 1)
    names = f" ({', '.join(data.label_names)})" if data.label_names else ""
    print(f"wrote {path}: obs {data.obs.shape} {data.obs.dtype} ({data.layout}), labels {data.labels.shape} "
          f"{data.labels.dtype}{names}")  # fmt: skip
    distinct, best, majority = label_ceiling(data.obs, data.labels)
    accuracies = f"; accuracy per label of the best function of the image {_round(best)}, of the most frequent label "
    print(f"distinct observations: {distinct} of {len(data.obs)}" + (f"{accuracies}{_round(majority)}" if best else ""))
    if warning := index_grid_warning(data.obs):
        print(warning)
    return 0


if __name__ == "__main__":
    one_line_warnings()
    sys.exit(main())
