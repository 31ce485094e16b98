"""envs.spec: env_packages and env_wrappers from YAML, every refusal one exact line; wrappers applied in order, in the
main process and in SubprocVecEnv workers alike; an agent config and a sweep plan check them when loaded."""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml
from gymnasium.wrappers import FlattenObservation, TimeLimit
from stable_baselines3.common.vec_env import SubprocVecEnv

from envs.spec import ObservationGuard, _tuples, import_packages, make, resolve_wrappers
from fsae.config import ConfigError, from_dict, load_config
from rl.config import AgentConfig
from rl.env_factory import make_env
from rl.sweep import SweepConfig, plan

ROOT = Path(__file__).resolve().parents[2]


def test_good_entries_resolve_in_order():
    entries = yaml.safe_load("""
        - gymnasium.wrappers.TimeLimit: {max_episode_steps: 3}
        - gymnasium.wrappers.FlattenObservation:
        - gymnasium.wrappers.RecordEpisodeStatistics
    """)
    resolved = resolve_wrappers(entries)
    assert [(p, obj.__name__, kw) for p, obj, kw in resolved] == [
        ("gymnasium.wrappers.TimeLimit", "TimeLimit", {"max_episode_steps": 3}),
        ("gymnasium.wrappers.FlattenObservation", "FlattenObservation", {}),
        ("gymnasium.wrappers.RecordEpisodeStatistics", "RecordEpisodeStatistics", {}),
    ]
    env = make("fsae/DigitBandit-v0", (), entries[:2], split="test", episode_length=50)
    assert isinstance(env, ObservationGuard)  # the last layer of every env made: it checks each observation's shape
    assert isinstance(env.env, FlattenObservation) and isinstance(env.env.env, TimeLimit)  # the first wraps innermost
    assert env.observation_space.shape == (784,)
    env.reset(seed=0)
    assert [env.step(0)[3] for _ in range(3)] == [False, False, True]  # truncated by TimeLimit after 3 steps


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            "gymnasium.wrappers.AtariPreprocesing",
            "env_wrappers[0] gymnasium.wrappers.AtariPreprocesing: 'gymnasium.wrappers' has no 'AtariPreprocesing' "
            "(did you mean 'AtariPreprocessing'?); unknown path",
        ),
        (
            "gymnasium.wrapers.TimeLimit",
            "env_wrappers[0] gymnasium.wrapers.TimeLimit: 'gymnasium' has no 'wrapers' (did you mean 'wrappers'?); "
            "unknown path",
        ),
        (
            "nosuchpackage.wrappers.Thing",
            "env_wrappers[0] nosuchpackage.wrappers.Thing: no module named 'nosuchpackage' (unknown path, or a package "
            "that is not installed)",
        ),
        (
            {"gymnasium.wrappers.AtariPreprocessing": {"frame_skp": 1}},
            "env_wrappers[0] gymnasium.wrappers.AtariPreprocessing: unknown keyword 'frame_skp' (did you mean "
            "'frame_skip'?); valid: ['noop_max', 'frame_skip', 'screen_size', 'terminal_on_life_loss', "
            "'grayscale_obs', 'grayscale_newaxis', 'scale_obs']",
        ),
        (
            "gymnasium.wrappers.FrameStackObservation",
            "env_wrappers[0] gymnasium.wrappers.FrameStackObservation: missing keyword 'stack_size' (it has no "
            "default); valid: ['stack_size', 'padding_type']",
        ),
        ("gymnasium.spaces.Box", "env_wrappers[0] gymnasium.spaces.Box: Box is a class but not a gymnasium.Wrapper"),
        ("numpy.pi", "env_wrappers[0] numpy.pi: is a float, not a wrapper class or a function env -> env"),
        (
            "TimeLimit",
            "env_wrappers[0]: 'TimeLimit' is not a dotted import path (e.g. minigrid.wrappers.ImgObsWrapper)",
        ),
        (
            "os.system; rm",
            "env_wrappers[0]: 'os.system; rm' is not a dotted import path (e.g. minigrid.wrappers.ImgObsWrapper)",
        ),  # fmt: skip
    ],
)
def test_bad_entries_are_one_line(entry, message):
    with pytest.raises(ConfigError) as e:
        resolve_wrappers(["gymnasium.wrappers.FlattenObservation", entry][1:])
    assert str(e.value) == message


def test_yaml_lists_reach_wrappers_as_tuples():
    """gymnasium's ResizeObservation refuses a list for its shape, and YAML writes no tuples: lists become tuples."""
    entries = yaml.safe_load("""
        - gymnasium.wrappers.ReshapeObservation: {shape: [28, 28, 1]}  # (1, 28, 28) as (H, W, C), which Resize takes
        - gymnasium.wrappers.ResizeObservation: {shape: [14, 20]}
    """)
    assert [kw for _, _, kw in resolve_wrappers(entries)] == [{"shape": (28, 28, 1)}, {"shape": (14, 20)}]
    env = make("fsae/DigitBandit-v0", (), entries, episode_length=5)
    assert env.observation_space.shape == (14, 20, 1) and env.reset(seed=0)[0].shape == (14, 20, 1)
    assert _tuples({"a": [1, [2, 3]], "b": {"c": [4]}, "d": "e"}) == {"a": (1, (2, 3)), "b": {"c": (4,)}, "d": "e"}


