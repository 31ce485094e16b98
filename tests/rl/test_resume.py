"""``train_agent.py --resume``: a run killed (SIGKILL) after its first checkpoint finishes from that checkpoint, with
its step count, curves and evaluations continued, not restarted; and what cannot be resumed is refused in one line."""

from __future__ import annotations

import base64
import csv
import dataclasses
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import warnings
import zipfile
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fsae.checkpoint import save_fsae, sha256_file
from fsae.config import ConfigError, load_config, to_dict
from fsae.model import FSAE, FSAEConfig, LayerSpec
from rl.agent import build_model
from rl.config import AgentConfig
from rl.env_factory import make_vec_env_for
from rl.resume import (
    check_resumable,
    checkpoints,
    config_differences,
    load_latest,
    restore_evaluations,
    restore_progress,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_agent.py"
# 2 envs x 64 steps per rollout; a checkpoint every 128 steps, an evaluation every 256.
TINY = ["torch_threads=1", "progress_bar=false", "eval_freq=256", "eval_episodes=2", "checkpoint_freq=128",
        "env_kwargs.episode_length=8", "eval_env_kwargs.episode_length=8", "hyperparams.n_steps=64",
        "hyperparams.batch_size=64", "hyperparams.n_epochs=1"]  # fmt: skip
TOTAL = 1024
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _argv(logdir: Path, *extra: str) -> list[str]:
    argv = [sys.executable, str(SCRIPT), "--config", str(ROOT / "configs" / "agent" / "digit_bandit.yaml")]
    return [*argv, "--total-steps", str(TOTAL), "--n-envs", "2", "--device", "cpu", "--logdir", str(logdir),
            *extra, "--set", *TINY]  # fmt: skip


def _assert_same_weights(a, b) -> None:
    """Two SB3 models' policy weights are bit-identical."""
    for name, value in a.policy.state_dict().items():
        torch.testing.assert_close(b.policy.state_dict()[name], value, rtol=0, atol=0, msg=name)


def _saved_checkpoint(tmp_path: Path, sets: list[str], steps: int):
    """A tiny agent of the DigitBandit config (+ ``sets``) trained ``steps`` steps and saved as the run folder's
    ``checkpoints/agent_<steps>_steps.zip``: (config, its 2-env VecEnv, the trained model, the checkpoint's path)."""
    cfg = load_config(
        AgentConfig, ROOT / "configs" / "agent" / "digit_bandit.yaml", ["n_envs=2", "torch_threads=1", *sets]
    )
    venv = make_vec_env_for(cfg, None, 2, 0, {})
    trained = build_model(cfg, venv, "cpu")
    trained.learn(steps)
    path = tmp_path / "checkpoints" / f"agent_{steps}_steps.zip"
    path.parent.mkdir()
    trained.save(path)
    return cfg, venv, trained, path


def _logged_steps(run: Path) -> list[int]:
    """``time/total_timesteps`` of each row of the run's progress.csv."""
    rows = list(csv.DictReader((run / "progress.csv").open()))
    return [int(float(r["time/total_timesteps"])) for r in rows if r.get("time/total_timesteps")]


def _kill_after_first_checkpoint(logdir: Path, run: Path) -> None:
    proc = subprocess.Popen(_argv(logdir), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = run / "checkpoints" / "agent_128_steps.zip"
    deadline = time.monotonic() + 120
    while not first.is_file():  # complete once it exists: checkpoints are written to a temporary file and renamed
        assert proc.poll() is None, f"the run ended before its first checkpoint: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "metrics.json").exists(), "the run finished before it was killed; make TOTAL larger"


def test_killed_run_resumes_from_its_checkpoint(tmp_path, capsys, load_script):
    run = tmp_path / "DigitBandit-v0" / "none" / "seed0"
    _kill_after_first_checkpoint(tmp_path, run)
    newest = max(int(p.name.split("_")[1]) for p in (run / "checkpoints").glob("agent_*_steps.zip"))
    at_kill = _logged_steps(run)

    def refused(argv: list[str]) -> str:  # the script's main in this process: exit status 2, its one error line
        assert load_script("train_agent").main(argv[2:]) == 2  # argv without the interpreter and the script
        return capsys.readouterr().err.strip().splitlines()[-1]

    # Without --resume the folder is refused, and so is --resume with another config; with the same, the run finishes.
    assert "already holds a run" in refused(_argv(tmp_path))
    other = refused([*_argv(tmp_path, "--resume"), "hyperparams.n_epochs=2"])
    assert "differs from the run's config.yaml in hyperparams" in other, other
    proc = subprocess.run(_argv(tmp_path, "--resume"), env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]

    metrics = json.loads((run / "metrics.json").read_text())
    # The newest checkpoint: a kill during a save leaves a temporary file, never a partial agent_<step>_steps.zip.
    assert metrics["timesteps"] == TOTAL and metrics["resumed_from"] == newest
    steps = sorted(int(p.name.split("_")[1]) for p in (run / "checkpoints").glob("agent_*_steps.zip"))
    assert steps == list(range(128, TOTAL + 1, 128))
    # Curves: the first run's rows up to the checkpoint, exactly as the kill left them, then the resumed run's, none
    # twice. progress.csv has a row per rollout (128 steps) and one more per evaluation (every 256). The checkpoint is
    # written after the update on its rollout, which SB3 starts after writing the rollout's row: the rows up to the
    # checkpoint's step were on disk at the kill, and what came after it is dropped.
    logged = _logged_steps(run)
    rollouts = list(range(newest + 128, TOTAL + 1, 128))
    resumed = [step for step in rollouts for _ in range(1 + (step % 256 == 0))]
    assert logged[-len(resumed) :] == resumed and logged == sorted(logged), logged
    assert logged[: -len(resumed)] == [step for step in at_kill if step <= newest], (at_kill, logged)
    assert newest in at_kill, at_kill  # the checkpoint's rollout row was written before it
    assert set(range(128, newest, 128)) <= set(at_kill), at_kill
    assert max(Counter(logged).values()) == 2
    curve = EventAccumulator(str(run)).Reload().Scalars("rollout/ep_rew_mean")  # TensorBoard drops points after the
    curve_steps = [e.step for e in curve]  # checkpoint logged before the kill
    assert curve_steps == sorted(set(curve_steps)) and curve_steps[-len(rollouts) :] == rollouts, curve_steps
    # Evaluations on the first run's grid (256, 512, ...), also when the kill came at an odd multiple of 128.
    evals = np.load(run / "eval" / "evaluations.npz")
    np.testing.assert_array_equal(evals["timesteps"], range(256, TOTAL + 1, 256))
    assert evals["results"].shape == (TOTAL // 256, 2)
    command = (run / "command.txt").read_text()
    assert f"# resumed at step {newest}:" in command and "--resume" in command

    # A finished run is not resumed again.
    assert refused(_argv(tmp_path, "--resume")).startswith("error: --resume: the run in")

    # A checkpoint left unreadable some other way (a copy cut short, a full disk) is skipped for the one before it.
    newest_zip = run / "checkpoints" / f"agent_{TOTAL}_steps.zip"
    newest_zip.write_bytes(newest_zip.read_bytes()[:2000])
    cfg = load_config(AgentConfig, run / "config.yaml")
    venv = make_vec_env_for(cfg, None, 1, 0, dict(cfg.env_kwargs))
    model = build_model(cfg, venv, "cpu")
    with pytest.warns(UserWarning, match=f"agent_{TOTAL}_steps.zip: .*; resumed from the older agent_{TOTAL - 128}_"):
        step = load_latest(model, run, "cpu")
    assert step == model.num_timesteps == TOTAL - 128
    saved = PPO.load(run / "checkpoints" / f"agent_{TOTAL - 128}_steps.zip", device="cpu")  # our own file: trusted
    _assert_same_weights(saved, model)
    assert model._n_updates == saved._n_updates > 0

    # None loads: one error naming each, and no warning.
    for _, path in checkpoints(run):
        path.write_bytes(b"not a zip")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ConfigError, match=f"could be loaded \\(agent_{TOTAL}_steps.zip: BadZipFile: .*; agent_"):
            load_latest(model, run, "cpu")
    venv.close()


def test_where_and_how_fast_may_differ_on_resume():
    """The folder is found from the settings that decide what is trained; its path spelled otherwise, another device,
    thread count or vector env type change where and how fast the run goes on, not what it learns."""
    cfg = load_config(AgentConfig, ROOT / "configs" / "agent" / "digit_bandit.yaml")
    saved = yaml.safe_load(yaml.safe_dump(to_dict(cfg)))
    elsewhere = {**saved, "logdir": saved["logdir"] + "/", "device": "cuda", "torch_threads": 4, "vec_env": "subproc"}
    assert config_differences(saved, elsewhere) == ""
    assert config_differences(saved, {**saved, "seed": 1}) == "seed: 0 -> 1"


def test_resume_does_not_unpickle_the_checkpoint(tmp_path):
    """SB3's ``load`` runs whatever a checkpoint's pickled ``data`` entries say; ``load_latest`` reads none of them."""
    cfg, venv, trained, path = _saved_checkpoint(tmp_path, ["hyperparams.n_steps=32", "hyperparams.batch_size=64"], 128)

    marker = tmp_path / "code_ran"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch() or __import__('stable_baselines3').PPO.policy_aliases"
    code += "['CnnPolicy']"

    class Planted:  # unpickling it calls eval(code), which touches the marker and returns the right policy class
        def __reduce__(self):
            return eval, (code,)

    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    data = json.loads(files["data"])
    data["policy_class"][":serialized:"] = base64.b64encode(pickle.dumps(Planted())).decode()
    files["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)

    model = build_model(cfg, venv, "cpu")
    assert load_latest(model, tmp_path, "cpu") == 128 and model.num_timesteps == 128
    assert not marker.exists()
    _assert_same_weights(trained, model)
    PPO.load(path, device="cpu")  # the control: SB3's own loader runs the planted code
    assert marker.exists()
    venv.close()


def test_restore_drops_what_was_logged_after_the_checkpoint(tmp_path):
    """Rows, TensorBoard points and evaluations logged between the checkpoint and the kill are not kept."""
    old = [{"time/total_timesteps": str(t), "rollout/ep_rew_mean": str(t / 100)} for t in (128, 256, 384)]
    logger = configure(str(tmp_path), ["csv", "tensorboard"])
    for row in old:  # the first run: steps 128, 256, 384
        logger.record("rollout/ep_rew_mean", float(row["rollout/ep_rew_mean"]))
        logger.record("time/total_timesteps", int(row["time/total_timesteps"]), exclude="tensorboard")
        logger.dump(int(row["time/total_timesteps"]))
    logger.close()
    # A resumed run is a new process, seconds later: its event file's name (events.out.tfevents.<unix time>.<host>.
    # <pid>.<writer count>) sorts after the first's, which is the order TensorBoard reads them in. In one process and
    # one second only the writer count tells them apart, and 10 sorts before 9: wait for the next second, as a real
    # resume would.
    time.sleep(1.01 - time.time() % 1)
    logger = configure(str(tmp_path), ["csv", "tensorboard"])  # resumed from the checkpoint at 256
    restore_progress(logger, 256, old)
    logger.record("rollout/ep_rew_mean", 9.0)
    logger.record("time/total_timesteps", 384, exclude="tensorboard")
    logger.dump(384)
    logger.close()
    rows = list(csv.DictReader((tmp_path / "progress.csv").open()))
    assert [(r["time/total_timesteps"], r["rollout/ep_rew_mean"]) for r in rows] == [
        ("128", "1.28"), ("256", "2.56"), ("384", "9.0")
    ]  # fmt: skip
    curve = EventAccumulator(str(tmp_path)).Reload().Scalars("rollout/ep_rew_mean")
    assert [e.step for e in curve] == [128, 256, 384]  # the first run's point at 384 is purged
    np.testing.assert_allclose([e.value for e in curve], [1.28, 2.56, 9.0], rtol=1e-6)  # float32 in the events

    np.savez(tmp_path / "evaluations.npz", timesteps=[128, 256, 384], results=[[1.0, 3.0], [5.0, 5.0], [9.0, 9.0]],
             ep_lengths=[[8, 8]] * 3, success_rate=[np.nan] * 3)  # fmt: skip
    callback = SimpleNamespace(_history={"timesteps": [], "results": [], "ep_lengths": [], "success_rate": []})
    restore_evaluations(callback, tmp_path / "evaluations.npz", 256)
    assert callback._history["timesteps"] == [128, 256] and callback.best_mean_reward == 5.0
    # best_model.zip written by the evaluation at 384 (9.0, better than any kept) is not the agent of the best kept
    # one (5.0 at 256): removed. Written by a kept evaluation (the one at 384 no better): kept.
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    for later, removed in ((9.0, True), (4.0, False)):
        np.savez(run / "eval" / "evaluations.npz", timesteps=[128, 256, 384], results=[[1.0], [5.0], [later]])
        (run / "best_model.zip").write_bytes(b"an agent")
        restore_evaluations(callback, run / "eval" / "evaluations.npz", 256)
        assert (run / "best_model.zip").exists() is not removed and callback.best_mean_reward == 5.0


def test_resumed_run_ends_like_an_uninterrupted_one(tmp_path):
    """Kill at a known point (the checkpoint at 4096 of 8192 steps), resume, and compare the final test reward with an
    uninterrupted run of the same seed. SB3 checkpoints hold no RNG or environment state, so the two differ by
    sampling noise only; a resume that lost the policy or restarted it would end near the reward at the kill.

    The uninterrupted run goes on beside the other two (one torch thread each: on two cores the test takes the time
    of about one run, not two)."""
    total = 8192
    extra = ["--total-steps", str(total), "--n-envs", "8", "--set", "torch_threads=1", "progress_bar=false",
             "eval_freq=0", "eval_episodes=50", "checkpoint_freq=4096"]  # fmt: skip
    base = [sys.executable, str(SCRIPT), "--config", str(ROOT / "configs" / "agent" / "digit_bandit.yaml"),
            "--device", "cpu"]  # fmt: skip

    def start(name: str, *argv: str) -> subprocess.Popen:  # output to a file: a full pipe would stall the run
        with (tmp_path / f"{name}.log").open("w") as log:  # the child keeps its own copy of the file descriptor
            return subprocess.Popen([*base, *argv, *extra], env=ENV, stdout=log, stderr=subprocess.STDOUT)

    def finished(proc: subprocess.Popen, name: str) -> None:
        assert proc.wait(timeout=600) == 0, (tmp_path / f"{name}.log").read_text()[-2000:]

    def final_reward(logdir: Path) -> dict:
        return json.loads((logdir / "DigitBandit-v0" / "none" / "seed0" / "metrics.json").read_text())

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    uninterrupted = start("whole", "--logdir", str(whole))
    proc = start("cut", "--logdir", str(cut))
    run = cut / "DigitBandit-v0" / "none" / "seed0"
    first = run / "checkpoints" / "agent_4096_steps.zip"
    deadline = time.monotonic() + 300
    while not first.is_file():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended or stalled before its checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert not (run / "metrics.json").exists()
    resumed = start("resumed", "--logdir", str(cut), "--resume")
    # What the agent achieves at the kill: the checkpoint's policy evaluated like the final one (50 test episodes).
    at_kill = _evaluate_checkpoint(first, episodes=50)

    finished(uninterrupted, "whole")
    finished(resumed, "resumed")
    a, b = final_reward(whole), final_reward(cut)
    assert b["resumed_from"] == 4096 and a["timesteps"] == b["timesteps"] == total
    assert a["best_eval/mean_reward"] is None  # eval_freq=0: no periodic evaluation (JSON null, not -Infinity)
    ra, rb = a["final_eval/mean_reward"], b["final_eval/mean_reward"]
    # Episodes of 16 steps, rewards 0..16. Seed-to-seed spread at this budget is about +-1.5 (docs/results/rl.md).
    assert abs(ra - rb) < 2.0, (ra, rb, at_kill)
    assert rb > at_kill + 2.0, (ra, rb, at_kill)


def _evaluate_checkpoint(path: Path, episodes: int) -> float:
    from stable_baselines3.common.evaluation import evaluate_policy

    cfg = load_config(AgentConfig, ROOT / "configs" / "agent" / "digit_bandit.yaml", ["n_envs=1"])
    venv = make_vec_env_for(cfg, None, 1, 10_000, dict(cfg.eval_env_kwargs))
    model = PPO.load(path, device="cpu")
    mean, _ = evaluate_policy(model, venv, n_eval_episodes=episodes, deterministic=True)
    venv.close()
    return float(mean)


@pytest.mark.parametrize("algo", ["a2c", "dqn"])
def test_load_latest_restores_weights_and_counters_for_other_algorithms(tmp_path, algo):
    hyper = {"a2c": "{learning_rate: 0.001, n_steps: 8}",
             "dqn": "{learning_rate: 0.001, learning_starts: 50, buffer_size: 1000, batch_size: 32}"}  # fmt: skip
    cfg, venv, trained, _ = _saved_checkpoint(tmp_path, [f"algo={algo}", f"hyperparams={hyper[algo]}"], 400)
    model = build_model(cfg, venv, "cpu")
    assert load_latest(model, tmp_path, "cpu") == 400
    for key in ("num_timesteps", "_n_updates", "_episode_num", "_n_calls", "exploration_rate"):
        assert getattr(model, key, None) == getattr(trained, key, None), key
    assert model._n_updates > 0 and (algo != "dqn" or model._n_calls == 200)
    if algo == "dqn":  # no replay buffer in the checkpoint: 50 new transitions before the gradient steps resume
        assert model.learning_starts == 400 + 50
        model.learn(48, reset_num_timesteps=False)
        assert model._n_updates == trained._n_updates and model.replay_buffer.size() == 48 // 2
    _assert_same_weights(trained, model)
    saved, loaded = trained.policy.optimizer.state_dict()["state"], model.policy.optimizer.state_dict()["state"]
    assert saved.keys() == loaded.keys() and len(saved) > 0  # A2C's RMSprop / DQN's Adam statistics
    for k, state in saved.items():
        for name, value in state.items():
            torch.testing.assert_close(loaded[k][name], value, rtol=0, atol=0, msg=f"{k}.{name}")
    model.learn(64, reset_num_timesteps=False)  # training goes on from the checkpoint's step
    assert model.num_timesteps >= 464
    venv.close()


def test_optimizer_state_of_an_older_plain_layout_run_takes_the_weights_layout(tmp_path):
    """A run saved before SmallCNN went channels-last resumes into a channels-last model: its Adam moments come back
    with their weights' memory layout (not a mix of the two at every step) and unchanged values."""
    cfg, venv, trained, _ = _saved_checkpoint(tmp_path, ["policy.channels_last=false"], 256)
    model = build_model(
        dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, channels_last=True)), venv, "cpu"
    )
    assert load_latest(model, tmp_path, "cpu") == 256
    saved = trained.policy.optimizer.state_dict()["state"]
    params = list(model.policy.parameters())
    convs = [i for i, p in enumerate(params) if p.dim() == 4]
    assert convs and all(params[i].is_contiguous(memory_format=torch.channels_last) for i in convs)
    for i, p in enumerate(params):
        state = model.policy.optimizer.state[p]
        for name in ("exp_avg", "exp_avg_sq"):
            assert state[name].stride() == p.stride(), (i, name)
            assert torch.equal(state[name], saved[i][name]), (i, name)  # the same values, in the weight's layout
    assert any(saved[i]["exp_avg"].stride() != params[i].stride() for i in convs)  # there was something to match
    model.learn(64, reset_num_timesteps=False)
    venv.close()


def test_a_moved_checkpoint_of_the_same_bytes_is_the_same_run(tmp_path):
    """A run resumes when its frozen model's checkpoint has moved (a repository or logdir moved, the checkpoint copied
    into results/): the file the resumed run reads is compared with the SHA-256 the run recorded, not by path; other
    bytes, no file, or no file named are refused. The autoencoder condition, whose sweeps also set fsae_checkpoint,
    compares the autoencoder it reads."""

    def tiny(path: Path, seed: int, variant: str = "round") -> Path:
        torch.manual_seed(seed)
        net = FSAE(FSAEConfig((1, 28, 28), [LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 10)], round=True))
        return save_fsae(path, net, variant=variant)

    def started(name: str, condition: str, used: Path, **paths: Path) -> tuple[Path, dict]:
        """A run folder as train_agent leaves it after a checkpoint: config with ``paths``, fsae.json of ``used``."""
        cfg = load_config(AgentConfig, ROOT / "configs" / "agent" / "digit_bandit.yaml", [f"condition={condition}"])
        config = to_dict(dataclasses.replace(cfg, **{k: str(v) for k, v in paths.items()}))
        run = tmp_path / name
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "agent_128_steps.zip").write_bytes(b"PK")  # check_resumable only asks that one exists
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        (run / "fsae.json").write_text(json.dumps({"checkpoint": str(used), "sha256": sha256_file(used)}))
        return run, config

    def copied(src: Path, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(src.read_bytes())
        return dest

    first = tiny(tmp_path / "runs" / "pretrain" / "fsae_round.pt", seed=0)
    run, config = started("fsae_run", "fsae", first, fsae_checkpoint=first)
    moved = copied(first, tmp_path / "results" / "pretrain" / "fsae_round.pt")
    check_resumable(run, {**config, "fsae_checkpoint": str(moved)}, str(moved))  # the same bytes elsewhere: resumes
    other = tiny(tmp_path / "retrained" / "fsae_round.pt", seed=1)
    with pytest.raises(ConfigError, match=r"differs from the run's config.yaml in fsae_checkpoint: .*retrained"):
        check_resumable(run, {**config, "fsae_checkpoint": str(other)}, str(other))
    gone = str(tmp_path / "gone" / "fsae_round.pt")
    with pytest.raises(ConfigError, match=r"in fsae_checkpoint: .* -> .*gone"):  # no file there: not the same model
        check_resumable(run, {**config, "fsae_checkpoint": gone}, gone)
    with pytest.raises(ConfigError, match=r"in fsae_checkpoint: "):  # the file read not named: paths compared
        check_resumable(run, {**config, "fsae_checkpoint": str(moved)})

    # The autoencoder condition: fsae_checkpoint moved too, the autoencoder it reads has the recorded bytes.
    ae = tiny(tmp_path / "runs" / "pretrain" / "autoencoder.pt", seed=2, variant="autoencoder")
    run, config = started("ae_run", "autoencoder", ae, fsae_checkpoint=first, autoencoder_checkpoint=ae)
    ae_moved = copied(ae, tmp_path / "results" / "pretrain" / "autoencoder.pt")
    both = {**config, "fsae_checkpoint": str(moved), "autoencoder_checkpoint": str(ae_moved)}
    check_resumable(run, both, str(ae_moved))
    with pytest.raises(ConfigError, match=r"fsae_checkpoint: .* autoencoder_checkpoint: "):
        check_resumable(run, both, str(moved))  # the FSAE's bytes are not the autoencoder's
