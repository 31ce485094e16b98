"""rl.archive and scripts/archive_runs.py: finished runs copied without their model zips, byte for byte otherwise,
there and back; the copy skipped by a sweep as finished and refused for a retrained checkpoint; what is already there
kept (also when the sweep's done.json came after a first copy); every refusal before any write; a killed copy's
leftovers removed; the results folder not ignored by git."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.tensorboard import SummaryWriter

from fsae.checkpoint import save_fsae, sha256_file
from fsae.config import ConfigError
from fsae.model import FSAE, FSAEConfig, LayerSpec
from rl.archive import ArchiveError, copy_finished, finished_runs
from rl.compare import load_runs
from rl.sweep import SweepConfig, SweepEnv, plan, settings_changed, split_finished
from rl.sweep_lock import sweep_lock

ROOT = Path(__file__).resolve().parents[2]
BANDIT = str(ROOT / "configs" / "agent" / "digit_bandit.yaml")
MODELS = {"final_model.zip", "best_model.zip", "checkpoints/agent_1000_steps.zip"}


def _run(run_dir: Path, reward: float, finished: bool = True, config: dict | None = None) -> Path:
    """A run folder as train_agent and a sweep leave it: events, CSV, evaluations, JSON records, model zips."""
    run_dir.mkdir(parents=True)
    w = SummaryWriter(log_dir=str(run_dir))
    for step in (0, 500, 1000):
        w.add_scalar("eval/mean_reward", reward + step / 1000, step)
    w.close()
    (run_dir / "eval").mkdir()
    np.savez(run_dir / "eval" / "evaluations.npz", timesteps=np.array([500, 1000]), results=np.ones((2, 3)) * reward)
    (run_dir / "progress.csv").write_text("time/total_timesteps,rollout/ep_rew_mean\n1000,0.5\n")
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config or {"seed": 0}))
    (run_dir / "checkpoints").mkdir()
    for name in MODELS:
        (run_dir / name).write_bytes(b"PK weights")
    if finished:
        (run_dir / "metrics.json").write_text(json.dumps({"final_eval/mean_reward": reward}))
        (run_dir / "done.json").write_text(json.dumps({"seconds": 12.5, "host": "vm"}))
    return run_dir


def _files(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None) under ``root``."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


@pytest.fixture
def logdir(tmp_path) -> Path:
    root = tmp_path / "logs"
    _run(root / "Env-v0" / "none" / "seed0", 0.25)
    _run(root / "Env-v0" / "none" / "seed1", 0.5)
    _run(root / "Env-v0" / "fsae-round" / "seed0", 0.75)
    _run(root / "Env-v0" / "fsae-round" / "seed1", 0.0, finished=False)  # still running
    _run(root / ".ray_tune" / "copy" / "seed0", 1.0)  # Tune's state: never a run of the grid
    return root


def test_copies_finished_runs_without_models_and_back(logdir, tmp_path):
    store = tmp_path / "results" / "runs"
    report = copy_finished(logdir, store)
    done = [Path("Env-v0/fsae-round/seed0"), Path("Env-v0/none/seed0"), Path("Env-v0/none/seed1")]
    assert report.copied == done and report.already == [] and report.unfinished == [Path("Env-v0/fsae-round/seed1")]
    assert finished_runs(store) == done
    for rel in done:
        kept, original = _files(store / rel), _files(logdir / rel)
        assert set(original) - set(kept) == MODELS | {"checkpoints"}  # the model zips left out, and only they
        assert all(kept[name] == original[name] for name in kept)  # everything else byte for byte
        assert not (store / rel / "checkpoints").exists()
    assert not (store / ".ray_tune").exists() and not list(store.rglob(".seed*"))  # no temporary folder left

    # Back onto a fresh machine's logdir: compare reads the same curves from the copy as from the original.
    fresh = tmp_path / "fresh"
    assert copy_finished(store, fresh).copied == done
    original = {(r.condition, r.seed): r.eval_curve() for r in load_runs(logdir, warn=lambda m: None)}
    restored = {(r.condition, r.seed): r.eval_curve() for r in load_runs(fresh, warn=lambda m: None)}
    assert set(restored) == {("fsae-round", 0), ("none", 0), ("none", 1)}
    for key, (steps, values) in restored.items():
        np.testing.assert_array_equal(steps, original[key][0])
        np.testing.assert_array_equal(values, original[key][1])


def test_a_second_copy_keeps_what_is_there_and_refusals_write_nothing(logdir, tmp_path):
    store = tmp_path / "store"
    copy_finished(logdir, store)
    before = _files(store)
    again = copy_finished(logdir, store)
    assert again.copied == [] and len(again.already) == 3 and _files(store) == before

    # A newly finished run is added beside them.
    _run(logdir / "Env-v0" / "code" / "seed0", 0.5)
    assert copy_finished(logdir, store).copied == [Path("Env-v0/code/seed0")]

    # Another run of the same seed (its metrics.json differs): refused, and the other new run is not copied either.
    (store / "Env-v0" / "none" / "seed0" / "metrics.json").write_text(json.dumps({"final_eval/mean_reward": 9.0}))
    _run(logdir / "Env-v0" / "copy" / "seed0", 0.5)
    before = _files(store)
    with pytest.raises(ArchiveError, match=r"none/seed0 holds another finished run .* metrics.json differs"):
        copy_finished(logdir, store)
    assert _files(store) == before

    # An unfinished run, or a file, where a finished one would go: refused, nothing touched.
    fresh = tmp_path / "fresh"
    _run(fresh / "Env-v0" / "none" / "seed1", 0.1, finished=False)
    partial = _files(fresh)
    with pytest.raises(ArchiveError, match=r"none/seed1 holds an unfinished run"):
        copy_finished(logdir, fresh)
    assert _files(fresh) == partial
    shutil.rmtree(fresh / "Env-v0" / "none" / "seed1")
    (fresh / "Env-v0" / "none" / "seed1").write_text("")
    with pytest.raises(ArchiveError, match=r"none/seed1 is in the way \(not a run folder\)"):
        copy_finished(logdir, fresh)
    assert sorted(_files(fresh)) == ["Env-v0", "Env-v0/none", "Env-v0/none/seed1"]


def test_a_corrupt_record_on_either_side_is_refused_before_any_copy(logdir, tmp_path):
    """A metrics.json cut short is never carried, nor taken for the copy of a run (which done.json alone would say)."""
    store = tmp_path / "store"
    copy_finished(logdir, store)
    _run(logdir / "Env-v0" / "code" / "seed0", 0.5)
    bad = store / "Env-v0" / "none" / "seed0" / "metrics.json"
    bad.write_text('{"final_eval/mean_rew')
    before = _files(store)
    with pytest.raises(ArchiveError, match=f"{bad} is unreadable or corrupt"):
        copy_finished(logdir, store)
    assert _files(store) == before  # the new run was not copied either

    source = logdir / "Env-v0" / "none" / "seed1" / "metrics.json"
    source.write_text("")
    fresh = tmp_path / "fresh"
    with pytest.raises(ArchiveError, match=f"{source} is unreadable or corrupt"):
        copy_finished(logdir, fresh)
    assert not fresh.exists()
    source.write_text(json.dumps({"final_eval/mean_reward": 0.2}))

    # A TensorBoard file cut short (its curves would end early in every comparison of the copy): refused too.
    (events,) = (logdir / "Env-v0" / "none" / "seed1").glob("events.out.tfevents.*")
    events.write_bytes(events.read_bytes()[:-5])
    with pytest.raises(ArchiveError, match=f"{events} is cut short or corrupt: .*; restore it or train the run again"):
        copy_finished(logdir, fresh)
    assert not fresh.exists()


def test_a_copy_made_before_the_sweeps_marker_is_the_same_run(logdir, tmp_path):
    """train_agent writes metrics.json, the sweep done.json a moment later: a copy in between is still that run."""
    run = logdir / "Env-v0" / "none" / "seed0"
    marker = (run / "done.json").read_bytes()
    (run / "done.json").unlink()
    store = tmp_path / "store"
    assert Path("Env-v0/none/seed0") in copy_finished(logdir, store).copied
    (run / "done.json").write_bytes(marker)
    again = copy_finished(logdir, store)
    assert again.copied == [] and Path("Env-v0/none/seed0") in again.already


def test_a_killed_copys_leftovers_are_removed_and_a_running_sweep_refused(logdir, tmp_path):
    store = tmp_path / "store"
    leftover = store / "Env-v0" / "none" / ".seed0.k2x_9abc"  # as mkdtemp names the folder a killed copy was writing
    leftover.mkdir(parents=True)
    (leftover / "progress.csv").write_text("half")
    assert len(copy_finished(logdir, store).copied) == 3 and not leftover.exists()

    with sweep_lock({store}):  # a sweep running on the destination would start a carried run again
        with pytest.raises(ArchiveError, match=r"another sweep is running on .*; copy into it when the sweep has"):
            copy_finished(logdir, store)
    assert copy_finished(logdir, store).already  # the lock released: the copy goes on


def test_the_results_folder_is_not_ignored_by_git():
    """Carried runs live in results/<grid>/runs; the logdirs' ignore rule (/runs/) must not reach them."""
    path = "results/verdict_minigrid/runs/MiniGrid-DoorKey-5x5-v0/none/seed0/done.json"
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT)  # tracked or not
    assert ignored.returncode == 1  # 1: not ignored (0 would be ignored, 128 an error)
    logdir = subprocess.run(["git", "check-ignore", "--no-index", "-q", "runs/sweeps/x/done.json"], cwd=ROOT)
    assert logdir.returncode == 0


