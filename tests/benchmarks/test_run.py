"""benchmarks/run.py and the modules it runs: every derived number checked against a value worked out by hand here.

The timings themselves are replaced by scripted durations (a fake clock, or a fake ``timed``), so that each rate, ratio
and cost has one right answer; the speed itself is measured by ``python benchmarks/run.py``, not by tests. The last
test runs the whole command on its smallest case (``--smoke``), in this process, to prove every section runs.
"""

import importlib.util
import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import env_steps  # benchmarks/env_steps.py
import fsae_speed
import numpy as np
import pytest
import torch
import wrapper
import wrapper_clock
from fake_clock import Clock  # tests/benchmarks/fake_clock.py
from stable_baselines3.common.vec_env import DummyVecEnv

from fsae.model import FSAE
from rl.common_sense import CommonSense, VecCommonSense

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
_spec = importlib.util.spec_from_file_location("bench_run", BENCHMARKS / "run.py")
bench_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_run)

CPU = torch.device("cpu")


def test_timed_is_median_min_max_of_the_timed_calls(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(fsae_speed, "time", clock)
    durations = iter([10.0, 20.0, 3.0, 1.0, 2.0])  # two warm-up calls (not timed), then three timed ones
    r = fsae_speed.timed(lambda: clock.advance(next(durations)), CPU, repeats=3, warmup=2)
    assert r == {"median_s": 2.0, "min_s": 1.0, "max_s": 3.0}  # sorted 1, 2, 3


def test_fsae_flops_of_the_fast_config():
    # configs/pretrain/mnist_fast.yaml, no padding: 1x28x28 -> conv 24 k4 s2 -> 24x13x13 ((28-4)//2+1 = 13)
    # -> conv 32 k3 s2 -> 32x6x6 ((13-3)//2+1 = 6) -> linear 1152 -> 64 -> linear 64 -> 10. FLOPs = 2 x multiply-adds:
    #   conv1   2 * 1 * 4*4 * 24 * 13*13  =   129,792
    #   conv2   2 * 24 * 3*3 * 32 * 6*6   =   497,664
    #   linear  2 * 1152 * 64             =   147,456
    #   linear  2 * 64 * 10               =     1,280
    #   abstract                          =   776,192; the concrete half mirrors it: fsae = 1,552,384
    flops = fsae_speed.fsae_flops(FSAE(bench_run.model_config("mnist_fast")))
    assert flops == {"abstract": 776_192, "concrete": 776_192, "fsae": 1_552_384}


def fake_timed(median: float, lo: float, hi: float):
    """A ``timed`` that runs ``fn`` once (so that its code runs) and reports the given seconds."""

    def timed(fn, device, repeats=5, warmup=2):
        fn()
        return {"median_s": median, "min_s": lo, "max_s": hi}

    return timed


def test_pretrain_and_inference_rates(monkeypatch):
    monkeypatch.setattr(fsae_speed, "timed", fake_timed(0.5, 0.25, 1.0))
    config = bench_run.model_config("mnist_fast")
    p = fsae_speed.measure_pretrain(config, CPU, batch_size=8, steps=3, repeats=1)
    assert p["abstract"]["images_per_s"] == 48.0 and p["concrete"]["images_per_s"] == 48.0  # 3 steps * 8 / 0.5 s
    rows = fsae_speed.measure_inference(config, CPU, batch_sizes=(1, 8), min_images=16, repeats=1)
    # batch 1: min(16 // 1, 64) = 16 calls, 16 images in 0.5 s = 32/s; batch 8: min(16 // 8, 64) = 2 calls = 32/s.
    # GFLOP/s = 32 images/s * 1,552,384 FLOPs (test above) / 1e9 = 0.049676288; spread = 1.0 / 0.25 = 4.
    assert [(r["batch"], r["images_per_s"], r["spread"]) for r in rows] == [(1, 32.0, 4.0), (8, 32.0, 4.0)]
    assert [r["gflop_per_s"] for r in rows] == pytest.approx([0.049676288] * 2, rel=1e-12)
    assert all(r["precision"] == "float32" and "fraction_of_peak" not in r for r in rows)  # no peak known for a CPU


def test_env_steps_rate(monkeypatch):
    seconds = iter([9.0, 0.1, 0.05, 0.2])  # warm-up (not counted), then three timed runs: median 0.1 s
    monkeypatch.setattr(env_steps, "_time_steps", lambda env, actions: next(seconds))
    assert env_steps.measure_env_steps(200, 3, ("fsae/DigitBandit-v0",)) == {"fsae/DigitBandit-v0": 2000.0}  # 200/0.1


def test_wrapper_rates_and_cost(monkeypatch):
    seen = []

    def seconds(venv, actions):  # raw 0.25 s, per-env wrapper 1.0 s, batched wrapper 0.4 s per timed run
        seen.append(len(actions))
        if isinstance(venv, VecCommonSense):
            return 0.4
        return 1.0 if isinstance(venv, DummyVecEnv) and isinstance(venv.envs[0], CommonSense) else 0.25

    monkeypatch.setattr(wrapper, "_time_vec_steps", seconds)
    w = wrapper.measure_wrapper((2,), steps=256, repeats=1)
    # 2 envs, 256 steps: 128 vector steps per timed run (a warm-up of max(128 // 5, 5) = 25 first, for each venv).
    assert seen == [25, 25, 25, 128, 128, 128]
    # 256 env steps per run: raw 256 / 0.25 = 1024/s, per-env 256 / 1.0 = 256/s, batched 256 / 0.4 = 640/s.
    assert w == pytest.approx(
        {
            "n2/raw_steps_per_s": 1024.0,
            "n2/per_env_steps_per_s": 256.0,
            "n2/batched_steps_per_s": 640.0,
            "n2/batched_over_per_env": 2.5,  # 640 / 256
            "n2/batched_over_raw": 0.625,  # 640 / 1024
        },
        rel=1e-12,
    )
    # Per vector step of 2 envs: batched 2 / 640 = 3.125 ms, raw 2 / 1024 = 1.953125 ms; the wrapper adds 1.171875 ms.
    assert wrapper.wrapper_cost_ms(w, 2) == pytest.approx(1.171875, rel=1e-12)


def test_ppo_rates(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(wrapper, "time", clock)
    learn_seconds = {"raw": iter([5.0, 2.0, 1.0, 4.0]), "augmented": iter([5.0, 4.0, 3.0, 8.0])}  # warm-up first
    closed = []

    def fake_agent(n_envs, regen, device, union="stack"):
        name = "raw" if regen is None else "augmented"
        env = SimpleNamespace(close=lambda: closed.append(name))
        learn = lambda steps, reset_num_timesteps=True: clock.advance(next(learn_seconds[name]))  # noqa: E731
        # The seconds the augmented agent's regenerator spent in each learn call, as its WrapperClock records them.
        per_learn = [1.0, 0.4, 0.6, 0.8] if name == "augmented" else None
        return SimpleNamespace(n_steps=64, n_envs=n_envs, learn=learn, get_env=lambda: env, per_learn=per_learn)

    monkeypatch.setattr(wrapper, "ppo_agent", fake_agent)
    monkeypatch.setattr(wrapper, "WrapperClock", lambda model: SimpleNamespace(per_learn=model.per_learn))
    monkeypatch.setattr(wrapper, "fast_fsae", lambda checkpoint=None, variant="round", config=None: None)  # no lookup
    r = wrapper.measure_ppo(steps=1000, repeats=3, n_envs=2, copy_too=False, task_net_too=False)
    # Medians of the timed calls: raw (2, 1, 4) -> 2 s, augmented (4, 3, 8) -> 4 s; 1000 steps each. In each repeat,
    # augmented over raw = raw's seconds / augmented's: 2/4, 1/3, 4/8. The regenerator's share of augmented's timed
    # calls (the warm-up's 1.0 s left out): 0.4 / 4, 0.6 / 3, 0.8 / 8 -> median 0.1.
    assert r == {
        "ppo/raw_steps_per_s": 500.0,
        "ppo/augmented_steps_per_s": 250.0,
        "ppo/augmented_over_raw": 0.5,
        "ppo/augmented_over_raw_per_repeat": [0.5, 1 / 3, 0.5],
        "ppo/augmented_wrapper_share": pytest.approx(0.1),
        "ppo/augmented_over_copy_in_situ": pytest.approx(0.9),
        "ppo/augmented_over_raw_cpu": 0.5,  # all wall time on a core here: the same as by the wall clock
        "ppo/raw_cpu_over_wall": 1.0,
        "ppo/augmented_cpu_over_wall": 1.0,
        "regen_dtype": "float32",
        "variant": "round",
        "lookup": False,
        "gemm": False,
    }
    assert sorted(closed) == ["augmented", "raw"]


def test_wrapper_clock_times_the_regenerator_inside_each_learn_call(monkeypatch):
    """A real PPO agent (2 envs): the clock sits between its VecCommonSense and the regenerator, passes observations
    through unchanged, and records per learn call the (fake) seconds spent in the regenerator: one tick a call."""
    regen = wrapper.Regenerator(wrapper.fast_fsae(None, "round"))
    model = wrapper.ppo_agent(2, regen, "cpu")
    clock = wrapper.WrapperClock(model)
    assert wrapper_clock.vec_common_sense(model.get_env()).regenerator is clock and clock.regenerator is regen
    assert wrapper_clock.vec_common_sense(wrapper.ppo_agent(2, None, "cpu").get_env()) is None
    fake_time, calls = Clock(), []

    def ticking(obs):
        calls.append(len(obs))
        fake_time.advance(0.25)
        return regen(obs)

    clock.regenerator = ticking
    monkeypatch.setattr(wrapper_clock, "time", fake_time)
    model.learn(model.n_steps * 2)  # the first call resets the envs: one regeneration more than the rollout's steps
    model.learn(model.n_steps * 2, reset_num_timesteps=False)
    # A batch of 2, or 4 where both envs' 16-step episodes ended (their terminal observations regenerated with them).
    assert len(calls) == 2 * model.n_steps + 1 and set(calls) == {2, 4}
    assert clock.per_learn == [0.25 * (model.n_steps + 1), 0.25 * model.n_steps]
    obs = np.random.default_rng(0).integers(0, 256, (2, 1, 28, 28), dtype=np.uint8)
    assert np.array_equal(clock(obs), regen(obs))
    model.get_env().close()


def test_ppo_rates_with_and_without_the_lookup(monkeypatch):
    """The round FSAE has a lookup: PPO is timed raw, augmented (lookup), augmented by the forward pass, augmented by
    the lookup with AbstractNet's pass instead of the GEMM pass, 'copy' (the two-channel policy without an FSAE) and
    augmented by the digit tasks' network, in turn."""
    clock = Clock()
    monkeypatch.setattr(wrapper, "time", clock)
    order = []
    task_layers = wrapper.fast_fsae(None, "round", wrapper.TASK_CONFIG).config.layers
    assert task_layers != wrapper.fast_fsae(None, "round").config.layers  # the two networks differ

    def fake_agent(n_envs, regen, device, union="stack"):
        name = "raw" if regen is None else "copy" if regen.model is None else "augmented" if regen.lookup else "forward"
        if name == "augmented" and not regen.describe()["gemm"]:
            name = "abstract"
        if regen is not None and regen.model is not None and regen.model.config.layers == task_layers:
            name = "task"
        seconds = {"raw": 1.0, "augmented": 1.25, "forward": 2.0, "abstract": 1.6, "copy": 1.0625}
        seconds = seconds.get(name, 1.25 * 1.0625)  # the task network's agent
        cpu_seconds = {"raw": 0.5, "augmented": 1.0}.get(name, seconds)  # raw on a core half its time, augmented all

        def learn(steps, reset_num_timesteps=True):
            order.append(name)
            flushed.append(bool((torch.full((2,), 1e-39) * 1.5 == 0).all()))  # agents learn as train_agent runs them
            clock.advance(seconds, cpu_seconds)

        env = SimpleNamespace(close=lambda: None)
        return SimpleNamespace(n_steps=64, n_envs=n_envs, learn=learn, get_env=lambda: env, seconds=seconds, name=name)

    def fake_clock(model):  # each learn call (the warm-up and two repeats) spends a tenth of its time regenerating
        clocked.append(model.name)
        return SimpleNamespace(per_learn=[0.1 * model.seconds] * 3)

    monkeypatch.setattr(wrapper, "ppo_agent", fake_agent)
    monkeypatch.setattr(wrapper, "WrapperClock", fake_clock)
    flushed, clocked = [], []
    r = wrapper.measure_ppo(steps=500, repeats=2, n_envs=2)
    assert flushed == [True] * 18  # subnormals flushed while every agent learns
    assert bool((torch.full((2,), 1e-39) * 1.5 != 0).all())  # and computed in full again afterwards
    # The warm-up and the first repeat in the models' order, the second repeat in the reverse order.
    models = ["raw", "augmented", "forward", "abstract", "copy", "task"]
    assert order == models + models + models[::-1]
    assert clocked == ["augmented", "forward", "abstract", "task"]  # the FSAE-augmented agents: not raw, not copy
    # 500 steps in 1.0 / 1.25 / 2.0 / 1.0625 / 1.328125 s: 500, 400, 250, 470.588..., 376.47... steps/s; over raw
    # 0.8, 0.5, 0.941... and 0.75294...; augmented over copy 400 / (500 / 1.0625) = 0.85.
    assert r.pop("ppo/augmented_over_raw_per_repeat") == pytest.approx([0.8, 0.8], rel=1e-12)  # 1.0 / 1.25 in each
    info = {k: r.pop(k) for k in ("regen_dtype", "variant", "lookup", "gemm")}
    assert info == {"regen_dtype": "float32", "variant": "round", "lookup": True, "gemm": True}
    assert r.pop("ppo/augmented_exact_batches") == 0  # no batch reached the regenerator: the agents are fakes
    assert r == pytest.approx(
        {
            "ppo/raw_steps_per_s": 500.0,
            "ppo/augmented_steps_per_s": 400.0,
            "ppo/augmented_forward_steps_per_s": 250.0,
            "ppo/copy_steps_per_s": 500 / 1.0625,
            "ppo/augmented_over_raw": 0.8,
            "ppo/augmented_forward_over_raw": 0.5,
            "ppo/augmented_abstract_steps_per_s": 500 / 1.6,
            "ppo/augmented_abstract_over_raw": 1 / 1.6,
            "ppo/augmented_abstract_wrapper_share": 0.1,
            "ppo/copy_over_raw": 1 / 1.0625,
            "ppo/augmented_over_copy": 0.85,
            "ppo/augmented_task_net_steps_per_s": 500 / 1.328125,
            "ppo/augmented_task_net_over_raw": 1 / 1.328125,
            "ppo/augmented_wrapper_share": 0.1,
            "ppo/augmented_forward_wrapper_share": 0.1,
            "ppo/augmented_task_net_wrapper_share": 0.1,
            "ppo/augmented_over_copy_in_situ": 0.9,
            "ppo/augmented_over_raw_cpu": 0.5,  # 0.5 / 1.0 CPU seconds
            "ppo/raw_cpu_over_wall": 0.5,
            "ppo/augmented_cpu_over_wall": 0.8,  # 1.0 / 1.25
        },
        rel=1e-12,
    )


def test_variant_costs(monkeypatch):
    """Each variant's batched wrapper against the raw env: cost per vector step = n_envs x (1/its rate - 1/raw's)."""
    seconds = {"raw": 0.5, "plain": 1.5, "round": 0.75, "round_abstract": 1.0, "round_forward": 1.25, "jump": 1.5}
    seconds["jump_all"] = 1.75

    def timing(venv, actions):
        if not isinstance(venv, VecCommonSense):
            return seconds["raw"]
        regen = venv.regenerator
        if regen.model.config.round:
            gemm = regen.describe()["gemm"]
            return seconds["round_forward" if not regen.lookup else "round" if gemm else "round_abstract"]
        return seconds[{"[]": "plain", "last": "jump", "all": "jump_all"}[str(regen.model.config.jumps)]]

    monkeypatch.setattr(wrapper, "_time_vec_steps", timing)
    c = wrapper.measure_variant_costs(n_envs=2, steps=200, repeats=1)
    # 200 env steps per timing: raw 200 / 0.5 = 400/s, round 200 / 0.75 = 266.67/s. Per vector step of 2 envs:
    # raw 2 / 400 = 5 ms, round 2 / 266.67 = 7.5 ms: the lookup costs 2.5 ms; plain 2 / (200 / 1.5) = 15 ms: 10 ms.
    assert c["raw_steps_per_s"] == 400.0
    expected = {"plain": 10.0, "round": 2.5, "round_abstract": 5.0, "round_forward": 7.5, "jump": 10.0}
    expected["jump_all"] = 12.5
    assert {k: c[f"{k}/wrapper_ms"] for k in expected} == pytest.approx(expected, rel=1e-12)
    assert c["round/steps_per_s"] == pytest.approx(800 / 3, rel=1e-12)


def test_concrete_phase_ratio(monkeypatch):
    """One pass against one network after another, alternating: images/s from the scripted medians."""
    # per repeat: one pass on 2 and on 4 batches, then separate on 2 and on 4; the differences are what 2 batches
    # cost after the initialisation: one pass 2, 3, 1 s (median 2 s), separate 5, 4, 6 s (median 5 s)
    durations = iter([1.0, 3.0, 1.0, 6.0, 1.0, 4.0, 1.0, 5.0, 1.0, 2.0, 1.0, 7.0])

    def timed(fn, device, repeats=5, warmup=2):
        return {"median_s": next(durations)}

    monkeypatch.setattr(fsae_speed, "timed", timed)
    cfg = bench_run.load_config(bench_run.PretrainConfig, bench_run.CONFIGS / "mnist_fast.yaml")
    r = fsae_speed.measure_concrete_phase(cfg, CPU, batches=2, repeats=3)
    # 2 batches of 128 = 256 images: 256 / 2 = 128 img/s in one pass, 256 / 5 = 51.2 one after another: 2.5x.
    assert r == pytest.approx(
        {"one_pass_images_per_s": 128.0, "separate_images_per_s": 51.2, "one_pass_over_separate": 2.5}, rel=1e-12
    )


def test_run_reports_the_wrapper_cost_against_the_policy(monkeypatch, capsys):
    rates = {"n2/raw_steps_per_s": 1024.0, "n2/per_env_steps_per_s": 256.0, "n2/batched_steps_per_s": 640.0}
    rates |= {"n2/batched_over_per_env": 2.5, "n2/batched_over_raw": 0.625}
    monkeypatch.setattr(wrapper, "measure_wrapper", lambda n_envs, steps, repeats, device, dtype: dict(rates))
    monkeypatch.setattr(wrapper, "measure_policy_cost", lambda n, repeats, device, calls: {"n2/policy_fwd_bwd_ms": 0.5})
    costs = {"raw_steps_per_s": 1024.0, "round/wrapper_ms": 0.25, "plain/wrapper_ms": 1.5}
    monkeypatch.setattr(wrapper, "measure_variant_costs", lambda n, steps, repeats, device: dict(costs))
    r = bench_run.run(quick=False, device=CPU, sections=["wrapper"], smoke=True)
    cost = r["wrapper"]["cost_per_vector_step"]
    # wrapper 1.171875 ms per vector step of 2 envs (test above) against the policy's 0.5 ms: 2.34375 times.
    assert cost == pytest.approx(
        {"n_envs": 2, "wrapper_ms": 1.171875, "policy_fwd_bwd_ms": 0.5, "wrapper_over_policy": 2.34375}, rel=1e-12
    )
    bench_run.print_table(r)
    out = capsys.readouterr().out
    assert "n_envs   2  steps/s: raw     1,024  per_env       256  batched       640" in out
    assert "batched/per-env 2.50x  batched/raw 0.62x" in out
    assert "(2 envs, float32) 1.17 ms, policy forward+backward on the same batch 0.50 ms: ratio 2.34" in out
    assert "cost per vector step, round         0.250 ms" in out and r["wrapper"]["variants"] == costs


def test_ppo_line_shows_each_repeats_ratio_and_the_task_network(capsys):
    q = {"ppo/raw_steps_per_s": 500.0, "ppo/augmented_steps_per_s": 470.0, "ppo/augmented_over_raw": 0.9484}
    q |= {"ppo/augmented_over_raw_per_repeat": [0.97, 0.912, 0.94], "regen_dtype": "float32", "variant": "round"}
    q |= {"ppo/augmented_task_net_steps_per_s": 455.0, "ppo/augmented_task_net_over_raw": 0.91}
    q |= {"ppo/augmented_wrapper_share": 0.0312, "ppo/augmented_over_copy_in_situ": 0.9688}
    q |= {"ppo/augmented_over_raw_cpu": 0.963, "ppo/raw_cpu_over_wall": 0.991, "ppo/augmented_cpu_over_wall": 0.87}
    bench_run.print_table({"machine": {"date": "2026-12-01", "device": "cpu", "cpu_count": 2}, "ppo": q})
    out = capsys.readouterr().out
    assert "ratio by CPU time 0.96x (CPU / wall time: raw 0.99, augmented 0.87)" in out
    # the ratio to three places: 0.9484 must not read as the target's 0.95
    assert "raw 500 steps/s  augmented (round) 470 steps/s  ratio 0.948x (in each repeat 0.91-0.97x)" in out
    assert "augmented, the digit tasks' wider net 455 steps/s  ratio 0.91x" in out
    assert "the wrapper's share of augmented's learn time, in situ 0.031 (augmented over copy from it 0.969x)" in out


@pytest.mark.slow  # about a minute: every benchmark section end to end (the figures are tested above with fake clocks)
def test_run_smoke_writes_every_section(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench_run.main(["--smoke", "--device", "cpu", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert {"machine", "pretrain", "inference", "env", "wrapper", "ppo", "threads"} <= set(r)
    assert r["smoke"] is True and r["machine"]["device"] == "cpu"
    assert set(r["pretrain"]) == {"mnist_fast"} and r["pretrain"]["mnist_fast"]["abstract"]["images_per_s"] > 0
    assert [row["batch"] for row in r["inference"]["mnist_fast"]["rows"]] == [1, 8]
    assert set(r["env"]) == {"fsae/DigitBandit-v0", "fsae/DigitSum-v0", "fsae/DigitLock-v0"}
    assert set(r["wrapper"]) == {"float32", "float64", "cost_per_vector_step", "variants", "peak_memory_mb"}
    assert {f"{v}/wrapper_ms" for v in ("plain", "round", "round_forward", "jump", "jump_all")} <= set(
        r["wrapper"]["variants"]
    )
    assert r["pretrain"]["mnist_fast"]["concrete_phase"]["one_pass_over_separate"] > 0
    assert r["threads"]["agent/threads1_steps_per_s"] > 0 and r["ppo"]["lookup"] is True
    assert r["wrapper"]["float32"]["n2/batched_over_per_env"] > 0
    assert r["wrapper"]["cost_per_vector_step"]["n_envs"] == 2
    assert r["ppo"]["ppo/augmented_over_raw"] > 0 and r["ppo"]["ppo/augmented_task_net_over_raw"] > 0
    assert len(r["ppo"]["ppo/augmented_over_raw_per_repeat"]) == 1  # one repeat in the smoke case
    assert r["machine"]["threads_by_job"]["agent"] == 1  # the agents' sections as train_agent runs them
    assert r["ppo"]["ppo/augmented_over_raw_cpu"] > 0 and 0 < r["ppo"]["ppo/raw_cpu_over_wall"] <= 2.01  # 2 threads
    assert 0 < r["ppo"]["ppo/augmented_wrapper_share"] < 1 and 0 < r["ppo"]["ppo/augmented_task_net_wrapper_share"] < 1
    table = capsys.readouterr().out.splitlines()
    assert r["ppo"]["n_envs"] == 2 and any(line.startswith("ppo ") and " 2 envs " in line for line in table)
    sections = [line.split()[0] for line in table[1:]]  # after the header line
    assert [k for k, _ in itertools.groupby(sections)] == ["pretrain", "inference", "env", "wrapper", "ppo", "threads"]


def test_each_section_runs_at_its_jobs_thread_count(monkeypatch):
    """0: each job's count as the project runs it (fsae.threads); N pins it for every section. Recorded in the JSON."""
    counts = []
    monkeypatch.setattr(torch, "set_num_threads", counts.append)  # torch's own count is left as it is
    monkeypatch.setattr(bench_run, "measure_env_steps", lambda n_steps, repeats: {})
    r = bench_run.run(True, torch.device("cpu"), ["env"], smoke=True, threads=0)
    assert r["machine"]["threads_by_job"] == {"pretrain": counts[-1]} and counts[-1] >= 1
    r = bench_run.run(True, torch.device("cpu"), ["env"], smoke=True, threads=3)
    assert r["machine"]["threads_by_job"] == {"pretrain": 3} and counts[-1] == 3
