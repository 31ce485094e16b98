"""Compare the conditions of agent runs: IQM with 95% bootstrap CIs, AUC, steps to a threshold, P(improvement).

python scripts/compare.py runs/sweeps/tiny                                        # results.md/.csv, <env>.png there
python scripts/compare.py runs/sweeps/common_sense --out docs/results --threshold 12
python scripts/compare.py runs/sweeps/common_sense --threshold DigitBandit-v0=12 DigitSum-v0=8 DigitLock-v0=0.8

LOGDIR holds run folders <env>/<condition>/seed<N> with TensorBoard events (as scripts/train_agent.py and
scripts/sweep.py write them). --threshold is one number for every environment or ENV=R per environment (reward scales
differ); steps to the threshold are counted on the training curve (--curve train, rollout/ep_rew_mean) or on the
evaluation curve (--curve eval, eval/mean_reward).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fsae.console import error, one_line_warnings
from rl.compare import BASELINE, compare


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logdir", help="root of the run folders")
    p.add_argument("--out", default=None, help="output folder (default: LOGDIR)")
    p.add_argument("--threshold", nargs="+", default=None, metavar="R|ENV=R", help="reward threshold(s)")
    p.add_argument("--curve", default="train", choices=["train", "eval"], help="curve of AUC and steps-to-threshold")
    p.add_argument("--baseline", default=BASELINE, help="condition that P(improvement) compares with (%(default)s)")
    p.add_argument("--n-resamples", type=int, default=2000, help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: %(default)s)")
    p.add_argument("--envs", nargs="+", default=None, metavar="ENV", help="only these environments (e.g. DigitSum-v0)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="only these seeds (a grid as it stood earlier)")
    p.add_argument(
        "--score",
        default="final",
        choices=["final", "best"],
        help="each seed's final evaluation (default) or its best during training (who fell back from what it reached)",
    )
    return p.parse_args(argv)


def parse_threshold(items: list[str] | None) -> float | dict[str, float] | None:
    """``["12"]`` -> 12.0; ``["DigitBandit-v0=12", "DigitLock-v0=0.8"]`` -> a dict; raises ``ValueError``."""
    hint = "give one number, or ENV=R for each environment (e.g. DigitBandit-v0=12)"
    if not items:
        return None
    try:
        if len(items) == 1 and "=" not in items[0]:
            return float(items[0])
        out = {}
        for item in items:
            env, sep, value = item.partition("=")
            if not sep or not env:
                raise ValueError
            out[env] = float(value)
    except ValueError:
        raise ValueError(f"--threshold {' '.join(items)}: {hint}") from None
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        threshold = parse_threshold(args.threshold)
    except ValueError as e:
        return error(e, 2)
    if args.n_resamples < 1:
        return error(f"--n-resamples must be >= 1, got {args.n_resamples}", 2)
    warn = lambda msg: print(f"warning: {msg}", file=sys.stderr)  # noqa: E731
    try:
        rows = compare(
            args.logdir, args.out, threshold, args.curve, args.baseline, args.n_resamples, args.seed, warn,
            envs=args.envs, score=args.score, seeds=args.seeds,
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as e:  # ConfigError is a ValueError; so is a cut-short event file
        return error(e, 2)
    out = Path(args.out) if args.out else Path(args.logdir)
    print((out / "results.md").read_text(), end="")
    envs = sorted({r["env"] for r in rows})
    print(f"wrote {out / 'results.md'}, {out / 'results.csv'}, " + ", ".join(str(out / f"{e}.png") for e in envs))
    return 0


if __name__ == "__main__":
    one_line_warnings()
    sys.exit(main())
