"""Tests of task-data collection: shapes, labels against MNIST, determinism, the file format, pretraining on it, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from envs.collect import collect, parse_env_kwargs
from envs.labels import labels_from_info
from fsae import train as T
from fsae.config import ConfigError
from fsae.data import load_mnist
from fsae.evaluate import evaluate_abstract
from fsae.model import FSAE, FSAEConfig, LayerSpec
from fsae.pretrain import DataConfig, load_dataset
from fsae.task_data import load_task_data, save_task_data

REPO = Path(__file__).resolve().parents[2]
SHAPES = {"fsae/DigitBandit-v0": (1, 28, 28), "fsae/DigitSum-v0": (1, 28, 56), "fsae/DigitLock-v0": (1, 28, 56)}
LABEL_SHAPES = {"fsae/DigitBandit-v0": (), "fsae/DigitSum-v0": (2,), "fsae/DigitLock-v0": (2,)}


@pytest.mark.parametrize("env_id", list(SHAPES))
def test_collect_shapes_dtypes_and_label_ranges(env_id):
    obs, labels, layout, names = collect(env_id, 300, seed=0, progress=False)
    assert layout == f"channels-first (C, H, W) {SHAPES[env_id]} as given" and names is None
    assert obs.shape == (300, *SHAPES[env_id]) and obs.dtype == np.uint8
    assert labels.shape == (300, *LABEL_SHAPES[env_id]) and labels.dtype == np.int64
    assert labels.min() == 0 and labels.max() == 9
    assert obs.std() > 0  # not all equal


@pytest.mark.parametrize("env_id", list(SHAPES))
def test_collected_labels_are_the_clean_classes_of_the_images(env_id):
    index = {r.tobytes(): y for r, y in zip(*load_mnist("test"))}
    obs, labels = collect(env_id, 200, 1, {"split": "test", "noise": 0.0, "occlusion": 0.0}, progress=False)[:2]
    labels = labels.reshape(len(labels), -1)
    for o, y in zip(obs, labels):
        shown = [index[o[0, :, x : x + 28].tobytes()] for x in range(0, o.shape[2], 28)]
        assert shown == y.tolist()


def test_collect_is_deterministic_per_seed():
    a = collect("fsae/DigitLock-v0", 100, seed=5, progress=False)
    b = collect("fsae/DigitLock-v0", 100, seed=5, progress=False)
    c = collect("fsae/DigitLock-v0", 100, seed=6, progress=False)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_collect_rejects_bad_arguments():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        collect("fsae/DigitBandit-v0", 0, progress=False)
    with pytest.raises(ConfigError, match="CartPole-v1 observes Box"):  # not an image: one line naming the space
        collect("CartPole-v1", 5, progress=False)
    with pytest.raises(KeyError, match="neither 'labels' nor 'label'"):
        labels_from_info({"dial": 3})


def test_parse_env_kwargs():
    parsed = parse_env_kwargs(["noise=0.1", "occlusion_size=8", "render_mode=rgb_array", "x=None", "y=1e-3"])
    assert parsed == {"noise": 0.1, "occlusion_size": 8, "render_mode": "rgb_array", "x": None, "y": 0.001}
    for bad in (["noise"], ["=3"], ["a=1", "a=2"]):
        with pytest.raises(ValueError):
            parse_env_kwargs(bad)


@pytest.mark.parametrize("env_id", list(SHAPES))
def test_pretraining_trains_on_collected_data(env_id, tmp_path):
    path = tmp_path / "task.npz"
    obs, labels = collect(env_id, 256, seed=0, progress=False)[:2]
    save_task_data(path, obs, labels)
    loaded = load_task_data(path)
    assert np.array_equal(loaded[0], obs) and np.array_equal(loaded[1], labels)

    x_train, y_train, x_test, y_test = load_dataset(DataConfig(source=str(path), test_fraction=0.25), seed=0)
    assert x_train.shape[1:] == SHAPES[env_id] and len(x_train) + len(x_test) == 256
    two = labels.ndim == 2
    config = FSAEConfig(
        input_shape=SHAPES[env_id],
        layers=[LayerSpec("conv", 4, 4, 4), LayerSpec("linear", 20 if two else 10)],
        head="groups" if two else "softmax",
        groups=[10, 10] if two else [],
    )
    torch.manual_seed(0)
    model = FSAE(config)
    cfg = T.TrainConfig(abstract_epochs=3, batch_size=32, abstract_lr=3e-3)
    losses = T.train_abstract(model, x_train, y_train, cfg, torch.Generator().manual_seed(0))
    assert len(losses) == 3 and all(np.isfinite(losses)) and losses[-1] < losses[0]
    metrics = evaluate_abstract(model, x_test, y_test)
    model.eval()
    with torch.no_grad():
        hit = (model.classify(x_test) == y_test).float()  # the test split's labels, as the collector recorded them
    if two:  # each digit's accuracy, their mean, and both right
        expected = {"test_accuracy_group0": hit[:, 0].mean(), "test_accuracy_group1": hit[:, 1].mean()}
        expected |= {"test_accuracy": hit.mean(), "test_exact_match": hit.min(1).values.mean()}
    else:
        expected = {"test_accuracy": hit.mean()}
    assert metrics == pytest.approx({k: v.item() for k, v in expected.items()}, abs=1e-7)


def test_script_writes_the_same_data_as_the_library(tmp_path):
    out = tmp_path / "lock.npz"
    cmd = [sys.executable, str(REPO / "scripts" / "collect.py"), "--env", "fsae/DigitLock-v0", "--steps", "120"]
    cmd += ["--out", str(out), "--split", "test", "--seed", "3", "--env-kwargs", "noise=0.1", "occlusion_size=8"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "collect fsae/DigitLock-v0" in done.stderr  # the tqdm bar
    obs, labels = load_task_data(out)
    kwargs = {"noise": 0.1, "occlusion_size": 8, "split": "test"}
    expected = collect("fsae/DigitLock-v0", 120, 3, kwargs, progress=False)
    assert np.array_equal(obs, expected[0]) and np.array_equal(labels, expected[1])
    with np.load(out) as f:
        assert str(f["env_id"]) == "fsae/DigitLock-v0" and int(f["seed"]) == 3
        assert json.loads(str(f["env_kwargs"])) == kwargs
        assert str(f["layout"]) == "channels-first (C, H, W) (1, 28, 56) as given" and "label_names" not in f.files
        assert json.loads(str(f["config"]))["labels"] == {"info": [], "ram": [], "function": ""}
        assert json.loads(str(f["config"]))["env_wrappers"] == [] and json.loads(str(f["config"]))["steps"] == 120


def test_script_reports_bad_arguments_and_writes_nothing(tmp_path, capsys, load_script):
    script = load_script("collect")
    out = tmp_path / "bad.npz"
    base = ["--steps", "5", "--out", str(out), "--no-progress"]
    assert script.main(["--env", "fsae/DigitLock-v0", *base, "--env-kwargs", "noise=2"]) == 2
    assert "noise must be in [0, 1]" in capsys.readouterr().err
    assert script.main(["--env", "fsae/DigitLock-v0", *base, "--env-kwargs", "colour=1"]) == 2
    assert "unexpected keyword argument 'colour'" in capsys.readouterr().err
    assert script.main(["--env", "fsae/NoSuchEnv-v0", *base]) == 2
    assert not out.exists()
    assert script.main(["--env", "fsae/DigitBandit-v0", *base]) == 0
    assert load_task_data(out)[1].shape == (5,)
    report = capsys.readouterr().out.splitlines()[-1]  # five steps: five distinct digits, each with its own label
    assert report == (
        "distinct observations: 5 of 5; accuracy per label of the best function of the image [1.0], of the most "
        f"frequent label [{np.bincount(load_task_data(out)[1]).max() / 5}]"
    )
    before = out.read_bytes()
    assert script.main(["--env", "fsae/DigitBandit-v0", *base, "--seed", "1"]) == 2  # nothing lost
    assert "already exists; pass --overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert script.main(["--env", "fsae/DigitBandit-v0", *base, "--seed", "1", "--overwrite"]) == 0
    assert out.read_bytes() != before
