"""Common-sense wrapper speed: vector-env steps/s raw vs per-env wrapper vs batched wrapper, and PPO steps/s raw vs
augmented, each as ratios measured in the same run.

Contents:
    fast_fsae      -- an FSAE of the fast pretraining configuration (``configs/pretrain/mnist_fast.yaml``) in a
                      variant, or a checkpoint's; speed does not depend on the weights, so no pretraining is needed.
    variant_regenerators -- a regenerator per variant, and round without its lookup and without its GEMM pass.
    measure_wrapper -- steps/s of ``DummyVecEnv`` (raw), a ``DummyVecEnv`` of ``CommonSense`` envs (one forward pass
                      per env per step) and ``VecCommonSense`` (one forward pass per vector step), per n_envs.
    measure_ppo    -- PPO training steps/s (``learn`` only, the DigitBandit config's hyperparameters) with raw and with
                      FSAE-augmented observations (the round variant, with its lookup, with the lookup's abstract
                      pass run by ``AbstractNet`` instead of ``fsae.gemm``, and without the lookup), with the
                      raw image stacked on itself ('copy': the two-channel policy alone), and augmented by the digit
                      tasks' wider network, in one run; and the augmented / raw ratio within each repeat.
    ppo_agent, learn_times, time_learn -- a PPO agent of the DigitBandit config, raw or augmented; the seconds of
                      its timed learn calls, alternating between agents; their rates.
    measure_variant_costs -- the batched wrapper's cost per vector step for every variant (round with its lookup,
                      with the lookup's pass by ``AbstractNet``, and without the lookup), in one run.
    measure_policy_cost -- the augmented PPO policy's forward and backward pass on one vector step's batch (n_envs
                      observations), to set against the batched wrapper's cost per vector step.

Method: the conditions of one measurement alternate within each repeat (raw, per-env, batched, raw, ...; PPO's
agents in their order, then the reverse, ``learn_times``), so that a change in the load of a shared machine hits all
of them alike; each rate is the median over repeats, after an untimed warm-up. An augmented agent's regenerator is
also timed inside its learn calls (``wrapper_clock.WrapperClock``): the wrapper's share of the agent's time; and
every learn call's CPU time too: the ratio by CPU time leaves out what the machine gave to other work.
Targets: augmented PPO with the round FSAE >= 0.95x raw PPO, batched wrapper >= 1.8x the per-env wrapper with 8
environments. torch runs on ``threads`` threads (default 1: on a small shared CPU, torch's default pool makes these
tiny forward passes up to 100x slower).

    python benchmarks/wrapper.py --quick          # about 2 minutes on a 2-core CPU
    python benchmarks/wrapper.py --checkpoint runs/pretrain/fast/fsae_round.pt --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from wrapper_clock import WrapperClock  # benchmarks/wrapper_clock.py

import envs  # noqa: F401  (registers the fsae/ ids)
from fsae.checkpoint import load_fsae
from fsae.config import load_config
from fsae.model import FSAE
from fsae.pretrain_config import PretrainConfig
from fsae.runtime import flush_denormals
from rl.agent import policy_kwargs
from rl.common_sense import CommonSense, Regenerator, VecCommonSense
from rl.config import AgentConfig
from rl.env_factory import make_env, make_vec_env_for

ROOT = Path(__file__).resolve().parent.parent
FAST_CONFIG = ROOT / "configs" / "pretrain" / "mnist_fast.yaml"
# The network of DigitBandit's FSAE (DigitSum's and DigitLock's have the same convs, FC 128 and a two-group head), the
# one the digit tasks' RL results ran with: wider than the fast config's since 3120cb9.
TASK_CONFIG = ROOT / "configs" / "pretrain" / "digit_bandit.yaml"
AGENT_CONFIG = ROOT / "configs" / "agent" / "digit_bandit.yaml"
ENV_ID = "fsae/DigitBandit-v0"
TARGET_PPO_RATIO = 0.95  # augmented (round FSAE) over raw PPO steps/s on the CPU: the performance issue's target
TARGET_BATCHED_RATIO = 1.8


VARIANTS = {"plain": {}, "round": {"round": True}, "jump": {"jumps": "last"}, "jump_all": {"jumps": "all"}}


def fast_fsae(checkpoint: str | None = None, variant: str = "jump", config: Path = FAST_CONFIG) -> FSAE:
    """The model to time: a checkpoint, else a freshly initialised FSAE of ``config`` (the fast config by default) in
    ``variant`` (one of ``VARIANTS``; 'jump', one jump connection, by default)."""
    if checkpoint:
        return load_fsae(checkpoint)
    cfg = load_config(PretrainConfig, config).model
    for key, value in VARIANTS[variant].items():
        setattr(cfg, key, value)
    torch.manual_seed(0)
    return FSAE(cfg).eval()


def variant_regenerators(device: str = "cpu", dtype: str = "float32") -> dict[str, Regenerator]:
    """A regenerator per variant of the fast config, 'round_abstract': round with its lookup but the abstract pass
    run by ``AbstractNet`` (as before ``fsae.gemm``), and 'round_forward': round without the lookup (the full forward
    pass, as before the lookup)."""
    regens = {name: Regenerator(fast_fsae(None, name), device, dtype=dtype) for name in VARIANTS}
    regens["round_abstract"] = Regenerator(fast_fsae(None, "round"), device, dtype=dtype, gemm=False)
    regens["round_forward"] = Regenerator(fast_fsae(None, "round"), device, dtype=dtype, lookup=False)
    return regens


def _time_vec_steps(venv: VecEnv, actions: np.ndarray) -> float:
    start = time.perf_counter()
    for a in actions:
        venv.step(a)
    return time.perf_counter() - start


def _interleaved_rates(venvs: dict[str, VecEnv], n: int, steps: int, repeats: int) -> dict[str, float]:
    """Env steps/s of each of ``venvs`` (``n`` envs each) over the same ``steps // n`` random actions: seeded, reset,
    warmed up, then timed ``repeats`` times in turn (one after another in each repeat); the median time counts."""
    vec_steps = max(steps // n, 10)
    actions = np.random.default_rng(0).integers(0, 10, (vec_steps, n))
    times: dict[str, list[float]] = {k: [] for k in venvs}
    for venv in venvs.values():
        venv.seed(0)
        venv.reset()
        _time_vec_steps(venv, actions[: max(vec_steps // 5, 5)])  # warm-up
    for _ in range(repeats):
        for k, venv in venvs.items():
            times[k].append(_time_vec_steps(venv, actions))
    return {k: vec_steps * n / statistics.median(t) for k, t in times.items()}


def measure_wrapper(
    n_envs_list: tuple[int, ...] = (8, 64),
    steps: int = 4096,
    repeats: int = 5,
    checkpoint: str | None = None,
    device: str = "cpu",
    union: str = "stack",
    dtype: str = "float32",
) -> dict[str, float]:
    """Environment steps/s of raw, per-env-wrapped and batch-wrapped vector envs of DigitBandit, per n_envs.

    Args:
        n_envs_list: numbers of environments to measure.
        steps: environment steps (summed over envs) per timed run.
        repeats: timed runs per condition (median reported).
        checkpoint: FSAE to time (default: an untrained model of the fast config).
        device, union, dtype: the regenerator's settings.

    Returns:
        ``{f"n{n}/{cond}_steps_per_s": ..., f"n{n}/batched_over_per_env": ..., f"n{n}/batched_over_raw": ...}``.
    """
    regen = Regenerator(fast_fsae(checkpoint), device, dtype=dtype)
    out: dict[str, float] = {}
    for n in n_envs_list:
        venvs = {
            "raw": DummyVecEnv([lambda: make_env(ENV_ID)] * n),
            "per_env": DummyVecEnv([lambda: CommonSense(make_env(ENV_ID), regen, union)] * n),
            "batched": VecCommonSense(DummyVecEnv([lambda: make_env(ENV_ID)] * n), regen, union),
        }
        rates = _interleaved_rates(venvs, n, steps, repeats)
        for k, r in rates.items():
            out[f"n{n}/{k}_steps_per_s"] = r
        out[f"n{n}/batched_over_per_env"] = rates["batched"] / rates["per_env"]
        out[f"n{n}/batched_over_raw"] = rates["batched"] / rates["raw"]
        for venv in venvs.values():
            venv.close()
    return out


def ppo_agent(n_envs: int, regen: Regenerator | None, device: str, union: str = "stack") -> PPO:
    """PPO with the DigitBandit config's policy and hyperparameters on ``n_envs`` envs, wrapped by ``regen`` if any."""
    cfg = load_config(AgentConfig, AGENT_CONFIG, [f"n_envs={n_envs}", f"union={union}", "condition=fsae"])
    venv = make_vec_env_for(cfg, regen, n_envs, 0, {})
    return PPO(
        "CnnPolicy",
        venv,
        policy_kwargs=policy_kwargs(cfg, venv.observation_space),
        seed=0,
        device=device,
        **cfg.hyperparams,
    )


