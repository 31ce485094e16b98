"""What one training step of each network of the fast config costs on this machine (CPU seconds, one thread by
default): the abstract step, the concrete phase's shared abstract pass, each variant's concrete step, the autoencoder's
step; the sum is a one-pass concrete step. The profile behind the choices of ``docs/PERFORMANCE.md`` (channels-last,
batch size, ``torch.compile``).

    python benchmarks/step_costs.py                          # batch 128, channels-first and channels-last
    python benchmarks/step_costs.py --batch 256 --compile    # and with torch.compile (its compile time reported)
    python benchmarks/step_costs.py --threads 2 --bf16       # and under bfloat16 autocast (train.precision)

Also times the concrete network's transposed convolution both ways (``fsae.layers.ConvTranspose2d``).

The candidates alternate inside each of ``--rounds`` rounds; each figure is the smallest mean over a round of
``--calls`` calls, per 128 images, in process CPU milliseconds (``time.process_time``: less sensitive to other jobs on a
shared machine than wall time, though not immune).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from fsae.config import load_config
from fsae.model import FSAE
from fsae.pretrain_config import PretrainConfig, baseline_config, variant_config

FAST = Path(__file__).resolve().parent.parent / "configs" / "pretrain" / "mnist_fast.yaml"


def steps(batch: int, channels_last: bool, compile_: bool = False) -> dict[str, Callable[[], None]]:
    """One training step per network, on random images, as pretraining runs them (``fsae.train``)."""
    cfg = load_config(PretrainConfig, FAST)
    fmt = (lambda m: m.to(memory_format=torch.channels_last)) if channels_last else (lambda m: m)
    x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    torch.manual_seed(0)
    base = fmt(FSAE(cfg.model))
    opt = torch.optim.Adam(base.abstract.parameters())
    maybe = torch.compile if compile_ else (lambda f: f)
    abstract_loss = maybe(lambda: F.cross_entropy(base.abstract(x)[0], y))

    def step(loss: Callable[[], torch.Tensor], o: torch.optim.Optimizer) -> Callable[[], None]:
        def run() -> None:
            o.zero_grad(set_to_none=True)
            loss().backward()
            o.step()

        return run

    out = {"abstract_step": step(abstract_loss, opt)}
    frozen = fmt(FSAE(cfg.model))
    frozen.freeze_abstract()

    def shared() -> list[torch.Tensor]:
        with torch.no_grad():
            return frozen.abstract(x)[1]

    out["shared_abstract_pass"] = shared
    hs = shared()
    for v in cfg.variants:
        m = fmt(FSAE(variant_config(cfg.model, v, 1.0)))
        m.freeze_abstract()
        m.train()

        def loss(m: FSAE = m) -> torch.Tensor:
            code = m.round_code(hs[-1]) if m.config.round else hs[-1]
            if m.feedback_is_inert:  # as train_concretes runs it: once per distinct code
                codes, rows = torch.unique(code, dim=0, return_inverse=True)
                return F.mse_loss(m.concrete(codes)[rows], x)
            return F.mse_loss(m.concrete(code, hs, m.jumps), x)

        out[v.name] = step(maybe(loss), torch.optim.Adam(m.concrete.parameters()))
    ae = fmt(FSAE(baseline_config(cfg.model)))
    out["autoencoder"] = step(maybe(lambda: F.mse_loss(ae(x), x)), torch.optim.Adam(ae.parameters()))
    return out


def _autocast_call(f: Callable[[], None]) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        f()


def inverse_costs(rounds: int, calls: int) -> dict[str, float]:
    """The leaky ReLU's inverse, forward and backward, on a (128, 32, 13, 13) activation (the first concrete layer's
    output of the fast config): ``torch.where(h >= 0, h, h / a)`` against the model's ``LeakyReLU.inverse``."""
    from fsae.model import LeakyReLU

    h = torch.randn(128, 32, 13, 13, requires_grad=True)
    inverse = LeakyReLU(0.3).inverse
    cands = {
        "where": lambda: torch.where(h >= 0, h, h / 0.3).sum().backward(),
        "model": lambda: inverse(h).sum().backward(),
    }
    for f in cands.values():
        f()
    return measure(cands, rounds, calls, 128)


