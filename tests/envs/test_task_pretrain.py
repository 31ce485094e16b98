"""Task data collected from each environment trains through the pretraining pipeline (issue: envs, point 5)."""

import json
from pathlib import Path

import pytest

from envs.collect import collect
from fsae.checkpoint import load_fsae
from fsae.config import load_config
from fsae.evaluate import evaluate_abstract
from fsae.pretrain import PretrainConfig, pretrain
from fsae.targets import load_dataset
from fsae.task_data import save_task_data

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "train.abstract_epochs=1",
    "train.concrete_epochs=1",
    "train.batch_size=64",
    "variants=[{name: round, round: true}, {name: jump_all, jumps: all}]",
    "feedback_steps=[0, 2]",
    "baseline_ae=false",
    "device=cpu",
]


@pytest.mark.parametrize("env", ["bandit", "sum", "lock"])
def test_collected_data_pretrains_with_its_config(env, tmp_path):
    env_id = {"bandit": "fsae/DigitBandit-v0", "sum": "fsae/DigitSum-v0", "lock": "fsae/DigitLock-v0"}[env]
    obs, labels = collect(env_id, 600, seed=0, progress=False)[:2]
    data = save_task_data(tmp_path / f"{env}.npz", obs, labels)
    config_file = ROOT / "configs" / "pretrain" / f"digit_{env}.yaml"
    cfg = load_config(PretrainConfig, config_file, [f"data.source={data}", *TINY])
    m = pretrain(cfg, tmp_path / "run")
    assert tuple(cfg.model.input_shape) == obs.shape[1:]
    assert {"abstract/test_accuracy", "prototype/cycle_accuracy", "reference/class_mean_mse"} <= set(m)
    assert m["concrete/jump_all/test_mse"] < m["concrete/round/test_mse"]
    assert m["feedback/jump_all/T2/test_mse"] <= m["feedback/jump_all/T0/test_mse"]
    if env != "bandit":  # two softmax groups: one accuracy per digit
        assert {"abstract/test_accuracy_group0", "abstract/test_accuracy_group1", "abstract/test_exact_match"} <= set(m)
    assert (tmp_path / "run" / "fsae_round.pt").is_file()


def test_collect_then_pretrain_scripts(tmp_path, monkeypatch, load_script):
    """The two commands chained as the README has them, each through its ``main(argv)`` in this process (both entry
    points also run as real subprocesses: tests/envs/test_collect.py and tests/test_bad_input.py)."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "sum.npz"
    collect_argv = ["--env", "fsae/DigitSum-v0", "--steps", "400", "--out", str(data), "--no-progress"]
    assert load_script("collect").main(collect_argv) == 0
    config = ROOT / "configs" / "pretrain" / "digit_sum.yaml"
    pretrain_argv = ["--config", str(config), "--out", str(tmp_path / "run"), "--set", f"data.source={data}", *TINY]
    assert load_script("pretrain").main(pretrain_argv) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # The saved checkpoint, on the test split the run drew from the collected file, scores what metrics.json says.
    cfg = load_config(PretrainConfig, config, [f"data.source={data}", *TINY])
    _, _, x_test, y_test = load_dataset(cfg.data, cfg.seed, cfg.model)
    again = evaluate_abstract(load_fsae(tmp_path / "run" / "fsae_round.pt").eval(), x_test, y_test)
    assert set(again) == {"test_accuracy_group0", "test_accuracy_group1", "test_accuracy", "test_exact_match"}
    assert {k: metrics[f"abstract/{k}"] for k in again} == pytest.approx(again, abs=1e-7)
