"""FSAE speed: pretraining throughput of both phases and inference throughput, with FLOP counts.

Contents:
    timed            -- median and spread of repeated calls after warm-up (synchronising CUDA).
    peak_memory_mb   -- peak memory so far: CUDA allocator peak, or the process's peak RSS on CPU.
    fsae_flops       -- analytic FLOPs per image of the abstract and the concrete network.
    measure_pretrain -- images/s of an abstract (supervised) and a concrete (abstract frozen) training step.
    measure_inference -- images/s of the jump-all variant at several batch sizes, float32 and (GPU) bf16 autocast.
"""

from __future__ import annotations

import contextlib
import math
import resource
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from fsae.model import FSAE, FSAEConfig

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