POLYPHASE_LAYERS = {  # name: (C_in, C_out, kernel, input H x W)
    "32to1_k4_13x13": (32, 1, 4, (13, 13)),  # the digit tasks' last layer (the fast config's before 3120cb9)
    "32to1_k4_13x27": (32, 1, 4, (13, 27)),  # DigitSum's (28 x 56 images)
    "32to24_k3_6x6": (32, 24, 3, (6, 6)),  # the fast config's second layer: kernel 3, zero taps up to 4
    "64to32_k3_6x6": (64, 32, 3, (6, 6)),  # the digit tasks' second layer
}
POLYPHASE_MODES = {  # name: (batch, backward, bfloat16 autocast)
    "forward_b1000": (1000, False, False),  # evaluation
    "forward_b8": (8, False, False),  # an agent's regenerator, one vector step
    "forward_backward_b128": (128, True, False),  # a training step in float32
    "forward_backward_b128_bf16": (128, True, True),  # ... and under bfloat16 autocast (train.precision)
}


def polyphase_costs(rounds: int, calls: int) -> dict[str, float]:
    """``fsae.layers.ConvTranspose2d`` as PyTorch's transposed convolution ('torch') and as a convolution and a pixel
    shuffle ('polyphase', zero taps where the kernel needs them, whatever the layer's own rule would pick), stride 2,
    on each layer of ``POLYPHASE_LAYERS`` in each mode of ``POLYPHASE_MODES`` (channels-last input, as the networks
    run). Keys ``<layer>/<mode>/<torch|polyphase>``."""
    from fsae import layers

    out: dict[str, float] = {}
    for name, (c_in, c_out, k, (h, w)) in POLYPHASE_LAYERS.items():
        layer = layers.ConvTranspose2d(c_in, c_out, k, 2)
        for mode, (batch, grad, bf16) in POLYPHASE_MODES.items():
            x = torch.randn(batch, c_in, h, w).to(memory_format=torch.channels_last).requires_grad_(grad)

            def run(polyphase: bool, x=x, grad=grad, bf16=bf16, layer=layer) -> None:
                layer.runs_polyphase = lambda _: polyphase  # an instance attribute: this layer's rule, overridden
                with torch.set_grad_enabled(grad), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                    y = layer(x)
                if grad:
                    y.float().pow(2).mean().backward()

            cands = {"torch": lambda run=run: run(False), "polyphase": lambda run=run: run(True)}
            for f in cands.values():
                f()
            costs = measure(cands, rounds, calls, batch)
            out |= {f"{name}/{mode}/{c}": v for c, v in costs.items()}
    return out


def measure(cands: dict[str, Callable[[], object]], rounds: int, calls: int, batch: int) -> dict[str, float]:
    """Smallest mean CPU milliseconds per call over the rounds (candidates alternating), per 128 images."""
    best = {k: float("inf") for k in cands}
    for _ in range(rounds):
        for k, f in cands.items():
            t = time.process_time()
            for _ in range(calls):
                f()
            best[k] = min(best[k], (time.process_time() - t) / calls * 1000 * 128 / batch)
    return best


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="also each step's loss under torch.compile")
    p.add_argument("--bf16", action="store_true", help="also each channels-last step under bfloat16 autocast")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    layouts = {"channels_first": steps(args.batch, False), "channels_last": steps(args.batch, True)}
    results: dict = {"batch": args.batch, "threads": args.threads}
    if args.compile:
        t0 = time.perf_counter()
        layouts["compiled_channels_last"] = compiled = steps(args.batch, True, compile_=True)
        for f in compiled.values():  # the first call compiles
            f()
        results["compile_seconds"] = time.perf_counter() - t0
    if args.bf16:  # as train.precision: bfloat16 runs it (fsae.train.autocast)
        layouts["channels_last_bf16"] = {k: (lambda f=f: _autocast_call(f)) for k, f in steps(args.batch, True).items()}
    for f in (f for fs in layouts.values() for f in fs.values()):  # warm-up
        f()
    flat = {f"{layout}/{k}": f for layout, fs in layouts.items() for k, f in fs.items()}
    costs = measure(flat, args.rounds, args.calls, args.batch)
    for layout in layouts:
        row = {k.split("/")[1]: round(v, 2) for k, v in costs.items() if k.startswith(f"{layout}/")}
        row["one_pass_step"] = round(sum(v for k, v in row.items() if k != "abstract_step"), 2)
        results[layout] = row
        print(layout, json.dumps(row))
    results["leaky_inverse_ms"] = {k: round(v, 3) for k, v in inverse_costs(args.rounds, 10).items()}
    print("leaky inverse, forward + backward", json.dumps(results["leaky_inverse_ms"]))
    results["polyphase_ms"] = {k: round(v, 3) for k, v in polyphase_costs(args.rounds, 10).items()}
    print("transposed convolution, CPU ms per 128 images", json.dumps(results["polyphase_ms"]))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
