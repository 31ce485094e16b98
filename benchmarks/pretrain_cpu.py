"""CPU seconds of whole pretraining runs, one torch thread: the work a run does, less dependent on a shared machine's
load than its wall time. Compares code trees (e.g. a commit before a change, exported with ``git archive``).

    git archive f273935 | (mkdir -p /tmp/old && tar -x -C /tmp/old)
    python benchmarks/pretrain_cpu.py old=/tmp/old new=. --out cpu.json

Each tree runs its own ``scripts/pretrain.py --config configs/pretrain/mnist_fast.yaml`` (the tree's config) on the
CPU with one thread, one after the other; reported per tree: the children's user + system CPU seconds, the wall
seconds, the one-minute load at the start and the end, the run's ``time/*`` keys and its main metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEEP = ("abstract/test_accuracy", "reference/class_mean_mse", "baseline_ae/test_mse")


def run(tree: Path, out: Path, sets: list[str]) -> dict:
    """One pretraining run of ``tree``'s fast config into ``out``; its CPU and wall seconds, load and metrics."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, str(tree / "scripts" / "pretrain.py"), "--config", str(tree / "configs" / "pretrain" /
            "mnist_fast.yaml"), "--out", str(out), "--device", "cpu", "--set", "torch_threads=1", *sets]  # fmt: skip
    before, load, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), os.getloadavg()[0], time.time()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"error: {tree}: pretraining failed: {proc.stderr.strip().splitlines()[-1]}")
    m = json.loads((out / "metrics.json").read_text())
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    metrics = {k: v for k, v in m.items() if k.startswith(("time/", "concrete/")) and not k.endswith(("_mae", "_psnr"))}
    return {"cpu_s": cpu, "wall_s": time.time() - t0, "load_start": load, "load_end": os.getloadavg()[0],
            **metrics, **{k: m.get(k) for k in KEEP}}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trees", nargs="+", metavar="NAME=PATH", help="code trees to run, in this order")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every run")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    results = {"command": " ".join([sys.executable, *sys.argv])}
    with tempfile.TemporaryDirectory() as tmp:
        for item in args.trees:
            name, _, path = item.partition("=")
            results[name] = run(Path(path).resolve(), Path(tmp) / name, args.set)
            print(name, json.dumps(results[name]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
