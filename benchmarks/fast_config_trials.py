"""Trials behind ``configs/pretrain/mnist_fast.yaml``'s epochs and learning rates: quality against cost on the CPU.

    python benchmarks/fast_config_trials.py abstract --epochs 3 --seeds 0 1 2
    python benchmarks/fast_config_trials.py concrete --checkpoint <run>/fsae_round.pt --batch 128 --lr 4e-3 --ae

'abstract' trains the fast config's abstract network for ``--epochs`` epochs per seed and reports its test accuracy.
'concrete' takes the abstract network of a checkpoint (any variant of a fast run), trains the concrete phase in one
pass (plain, round, jump_all, and with ``--ae`` the autoencoder at ``--ae-lr``) for ``--concrete-epochs`` epochs at
``--batch`` and ``--lr``, and reports each network's test MSE and the CPU seconds of the training. One torch thread,
channels-last (as pretraining on a CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch
from one_pass import ROOT

from fsae import train as T
from fsae.checkpoint import load_fsae
from fsae.config import load_config
from fsae.evaluate import evaluate_abstract, evaluate_regeneration
from fsae.model import FSAE
from fsae.pretrain_config import PretrainConfig, baseline_config, variant_config
from fsae.runtime import seed_everything
from fsae.targets import load_dataset


def _cl(model: FSAE) -> FSAE:
    return model.to(memory_format=torch.channels_last)


def abstract_trial(cfg: PretrainConfig, epochs: int, seed: int) -> dict:
    gen = seed_everything(seed)
    x, y, x_test, y_test = load_dataset(cfg.data, seed, cfg.model)
    model = _cl(FSAE(cfg.model))
    T.train_abstract(model, x, y, dataclasses.replace(cfg.train, abstract_epochs=epochs), gen)
    return {"epochs": epochs, "seed": seed, **evaluate_abstract(model, x_test, y_test)}


def concrete_trial(cfg: PretrainConfig, checkpoint: str, batch: int, lr: float, epochs: int, ae_lr: float | None):
    x, _, x_test, _ = load_dataset(cfg.data, 0, cfg.model)
    abstract = load_fsae(checkpoint).abstract.state_dict()
    torch.manual_seed(0)
    models = {}
    for v in cfg.variants:
        if v.name == "jump":
            continue
        models[v.name] = _cl(FSAE(variant_config(cfg.model, v, cfg.feedback_gain)))
        models[v.name].abstract.load_state_dict(abstract)
    ae = _cl(FSAE(baseline_config(cfg.model))) if ae_lr is not None else None
    tc = dataclasses.replace(
        cfg.train, batch_size=batch, concrete_lr=lr, concrete_epochs=epochs, baseline_lr=ae_lr or 0
    )
    t0 = time.process_time()
    T.train_concretes(models, x, tc, torch.Generator().manual_seed(0), autoencoder=ae)
    out = {"batch": batch, "lr": lr, "epochs": epochs, "ae_lr": ae_lr, "cpu_s": time.process_time() - t0}
    out |= {k: evaluate_regeneration(m.eval(), x_test)["test_mse"] for k, m in models.items()}
    if ae is not None:
        out["autoencoder"] = evaluate_regeneration(ae.eval(), x_test)["test_mse"]
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trial", choices=["abstract", "concrete"])
    p.add_argument("--epochs", type=int, default=4, help="abstract epochs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--checkpoint", default=None, help="concrete: the abstract network of this checkpoint")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--concrete-epochs", type=int, default=1)
    p.add_argument("--ae", action="store_true", help="concrete: train the autoencoder too")
    p.add_argument("--ae-lr", type=float, default=2e-3)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_config(PretrainConfig, ROOT / "configs" / "pretrain" / "mnist_fast.yaml")
    if args.trial == "abstract":
        rows = [abstract_trial(cfg, args.epochs, s) for s in args.seeds]
    else:
        if not args.checkpoint:
            p.error("concrete needs --checkpoint")
        ae_lr = args.ae_lr if args.ae else None
        rows = [concrete_trial(cfg, args.checkpoint, args.batch, args.lr, args.concrete_epochs, ae_lr)]
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main()
