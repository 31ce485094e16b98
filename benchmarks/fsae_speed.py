"""FSAE speed: pretraining throughput of both phases and inference throughput, with FLOP counts.

Contents:
    timed            -- median and spread of repeated calls after warm-up (synchronising CUDA).
    peak_memory_mb   -- peak memory so far: CUDA allocator peak, or the process's peak RSS on CPU.
    fsae_flops       -- analytic FLOPs per image of the abstract and the concrete network.
    measure_pretrain -- images/s of an abstract (supervised) and a concrete (abstract frozen) training step.
    measure_concrete_phase -- images/s of a pretraining config's whole concrete phase (every variant and the
                       autoencoder): in one pass over the batches vs each network trained on its own, in one run.
    measure_inference -- images/s of the jump-all variant at several batch sizes, float32 and (GPU) bf16 autocast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import resource
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from fsae import train as T
from fsae.model import FSAE, FSAEConfig
from fsae.pretrain_config import PretrainConfig, baseline_config, variant_config

# Dense peak FLOP/s by device name fragment: (float32 without TF32, bf16 tensor cores). From NVIDIA's data sheets.
PEAK_FLOPS = {"H100": (67e12, 989e12), "H200": (67e12, 989e12), "A100": (19.5e12, 312e12)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 5, warmup: int = 2) -> dict[str, float]:
    """Run ``fn`` ``warmup`` times, then time ``repeats`` calls: median, min and max seconds."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; the process's peak so far


def fsae_flops(model: FSAE) -> dict[str, float]:
    """Multiply-adds x 2 per image: conv 2*Cin*k*k*Cout*Ho*Wo, linear 2*in*out; the concrete layers mirror them."""
    shapes, total = model.abstract.shapes, 0.0
    for i, layer in enumerate(model.abstract.layers):
        if isinstance(layer, torch.nn.Conv2d):
            c_out, ho, wo = shapes[i + 1]
            total += 2.0 * layer.in_channels * math.prod(layer.kernel_size) * c_out * ho * wo
        else:
            total += 2.0 * layer.in_features * layer.out_features
    return {"abstract": total, "concrete": total, "fsae": 2 * total}