def learn_times(
    models: dict[str, PPO], steps: int, repeats: int, cpu: dict[str, list[float]] | None = None
) -> dict[str, list[float]]:
    """Seconds of each of ``repeats`` timed ``learn(steps)`` calls per model, in repeat order: an untimed warm-up (one
    rollout and update), then the models in turn inside each repeat, in their order in even repeats and the reverse
    in odd ones (A B B A: a drift of the machine's speed within two repeats hits each model alike, and neighbours stay
    neighbours). Closes the models' envs. The agents learn with subnormals flushed, as ``train_agent`` runs them
    (``fsae.runtime.flush_denormals``); IEEE floats again after. ``cpu``, when given, receives the same calls' CPU
    seconds (``time.process_time``: this process's threads on a core, without the time the machine gave to others).
    """
    flush_denormals()
    names = list(models)
    try:
        for model in models.values():
            model.learn(model.n_steps * model.n_envs)
        times: dict[str, list[float]] = {k: [] for k in models}
        for r in range(repeats):
            for k in names if r % 2 == 0 else names[::-1]:
                model = models[k]
                t0, c0 = time.perf_counter(), time.process_time()
                model.learn(steps, reset_num_timesteps=False)
                times[k].append(time.perf_counter() - t0)
                if cpu is not None:
                    cpu.setdefault(k, []).append(time.process_time() - c0)
    finally:
        torch.set_flush_denormal(False)
    for model in models.values():
        model.get_env().close()
    return times


