"""Bad input at the command line: each case exits non-zero with one clear ``error: ...`` line, never a traceback.

One table, two tests. Each case calls a script's ``main(argv)`` in this process (``scripts/`` imported by path, the
working folder and the environment variables set per test with ``monkeypatch``, torch on one thread), with the files
it needs made in ``tmp_path`` first (tiny checkpoints, ``.npz`` task data, a copy of MNIST with a truncated file), and
asserts: the exit status, that stdout and stderr hold exactly one ``error:`` line and it is stderr's last non-empty
line, no "Traceback", and the expected words in it. A few cases (one per kind of script) also run as real
subprocesses, ``python scripts/<name>.py ...``, to prove the entry points (``sys.exit(main())``) behave the same.
Exit status 2 means bad arguments or config (and a checkpoint that cannot be used); 1 means the data or the training
failed (``DatasetError``, a non-finite loss), as each script's docstring says.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
import yaml

from envs import pool
from fsae.checkpoint import save_fsae
from fsae.config import load_config, to_dict
from fsae.data import _find_mnist_file
from fsae.model import FSAE, FSAEConfig, LayerSpec
from fsae.pretrain import PretrainConfig
from fsae.resume import TrainingState
from rl.config import AgentConfig

ROOT = Path(__file__).resolve().parents[1]

# A run of a few steps, should a case get that far: 256 images, one epoch, one variant, no baseline.
PRETRAIN = ["scripts/pretrain.py", "--config", "configs/pretrain/mnist_fast.yaml", "--device", "cpu", "--out",
            "{tmp}/pretrain", "--set", "torch_threads=1", "data.train_size=256", "data.test_size=64",
            "train.abstract_epochs=1", "train.concrete_epochs=1", "variants=[{name: plain}]", "feedback_steps=[0]",
            "baseline_ae=false"]  # fmt: skip
AGENT = ["--device", "cpu", "--logdir", "{tmp}/agents", "--total-steps", "64", "--n-envs", "2"]
AGENT_SET = ["--set", "torch_threads=1", "progress_bar=false", "eval_freq=0", "checkpoint_freq=0"]
COLLECT = ["scripts/collect.py", "--steps", "4", "--out", "{tmp}/task.npz", "--no-progress"]


def pretrain(*overrides: str) -> list[str]:
    return [*PRETRAIN, *overrides]


def agent(*overrides: str, flags: tuple[str, ...] = (), config: str = "digit_bandit") -> list[str]:
    """A train_agent command; ``overrides`` continue its one ``--set`` list (a second ``--set`` would replace it)."""
    return [
        "scripts/train_agent.py",
        "--config",
        f"configs/agent/{config}.yaml",
        *AGENT,
        *flags,
        *AGENT_SET,
        *overrides,
    ]


# Files a case can ask for, made in tmp_path by the test (never in the repository).
def _fsae(path: Path) -> None:
    torch.manual_seed(0)
    model = FSAE(FSAEConfig((1, 28, 28), [LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 10)], round=True))
    save_fsae(path, model, variant="round")


def _truncated(path: Path) -> None:
    _fsae(path.with_name("full.pt"))
    data = path.with_name("full.pt").read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _mnist_truncated(path: Path) -> None:
    source = Path(os.environ.get("FSAE_MNIST_DIR", "/nonexistent"))
    if not source.is_dir():
        pytest.skip(f"no local MNIST in {source} (set FSAE_MNIST_DIR)")
    path.mkdir()
    for f in sorted(source.iterdir()):
        shutil.copyfile(f, path / f.name)
    images = _find_mnist_file(path, "train-images-idx3-ubyte")  # the file the loader reads first
    assert images is not None, f"no train-images-idx3-ubyte in {source}"
    images.write_bytes(images.read_bytes()[:5000])


def _other_run_state(run_dir: Path) -> None:
    """A run folder whose train_state.pt belongs to PRETRAIN's config with another seed."""
    config = to_dict(load_config(PretrainConfig, ROOT / PRETRAIN[2], PRETRAIN[8:])) | {"seed": 1}
    TrainingState(run_dir, config, resume=False).finish("abstract", torch.nn.Linear(1, 1), torch.Generator())


