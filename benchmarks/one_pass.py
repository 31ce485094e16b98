"""Does the one-pass concrete phase train as well as the variants trained one after another? Same seeds, both ways.

For each seed the abstract network is trained once, as pretraining trains it; then, from the same generator state and
the same initial weights, the concrete phase of the config (every variant and the autoencoder) is trained twice:
'one_pass' (``fsae.train.train_concretes``, what ``scripts/pretrain.py`` runs) and 'separate' (``train_concrete`` for
each variant and ``train_autoencoder``, one after another on the same generator: what pretraining did before). Each
network's test MSE is measured. The methods are statistically equal when, for every network, the difference between
them on one seed is within the difference that another seed makes (the noise between two seeds).

    python benchmarks/one_pass.py --seeds 0 1 --out /tmp/one_pass.json              # the fast config, on a CPU

Output: per seed and method the test MSE of each network (``concrete/<variant>``, ``baseline_ae``), and per network
the largest difference between the methods over the seeds and the difference between the seeds within each method.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from fsae import train as T
from fsae.config import load_config
from fsae.evaluate import evaluate_abstract, evaluate_regeneration
from fsae.model import FSAE
from fsae.pretrain_config import PretrainConfig, baseline_config, variant_config
from fsae.runtime import place, seed_everything
from fsae.targets import load_dataset
from fsae.threads import set_threads

ROOT = Path(__file__).resolve().parent.parent


def compare(cfg: PretrainConfig, seed: int, device: torch.device) -> dict[str, dict[str, float]]:
    """Test MSE of every network of ``cfg``'s concrete phase trained in one pass and one after another (seed ``seed``),
    on one abstract network; and the abstract network's accuracy."""
    gen = seed_everything(seed)
    x, y, x_test, y_test = (t.to(device) for t in load_dataset(cfg.data, seed, cfg.model))
    base = place(FSAE(cfg.model), device)
    T.train_abstract(base, x, y, cfg.train, gen)
    base.freeze_abstract()
    after_abstract, weights_seed = gen.get_state(), seed + 1000
    out: dict[str, dict[str, float]] = {"abstract": evaluate_abstract(base, x_test, y_test)}
    for method in ("one_pass", "separate"):
        gen.set_state(after_abstract)
        torch.manual_seed(weights_seed)  # the same initial weights for both methods
        models = {}
        for v in cfg.variants:
            models[v.name] = place(FSAE(variant_config(cfg.model, v, cfg.feedback_gain)), device)
            models[v.name].abstract.load_state_dict(base.abstract.state_dict())
        ae = place(FSAE(baseline_config(cfg.model)), device) if cfg.baseline_ae else None
        t0 = time.time()
        if method == "one_pass":
            T.train_concretes(models, x, cfg.train, gen, autoencoder=ae)
        else:
            for name, m in models.items():
                T.train_concrete(m, x, cfg.train, gen, desc=f"concrete_{name}")
            if ae is not None:
                T.train_autoencoder(ae, x, cfg.train, gen)
        seconds = time.time() - t0
        nets = {f"concrete/{k}": m for k, m in models.items()} | ({"baseline_ae": ae} if ae is not None else {})
        out[method] = {k: evaluate_regeneration(m.eval(), x_test)["test_mse"] for k, m in nets.items()}
        out[method]["seconds"] = seconds
    return out


def summary(results: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per network: the largest |one_pass - separate| over the seeds, and |seed a - seed b| of each method (the first
    two seeds)."""
    seeds = list(results)
    keys = [k for k in results[seeds[0]]["one_pass"] if k != "seconds"]
    out = {}
    for k in keys:
        row = {"max_method_difference": max(abs(results[s]["one_pass"][k] - results[s]["separate"][k]) for s in seeds)}
        if len(seeds) > 1:
            a, b = seeds[:2]
            for m in ("one_pass", "separate"):
                row[f"seed_difference_{m}"] = abs(results[a][m][k] - results[b][m][k])
            row["within_seed_noise"] = row["max_method_difference"] <= max(
                row["seed_difference_one_pass"], row["seed_difference_separate"]
            )
        out[k] = row
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / "pretrain" / "mnist_fast.yaml"))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    cfg = load_config(PretrainConfig, args.config, args.set)
    threads = set_threads("pretrain", cfg.torch_threads)
    device = torch.device(args.device)
    results = {s: compare(cfg, s, device) for s in args.seeds}
    report = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "date": datetime.date.today().isoformat(),
        "torch_threads": threads,
        "load_1min_end": os.getloadavg()[0],
        "results": results,
        "summary": summary(results),
    }
    for k, row in report["summary"].items():
        print(k, json.dumps({n: (round(v, 7) if isinstance(v, float) else v) for n, v in row.items()}))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