def time_learn(models: dict[str, PPO], steps: int, repeats: int) -> dict[str, float]:
    """Steps/s of ``learn(steps)`` per model (``learn_times``): the median over the repeats."""
    return {k: steps / statistics.median(t) for k, t in learn_times(models, steps, repeats).items()}


def measure_ppo(
    steps: int = 8192,
    repeats: int = 3,
    n_envs: int = 8,
    checkpoint: str | None = None,
    device: str = "cpu",
    union: str = "stack",
    dtype: str = "float32",
    variant: str = "round",
    forward_too: bool = True,
    abstract_too: bool = True,
    copy_too: bool = True,
    task_net_too: bool = True,
) -> dict[str, float | str | list[float]]:
    """PPO training steps/s on DigitBandit (the shipped config's hyperparameters): raw vs FSAE-augmented, the FSAE in
    ``variant`` of the fast config (or ``checkpoint``); with ``forward_too`` and a variant that has a lookup, also
    augmented by the same model without it ('augmented_forward': the full forward pass, as before the lookup); with
    ``abstract_too`` and a lookup with its GEMM pass (a CPU), also 'augmented_abstract': the lookup with its abstract
    pass run by ``AbstractNet`` (as before ``fsae.gemm``); with
    ``copy_too``, also 'copy': the raw image stacked on itself, the augmented agent's two-channel policy without any
    FSAE. copy over raw is what the policy's doubled input costs; augmented over copy, what the wrapper costs. With
    ``task_net_too`` and no ``checkpoint``, also 'augmented_task_net': the same variant of the digit tasks' network
    (``TASK_CONFIG``, wider than the fast config's), the one the RL results ran with.

    Each repeat runs ``learn(steps)`` on each model again, in turn (``learn_times``; setup and the first, warm-up
    call not timed). Each augmented agent's regenerator is timed inside its learn calls (``WrapperClock``).

    Returns:
        ``{"ppo/raw_steps_per_s", "ppo/augmented_steps_per_s", "ppo/augmented_over_raw", "regen_dtype", "variant",
        "lookup"}`` and, measured in the same run, ``ppo/augmented_forward_steps_per_s`` and its ratio,
        ``ppo/copy_steps_per_s``, ``ppo/copy_over_raw``, ``ppo/augmented_over_copy`` and
        ``ppo/augmented_task_net_steps_per_s`` with its ratio, ``ppo/augmented_abstract_steps_per_s`` with its ratio,
        and ``ppo/augmented_exact_batches``: how many of the augmented agent's batches the GEMM pass left to
        ``AbstractNet`` (a winning class too close to call); ``ppo/augmented_over_raw_per_repeat``, the ratio in
        each repeat; ``ppo/<augmented condition>_wrapper_share``, the regenerator's share of the agent's learn time
        (median over the repeats), and ``ppo/augmented_over_copy_in_situ``, 1 minus augmented's share;
        ``ppo/augmented_over_raw_cpu``, the ratio by CPU time (``time.process_time``; medians), and
        ``ppo/{raw,augmented}_cpu_over_wall``, the median share of each timed call the process was on a core.
    """
    model = fast_fsae(checkpoint, variant)
    regen = Regenerator(model, device, dtype=dtype)
    conditions: dict[str, Regenerator | None] = {"raw": None, "augmented": regen}
    if forward_too and regen.lookup:
        conditions["augmented_forward"] = Regenerator(model, device, dtype=dtype, lookup=False)
    if abstract_too and regen.gemm:
        conditions["augmented_abstract"] = Regenerator(model, device, dtype=dtype, gemm=False)
    if copy_too:
        conditions["copy"] = Regenerator(None, condition="copy")
    if task_net_too and checkpoint is None:
        conditions["augmented_task_net"] = Regenerator(fast_fsae(None, variant, TASK_CONFIG), device, dtype=dtype)
    models = {name: ppo_agent(n_envs, r, device, union) for name, r in conditions.items()}
    clocks = {k: WrapperClock(m) for k, m in models.items() if k not in ("raw", "copy")}  # the FSAE-augmented agents
    cpu: dict[str, list[float]] = {}
    times = learn_times(models, steps, repeats, cpu)
    rates = {k: steps / statistics.median(t) for k, t in times.items()}
    out: dict[str, float | str | list[float]] = {f"ppo/{k}_steps_per_s": v for k, v in rates.items()}
    out |= {f"ppo/{k}_over_raw": v / rates["raw"] for k, v in rates.items() if k != "raw"}
    # The regenerator's share of each timed learn call (the first call, the warm-up, left out): the wrapper's cost in
    # situ, within one agent's run; 1 - share estimates augmented over copy without comparing two agents' timings.
    for k, clock in clocks.items():
        timed = clock.per_learn[-len(times[k]) :]  # the warm-up call left out
        out[f"ppo/{k}_wrapper_share"] = statistics.median(w / t for w, t in zip(timed, times[k], strict=True))
    if "augmented" in clocks:
        out["ppo/augmented_over_copy_in_situ"] = 1.0 - out["ppo/augmented_wrapper_share"]
    # The same ratio within each repeat (raw and augmented timed one right after the other, in either order): its
    # spread over the repeats is the noise of one run's ratio of medians.
    out["ppo/augmented_over_raw_per_repeat"] = [r / a for r, a in zip(times["raw"], times["augmented"])]
    # The same ratio by CPU time: what the wrapper costs the agent's process, without the time the machine gave to
    # other work (steal by other VMs, other jobs); and how much of each agent's wall time it was on a core.
    out["ppo/augmented_over_raw_cpu"] = statistics.median(cpu["raw"]) / statistics.median(cpu["augmented"])
    for k in ("raw", "augmented"):
        out[f"ppo/{k}_cpu_over_wall"] = statistics.median(c / t for c, t in zip(cpu[k], times[k], strict=True))
    if copy_too:
        out["ppo/augmented_over_copy"] = rates["augmented"] / rates["copy"]
    if regen.gemm:
        out["ppo/augmented_exact_batches"] = regen._lookup.exact_batches
    return out | {"regen_dtype": dtype, "variant": variant, "lookup": regen.lookup, "gemm": regen.gemm}