def _groups_fsae(path: Path) -> None:
    torch.manual_seed(0)
    layers = [LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 20)]
    save_fsae(path, FSAE(FSAEConfig((1, 28, 56), layers, head="groups", groups=[10, 10], round=True)), variant="round")


def _run_folder(root: Path, files: dict[str, str | bytes]) -> None:
    """``root/DigitBandit-v0/none/seed0`` holding ``files`` (relative path -> content)."""
    run = root / "DigitBandit-v0" / "none" / "seed0"
    for name, content in files.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(content if isinstance(content, bytes) else content.encode())


def _bandit_config() -> str:
    return yaml.safe_dump(to_dict(load_config(AgentConfig, ROOT / "configs" / "agent" / "digit_bandit.yaml")))


PREPARE: dict[str, Callable[[Path], None]] = {
    "fsae.pt": _fsae,
    "truncated.pt": _truncated,
    "foreign.pt": lambda p: torch.save({"state_dict": {"weight": torch.zeros(3)}, "step": 1}, p),
    "no_obs.npz": lambda p: np.savez(p, labels=np.zeros(4, np.int64)),
    "no_labels.npz": lambda p: np.savez(p, obs=np.zeros((4, 1, 28, 28), np.uint8)),
    "digits.npz": lambda p: np.savez(p, obs=np.full((256, 1, 28, 28), 128, np.uint8), labels=np.arange(256) % 10),
    "wide.npz": lambda p: np.savez(p, obs=np.zeros((256, 1, 28, 56), np.uint8), labels=np.arange(256) % 10),
    "mismatch.npz": lambda p: np.savez(p, obs=np.zeros((4, 1, 28, 28), np.uint8), labels=np.zeros(3, np.int64)),
    "ram.npz": lambda p: np.savez(p, obs=np.zeros((256, 1, 28, 28), np.uint8), labels=np.ones((256, 4), np.float32)),
    "attributes.npz": lambda p: np.savez(p, obs=np.zeros((256, 1, 28, 28), np.uint8), labels=np.ones((256, 3), int)),
    "empty": lambda p: p.mkdir(),
    "mnist": _mnist_truncated,
    "pretrain": _other_run_state,
    "groups.pt": _groups_fsae,
    "afile": lambda p: p.write_text("a file where a folder would go"),
    "finished": lambda p: (p.mkdir(), (p / "metrics.json").write_text("{}")),
    # An unfinished run whose config.yaml is broken (where AGENT's --logdir puts seed 0), with a checkpoint to resume.
    "agents": lambda p: _run_folder(p, {"config.yaml": "{{{: [", "checkpoints/agent_64_steps.zip": b""}),
    # A finished run (done.json) whose metrics.json is cut short.
    "cut": lambda p: _run_folder(p, {"done.json": '{"seconds": 1.0}', "metrics.json": '{"final_eval/mean_rew'}),
    # A finished run whose agent is not a zip.
    "garbage": lambda p: _run_folder(
        p, {"config.yaml": _bandit_config(), "final_model.zip": "garbage", "metrics.json": "{}"}
    ),  # fmt: skip
}


class Case(NamedTuple):
    id: str
    argv: list[str]
    code: int
    expect: str
    env: dict[str, str] = {}
    files: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()  # optional extras the case imports (pip install -e ".[minigrid]")


SWEEP = ["scripts/sweep.py", "--config", "configs/sweeps/tiny.yaml", "--dry-run"]
MNIST_EMPTY, MNIST_CUT = {"FSAE_MNIST_DIR": "{tmp}/empty"}, {"FSAE_MNIST_DIR": "{tmp}/mnist"}
FSAE_FLAGS = ("--augment", "--fsae")

