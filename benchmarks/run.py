"""One command that measures fsae-rl's speed and writes a table (stdout) and JSON.

    python benchmarks/run.py --quick                       # a few minutes on a 2-core CPU
    python benchmarks/run.py --device cuda --out bench.json

Sections, each a median of repeated runs after warm-up with its spread (max/min time):
    pretrain   -- training images/s of the abstract and the concrete phase, fast and paper architectures; the fast
                  config's whole concrete phase (4 variants and the autoencoder) in one pass vs one network after
                  another (ratio from one run);
    inference  -- regeneration images/s (jump-all variant) at batch 1, 8, 256, 4096; bf16 autocast on GPU; GFLOP/s and
                  the fraction of the device's peak where known;
    env        -- environment steps/s of each fsae/ environment;
    wrapper    -- raw vs per-environment wrapper vs batched wrapper, 8 and 64 environments (ratios from one run); the
                  batched wrapper's cost per vector step for every variant, round with and without its lookup;
    ppo        -- PPO training steps/s, raw vs augmented with the round FSAE, with and without its lookup, and 'copy'
                  (the raw image stacked on itself: the two-channel policy without an FSAE), one run, 7 repeats;
    threads    -- the one-pass concrete phase and raw PPO at 1 thread and at one per core (the measurements behind
                  ``fsae.threads``);
each with the peak memory (CUDA allocator peak, or the process's peak RSS on CPU, which only grows). The machine's
one-minute load average is recorded at the start and the end (``machine.load_1min``, ``load_1min_end``). Each section
runs at the thread count its job runs at (``fsae.threads``: the pretrain, inference and env sections by the load, the
agents' sections, wrapper and ppo, one thread; recorded in ``machine.threads_by_job``) unless ``--threads N`` pins one
for all.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from env_steps import measure_env_steps  # noqa: E402
from fsae_speed import measure_concrete_phase, measure_inference, measure_pretrain, peak_memory_mb  # noqa: E402

from fsae.atomic import atomic_write  # noqa: E402
from fsae.config import ConfigError, load_config  # noqa: E402
from fsae.data import DatasetError  # noqa: E402
from fsae.memory import retain_freed_memory
from fsae.pretrain_config import PretrainConfig  # noqa: E402
from fsae.runtime import resolve_device  # noqa: E402
from fsae.threads import set_threads  # noqa: E402

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "pretrain"


def model_config(name: str, jumps: str | list[int] = "all"):
    return dataclasses.replace(load_config(PretrainConfig, CONFIGS / f"{name}.yaml").model, jumps=jumps)


def machine(device: torch.device) -> dict[str, str | int]:
    info: dict[str, str | int] = {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "load_1min": os.getloadavg()[0],
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run(quick: bool, device: torch.device, sections: list[str], smoke: bool = False, threads: int = 0) -> dict:
    """Measure ``sections``; ``quick`` shrinks budgets, ``smoke`` runs the smallest case of each (proves it works).
    ``threads``: torch's thread count for every section; 0: each job's as the project runs it (``fsae.threads``:
    the pretrain, inference and env sections by the load now, the agents' sections, wrapper and ppo, one thread),
    recorded in ``machine.threads_by_job``."""
    results: dict = {"machine": machine(device), "quick": quick, "smoke": smoke}
    results["command"] = shlex.join([sys.executable, *sys.argv])
    by_job = results["machine"]["threads_by_job"] = {}
    gpu = device.type == "cuda"
    archs = ("mnist_fast",) if smoke else ("mnist_fast", "mnist")
    if {"pretrain", "inference", "env"} & set(sections):
        by_job["pretrain"] = set_threads("pretrain", threads)
    if "pretrain" in sections:
        results["pretrain"] = {}
        for name in archs:
            steps = 20 if (gpu or name == "mnist_fast") else 3
            steps = 1 if smoke else (max(2, steps // 4) if quick else steps)
            reps = 1 if smoke else 3
            results["pretrain"][name] = measure_pretrain(model_config(name, []), device, steps=steps, repeats=reps)
        cfg = load_config(PretrainConfig, CONFIGS / "mnist_fast.yaml")
        batches = 1 if smoke else 4 if quick else 10
        results["pretrain"]["mnist_fast"]["concrete_phase"] = measure_concrete_phase(cfg, device, batches, reps)
    if "inference" in sections:
        results["inference"] = {}
        for name in archs:
            slow = name == "mnist" and not gpu  # the paper network does ~120 MFLOP per image
            batches = (1, 8) if smoke else (1, 8, 256) if slow and quick else (1, 8, 256, 4096)
            images = 16 if smoke else 8192 if gpu else (256 if slow else 2048)
            reps = 1 if smoke else 3 if quick else 5
            rows = measure_inference(model_config(name), device, batches, min_images=images, repeats=reps)
            results["inference"][name] = {"rows": rows, "peak_memory_mb": peak_memory_mb(device)}
    if "env" in sections:
        n, reps = (200, 1) if smoke else (5000, 3) if quick else (20000, 5)
        results["env"] = measure_env_steps(n_steps=n, repeats=reps)
    if "wrapper" in sections or "ppo" in sections:
        import wrapper as wrapper_bench  # benchmarks/wrapper.py

        by_job["agent"] = set_threads("agent", threads)  # as train_agent runs them

        steps, repeats = (256, 1) if smoke else (2048, 3) if quick else (8192, 5)
        n_envs = (2,) if smoke else (8, 64)
        if "wrapper" in sections:
            results["wrapper"] = {
                dtype: wrapper_bench.measure_wrapper(n_envs, steps, repeats, device=device.type, dtype=dtype)
                for dtype in ("float32", "float64")
            }
            # The wrapper's cost per vector step against the policy's forward + backward on the same batch (CPU
            # target of the performance issue: below it), in the regenerator's default precision.
            n = n_envs[0]
            policy = wrapper_bench.measure_policy_cost(n, repeats, device=device.type, calls=5 if smoke else 50)
            cost = wrapper_bench.wrapper_cost_ms(results["wrapper"]["float32"], n)
            results["wrapper"]["cost_per_vector_step"] = {
                "n_envs": n,
                "wrapper_ms": cost,
                "policy_fwd_bwd_ms": policy[f"n{n}/policy_fwd_bwd_ms"],
                "wrapper_over_policy": cost / policy[f"n{n}/policy_fwd_bwd_ms"],
            }
            variant_steps = 256 if smoke else 1024 if quick else 4096
            results["wrapper"]["variants"] = wrapper_bench.measure_variant_costs(n, variant_steps, repeats, device.type)
            results["wrapper"]["peak_memory_mb"] = peak_memory_mb(device)
        if "ppo" in sections:  # more repeats than the wrapper: a ratio of 0.95 is read off medians of ~4 s runs
            ppo_repeats = 1 if smoke else 7 if quick else 9
            results["ppo"] = wrapper_bench.measure_ppo(steps, ppo_repeats, n_envs=n_envs[0], device=device.type)
            results["ppo"]["peak_memory_mb"] = peak_memory_mb(device)
            results["ppo"]["n_envs"] = n_envs[0]
    if "threads" in sections and not gpu:
        from threads import measure_threads  # benchmarks/threads.py

        batches, ppo_steps, reps = (1, 128, 1) if smoke else (2, 512, 3) if quick else (4, 2048, 5)
        results["threads"] = measure_threads(None, batches, ppo_steps, reps)
    results["load_1min_end"] = os.getloadavg()[0]
    return results


def print_table(r: dict) -> None:
    m = r["machine"]
    print(f"# fsae-rl benchmarks  {m['date']}  device={m['device']} {m.get('gpu', '')}  cpus={m['cpu_count']}")
    for name, p in r.get("pretrain", {}).items():
        for phase in ("abstract", "concrete"):
            q = p[phase]
            spread = q["max_s"] / q["min_s"]
            print(f"pretrain   {name:<11} {phase:<9} {q['images_per_s']:>12,.0f} img/s   spread x{spread:.2f}")
        print(f"pretrain   {name:<11} peak memory {p['peak_memory_mb']:,.0f} MB")
        if "concrete_phase" in p:
            c = p["concrete_phase"]
            print(f"pretrain   {name:<11} concrete phase, 4 variants + autoencoder: one pass "
                  f"{c['one_pass_images_per_s']:,.0f} img/s, one network after another "
                  f"{c['separate_images_per_s']:,.0f} img/s: {c['one_pass_over_separate']:.2f}x")  # fmt: skip
    for name, inf in r.get("inference", {}).items():
        for row in inf["rows"]:
            frac = f"  {100 * row['fraction_of_peak']:.2f}% of peak" if "fraction_of_peak" in row else ""
            print(
                f"inference  {name:<11} {row['precision']:<7} batch {row['batch']:>5} {row['images_per_s']:>12,.0f} "
                f"img/s  {row['gflop_per_s']:>9,.1f} GFLOP/s  spread x{row['spread']:.2f}{frac}"
            )
    for env_id, sps in r.get("env", {}).items():
        print(f"env        {env_id:<26} {sps:>12,.0f} steps/s")
    wrapper = r.get("wrapper", {})
    for dtype in ("float32", "float64"):
        w = wrapper.get(dtype, {})
        for n in sorted({int(k.split("/")[0][1:]) for k in w}):
            if f"n{n}/raw_steps_per_s" in w:
                rates = "  ".join(f"{c} {w[f'n{n}/{c}_steps_per_s']:>9,.0f}" for c in ("raw", "per_env", "batched"))
                print(
                    f"wrapper    {dtype:<7} n_envs {n:>3}  steps/s: {rates}  batched/per-env "
                    f"{w[f'n{n}/batched_over_per_env']:.2f}x  batched/raw {w[f'n{n}/batched_over_raw']:.2f}x"
                )
    if "cost_per_vector_step" in wrapper:
        c = wrapper["cost_per_vector_step"]
        print(f"wrapper    cost per vector step ({c['n_envs']} envs, float32) {c['wrapper_ms']:.2f} ms, policy "
              f"forward+backward on the same batch {c['policy_fwd_bwd_ms']:.2f} ms: ratio "
              f"{c['wrapper_over_policy']:.2f}")  # fmt: skip
    for name, c in wrapper.get("variants", {}).items():
        if name.endswith("/wrapper_ms"):
            print(f"wrapper    cost per vector step, {name.split('/')[0]:<13} {c:.3f} ms")
    if "ppo" in r:
        q = r["ppo"]
        print(
            f"ppo        DigitBandit {q.get('regen_dtype', '')} {q.get('n_envs', 8)} envs  "
            f"raw {q['ppo/raw_steps_per_s']:,.0f} steps/s  "
            f"augmented ({q.get('variant', '')}) {q['ppo/augmented_steps_per_s']:,.0f} steps/s  "
            f"ratio {q['ppo/augmented_over_raw']:.3f}x"
            + (
                f" (in each repeat {min(rep):.2f}-{max(rep):.2f}x)"
                if (rep := q.get("ppo/augmented_over_raw_per_repeat"))
                else ""
            )
        )
        if "ppo/augmented_over_raw_cpu" in q:
            print(f"ppo        ratio by CPU time {q['ppo/augmented_over_raw_cpu']:.2f}x (CPU / wall time: raw "
                  f"{q['ppo/raw_cpu_over_wall']:.2f}, augmented {q['ppo/augmented_cpu_over_wall']:.2f})")  # fmt: skip
        if "ppo/augmented_abstract_over_raw" in q:
            print(f"ppo        augmented, the lookup's pass by AbstractNet "
                  f"{q['ppo/augmented_abstract_steps_per_s']:,.0f} steps/s  "
                  f"ratio {q['ppo/augmented_abstract_over_raw']:.2f}x")  # fmt: skip
        if "ppo/augmented_forward_over_raw" in q:
            print(f"ppo        augmented without the lookup {q['ppo/augmented_forward_steps_per_s']:,.0f} steps/s  "
                  f"ratio {q['ppo/augmented_forward_over_raw']:.2f}x")  # fmt: skip
        if "ppo/augmented_task_net_over_raw" in q:
            print(f"ppo        augmented, the digit tasks' wider net {q['ppo/augmented_task_net_steps_per_s']:,.0f} "
                  f"steps/s  ratio {q['ppo/augmented_task_net_over_raw']:.2f}x")  # fmt: skip
        if "ppo/copy_over_raw" in q:
            print(f"ppo        copy (two-channel policy, no FSAE) {q['ppo/copy_steps_per_s']:,.0f} steps/s  ratio "
                  f"{q['ppo/copy_over_raw']:.2f}x; augmented over copy (the wrapper alone) "
                  f"{q['ppo/augmented_over_copy']:.2f}x")  # fmt: skip
        if "ppo/augmented_wrapper_share" in q:
            share, from_share = q["ppo/augmented_wrapper_share"], q["ppo/augmented_over_copy_in_situ"]
            print(f"ppo        the wrapper's share of augmented's learn time, in situ {share:.3f} "
                  f"(augmented over copy from it {from_share:.3f}x)")  # fmt: skip
    t = r.get("threads", {})
    for job, unit in (("pretrain", "images_per_s"), ("agent", "steps_per_s")):
        rates = {k: v for k, v in t.items() if k.startswith(f"{job}/threads")}
        if rates:
            cells = "  ".join(f"{k.split('/')[1].split('_')[0]} {v:,.0f}" for k, v in rates.items())
            print(f"threads    {job:<9} {unit.replace('_per_s', '/s')}: {cells}  best {t[f'{job}/best_threads']}")
    if "wrapper_error" in r:
        print(r["wrapper_error"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small budgets: under 2 minutes on a 2-core CPU")
    p.add_argument("--smoke", action="store_true", help="the smallest case of every section (seconds; not a speed)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads for every section (0 = each job's as the project runs it: fsae.threads)",
    )
    all_sections = ["pretrain", "inference", "env", "wrapper", "ppo", "threads"]
    p.add_argument("--only", nargs="*", default=all_sections, choices=all_sections, help="run only these sections")
    args = p.parse_args(argv)
    retain_freed_memory()  # as pretraining and train_agent do (fsae.memory)
    try:
        device = resolve_device(args.device)
        results = run(args.quick, device, args.only, smoke=args.smoke, threads=args.threads)
    except (ConfigError, DatasetError) as e:  # no GPU for --device cuda; no MNIST: one line, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_table(results)
    if args.out:
        text = json.dumps(results, indent=2, default=float) + "\n"
        atomic_write(args.out, lambda f: f.write(text.encode()))  # a kill mid-write leaves the old file
    return 0


if __name__ == "__main__":
    sys.exit(main())