def measure_policy_cost(n_envs: int = 8, repeats: int = 5, device: str = "cpu", calls: int = 50) -> dict[str, float]:
    """Milliseconds of the PPO policy's forward + backward pass (``evaluate_actions``, a PPO-style loss, ``backward``)
    on a batch of ``n_envs`` augmented observations: what the agent spends on one vector step's worth of data.

    Returns ``{f"n{n_envs}/policy_fwd_bwd_ms": median over repeats of the mean over ``calls`` calls}``.
    """
    model = ppo_agent(n_envs, Regenerator(None), device)  # identity stacked on the raw image: 2 channels
    venv, policy = model.get_env(), model.policy
    policy.set_training_mode(True)
    obs, _ = policy.obs_to_tensor(venv.reset())
    actions = torch.zeros(n_envs, dtype=torch.long, device=policy.device)

    def step() -> None:
        values, log_prob, entropy = policy.evaluate_actions(obs, actions)
        loss = -log_prob.mean() + 0.5 * values.pow(2).mean() - 0.01 * entropy.mean()
        policy.optimizer.zero_grad(set_to_none=True)
        loss.backward()

    for _ in range(5):  # warm-up
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            step()
        if policy.device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) / calls)
    venv.close()
    return {f"n{n_envs}/policy_fwd_bwd_ms": 1000 * statistics.median(times)}