# fmt: off
CASES = [
    # Config keys and values
    Case("pretrain-unknown-key", pretrain("train.lerning_rate=1"), 2, "did you mean 'abstract_lr' or 'baseline_lr' or"),
    Case("agent-unknown-key", agent("n_env=2"), 2, "unknown AgentConfig key 'n_env' (did you mean 'n_envs'?)"),
    Case("sweep-unknown-key", [*SWEEP, "--set", "sedes=[1]"], 2, "unknown SweepConfig key 'sedes' (did you mean"),
    Case("pretrain-wrong-type", pretrain("train.batch_size=abc"), 2, "batch_size: expected an integer, got 'abc'"),
    Case("agent-negative-lr", agent("hyperparams.learning_rate=-0.1"), 2, "PPO refused the hyperparameters: Invalid"),
    Case("agent-noise", agent("env_kwargs.noise=2"), 2, "noise must be in [0, 1], got 2"),
    Case("agent-eval-noise", agent("eval_env_kwargs.noise=2"), 2, "'noise': 2}: noise must be in [0, 1], got 2"),
    Case("collect-unknown-env", [*COLLECT, "--env", "fsae/DigitBandid-v0"], 2, "DigitBandid` doesn't exist"),
    Case("collect-ram-out-of-range", [*COLLECT, "--env", "fsae/DigitBandit-v0", "--labels", "ram=51,128"], 2,
         "labels: ram address 128 is out of range 0..127 (the Atari 2600 has 128 bytes of RAM)"),
    Case("collect-env-package-missing", [*COLLECT, "--config", "configs/collect/pong_ram.yaml", "--set",
         "env_packages=[ale_pyy]"], 2, "env package 'ale_pyy' is not installed; pip install the package"),
    Case("collect-wrapper-kwarg-typo", [*COLLECT, "--config", "configs/collect/minigrid_doorkey5.yaml", "--set",
         "env_wrappers=[{minigrid.wrappers.RGBImgPartialObsWrapper: {tile: 4}}]"], 2, "env_wrappers[0] "
         "minigrid.wrappers.RGBImgPartialObsWrapper: unknown keyword 'tile' (did you mean 'tile_size'?)",
         needs=("minigrid",)),
    Case("collect-unknown-label-function", [*COLLECT, "--env", "fsae/DigitBandit-v0", "--labels",
         "function=envs.labels:minigrid_concept"], 2, "module 'envs.labels' has no function 'minigrid_concept'; "
         "did you mean 'minigrid_concepts'?"),
    Case("agent-unknown-env", agent("env_id=fsae/Nope-v0"), 2, "cannot make environment 'fsae/Nope-v0'"),
    Case("agent-unknown-union", agent("union=foo"), 2, "union: 'foo' is not one of ['stack', 'max', 'mean']"),
    Case("pretrain-unknown-jumps", pretrain("variants=[{name: x, jumps: foo}]"), 2, "variant 'x': jumps must be"),
    Case("set-not-yaml", pretrain("feedback_steps=[0,"), 2, "override 'feedback_steps=[0,': the value is not valid"),
    Case("pretrain-model-variant-key", pretrain("model.feedback_gain=0.5"), 2, "are set per variant; use variants[]"),
    Case("pretrain-eval-batch-size", pretrain("train.eval_batch_size=0"), 2, "eval_batch_size must be > 0, got 0"),
    Case("agent-fsae-without-augment", agent(flags=("--fsae", "{tmp}/fsae.pt")), 2,
         "--fsae is used only by --augment fsae, autoencoder, code or features, not 'none'", files=("fsae.pt",)),
    Case("compare-no-folder", ["scripts/compare.py", "{tmp}/nothing"], 2, "nothing is not a folder"),
    # Environments from outside: env_packages and env_wrappers (envs.spec), checked when the config is loaded
    Case("agent-wrapper-unknown-path", agent("env_wrappers=[gymnasium.wrappers.AtariPreprocesing]"), 2,
         "env_wrappers[0] gymnasium.wrappers.AtariPreprocesing: 'gymnasium.wrappers' has no 'AtariPreprocesing' (did "
         "you mean 'AtariPreprocessing'?); unknown path"),
    Case("agent-wrapper-kwarg-typo", agent("env_wrappers=[{gymnasium.wrappers.TimeLimit: {max_episode_step: 5}}]"), 2,
         "env_wrappers[0] gymnasium.wrappers.TimeLimit: unknown keyword 'max_episode_step' (did you mean "
         "'max_episode_steps'?); valid: ['max_episode_steps']"),
    Case("agent-env-package-missing", agent("env_packages=[procgen]"), 2,
         "env package 'procgen' is not installed; pip install the package that provides 'procgen'"),
    Case("agent-not-an-image", agent("env_wrappers=[]", config="minigrid_doorkey5"), 2,
         "MiniGrid-DoorKey-5x5-v0 observes Dict(", needs=("minigrid",)),
    Case("agent-eval-space", agent("eval_env_kwargs.agent_view_size=5", config="minigrid_doorkey5"), 2,
         "eval_env_kwargs {'agent_view_size': 5} change the observation space of 'MiniGrid-DoorKey-5x5-v0': "
         "Box(0, 255, (28, 28, 3), uint8) in training, Box(0, 255, (20, 20, 3), uint8) in evaluation",
         needs=("minigrid",)),
    # Data
    Case("mnist-missing", pretrain("data.download=false"), 1, "MNIST not found in", MNIST_EMPTY, ("empty",)),
    Case("mnist-truncated", pretrain("data.download=false"), 1, "is unreadable or corrupt", MNIST_CUT, ("mnist",)),
    Case("agent-mnist-truncated", agent(), 1, "is unreadable or corrupt", MNIST_CUT, ("mnist",)),
    Case("npz-no-obs", pretrain("data.source={tmp}/no_obs.npz"), 1, "lacks key(s) ['obs']", files=("no_obs.npz",)),
    Case("npz-no-labels", pretrain("data.source={tmp}/no_labels.npz"), 1, "lacks key(s) ['labels']",
         files=("no_labels.npz",)),
    Case("npz-mismatch", pretrain("data.source={tmp}/mismatch.npz"), 2, "obs has 4 samples but labels has 3",
         files=("mismatch.npz",)),
    Case("npz-labels-count", pretrain("data.source={tmp}/ram.npz", "model.head=linear"), 2, "model.head linear needs "
         "(N, 10) targets, but the training labels are (230, 4) float32; set the last layer's out to the number of "
         "targets", files=("ram.npz",)),
    Case("npz-labels-head", pretrain("data.source={tmp}/attributes.npz"), 2, "model.head softmax needs (N,) class "
         "indices, but the training labels are (230, 3) int64; set model.head to fit them", files=("attributes.npz",)),
    Case("npz-shape", pretrain("data.source={tmp}/wide.npz"), 2,
         "data images are (1, 28, 56) but model.input_shape is (1, 28, 28)", files=("wide.npz",)),
    # Checkpoints for --augment --fsae
    Case("ckpt-truncated", agent(flags=(*FSAE_FLAGS, "{tmp}/truncated.pt")), 2, "is truncated or not a PyTorch file",
         files=("truncated.pt",)),
    Case("ckpt-foreign", agent(flags=(*FSAE_FLAGS, "{tmp}/foreign.pt")), 2,
         "is not an FSAE checkpoint ('no format tag')", files=("foreign.pt",)),
    Case("ckpt-shape", agent(flags=(*FSAE_FLAGS, "{tmp}/fsae.pt"), config="digit_sum"), 2,
         "(C, H, W) = (1, 28, 28), but fsae/DigitSum-v0 observes (1, 28, 56)", files=("fsae.pt",)),
    # Training. Adam's first step at this rate sends the weights to ~1e30; 230 training images in batches of 128 give
    # 2 steps (the fast config's abstract batches of 256 would give 1), and the loss is checked at the last step of a
    # phase. Task data rather than MNIST: less to load.
    Case("pretrain-nonfinite", pretrain("data.source={tmp}/digits.npz", "train.abstract_lr=1.0e+30",
                                        "train.abstract_batch_size=128"), 1,
         "by step 2 (epoch 1); lower the learning rate or check the data for NaN; no epoch finished before it, so "
         "there is no state to resume from", files=("digits.npz",)),
    # ... and in the concrete phase, after the abstract one was saved: the message names the state to resume from.
    Case("pretrain-nonfinite-concrete", pretrain("train.concrete_lr=1.0e+30"), 1,
         "by step 2 (epoch 1); lower the learning rate or check the data for NaN; last good state: "
         "{tmp}/pretrain/train_state.pt (after stage abstract); --resume continues from it only with the same config, "
         "so a lower learning rate means a new run (another --out)"),
    # Resuming (scripts/pretrain.py --resume)
    Case("pretrain-resume-no-out", ["scripts/pretrain.py", "--resume"], 2, "--resume needs --out RUN_DIR"),
    Case("pretrain-resume-nothing", [*PRETRAIN, "--resume"], 2, "nothing to resume in"),
    Case("pretrain-occupied-out", PRETRAIN, 2, "pretrain already holds a run (train_state.pt); add --resume",
         files=("pretrain",)),
    Case("pretrain-resume-other-config", [*PRETRAIN, "--resume"], 2, "was started with another config (differs in: "
         "seed)", files=("pretrain",)),
    Case("agent-resume-broken-config", agent(flags=("--resume",)), 2, "config.yaml is not valid YAML: while parsing",
         files=("agents",)),
    # Output folders that are files, or that hold a finished run
    Case("pretrain-out-is-a-file", [*PRETRAIN[:6], "{tmp}/afile", *PRETRAIN[7:]], 2,
         "afile is a file, not a folder; choose another", files=("afile",)),
    Case("agent-logdir-is-a-file", [*agent(), "logdir={tmp}/afile"], 2, "logdir {tmp}/afile/DigitBandit-v0/none/seed0: "
         "{tmp}/afile is a file, not a folder", files=("afile",)),
    Case("sweep-logdir-is-a-file", ["scripts/sweep.py", "--config", "configs/sweeps/tiny.yaml", "--set",
         "logdir={tmp}/afile", f"envs=[{{name: DigitBandit, config: {ROOT}/configs/agent/digit_bandit.yaml}}]"], 2,
         "logdir {tmp}/afile: {tmp}/afile is a file, not a folder", files=("afile",)),
    Case("familiarity-out-holds-a-run", ["scripts/familiarity.py", "--out", "{tmp}/finished"], 2,
         "finished already holds a finished run (metrics.json); choose another --out", files=("finished",)),
    # Data and records
    Case("collect-mnist-missing", [*COLLECT, "--env", "fsae/DigitBandit-v0"], 1, "MNIST not found in", MNIST_EMPTY,
         ("empty",)),
    Case("lethe-classes", ["scripts/lethe.py", "--out", "{tmp}/lethe", "--old", "42"], 2,
         "--old [42]: give some of the classes 0..9"),
    Case("concepts-pairs", ["scripts/concepts.py", "--out", "{tmp}/concepts", "--checkpoint", "{tmp}/groups.pt",
         "--pairs", "3,12"], 2, "--pairs [[3, 12]]: each (left, right) must be within the groups' sizes [10, 10]",
         files=("groups.pt",)),
    Case("concepts-pair-of-one", ["scripts/concepts.py", "--out", "{tmp}/concepts", "--pairs", "3"], 2,
         "--pairs [[3]]: each pair is two digits, left and right, such as 3,8"),
    Case("concepts-one-step", ["scripts/concepts.py", "--out", "{tmp}/concepts", "--steps", "1"], 2,
         "--steps 1: an interpolation needs at least its two ends (alpha 0 and 1)"),
    Case("shift-out-a-file", ["scripts/evaluate_shift.py", "{tmp}/garbage", "--out", "{tmp}/afile"], 2,
         "--out {tmp}/afile: {tmp}/afile is a file, not a folder; choose another", files=("garbage", "afile")),
    Case("run-table-cut-record", ["scripts/run_table.py", "{tmp}/cut"], 1,
         "cut/DigitBandit-v0/none/seed0/metrics.json is unreadable or corrupt", files=("cut",)),
    Case("archive-cut-record", ["scripts/archive_runs.py", "{tmp}/cut", "{tmp}/store"], 2,
         "cut/DigitBandit-v0/none/seed0/metrics.json is unreadable or corrupt", files=("cut",)),
    Case("shift-agent-not-a-zip", ["scripts/evaluate_shift.py", "{tmp}/garbage", "--episodes", "1"], 2,
         "final_model.zip cannot be loaded (ValueError", files=("garbage",)),
]
# fmt: on


