"""Markdown tables of pretraining metrics, for docs/results/*.md (so no number there is typed by hand).

Contents:
    pretrain_table -- one column per run (metrics.json), one row per metric, feedback rows per variant.
    main           -- ``python -m fsae.report NAME=RUN_DIR ...`` prints the table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROWS = [
    ("abstract/test_accuracy", "abstract: test accuracy"),
    ("abstract/test_exact_match", "abstract: both digits right"),
    ("prototype/cycle_accuracy", "prototype cycle accuracy"),
    ("reference/class_mean_mse", "class-mean reference MSE"),
    ("baseline_ae/test_mse", "conventional autoencoder MSE"),
]


def _fmt(v: float) -> str:
    return f"{v:.5g}"


def pretrain_table(runs: dict[str, dict]) -> str:
    """Markdown: metrics as rows, runs as columns. Variants and feedback steps are those found in the first run."""
    first = next(iter(runs.values()))
    variants = list(dict.fromkeys(k.split("/")[1] for k in first if k.startswith("concrete/")))  # in run order
    steps = sorted({int(k.split("/")[2][1:]) for k in first if k.startswith("feedback/")})
    rows = list(ROWS)
    for v in variants:
        rows += [(f"concrete/{v}/test_mse", f"{v}: MSE"), (f"concrete/{v}/test_cosine", f"{v}: cosine")]
        rows += [(f"feedback/{v}/T{t}/test_mse", f"{v}: MSE with feedback T={t}") for t in steps if t]
    rows += [("time/total_seconds", "wall time of the run (s)")]
    lines = ["| metric | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
    for key, label in rows:
        if not any(key in m for m in runs.values()):
            continue
        cells = [_fmt(m[key]) if isinstance(m.get(key), float) else "" for m in runs.values()]
        lines.append(f"| {label} (`{key}`) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or any("=" not in a for a in args):
        print("usage: python -m fsae.report NAME=RUN_DIR [NAME=RUN_DIR ...]", file=sys.stderr)
        return 2
    runs = {}
    for a in args:
        name, path = a.split("=", 1)
        file = Path(path) / "metrics.json" if Path(path).is_dir() else Path(path)
        runs[name] = json.loads(file.read_text())
    print(pretrain_table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