def test_a_sweep_skips_the_restored_runs_and_refuses_them_for_another_checkpoint(tmp_path):
    torch.manual_seed(0)
    net = FSAE(FSAEConfig((1, 28, 28), [LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 10)], round=True))
    ckpt = save_fsae(tmp_path / "pretrain" / "fsae_round.pt", net, variant="round")
    cfg = SweepConfig(
        envs=[SweepEnv(config=BANDIT, fsae_checkpoint=str(ckpt))], conditions=["none", "fsae"], seeds=[0],
        logdir=str(tmp_path / "machine1"),
    )  # fmt: skip
    for run in plan(cfg):  # as the runs leave their folders on the first machine
        _run(run.run_dir, 0.5, config=run.config)
        (run.run_dir / "fsae.json").write_text(json.dumps({"sha256": sha256_file(ckpt)}))
    copy_finished(tmp_path / "machine1", tmp_path / "store")
    copy_finished(tmp_path / "store", tmp_path / "machine2")

    moved = plan(SweepConfig(**{**cfg.__dict__, "logdir": str(tmp_path / "machine2")}))
    assert all(settings_changed(r) == "" for r in moved)
    skipped, pending = split_finished(moved, log=lambda m: None)
    assert [r.status for r in skipped] == ["skipped", "skipped"] and pending == []
    # A checkpoint pretrained again (other weights): the carried fsae run is refused, not reported as the new one's.
    torch.manual_seed(1)
    save_fsae(ckpt, FSAE(FSAEConfig((1, 28, 28), [LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 10)], round=True)))
    assert settings_changed(moved[1]).startswith(f"checkpoint {ckpt}: SHA-256 ")
    with pytest.raises(
        ConfigError, match=r"1 finished run\(s\) .* other settings \(or cannot be checked\), e.g. .*fsae-round/seed0"
    ):
        split_finished(moved, log=lambda m: None)


def test_cli(logdir, tmp_path, capsys, load_script):
    script = load_script("archive_runs")
    assert script.main([str(logdir), str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert "copied Env-v0/none/seed1" in out
    assert "3 finished run(s) copied" in out and "0 there already, 1 unfinished left behind" in out
    assert script.main([str(tmp_path / "missing"), str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "is not a folder of runs" in err
    assert script.main([str(logdir / "Env-v0"), str(tmp_path / "store")]) == 2  # one level too deep
    assert "no run folders <env>/<condition>/seed<N> under" in capsys.readouterr().err
