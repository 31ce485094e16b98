"""fsae.cli: the options, config and exit statuses shared by the pretraining-style scripts."""

import os
import warnings
from pathlib import Path

import pytest
import torch

from fsae import console
from fsae.checkpoint import CheckpointError
from fsae.cli import config_parser, load_pretrain_config, run_dir, run_experiment
from fsae.config import ConfigError
from fsae.data import DatasetError
from fsae.runtime import resolve_device


def test_flags_override_set_and_file():
    args = config_parser("doc", "x").parse_args(["--set", "seed=4", "train.batch_size=64", "--seed", "7"])
    cfg = load_pretrain_config(args)
    assert cfg.seed == 7 and cfg.train.batch_size == 64 and cfg.name == "mnist_fast"  # the default config file
    assert load_pretrain_config(config_parser("doc", "x").parse_args(["--device", "cpu"])).device == "cpu"
    assert run_dir(args, cfg).parts[:2] == ("runs", "x") and run_dir(args, cfg).name.startswith("mnist_fast__7__")


def test_run_experiment_statuses(tmp_path, capsys):
    parser = config_parser("doc", "x")
    seen = {}

    def run(cfg, out, opts, command):
        seen.update(cfg=cfg, out=out, opts=opts)
        return {"metric/a": 0.5, "label": "round"}

    argv = ["--out", str(tmp_path / "r"), "--seed", "3"]
    assert run_experiment(parser, lambda a: "opts", run, argv) == 0
    out = capsys.readouterr().out
    assert "metric/a  0.5" in out and "label     round" in out and f"run folder: {tmp_path / 'r'}" in out
    assert seen["cfg"].seed == 3 and seen["out"] == Path(tmp_path / "r") and seen["opts"] == "opts"

    def bad_options(args):
        raise ValueError("--pairs takes left,right digit pairs")

    assert run_experiment(parser, bad_options, run, argv) == 2
    assert capsys.readouterr().err == "error: --pairs takes left,right digit pairs\n"
    assert run_experiment(parser, lambda a: None, run, ["--set", "sed=1"]) == 2
    assert "did you mean 'seed'" in capsys.readouterr().err

    def no_data(cfg, out, opts, command):
        raise DatasetError("MNIST not found in /nowhere")

    assert run_experiment(parser, lambda a: None, no_data, argv) == 1
    assert capsys.readouterr().err == "error: MNIST not found in /nowhere\n"

    def occupied(cfg, out, opts, command):
        raise CheckpointError(f"{out} already holds a run (metrics.json)")

    assert run_experiment(parser, lambda a: None, occupied, argv) == 2  # a run folder it cannot use: like a bad option
    assert capsys.readouterr().err.startswith("error: ")


def test_cuda_without_a_gpu_is_a_config_error(monkeypatch):
    """--device cuda on a machine without one: a ConfigError (one error line, exit 2), not a traceback."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="torch sees no GPU; use --device cpu or auto"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


def test_run_experiment_keeps_a_finished_run_and_leaves_no_folder_when_a_run_fails(tmp_path, capsys):
    """An experiment never writes into a folder that holds a finished run, and a failed one leaves nothing behind."""
    parser = config_parser("doc", "x")

    def run(cfg, out, opts, command):  # writes as the experiments do, then fails
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text("written")
        raise DatasetError("MNIST not found in /nowhere")

    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "metrics.json").write_text('{"a": 1}')
    (finished / "config.yaml").write_text("the run's own")
    assert run_experiment(parser, lambda a: None, run, ["--out", str(finished)]) == 2
    assert (
        capsys.readouterr().err
        == f"error: {finished} already holds a finished run (metrics.json); choose another --out\n"
    )
    assert (finished / "config.yaml").read_text() == "the run's own" and sorted(os.listdir(finished)) == [
        "config.yaml",
        "metrics.json",
    ]

    assert run_experiment(parser, lambda a: None, run, ["--out", str(tmp_path / "new")]) == 1
    assert not (tmp_path / "new").exists()
    (tmp_path / "afile").write_text("")
    assert run_experiment(parser, lambda a: None, run, ["--out", str(tmp_path / "afile" / "r")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: --out {tmp_path / 'afile' / 'r'}: {tmp_path / 'afile'} is a file, not a folder; choose another"
    )


def test_the_projects_warnings_are_one_line_and_a_librarys_keep_their_source(monkeypatch):
    """``one_line_warnings`` (what every script's ``__main__`` calls): 'warning: message' for a warning raised in the
    project's packages, Python's 'file:line: Category: message' for one raised elsewhere."""
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after the test
    console.one_line_warnings()
    ours = str(Path(console.__file__).resolve().parent.parent / "rl" / "env_factory.py")
    theirs = "/usr/lib/python3/site-packages/gymnasium/core.py"
    assert warnings.formatwarning("an RGB model on grey frames", UserWarning, ours, 173) == (
        "warning: an RGB model on grey frames\n"
    )
    assert warnings.formatwarning("deprecated", DeprecationWarning, theirs, 9, "") == (
        f"{theirs}:9: DeprecationWarning: deprecated\n"
    )
    for odd in ("", ".", "<string>", "a\0b", str(Path(ours).parent.parent)):  # no file, the root itself, not a path
        assert warnings.formatwarning("m", UserWarning, odd, 1, "") == f"{odd}:1: UserWarning: m\n"
