"""``scripts/pretrain.py --resume``: a run killed with SIGKILL at a known point and resumed ends with the metrics and
weights of a run that was never stopped (bit-identical on a CPU), and what cannot be resumed is refused clearly."""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from fsae import train as T
from fsae.checkpoint import CheckpointError, atomic_save, safe_load
from fsae.config import apply_overrides, from_dict, load_yaml, to_dict
from fsae.pretrain import PretrainConfig, pretrain
from fsae.resume import STATE_FILE, TrainingState
from fsae.train import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
FAST = ROOT / "configs" / "pretrain" / "mnist_fast.yaml"
# 2 abstract epochs, then 2 epochs of plain, round and the baseline autoencoder in one pass: 4 saved epochs, 2 stages.
TINY = ["data.train_size=1000", "data.test_size=200", "train.abstract_epochs=2", "train.concrete_epochs=2",
        "variants=[{name: plain}, {name: round, round: true}]", "feedback_steps=[0, 1]", "device=cpu",
        "torch_threads=1"]  # fmt: skip
PRODUCTS = ("fsae_plain.pt", "fsae_round.pt", "autoencoder.pt")


def _argv(out: Path) -> list[str]:
    return ["--config", str(FAST), "--out", str(out), "--set", *TINY]


def _config() -> PretrainConfig:
    return from_dict(PretrainConfig, apply_overrides(load_yaml(FAST), TINY))


def _without_times(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}


def _killed_run(out: Path, method: str, calls: int) -> None:
    """Run scripts/pretrain.py in a subprocess that SIGKILLs itself right after the ``calls``-th TrainingState.<method>
    (which has just written train_state.pt): a real ``kill -9`` at a known point of the run."""
    driver = textwrap.dedent(f"""
        import os, runpy, signal, sys
        import fsae.resume as R
        original, count = getattr(R.TrainingState, {method!r}), [0]
        def wrapped(self, *args, **kwargs):
            original(self, *args, **kwargs)
            count[0] += 1
            if count[0] == {calls}:
                os.kill(os.getpid(), signal.SIGKILL)
        setattr(R.TrainingState, {method!r}, wrapped)
        sys.argv = ["scripts/pretrain.py", *{_argv(out)!r}]
        runpy.run_path({str(ROOT / "scripts" / "pretrain.py")!r}, run_name="__main__")
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-c", driver]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict]:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("uninterrupted")
    return out, _without_times(pretrain(_config(), out))


# (method, calls, the state the kill leaves): mid-stage in the abstract phase, mid-stage in the concrete phase (all
# variants and the autoencoder after their first epoch), and at the stage boundary (abstract finished, concrete not
# started).
KILLS = [("save_epoch", 1, "abstract", 1), ("save_epoch", 3, "concrete", 1), ("finish", 1, None, None)]


@pytest.mark.parametrize("method, calls, stage, epochs", KILLS, ids=["mid-abstract", "mid-concrete", "boundary"])
def test_killed_and_resumed_equals_uninterrupted(
    tmp_path, reference, monkeypatch, load_script, method, calls, stage, epochs
):
    ref_dir, ref_metrics = reference
    out = tmp_path / "run"
    _killed_run(out, method, calls)
    assert not (out / "metrics.json").exists()
    current = safe_load(out / STATE_FILE)["current"]
    assert current["stage"] == stage
    if epochs is not None:
        assert len(current["history"]) == epochs

    monkeypatch.setattr(sys, "argv", ["scripts/pretrain.py", *_argv(out), "--resume"])  # as command.txt records it
    assert load_script("pretrain").main() == 0
    resumed = json.loads((out / "metrics.json").read_text())
    assert _without_times(resumed) == ref_metrics  # bit-identical on a CPU, not merely close
    for name in PRODUCTS:
        a, b = safe_load(out / name)["state_dict"], safe_load(ref_dir / name)["state_dict"]
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert not (out / STATE_FILE).exists(), "a finished run keeps no training state"
    command = (out / "command.txt").read_text()
    assert "# resumed:" in command and "--resume" in command.split("# resumed:")[1]


def test_resume_refuses_another_config_and_a_finished_run(tmp_path, reference):
    out = tmp_path / "run"
    _killed_run(out, "save_epoch", 1)
    other = _config()
    other.train.abstract_lr = 0.5
    with pytest.raises(CheckpointError, match=r"another config \(differs in: train.abstract_lr\)"):
        pretrain(other, out, resume=True)
    ref_dir, _ = reference
    with pytest.raises(CheckpointError, match="holds a finished run"):
        pretrain(_config(), ref_dir, resume=True)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        pretrain(_config(), tmp_path / "empty", resume=True)


def test_resume_allows_settings_that_do_not_change_training(tmp_path):
    saved = to_dict(_config())
    TrainingState(tmp_path, saved, resume=False).finish("abstract", torch.nn.Linear(1, 1), torch.Generator())
    evaluation_only = copy.deepcopy(saved)
    evaluation_only["train"]["eval_batch_size"] = 7
    evaluation_only["feedback_steps"] = [0, 3]
    evaluation_only["data"] |= {"root": str(tmp_path / "mnist"), "download": False}
    evaluation_only |= {"device": "cuda", "torch_threads": 4}
    state = TrainingState(tmp_path, evaluation_only, resume=True)
    assert state.finished("abstract") is not None and state.state["config"] == evaluation_only
    changed = copy.deepcopy(evaluation_only)
    changed["train"]["batch_size"] = 64
    changed["data"]["train_size"] = 10
    with pytest.raises(CheckpointError, match=r"differs in: data.train_size, train.batch_size\)"):
        TrainingState(tmp_path, changed, resume=True)


def test_a_non_finite_epoch_leaves_the_saved_state_and_its_description_alone(tmp_path):
    """The end-of-epoch check fires after the epoch's loss joined the history: the state saved after the previous
    epoch, on disk and in memory, still ends at that epoch (the list handed to ``on_epoch`` is a copy)."""
    layer, calls = torch.nn.Linear(2, 1), [0]

    def step_loss(idx: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        loss = layer(torch.ones(len(idx), 2)).pow(2).mean()
        return loss * float("nan") if calls[0] == 3 else loss  # the first step of epoch 2

    state = TrainingState(tmp_path, {"seed": 0}, resume=False)
    cfg = TrainConfig(batch_size=4)  # 8 samples: 2 steps per epoch; with 6 steps the step check runs at step 6 only
    with pytest.raises(FloatingPointError, match=r"the mean loss of epoch 2 is nan \(by step 4\)"):
        T._fit(layer, list(layer.parameters()), step_loss, 8, cfg, 3, 0.1, torch.Generator(), "abstract", None,
               on_epoch=lambda s: state.save_epoch("abstract", s))  # fmt: skip
    assert state.describe_last() == f"{tmp_path / STATE_FILE} (after epoch 1 of stage abstract)"
    history = safe_load(tmp_path / STATE_FILE)["current"]["history"]
    assert len(history) == 1 and math.isfinite(history[0])


def test_resume_refuses_a_state_of_the_older_per_variant_stages(tmp_path):
    """States written before the one-pass concrete phase (no version: one stage per variant) are refused clearly."""
    saved = to_dict(_config())
    TrainingState(tmp_path, saved, resume=False).finish("abstract", torch.nn.Linear(1, 1), torch.Generator())
    old = safe_load(tmp_path / STATE_FILE)
    del old["version"]
    atomic_save(old, tmp_path / STATE_FILE)
    with pytest.raises(CheckpointError, match=r"older pretraining \(state version 1, this code resumes 2"):
        TrainingState(tmp_path, saved, resume=True)