def wrapper_cost_ms(w: dict[str, float], n_envs: int) -> float:
    """The batched wrapper's cost per vector step (ms): its time per vector step minus the raw vector env's."""
    return 1000 * n_envs * (1 / w[f"n{n_envs}/batched_steps_per_s"] - 1 / w[f"n{n_envs}/raw_steps_per_s"])


def measure_variant_costs(
    n_envs: int = 8, steps: int = 2048, repeats: int = 3, device: str = "cpu", dtype: str = "float32"
) -> dict[str, float]:
    """The batched wrapper's cost per vector step (ms, its time per step less the raw vector env's) for each variant
    of the fast config (``variant_regenerators``), all timed in one run, alternating with the raw env in each repeat.

    Returns ``{"raw_steps_per_s": ..., f"{variant}/steps_per_s": ..., f"{variant}/wrapper_ms": ...}``.
    """
    regens = variant_regenerators(device, dtype)
    venvs: dict[str, VecEnv] = {"raw": DummyVecEnv([lambda: make_env(ENV_ID)] * n_envs)}
    for name, regen in regens.items():
        venvs[name] = VecCommonSense(DummyVecEnv([lambda: make_env(ENV_ID)] * n_envs), regen, "stack")
    rates = _interleaved_rates(venvs, n_envs, steps, repeats)
    for venv in venvs.values():
        venv.close()
    out = {"raw_steps_per_s": rates["raw"]}
    for name in regens:
        out[f"{name}/steps_per_s"] = rates[name]
        out[f"{name}/wrapper_ms"] = 1000 * n_envs * (1 / rates[name] - 1 / rates["raw"])
    return out


