"""Markdown tables of pretraining metrics, for docs/results/*.md (so no number there is typed by hand).

Contents:
    pretrain_table -- one column per run (metrics.json), one row per metric (accuracy per group or attribute, R^2 per
                      target where the head gives them), feedback rows per variant.
    main           -- ``python -m fsae.report NAME=RUN_DIR ...`` prints the table.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROWS = [
    ("abstract/test_accuracy", "abstract: test accuracy"),
    ("abstract/test_exact_match", "abstract: every group right"),
    ("prototype/cycle_accuracy", "prototype cycle accuracy"),
    ("reference/class_mean_mse", "class-mean reference MSE"),
    ("baseline_ae/test_mse", "conventional autoencoder MSE"),
]


def _fmt(v: float) -> str:
    return f"{v:.5g}"


_FEEDBACK = re.compile(r"feedback/[^/]+/T(\d+)/test_mse")


def _index(key: str) -> int:
    """The number at the end of a per-group or per-target key: 'abstract/test_r2_3' -> 3."""
    return int("".join(c for c in key.rsplit("_", 1)[1] if c.isdigit()))


def pretrain_table(runs: dict[str, dict]) -> str:
    """Markdown: metrics as rows, runs as columns. Variants and feedback steps are those found in the first run."""
    first = next(iter(runs.values()))
    variants = list(dict.fromkeys(k.split("/")[1] for k in first if k.startswith("concrete/")))  # in run order
    steps = sorted({int(m.group(1)) for k in first if (m := _FEEDBACK.fullmatch(k))})  # not feedback/test_images
    rows = list(ROWS)
    per_group = sorted({k for m in runs.values() for k in m if k.startswith("abstract/test_accuracy_")}, key=_index)
    kinds = {"group": "group", "attr": "attribute"}
    rows[1:1] = [(k, f"abstract: test accuracy, {kinds[k.rsplit('_', 1)[1].rstrip('0123456789')]} {_index(k)}")
                 for k in per_group]  # fmt: skip
    targets = sorted({k for m in runs.values() for k in m if k.startswith("abstract/test_r2_")}, key=_index)
    rows[:0] = [("abstract/test_r2", "abstract: test R^2, mean over targets")]
    rows[1:1] = [(k, f"abstract: test R^2, target {_index(k)}") for k in targets]
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
