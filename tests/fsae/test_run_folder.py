"""The first hour of a new user: the device and a time estimate printed, a failed run leaves no folder behind (but
never touches one that held something), fig2's column titles say they are predictions, and the thread rule."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest
import torch

from fsae import threads
from fsae.config import ConfigError, from_dict
from fsae.data import DatasetError
from fsae.figures import prediction_titles
from fsae.pretrain import PretrainConfig, pretrain

TINY = {
    "model": {"layers": [{"type": "conv", "out": 8, "kernel": 4, "stride": 2}, {"type": "linear", "out": 10}]},
    "data": {"train_size": 400, "test_size": 100},
    "train": {"abstract_epochs": 1, "concrete_epochs": 1, "batch_size": 64},
    "variants": [{"name": "round", "round": True}],
    "feedback_steps": [0],
    "baseline_ae": False,
    "device": "cpu",
    "torch_threads": 1,
}


def _cfg(**data) -> PretrainConfig:
    return from_dict(PretrainConfig, TINY | {"data": TINY["data"] | data})


@pytest.fixture
def no_mnist(tmp_path) -> dict:
    (tmp_path / "empty").mkdir()
    return {"root": str(tmp_path / "empty"), "download": False}


def test_a_run_that_fails_leaves_no_new_folder(tmp_path, no_mnist):
    out = tmp_path / "runs" / "new"
    with pytest.raises(DatasetError, match="MNIST not found"):
        pretrain(_cfg(**no_mnist), out)
    assert not out.exists() and (tmp_path / "runs").is_dir()  # the parent is where runs go: it stays

    given = tmp_path / "given"  # an empty folder the user made: emptied again, kept
    given.mkdir()
    with pytest.raises(DatasetError):
        pretrain(_cfg(**no_mnist), given)
    assert given.is_dir() and not any(given.iterdir())

    kept = tmp_path / "kept"  # a folder that held something: nothing of it is removed
    (kept / "notes").mkdir(parents=True)
    (kept / "notes" / "a.txt").write_text("mine")
    with pytest.raises(DatasetError):
        pretrain(_cfg(**no_mnist), kept)
    assert (kept / "notes" / "a.txt").read_text() == "mine" and (kept / "config.yaml").is_file()


def test_a_run_prints_its_device_and_an_estimate_of_the_whole_run(tmp_path, capsys):
    pretrain(_cfg(), tmp_path / "run")
    out = capsys.readouterr().out
    assert "device: cpu (1 torch thread(s))" in out
    assert "abstract epoch 1 took" in out and "concrete epoch 1 took" in out
    assert "the whole run should take about" in out and "mnist_fast.yaml" not in out  # seconds: no hint needed


def test_the_estimate_hints_at_the_fast_config_for_a_long_cpu_run(capsys, monkeypatch):
    from fsae import pretrain as P

    monkeypatch.setattr(P.time, "time", lambda: 1300.0)  # the first epoch took 300 s of the run's 300 s so far
    cfg = from_dict(PretrainConfig, TINY | {"train": {"abstract_epochs": 3, "concrete_epochs": 2}})
    hook = P._estimate(cfg, torch.device("cpu"), t_start=1000.0)
    hook("abstract", 1, 300.0)
    # left: 300 s x (2 more abstract epochs + 2 concrete epochs x (0.3 shared + 0.35 for the one round variant)) =
    # 990 s, plus a tenth for the evaluation: 1089 s; with the 300 s done, 1389 s = 23 min, over ten minutes: the hint.
    out = capsys.readouterr().out
    assert "abstract epoch 1 took 300.0 s: the whole run should take about 23 min; on a CPU, " in out
    assert "configs/pretrain/mnist_fast.yaml trains the same variants" in out
    hook("abstract", 2, 300.0)  # only after the first epoch
    assert capsys.readouterr().out == ""


def test_fig2_titles_are_the_predictions():
    assert prediction_titles(torch.tensor([3, 7])) == ["pred 3", "pred 7"]
    assert prediction_titles(torch.tensor([[3, 5]])) == ["pred [3, 5]"]
    assert prediction_titles(torch.tensor([[0.254, 0.5]])) == ["pred [0.25, 0.5]"]
    assert prediction_titles(torch.tensor([0.254])) == ["pred 0.25"]
    assert prediction_titles(torch.tensor([[0.73, 0.62, 0.671, -0.5, 1.0]])) == ["pred [0.73, 0.62,\n0.67, -0.5,\n1.0]"]


@pytest.mark.parametrize(
    ("job", "requested", "cores", "load", "expected"),
    [
        ("pretrain", 0, 2, 0.0, 2),  # the idle 2-core machine: both cores
        ("pretrain", 0, 2, 0.4, 2),
        ("pretrain", 0, 2, 0.9, 1),  # another job on one core: one thread
        ("pretrain", 0, 2, 6.0, 1),  # never fewer than one
        ("pretrain", 0, 16, 3.4, 13),
        ("agent", 0, 16, 0.0, 1),  # small networks: one thread however many cores
        ("pretrain", 3, 2, 6.0, 3),  # asked for: as asked
        ("agent", 2, 2, 0.0, 2),
    ],
)
def test_thread_rule(job, requested, cores, load, expected):
    assert threads.pick_threads(job, requested, cores, load) == expected


def test_thread_rule_refuses_unknown_jobs_and_reads_this_machine():
    with pytest.raises(ConfigError, match="job must be one of"):
        threads.pick_threads("inference")
    assert 1 <= threads.pick_threads("pretrain") <= threads._cores()
    before = torch.get_num_threads()
    try:
        assert threads.set_threads("agent") == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_current_load_counts_the_other_runnable_threads(tmp_path, monkeypatch):
    """The load of now: the median of the kernel's runnable count, less the reading thread; the load average where
    there is no /proc/stat."""
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3\nprocs_running 3\nprocs_blocked 0\n")
    assert threads.current_load(samples=3, interval=0.0, stat=str(stat)) == 2
    stat.write_text("procs_running 1\n")  # only the reader: an idle machine
    assert threads.current_load(samples=1, interval=0.0, stat=str(stat)) == 0
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.5, 0.0, 0.0))
    assert threads.current_load(stat=str(tmp_path / "missing")) == 1.5


def test_freed_memory_is_kept_where_glibc_is():
    """``fsae.memory.retain_freed_memory`` takes on Linux with glibc (this project's machines) and decides once."""
    from fsae.memory import retain_freed_memory

    first = retain_freed_memory()
    assert retain_freed_memory() is first
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert first is True


def test_resuming_a_folder_never_removes_it(tmp_path, no_mnist):
    """A failed resume (here: nothing to resume) raises before writing, and leaves the folder as it was."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "command.txt").write_text("x")
    with pytest.raises(Exception, match="nothing to resume"):
        pretrain(_cfg(**no_mnist), out, resume=True)
    assert sorted(p.name for p in out.iterdir()) == ["command.txt"] and Path(out / "command.txt").read_text() == "x"