def measure_pretrain(
    config: FSAEConfig, device: torch.device, batch_size: int = 128, steps: int = 20, repeats: int = 3
) -> dict[str, dict[str, float]]:
    """Training throughput (images/s) of one abstract step and one concrete step on random data."""
    x = torch.rand(batch_size, *config.input_shape, device=device)
    y = torch.randint(0, config.code_size, (batch_size,), device=device)
    model = FSAE(config).to(device)
    opt = torch.optim.Adam(model.abstract.parameters(), 1e-3)

    def abstract_steps():
        for _ in range(steps):
            loss = F.cross_entropy(model.abstract(x)[0], y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    out = {}
    r = timed(abstract_steps, device, repeats, warmup=1)
    out["abstract"] = {"images_per_s": steps * batch_size / r["median_s"], **r}
    model.freeze_abstract()
    model.init_concrete(x)
    model.train()
    opt = torch.optim.Adam(model.concrete.parameters(), 1e-3)

    def concrete_steps():
        for _ in range(steps):
            loss = F.mse_loss(model(x), x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    r = timed(concrete_steps, device, repeats, warmup=1)
    out["concrete"] = {"images_per_s": steps * batch_size / r["median_s"], **r}
    out["peak_memory_mb"] = peak_memory_mb(device)  # type: ignore[assignment]
    return out


def concrete_phase_runs(cfg: PretrainConfig, device: torch.device, batches: int = 10) -> dict[str, Callable[[], None]]:
    """Two ways to train the concrete phase of ``cfg`` (its variants, and the autoencoder) on ``batches`` batches of
    random images with the code pretraining runs (``fsae.train``): 'one_pass' (``train_concretes``) and 'separate'
    (``train_concrete`` for each variant, then ``train_autoencoder``). Each call builds fresh networks and includes
    their initialisation on the first 1024 images, as in a run."""
    n = batches * cfg.train.batch_size
    x = torch.rand(n, *cfg.model.input_shape, device=device)
    tc = dataclasses.replace(cfg.train, concrete_epochs=1, baseline_epochs=0)
    base = FSAE(cfg.model).to(device)

    def networks() -> tuple[dict[str, FSAE], FSAE | None]:
        models = {}
        for v in cfg.variants:
            models[v.name] = FSAE(variant_config(cfg.model, v, cfg.feedback_gain)).to(device)
            models[v.name].abstract.load_state_dict(base.abstract.state_dict())
        return models, FSAE(baseline_config(cfg.model)).to(device) if cfg.baseline_ae else None

    def one_pass() -> None:
        models, ae = networks()
        T.train_concretes(models, x, tc, torch.Generator().manual_seed(0), autoencoder=ae)

    def separate() -> None:
        models, ae = networks()
        for m in models.values():
            T.train_concrete(m, x, tc, torch.Generator().manual_seed(0))
        if ae is not None:
            T.train_autoencoder(ae, x, tc, torch.Generator().manual_seed(0))

    return {"one_pass": one_pass, "separate": separate}


def measure_concrete_phase(
    cfg: PretrainConfig, device: torch.device, batches: int = 10, repeats: int = 3
) -> dict[str, float]:
    """Training images/s of ``cfg``'s concrete phase in one pass and with each network on its own
    (``concrete_phase_runs``), in the steady state: each method runs on ``batches`` and on 2 x ``batches`` batches,
    and the difference of the two times is what ``batches`` batches cost after the networks' initialisation (which
    is the same for both methods). The methods alternate in each repeat; images of the training set per second (each
    image trains every network). Returns ``{"one_pass_images_per_s", "separate_images_per_s",
    "one_pass_over_separate"}``."""
    runs = {n: concrete_phase_runs(cfg, device, n) for n in (batches, 2 * batches)}
    times: dict[str, list[float]] = {"one_pass": [], "separate": []}
    for _ in range(repeats):
        for name in times:
            short, long = (timed(runs[n][name], device, repeats=1, warmup=0)["median_s"] for n in runs)
            times[name].append(long - short)
    n = batches * cfg.train.batch_size
    rates = {k: n / max(statistics.median(t), 1e-9) for k, t in times.items()}
    return {
        "one_pass_images_per_s": rates["one_pass"],
        "separate_images_per_s": rates["separate"],
        "one_pass_over_separate": rates["one_pass"] / rates["separate"],
    }


@torch.inference_mode()
def measure_inference(
    config: FSAEConfig,
    device: torch.device,
    batch_sizes: tuple[int, ...] = (1, 8, 256, 4096),
    min_images: int = 8192,
    repeats: int = 5,
) -> list[dict[str, float | int | str]]:
    """Regeneration throughput (abstract + concrete, the configured variant) per batch size and precision."""
    model = FSAE(config).to(device).eval()
    flops = fsae_flops(model)["fsae"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_FLOPS.items() if k in name), None)
    precisions = ["float32"] + (["bf16"] if device.type == "cuda" else [])
    rows = []
    for precision in precisions:
        for bs in batch_sizes:
            x = torch.rand(bs, *config.input_shape, device=device)
            # Small batches are launch-bound: cap the sequential calls so one timing stays well under a second.
            calls = max(1, min(min_images // bs, 64))
            ctx = torch.autocast("cuda", torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()

            def run(x=x, calls=calls, ctx=ctx):
                with ctx:
                    for _ in range(calls):
                        model(x)

            r = timed(run, device, repeats)
            ips = calls * bs / r["median_s"]
            achieved = ips * flops
            row = {"precision": precision, "batch": bs, "images_per_s": ips, "spread": r["max_s"] / r["min_s"]}
            row["gflop_per_s"] = achieved / 1e9
            if peak is not None:
                row["fraction_of_peak"] = achieved / peak[1 if precision == "bf16" else 0]
            rows.append(row)
    return rows
