"""rl.sweep and rl.sweep_local: planning (one resolved config per run, its command and folder, config checks), restart
after a kill without redoing finished runs, failed runs, the logdir lock, the CLI and, marked slow, a real 2-run sweep.
The ray backend: tests/rl/test_sweep_ray.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from fsae.checkpoint import save_fsae, sha256_file
from fsae.config import ConfigError
from fsae.model import FSAE, FSAEConfig, LayerSpec
from rl import sweep, sweep_local, sweep_lock
from rl.config import AgentConfig
from rl.sweep import Run, SweepConfig, SweepEnv, is_finished, load_sweep, plan, settings_changed, split_finished
from rl.sweep_local import run_local

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "sweeps" / "tiny.yaml"
BANDIT = str(ROOT / "configs" / "agent" / "digit_bandit.yaml")

# A stand-in for train_agent: notes its start in a counter file, sleeps, writes a file into its run folder.
FAKE = textwrap.dedent(
    """
    import pathlib, sys, time
    run_dir, counter, delay, code = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    with open(counter, "a") as f:
        f.write(run_dir + "\\n")
    print("fake run starts", flush=True)
    time.sleep(delay)
    (pathlib.Path(run_dir) / "fake_output.txt").write_text("ok")
    if code:
        print("something went wrong", file=sys.stderr)
    sys.exit(code)
    """
)


def _fake_runs(logdir: Path, counter: Path, delays: list[float], codes: list[int] | None = None) -> list[Run]:
    """Runs of folders <logdir>/DigitBandit-v0/none/seed<i> whose command is the stand-in FAKE."""
    runs = []
    for i, delay in enumerate(delays):
        agent = AgentConfig(logdir=str(logdir), seed=i, run_name="none", overwrite=True, progress_bar=False)
        run_dir = logdir / "DigitBandit-v0" / "none" / f"seed{i}"
        code = codes[i] if codes else 0
        command = [sys.executable, "-c", FAKE, str(run_dir), str(counter), str(delay), str(code)]
        runs.append(Run("Env-v0", agent, command))
        assert runs[-1].run_dir == run_dir
    return runs


def _starts(counter: Path) -> dict[str, int]:
    lines = counter.read_text().splitlines() if counter.exists() else []
    return {Path(line).name: lines.count(line) for line in set(lines)}


# --------------------------------------------------------------------------------------------------------------------
# Planning


def test_plan_tiny_config(load_script):
    cfg = load_sweep(TINY, ["logdir=/tmp/somewhere"])
    runs = plan(cfg)
    assert [(r.env, r.condition, r.seed) for r in runs] == [("DigitBandit", "none", 0), ("DigitBandit", "copy", 0)]
    assert [r.run_dir for r in runs] == [Path("/tmp/somewhere/DigitBandit-v0") / c / "seed0" for c in ("none", "copy")]
    agent = runs[1].agent  # the one resolved config: the YAML, the sweep's settings and its set
    assert (agent.condition, agent.total_steps, agent.n_envs, agent.device) == ("copy", 256, 2, "cpu")
    assert (agent.hyperparams["n_steps"], agent.env_kwargs, agent.run_name) == (64, {"episode_length": 8}, "copy")
    assert (agent.overwrite, agent.progress_bar, agent.logdir) == (True, False, "/tmp/somewhere")
    cmd = runs[1].command
    assert cmd[:4] == [sys.executable, str(ROOT / "scripts" / "train_agent.py"), "--config", BANDIT]
    assert cmd[4] == "--set" and 'condition="copy"' in cmd and 'env_kwargs={"episode_length": 8}' in cmd
    # The command builds exactly that config in train_agent.py, and the config it writes is the run's.
    script = load_script("train_agent")
    for run in runs:
        built = script.build_config(script.parse_args(run.command[2:]))
        assert built == run.agent
        assert run.config == yaml.safe_load(yaml.safe_dump(sweep.to_dict(built)))


def _tiny_checkpoint(path: Path, variant: str, shape: tuple[int, int, int] = (1, 28, 28), seed: int = 0) -> Path:
    torch.manual_seed(seed)
    layers = [LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 10)]
    head = "linear" if variant == "autoencoder" else "softmax"
    return save_fsae(path, FSAE(FSAEConfig(shape, layers, round=variant == "round", head=head)), variant=variant)


def test_plan_checkpoints_and_labels(tmp_path):
    ckpt = _tiny_checkpoint(tmp_path / "fsae_round.pt", "round")
    env = SweepEnv(config=BANDIT, fsae_checkpoint=str(ckpt))
    cfg = SweepConfig(envs=[env], conditions=["fsae", "autoencoder"], seeds=[3], logdir=str(tmp_path / "logs"))
    with pytest.raises(ConfigError, match="autoencoder.pt does not exist"):  # beside the FSAE by default
        plan(cfg)
    _tiny_checkpoint(tmp_path / "autoencoder.pt", "autoencoder")
    fsae_run, ae_run = plan(cfg)
    assert fsae_run.run_dir == tmp_path / "logs" / "DigitBandit-v0" / "fsae-round" / "seed3"
    assert ae_run.run_dir.parent.name == "autoencoder"
    assert fsae_run.agent.fsae_checkpoint == str(ckpt) and f'fsae_checkpoint="{ckpt}"' in fsae_run.command
    # Non-default union and feedback keep their suffixes, as rl.run_folder.condition_label names them.
    cfg.set = ["union=max", "feedback_steps=2"]
    assert plan(cfg)[0].run_dir.parent.name == "fsae-round-max-fb2"
    cfg.set = []
    cfg.envs = [SweepEnv(config=BANDIT)]
    with pytest.raises(ConfigError, match="needs an FSAE checkpoint"):
        plan(cfg)


def test_plan_refuses_bad_configs(tmp_path):
    with pytest.raises(ConfigError, match="unknown SweepConfig key 'sed'"):
        load_sweep(TINY, ["sed=[1]"])
    with pytest.raises(ConfigError, match="'nope' is not one of"):
        load_sweep(TINY, ["conditions=[none,nope]"])
    with pytest.raises(ConfigError, match="seeds repeat"):
        load_sweep(TINY, ["seeds=[1,1]"])
    with pytest.raises(ConfigError, match=r"DigitBandit / none / seed 0: .*unknown AgentConfig key 'lerning_rate'"):
        plan(load_sweep(TINY, ["set=[lerning_rate=1]"]))
    with pytest.raises(ConfigError, match="unknown PPO hyperparameter"):
        plan(load_sweep(TINY, ["set=[hyperparams.gama=0.9]"]))
    two = SweepConfig(envs=[SweepEnv(config=BANDIT), SweepEnv(config=BANDIT)], conditions=["none"], seeds=[0])
    with pytest.raises(ConfigError, match="would share the folder"):
        plan(two)
    # What only making the environment, or loading the checkpoint, can tell: also before the first run.
    with pytest.raises(ConfigError, match=r"DigitBandit / none / seed 0: cannot make environment .*'noize'"):
        plan(load_sweep(TINY, ["set=[env_kwargs.noize=0.1]"]))
    ckpt = _tiny_checkpoint(tmp_path / "fsae_round.pt", "round")  # 28 x 28, but DigitSum's digits are 28 x 56
    wrong = SweepEnv(config=BANDIT.replace("digit_bandit", "digit_sum"), fsae_checkpoint=str(ckpt))
    with pytest.raises(ConfigError, match=r"fsae / seed 0: .*\(1, 28, 28\).*\(1, 28, 56\)"):
        plan(SweepConfig(envs=[wrong], conditions=["none", "fsae"], seeds=[0]))


# --------------------------------------------------------------------------------------------------------------------
# Running


def test_run_local_failures_and_lock(tmp_path, capsys):
    counter = tmp_path / "counter.txt"
    runs = _fake_runs(tmp_path / "logs", counter, [0.0, 0.0, 0.0], codes=[0, 3, 0])
    (runs[1].run_dir).mkdir(parents=True)
    (runs[1].run_dir / "events.out.tfevents.stale").write_text("from a killed try")
    results = run_local(runs, workers=2, log=print)
    assert [r.status for r in sorted(results, key=lambda r: r.run.seed)] == ["done", "failed", "done"]
    assert [is_finished(r) for r in runs] == [True, False, True]
    assert not (runs[1].run_dir / "events.out.tfevents.stale").exists()  # an unfinished folder starts afresh
    assert "something went wrong" in (runs[1].run_dir / "train.log").read_text()
    out = capsys.readouterr().out
    assert "FAILED  Env-v0/none/seed1 (exit 3)" in out and "something went wrong" in out
    done = json.loads((runs[0].run_dir / "done.json").read_text())
    assert done["returncode"] == 0 and done["command"] == runs[0].command
    # Again: the two finished runs are skipped, the failed one is tried again.
    results = run_local(runs, workers=1, log=print)
    assert sorted(r.status for r in results) == ["failed", "skipped", "skipped"]
    assert _starts(counter) == {"seed0": 1, "seed1": 2, "seed2": 1}
    # A second sweep on the same logdir at the same time is refused, naming the holder, whose lock file stays intact.
    with sweep_lock.sweep_lock({tmp_path / "logs"}):
        holder = (tmp_path / "logs" / ".sweep.lock").read_text()
        with pytest.raises(ConfigError, match=f"another sweep is running .*pid {os.getpid()} holds"):
            run_local(runs, workers=1, log=print)
        assert (tmp_path / "logs" / ".sweep.lock").read_text() == holder


def test_the_lock_leaves_nothing_in_a_logdir_that_no_run_used(tmp_path):
    """A sweep refused before any run began (an unreachable cluster, say) takes nothing away and leaves nothing: a
    logdir the lock created is removed again with its lock file; a logdir that was there, or that a run wrote to,
    keeps everything, lock file included."""
    new = tmp_path / "a" / "b"
    with pytest.raises(ConfigError), sweep_lock.sweep_lock({new}):
        assert (new / sweep_lock.LOCK_FILE).read_text() == f"{socket.gethostname()} pid {os.getpid()}\n"
        raise ConfigError("cannot connect")
    assert list(tmp_path.iterdir()) == []
    used, there = tmp_path / "used", tmp_path / "there"
    there.mkdir()
    with sweep_lock.sweep_lock({used, there}):
        (used / "Env-v0").mkdir()
    assert sorted(p.name for p in used.iterdir()) == [sweep_lock.LOCK_FILE, "Env-v0"]
    assert [p.name for p in there.iterdir()] == [sweep_lock.LOCK_FILE]


def test_a_sweep_waiting_on_a_removed_lock_file_locks_the_new_one(tmp_path, monkeypatch):
    """The holder may remove its lock file (above) between another sweep's open and its flock: that sweep then holds
    a lock on a file no longer at the path, so it opens the path again rather than run beside a third sweep."""
    logdir = tmp_path / "logs"
    logdir.mkdir()
    path = logdir / sweep_lock.LOCK_FILE
    path.write_text("old holder\n")
    flock, calls = sweep_lock.fcntl.flock, []

    def flock_after_the_holder_left(f, op):
        if not calls:
            path.unlink()  # the holder cleans up between this sweep's open and its flock
        calls.append(op)
        return flock(f, op)

    monkeypatch.setattr(sweep_lock.fcntl, "flock", flock_after_the_holder_left)
    with sweep_lock.sweep_lock({logdir}):
        assert len(calls) == 2  # the second flock is on the file now at the path, which a third sweep finds held
        assert path.read_text() == f"{socket.gethostname()} pid {os.getpid()}\n"
        with open(path) as third, pytest.raises(BlockingIOError):
            flock(third, sweep_lock.fcntl.LOCK_EX | sweep_lock.fcntl.LOCK_NB)


def test_interrupt_stops_a_run_that_starts_during_the_stop(tmp_path, monkeypatch):
    """A worker that was preparing its run folder when the sweep was interrupted starts its process after the sweep
    signalled the live ones: that process is stopped too, so the interrupt returns at once, not after the run."""
    prepare = sweep_local._prepare
    monkeypatch.setattr(sweep_local, "_prepare", lambda run: (time.sleep(1.0), prepare(run))[1])
    runs = _fake_runs(tmp_path / "logs", tmp_path / "counter.txt", [20.0])

    def interrupt(*_):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)  # while the worker is still in _prepare
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_local(runs, workers=1, log=print)
    finally:
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - t0 < 5.0
    assert not is_finished(runs[0])


def test_finished_runs_are_compared_by_settings_and_checkpoint_not_by_paths(tmp_path):
    ckpt = _tiny_checkpoint(tmp_path / "pretrain" / "fsae_round.pt", "round")
    env = SweepEnv(config=BANDIT, fsae_checkpoint=str(ckpt))
    cfg = SweepConfig(envs=[env], conditions=["fsae"], seeds=[0], logdir=str(tmp_path / "logs"))
    (run,) = plan(cfg)
    run.run_dir.mkdir(parents=True)  # finished, as train_agent leaves a run
    (run.run_dir / "fsae.json").write_text(json.dumps({"checkpoint": str(ckpt), "sha256": sha256_file(ckpt)}))
    (run.run_dir / "metrics.json").write_text("{}")
    # Made elsewhere (another logdir and checkpoint path, another device, thread count and CUDA-graph setting, which
    # change where and how fast it ran, not what it learnt): the same run.
    # A run that train_agent.py made in the folder the sweep plans has no run_name: the same run too.
    moved = {**run.config, "logdir": "/elsewhere", "fsae_checkpoint": "/elsewhere/fsae_round.pt", "device": "cuda"}
    moved |= {"run_name": "", "vec_env": "subproc"}
    (run.run_dir / "config.yaml").write_text(yaml.safe_dump({**moved, "torch_threads": 8, "cuda_graph": False}))
    assert settings_changed(run) == "" and run_local([run], log=lambda m: None)[0].status == "skipped"
    # The checkpoint retrained since: refused, its result would be reported as the new checkpoint's.
    _tiny_checkpoint(ckpt, "round", (1, 28, 28), seed=1)
    assert settings_changed(run).startswith(f"checkpoint {ckpt}: SHA-256 ")
    refused = r"1 finished run\(s\) .* other settings \(or cannot be checked\), e.g. DigitBandit-v0/fsae-round/seed0 "
    refused += "in checkpoint"
    with pytest.raises(ConfigError, match=refused):
        run_local([run], log=lambda m: None)
    # A config.yaml that does not read (a bad copy, a disk error): refused too, not taken for the planned settings.
    _tiny_checkpoint(ckpt, "round")  # the first checkpoint again: the SHA-256 agrees
    assert settings_changed(run) == ""
    for broken in (b"seed: [0\n", b"\xff\xfe not text", b"just a string\n"):
        (run.run_dir / "config.yaml").write_bytes(broken)
        expected = f"{run.run_dir / 'config.yaml'}, which is unreadable or corrupt (its settings cannot be checked)"
        assert settings_changed(run) == expected
    with pytest.raises(
        ConfigError, match=r"cannot be checked\), e.g. DigitBandit-v0/fsae-round/seed0 in .*config.yaml"
    ):
        run_local([run], log=lambda m: None)


def test_killed_sweep_restarts_without_redoing_finished_runs(tmp_path):
    counter = tmp_path / "counter.txt"
    logdir = tmp_path / "logs"
    # seed0 finishes quickly; seed1 and seed2 (started next) are still running when the sweep is killed; seed3 waits.
    # seed1 outlives seed0 by 4 s: the kill below comes within 10 ms of seed0's finish, with a margin for a loaded CI.
    delays = [0.1, 4.0, 4.0, 0.1]
    driver = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        from test_sweep import _fake_runs
        from rl.sweep_local import run_local
        runs = _fake_runs(Path({str(logdir)!r}), Path({str(counter)!r}), {delays!r})
        results = run_local(runs, workers=2)
        sys.exit(int(any(r.status == "failed" for r in results)))
        """
    )
    runs = _fake_runs(logdir, counter, delays)
    proc = subprocess.Popen([sys.executable, "-c", driver], start_new_session=True, cwd=ROOT)
    deadline = time.time() + 30
    while not is_finished(runs[0]):
        assert proc.poll() is None and time.time() < deadline, "the first run did not finish"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its running children, as a crash or kill -9 would
    proc.wait()
    finished_before = [r.seed for r in runs if is_finished(r)]
    assert 0 in finished_before and 1 not in finished_before
    assert _starts(counter)["seed0"] == 1
    (runs[1].run_dir / "stale.txt").write_text("left by the killed try")

    restart = subprocess.run([sys.executable, "-c", driver], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert f"{len(finished_before)} already finished (skipped)" in restart.stdout
    assert all(is_finished(r) for r in runs)
    starts = _starts(counter)
    for seed in finished_before:
        assert starts[f"seed{seed}"] == 1, starts  # not redone
    assert starts["seed1"] == 2 and starts["seed3"] == 1, starts  # killed once, then finished
    assert not (runs[1].run_dir / "stale.txt").exists()


def test_a_run_killed_after_a_checkpoint_resumes_from_it(tmp_path):
    """The local backend: a run whose try was killed after its first agent checkpoint continues from its newest one
    (train_agent.py --resume: the step count and curves go on), as a lost trial does on Ray; not from scratch."""
    tiny = ["torch_threads=1", "eval_freq=256", "eval_episodes=2", "checkpoint_freq=128", "env_kwargs.episode_length=8",
            "eval_env_kwargs.episode_length=8", "hyperparams.n_steps=64", "hyperparams.batch_size=64",
            "hyperparams.n_epochs=1"]  # fmt: skip
    cfg = SweepConfig(
        envs=[SweepEnv(config=BANDIT)], conditions=["none"], seeds=[0], total_steps=1024, n_envs=2, device="cpu",
        logdir=str(tmp_path), set=tiny,
    )  # fmt: skip
    (run,) = plan(cfg)
    procs: list[subprocess.Popen] = []
    codes: list[int] = []
    first_try = threading.Thread(target=lambda: codes.append(sweep_local.execute(run, on_start=procs.append)))
    first_try.start()
    deadline = time.monotonic() + 120
    while not (run.run_dir / "checkpoints" / "agent_128_steps.zip").is_file():
        assert first_try.is_alive() and time.monotonic() < deadline, (run.run_dir / "train.log").read_text()[-2000:]
        time.sleep(0.02)
    procs[0].send_signal(signal.SIGKILL)
    first_try.join(timeout=60)
    assert codes == [-signal.SIGKILL] and not is_finished(run)
    assert not (run.run_dir / "metrics.json").exists(), "the try finished before it was killed"

    (result,) = run_local([run], log=print)
    assert result.status == "done", (run.run_dir / "train.log").read_text()[-2000:]
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    assert metrics["timesteps"] == 1024 and metrics["resumed_from"] >= 128
    assert f"# resumed at step {metrics['resumed_from']}:" in (run.run_dir / "command.txt").read_text()
    assert "resumed by the sweep from its newest checkpoint" in (run.run_dir / "train.log").read_text()
    assert json.loads((run.run_dir / "done.json").read_text())["resumed"] is True


# --------------------------------------------------------------------------------------------------------------------
# The CLI


def test_cli_errors_and_dry_run(tmp_path, capsys, load_script):
    script = load_script("sweep")
    assert script.main(["--config", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"envs": [{"config": BANDIT}], "seeds": [0], "conditions": ["fsae"]}))
    assert script.main(["--config", str(bad)]) == 2
    assert "needs an FSAE checkpoint" in capsys.readouterr().err
    assert script.main(["--config", str(TINY), "--workers", "0"]) == 2
    assert script.main(["--config", str(TINY), "--set", f"logdir={tmp_path}", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in out] == [
        ["to", "run", "DigitBandit/none/seed0"],
        ["to", "run", "DigitBandit/copy/seed0"],
    ]
    # Both finished, as train_agent leaves them, but 'copy' with another budget (the sweep config was edited since).
    none, copy = plan(load_sweep(TINY, [f"logdir={tmp_path}"]))
    for run, total in ((none, none.config["total_steps"]), (copy, 999)):
        run.run_dir.mkdir(parents=True)
        (run.run_dir / "config.yaml").write_text(yaml.safe_dump({**run.config, "total_steps": total}))
        (run.run_dir / "metrics.json").write_text("{}")
    assert script.main(["--config", str(TINY), "--set", f"logdir={tmp_path}", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[0] == "finished" and out[1].split()[0] == "CHANGED", out
    assert out[1].endswith(f"(total_steps: 999 -> {none.config['total_steps']})"), out
    # Running it is refused: the old result would be reported as this sweep's.
    assert script.main(["--config", str(TINY), "--set", f"logdir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert (
        "1 finished run(s)" in err
        and "other settings (or cannot be checked), e.g. DigitBandit/copy/seed0 in total_steps" in err
    ), err


def test_flags_of_the_other_backend_and_unusable_folders_are_refused(tmp_path, capsys, load_script):
    """Ray's flags without --backend ray (the sweep would run here, in the config's logdir), --workers with it, an
    empty --storage-path and a logdir that cannot be created: one line each, exit 2, nothing written."""
    script = load_script("sweep")
    here = ["--config", str(TINY), "--set", f"logdir={tmp_path / 'logs'}"]
    cases = [
        (["--ray-address", "127.0.0.1:6379", "--storage-path", "/tmp/x"],
         "error: --ray-address, --storage-path: for --backend ray only; add --backend ray, or drop them to run here"),
        (["--backend", "ray", "--workers", "2"],
         "error: --workers is the local backend's; on Ray, --cpus-per-run and --gpus-per-run set how many runs share "
         "a node"),
        (["--backend", "ray", "--storage-path", ""],
         "error: --storage-path is empty (an unset variable?); give the folder every node sees"),
    ]  # fmt: skip
    for extra, message in cases:
        assert script.main([*here, *extra]) == 2
        assert capsys.readouterr().err.strip() == message
    assert script.main(["--config", str(TINY), "--set", "logdir=/proc/no/such/logdir"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: logdir /proc/no/such/logdir cannot be created: ") and len(err) == 1
    assert not (tmp_path / "logs").exists()


def test_an_unfinished_try_of_other_settings_is_said_to_start_over(tmp_path, capsys, load_script):
    """A run cut short, then the sweep edited: its folder cannot be resumed and is cleared when the run starts; the
    plan and the sweep's first lines say so (it used to happen without a word)."""
    none, copy = plan(load_sweep(TINY, [f"logdir={tmp_path}"]))
    none.run_dir.mkdir(parents=True)
    (none.run_dir / "config.yaml").write_text(yaml.safe_dump({**none.config, "total_steps": 999}))  # no metrics.json
    lines: list[str] = []
    _, pending = split_finished([none, copy], lines.append)
    assert pending == [none, copy] and lines == [
        "sweep: 2 runs, 0 already finished (skipped), 2 to run",
        f"sweep: 1 of them start over: an earlier unfinished try had other settings, e.g. {none.name} in "
        f"total_steps: 999 -> {none.config['total_steps']}",
    ]
    script = load_script("sweep")
    assert script.main(["--config", str(TINY), "--set", f"logdir={tmp_path}", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(f"(starts over: an unfinished try had total_steps: 999 -> {none.config['total_steps']})")
    assert out[1].startswith("to run") and out[1].endswith(str(copy.run_dir))


def test_ray_missing_is_a_clear_error(tmp_path, monkeypatch, capsys, load_script):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.setitem(sys.modules, "rl.sweep_ray", None)
    script = load_script("sweep")
    assert script.main(["--config", str(TINY), "--backend", "ray", "--set", f"logdir={tmp_path}"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {script.RAY_HINT}"


@pytest.mark.slow
def test_real_tiny_sweep_then_compare(tmp_path):
    """configs/sweeps/tiny.yaml end to end: two real train_agent runs, a restart that skips both, a comparison, and
    the runs carried to another logdir, where the sweep skips them too."""
    args = [sys.executable, str(ROOT / "scripts" / "sweep.py"), "--config", str(TINY), "--workers", "2"]
    args += ["--set", f"logdir={tmp_path}"]
    first = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    for condition in ("none", "copy"):
        run_dir = tmp_path / "DigitBandit-v0" / condition / "seed0"
        assert {"done.json", "metrics.json", "final_model.zip", "train.log", "config.yaml"} <= {
            p.name for p in run_dir.iterdir()
        }
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "2 already finished (skipped), 0 to run" in again.stdout
    compare = [sys.executable, str(ROOT / "scripts" / "compare.py"), str(tmp_path), "--threshold", "1"]
    result = subprocess.run(compare, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "| DigitBandit-v0 | none | 1 |" in result.stdout and "| DigitBandit-v0 | copy | 1 |" in result.stdout
    assert (tmp_path / "DigitBandit-v0.png").is_file()
    # Carried to another machine without the agents' weights (scripts/archive_runs.py): a sweep there skips both.
    store, elsewhere = tmp_path / "kept" / "runs", tmp_path / "elsewhere"
    for src, dest in ((tmp_path, store), (store, elsewhere)):
        archive = [sys.executable, str(ROOT / "scripts" / "archive_runs.py"), str(src), str(dest)]
        copied = subprocess.run(archive, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert copied.returncode == 0 and "2 finished run(s) copied" in copied.stdout, copied.stdout + copied.stderr
    assert not list(elsewhere.rglob("*.zip"))
    args[-1] = f"logdir={elsewhere}"
    there = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert there.returncode == 0 and "2 already finished (skipped), 0 to run" in there.stdout, there.stdout