def _print_wrapper_table(w: dict[str, float], label: str) -> None:
    print(f"vector env steps/s on {ENV_ID} ({label}, torch threads {torch.get_num_threads()}):")
    print(f"{'n_envs':>6} {'raw':>10} {'per-env':>10} {'batched':>10} {'batched/per-env':>16} {'batched/raw':>12}")
    for n in sorted({int(k.split("/")[0][1:]) for k in w}):
        r = [w[f"n{n}/{c}_steps_per_s"] for c in ("raw", "per_env", "batched")]
        print(f"{n:>6} {r[0]:>10,.0f} {r[1]:>10,.0f} {r[2]:>10,.0f} {w[f'n{n}/batched_over_per_env']:>15.2f}x "
              f"{w[f'n{n}/batched_over_raw']:>11.2f}x")  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small budgets (about 2 minutes on a 2-core CPU)")
    p.add_argument("--checkpoint", default=None, help="FSAE checkpoint to time (default: untrained fast config)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument(
        "--dtype", default="both", choices=["float64", "float32", "both"], help="regenerator precision of the "
        "wrapper table (default: both; PPO uses float32, the agents' default)"
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    p.add_argument("--variant", default="round", choices=list(VARIANTS), help="the FSAE of the PPO timing")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    wrapper_steps, ppo_steps, repeats = (2048, 2048, 3) if args.quick else (8192, 8192, 5)
    kw = {"checkpoint": args.checkpoint, "device": args.device}
    results: dict[str, float] = {}
    for dtype in ("float64", "float32") if args.dtype == "both" else (args.dtype,):
        w = measure_wrapper(steps=wrapper_steps, repeats=repeats, dtype=dtype, **kw)
        _print_wrapper_table(w, f"{args.device}, {dtype}")
        results.update({f"{dtype}/{k}": v for k, v in w.items()})
        if "n8/batched_over_per_env" in w:
            ratio = w["n8/batched_over_per_env"]
            verdict = "ok" if ratio >= TARGET_BATCHED_RATIO else "BELOW"
            print(f"batched / per-env with 8 envs, {dtype}: {ratio:.2f}x ({verdict} target {TARGET_BATCHED_RATIO}x)")
    costs = measure_variant_costs(8, wrapper_steps, repeats, args.device)
    results.update({f"variants/{k}": v for k, v in costs.items()})
    for name in (*VARIANTS, "round_abstract", "round_forward"):
        print(f"batched wrapper cost per vector step (8 envs, float32), {name}: {costs[f'{name}/wrapper_ms']:.3f} ms")
    ppo = measure_ppo(steps=ppo_steps, repeats=repeats, dtype="float32", variant=args.variant, **kw)
    results.update(ppo)
    verdict = "ok" if ppo["ppo/augmented_over_raw"] >= TARGET_PPO_RATIO else "BELOW"
    print(f"PPO steps/s (8 envs, float32, {args.variant}): raw {ppo['ppo/raw_steps_per_s']:,.0f}, augmented "
          f"{ppo['ppo/augmented_steps_per_s']:,.0f}, ratio {ppo['ppo/augmented_over_raw']:.3f}x "
          f"({verdict} target {TARGET_PPO_RATIO}x)")  # fmt: skip
    per_repeat = ppo["ppo/augmented_over_raw_per_repeat"]
    print(f"  in each repeat: {min(per_repeat):.2f}-{max(per_repeat):.2f}x")
    print(f"  by CPU time: {ppo['ppo/augmented_over_raw_cpu']:.2f}x (CPU / wall time: raw "
          f"{ppo['ppo/raw_cpu_over_wall']:.2f}, augmented {ppo['ppo/augmented_cpu_over_wall']:.2f})")  # fmt: skip
    for key in ("augmented_abstract", "augmented_forward", "augmented_task_net"):  # measure_ppo's other agents
        if f"ppo/{key}_over_raw" in ppo:
            print(f"  {key}: {ppo[f'ppo/{key}_over_raw']:.3f}x")
    return results


if __name__ == "__main__":
    main()