def _returns_a_number(env):
    return 3


@pytest.mark.parametrize(
    "entry, message",
    [
        (  # a value only the wrapper itself can check
            {"gymnasium.wrappers.FrameStackObservation": {"stack_size": 0}},
            "env_wrappers[0] gymnasium.wrappers.FrameStackObservation on fsae/DigitBandit-v0: ValueError: "
            "The stack_size needs to be greater than zero, actual value: 0",
        ),
        (  # a function that is not a wrapper, though it takes one argument
            "numpy.zeros",
            "env_wrappers[0] numpy.zeros on fsae/DigitBandit-v0: TypeError: ",
        ),
        (
            f"{__name__}._returns_a_number",
            f"env_wrappers[0] {__name__}._returns_a_number returned a int, not an environment",
        ),
    ],
)
def test_a_wrapper_that_fails_when_built_is_one_line_naming_it(entry, message):
    with pytest.raises(ConfigError) as e:
        make("fsae/DigitBandit-v0", (), [entry], episode_length=5)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_package_not_installed_names_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ale_py", None)  # as if ale-py were not installed: import raises
    with pytest.raises(ConfigError) as e:
        import_packages(["ale_py"])
    assert str(e.value) == "env package 'ale_py' is not installed; pip install -e \".[atari]\""
    for name in [m for m in sys.modules if m == "minigrid" or m.startswith("minigrid.")] + ["minigrid"]:
        monkeypatch.setitem(sys.modules, name, None)  # imported already by another test: its submodules too
    with pytest.raises(ConfigError) as e:
        resolve_wrappers(["minigrid.wrappers.ImgObsWrapper"])
    assert str(e.value) == (
        "env_wrappers[0] minigrid.wrappers.ImgObsWrapper: package 'minigrid' is not installed; "
        'pip install -e ".[minigrid]"'
    )
    with pytest.raises(ConfigError, match=r"^env package 'nosuchpackage' is not installed; pip install the package"):
        import_packages(["nosuchpackage"])


def test_agent_config_checks_them_when_loaded():
    path = ROOT / "configs" / "agent" / "digit_bandit.yaml"
    cfg = load_config(AgentConfig, path, ["env_wrappers=[{gymnasium.wrappers.TimeLimit: {max_episode_steps: 4}}]"])
    assert cfg.env_wrappers == [{"gymnasium.wrappers.TimeLimit": {"max_episode_steps": 4}}]
    with pytest.raises(ConfigError, match=r"^AgentConfig: env_wrappers\[0\] gymnasium.wrappers.TimeLimit: unknown "):
        load_config(AgentConfig, path, ["env_wrappers=[{gymnasium.wrappers.TimeLimit: {max_steps: 4}}]"])
    with pytest.raises(ConfigError, match=r"^AgentConfig: env package 'nosuchpackage' is not installed"):
        load_config(AgentConfig, path, ["env_packages=[nosuchpackage]"])


def test_sweep_plan_names_the_bad_entry():
    cfg = from_dict(
        SweepConfig,
        {
            "envs": [
                {
                    "config": str(ROOT / "configs" / "agent" / "digit_bandit.yaml"),
                    "name": "Bandit",
                    "set": ["env_wrappers=[gymnasium.wrappers.TimeLimt]"],
                }
            ],  # fmt: skip
            "conditions": ["none"],
            "seeds": [0],
        },
    )
    with pytest.raises(ConfigError) as e:
        plan(cfg, check_files=False)
    assert str(e.value).startswith("Bandit / none / seed 0: ") and str(e.value).endswith(
        "env_wrappers[0] gymnasium.wrappers.TimeLimt: 'gymnasium.wrappers' has no 'TimeLimt' (did you mean "
        "'TimeLimit'?); unknown path"
    )


def test_subprocess_workers_apply_the_wrappers():
    """SubprocVecEnv workers build their envs with make_env (a module-level function): same packages, same wrappers."""
    kwargs = {
        "env_id": "fsae/DigitBandit-v0",
        "env_wrappers": [{"gymnasium.wrappers.TimeLimit": {"max_episode_steps": 2}}],
        "episode_length": 50,
    }
    venv = SubprocVecEnv([lambda: make_env(**kwargs)] * 2, start_method="fork")
    try:
        venv.reset()
        dones = [venv.step(np.zeros(2, np.int64))[2] for _ in range(2)]
    finally:
        venv.close()
    assert [d.tolist() for d in dones] == [[False, False], [True, True]]
    assert gym.make("fsae/DigitBandit-v0", episode_length=50).spec.max_episode_steps is None  # not the env's own limit