# The cases that also run as real subprocesses: one per kind of script (pretraining, agent training, sweeps).
SUBPROCESS = [c for c in CASES if c.id in ("sweep-unknown-key", "mnist-missing", "ckpt-foreign")]


def prepare(case: Case, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """Make the case's files in ``tmp_path``; its argv (the script first) and environment with {tmp} filled in and
    the repository's configs/ and scripts/ made absolute, so that it runs from any working folder."""
    for name in case.files:
        PREPARE[name](tmp_path / name)

    def fill(s: str) -> str:
        s = s.replace("{tmp}", str(tmp_path))
        return str(ROOT / s) if s.startswith(("configs/", "scripts/")) else s

    return [fill(a) for a in case.argv], {k: fill(v) for k, v in case.env.items()}


def check_error(case: Case, code: int, out: str, err: str, tmp_path: Path) -> None:
    """Exit status ``case.code``; exactly one ``error:`` line in stdout and stderr together, and it is stderr's last
    non-empty line and holds ``case.expect``; no traceback."""
    lines = [line.strip() for line in err.splitlines() if line.strip()]  # splitlines also splits tqdm's \r
    errors = [line for line in (out + "\n" + err).splitlines() if line.strip().startswith("error:")]
    assert code == case.code, f"exit {code}, expected {case.code}; stderr:\n{err}"
    assert "Traceback" not in err, err
    assert len(errors) == 1 and lines and lines[-1] == errors[0].strip(), f"stdout:\n{out}\nstderr:\n{err}"
    expect = case.expect.replace("{tmp}", str(tmp_path))
    assert expect in lines[-1], f"{expect!r} not in {lines[-1]!r}"


@pytest.fixture
def keep_rngs():
    """The global random states (Python's, numpy's, torch's) as they were before the test: the scripts seed them."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()  # noqa: NPY002
    yield
    random.setstate(states[0])
    np.random.set_state(states[1])  # noqa: NPY002
    torch.set_rng_state(states[2])


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_error_line(case: Case, tmp_path: Path, monkeypatch, capsys, load_script, keep_rngs):
    for package in case.needs:
        pytest.importorskip(package, reason=f"case {case.id} needs the optional extra {package}")
    argv, env = prepare(case, tmp_path)
    monkeypatch.chdir(tmp_path)  # anything a script writes by a relative path lands here, not in the repository
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(sys, "argv", argv)  # as `python scripts/<name>.py ...` would see it
    monkeypatch.setattr(pool, "_pools", {})  # the environments' digits, cached per split, not per FSAE_MNIST_DIR
    capsys.readouterr()  # drop what making the files printed
    try:
        code = load_script(Path(argv[0]).stem).main(argv[1:])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    captured = capsys.readouterr()
    check_error(case, code, captured.out, captured.err, tmp_path)


@pytest.mark.parametrize("case", SUBPROCESS, ids=[c.id for c in SUBPROCESS])
def test_bad_input_from_the_command_line(case: Case, tmp_path: Path):
    argv, env = prepare(case, tmp_path)
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)  # this tree's code
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": pythonpath, **env}
    proc = subprocess.run([sys.executable, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    check_error(case, proc.returncode, proc.stdout, proc.stderr, tmp_path)
