"""Command-line plumbing shared by the scripts that train FSAEs from a pretraining config (``scripts/pretrain.py``,
``familiarity.py``, ``lethe.py``, ``concepts.py``): the same options, the same run-folder names, the same errors.

Contents:
    config_parser   -- an ``ArgumentParser`` with --config, --set, --out, --seed and --device; scripts add their own.
    load_pretrain_config -- the ``PretrainConfig`` those options describe (``ConfigError`` on a bad key or value).
    run_dir         -- --out, else runs/<kind>/<name>__<seed>__<unix time>.
    (``error`` and ``print_metrics`` live in ``fsae.console``; imported here for these scripts.)
    run_experiment  -- the whole ``main`` of an experiment script: parse, build the config and options, run, report;
                       a bad config, option, checkpoint or run folder is one ``error:`` line and exit status 2, a
                       failed run (data, non-finite loss) one line and exit status 1.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fsae.checkpoint import CheckpointError
from fsae.config import ConfigError, load_config
from fsae.console import error, print_metrics
from fsae.data import DatasetError
from fsae.pretrain_config import PretrainConfig
from fsae.run_folder import check_no_file_in_way, removed_on_failure

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "pretrain"
USAGE_ERRORS = (ConfigError, ValueError)  # exit 2: the config or the options
UNUSABLE = (ConfigError, CheckpointError)  # exit 2 also when the run finds them: a config or run folder it cannot use
RUN_ERRORS = (DatasetError, FloatingPointError, ValueError)  # exit 1: the run failed (data, non-finite loss)


def config_parser(doc: str, kind: str, default_config: str = "mnist_fast.yaml") -> argparse.ArgumentParser:
    """The options every pretraining-style script has; ``kind`` names the default run folder runs/<kind>/..."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(CONFIGS / default_config), help="pretraining YAML (default: %(default)s)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys, e.g. seed=1")
    p.add_argument("--out", default=None, help=f"run folder (default: runs/{kind}/<name>__<seed>__<unix time>)")
    p.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="overrides the config's device")
    p.set_defaults(run_kind=kind)  # read back by run_dir
    return p


def load_pretrain_config(args: argparse.Namespace) -> PretrainConfig:
    """The config file with --set, then --seed and --device applied (``ConfigError`` names a bad key or value)."""
    flags = [f"{k}={v}" for k, v in (("seed", args.seed), ("device", args.device)) if v is not None]
    return load_config(PretrainConfig, args.config, [*args.set, *flags])


def run_dir(args: argparse.Namespace, cfg: PretrainConfig) -> Path:
    """--out, else runs/<kind>/<name>__<seed>__<unix time> with the kind ``config_parser`` was given."""
    return Path(args.out) if args.out else Path("runs") / args.run_kind / f"{cfg.name}__{cfg.seed}__{int(time.time())}"


def run_experiment(
    parser: argparse.ArgumentParser,
    options: Callable[[argparse.Namespace], Any],
    run: Callable[[PretrainConfig, Path, Any, str], dict[str, Any]],
    argv: list[str] | None = None,
    fmt: str = ".6g",
    keep: Callable[[str], bool] = lambda k: True,
) -> int:
    """Parse ``argv``, build the config and ``options(args)``, call ``run(cfg, run_dir, options, command)``, print the
    metrics (those ``keep`` selects) and the run folder. Returns the exit status."""
    args = parser.parse_args(argv)
    try:
        cfg = load_pretrain_config(args)
        opts = options(args)
    except USAGE_ERRORS as e:
        return error(e, 2)
    out = run_dir(args, cfg)
    try:
        check_no_file_in_way(out)
        if (out / "metrics.json").is_file():  # a finished run is never overwritten
            raise CheckpointError(f"{out} already holds a finished run (metrics.json); choose another --out")
        with removed_on_failure(out):  # a run that fails leaves no folder behind (nor writes into an empty one)
            command = shlex.join([sys.executable, *(sys.argv if argv is None else [sys.argv[0], *argv])])
            metrics = run(cfg, out, opts, command)  # the command as given, also when main() is called with argv
    except UNUSABLE as e:
        return error(e, 2)
    except RUN_ERRORS as e:
        return error(e, 1)
    print_metrics(metrics, fmt, keep)
    print(f"run folder: {out}")
    return 0
