"""An environment a user brings (a tiny one defined here, registered under its own namespace): every way it can be
wrong is refused in one line before anything is written, by collect and by train_agent alike, and what works is
recorded (the layout an agent's observations were read in)."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from envs import spec
from envs.collect import collect
from envs.labels import LabelConfig
from envs.spec import image_layout
from fsae.checkpoint import load_fsae
from fsae.config import ConfigError, from_dict
from fsae.model import FSAEConfig
from fsae.pretrain import DataConfig, PretrainConfig, load_dataset, pretrain
from fsae.task_data import save_task_data, task_data_origin
from rl.agent import train_agent
from rl.config import AgentConfig
from rl.env_factory import OriginWarning, make_observer, probe_env


class Bars(gym.Env):
    """A (12, 16, 3) RGB image with a bright row at the label, 0..2 (``info['label']``); ``misstate`` declares the
    space (3, 12, 16), ``high`` sets its upper bound."""

    def __init__(self, misstate: bool = False, high: int = 255, value: int = 200):
        self.observation_space = spaces.Box(0, high, (3, 12, 16) if misstate else (12, 16, 3), np.uint8)
        self.value = value
        self.action_space = spaces.Discrete(2)
        self._label = 0

    def _obs(self) -> np.ndarray:
        img = np.zeros((12, 16, 3), np.uint8)
        img[4 * self._label] = self.value
        return img

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._label = int(self.np_random.integers(3))
        return self._obs(), {"label": self._label}

    def step(self, action):
        self._label = int(self.np_random.integers(3))
        return self._obs(), float(action == 0), False, False, {"label": self._label}


gym.register("own/Bars-v0", entry_point=Bars, max_episode_steps=8)


class FailsOnFirstFrame(gym.ObservationWrapper):
    """Builds, then fails on the first observation (as MiniGrid's RGB wrapper does on an env that is not MiniGrid)."""

    def observation(self, observation):
        raise AttributeError("'Bars' object has no attribute 'get_frame'")


def broken_labels(env, info):
    return info["missing"]


def _agent(tmp_path, **over) -> AgentConfig:
    d = {"env_id": "own/Bars-v0", "condition": "none", "total_steps": 64, "n_envs": 2, "eval_freq": 0,
         "eval_episodes": 1, "logdir": str(tmp_path / "runs"), "hyperparams": {"n_steps": 32, "batch_size": 32},
         "device": "cpu", "progress_bar": False}  # fmt: skip
    return from_dict(AgentConfig, d | over)


def test_a_wrapper_failing_on_the_first_frame_is_one_line_before_any_file(tmp_path):
    cfg = _agent(tmp_path, env_wrappers=[f"{__name__}.FailsOnFirstFrame"])
    with pytest.raises(ConfigError) as e:
        probe_env(cfg)
    assert str(e.value) == (
        f"own/Bars-v0: the first reset failed in env_wrappers[0] {__name__}.FailsOnFirstFrame: "
        "AttributeError: 'Bars' object has no attribute 'get_frame'"
    )
    with pytest.raises(ConfigError) as e:  # the wrappers named: the entry; else the class
        collect("own/Bars-v0", 5, make_env=lambda env_id: FailsOnFirstFrame(gym.make(env_id)), progress=False)
    assert str(e.value) == (
        "own/Bars-v0: the first reset failed in FailsOnFirstFrame: AttributeError: 'Bars' object has no attribute "
        "'get_frame'"
    )
    assert not (tmp_path / "runs").exists()


def test_a_space_that_misstates_the_observations_is_refused(tmp_path):
    """(3, 12, 16) declared, (12, 16, 3) given: read from the space, the rows would be taken for channels."""
    message = (
        "own/Bars-v0 gives observations of shape (12, 16, 3) uint8, but its observation_space declares "
        "Box(0, 255, (3, 12, 16), uint8); the env or one of its wrappers misstates its space"
    )
    with pytest.raises(ConfigError) as e:
        probe_env(_agent(tmp_path, env_kwargs={"misstate": True}))
    assert str(e.value) == message
    with pytest.raises(ConfigError) as e:
        collect("own/Bars-v0", 5, env_kwargs={"misstate": True}, progress=False)
    assert str(e.value) == message


def test_collect_refuses_what_an_agent_would_refuse(tmp_path):
    """uint8 in [0, 1] is not an image to an agent, so not to collect either (it stored near-black images)."""
    with pytest.raises(ConfigError, match=r"observes Box\(0, 1, \(12, 16, 3\), uint8\), not an image"):
        collect("own/Bars-v0", 5, env_kwargs={"high": 1}, progress=False)
    with pytest.raises(ConfigError, match=r"observes Box\(0, 1, \(12, 16, 3\), uint8\), not an image"):
        probe_env(_agent(tmp_path, env_kwargs={"high": 1}))


def test_a_stated_layout_of_a_cube_is_not_called_as_given():
    """(10, 10, 10) read channels-last is transposed, though its shape reads the same both ways."""
    cube = spaces.Box(0, 255, (10, 10, 10), np.uint8)
    assert image_layout(cube, "channels_last").conversion() == "channels-last (H, W, C) (10, 10, 10) -> (10, 10, 10)"
    assert image_layout(cube, "channels_first").conversion() == "channels-first (C, H, W) (10, 10, 10) as given"


def test_a_label_function_that_raises_is_named():
    labels = from_dict(LabelConfig, {"function": f"{__name__}:broken_labels"})
    with pytest.raises(ConfigError) as e:
        collect("own/Bars-v0", 5, labels=labels, progress=False)
    assert str(e.value) == f"labels.function '{__name__}:broken_labels' raised KeyError: 'missing'"


def test_one_info_key_of_classes_trains_a_softmax_head(tmp_path):
    """labels.info with one key gives (N, 1) labels, one column of classes: a softmax head's (N,), not a refusal."""
    data = collect("own/Bars-v0", 30, labels=from_dict(LabelConfig, {"info": ["label"]}), progress=False)
    assert data.labels.shape == (30, 1) and set(data.labels[:, 0].tolist()) == {0, 1, 2}
    np.testing.assert_array_equal(data.obs[:, 0, :, 0].argmax(1) // 4, data.labels[:, 0])  # the row shows the label
    np.savez(tmp_path / "bars.npz", obs=data.obs, labels=data.labels)
    model = from_dict(FSAEConfig, {"input_shape": [3, 12, 16], "layers": [{"type": "linear", "out": 3}]})
    source = from_dict(DataConfig, {"source": str(tmp_path / "bars.npz"), "test_fraction": 0.2})
    _, y_train, _, y_test = load_dataset(source, 0, model)
    assert y_train.shape == (24,) and y_test.shape == (6,)
    assert sorted(torch.cat([y_train, y_test]).tolist()) == sorted(data.labels[:, 0].tolist())


def test_the_layout_is_printed_and_recorded(tmp_path, capsys):
    train_agent(_agent(tmp_path))
    line = "own/Bars-v0: observations (12, 16, 3) channels-last (H, W, C), read as (C, H, W) = (3, 12, 16)"
    assert line in capsys.readouterr().out.splitlines()
    record = json.loads((tmp_path / "runs" / "Bars-v0" / "none" / "seed0" / "fsae.json").read_text())
    assert record["observation"] == line.split("observations ", 1)[1]


class ToCHW(gym.ObservationWrapper):
    """Bars' (12, 16, 3) as (3, 12, 16): the same pixels, channels first."""

    def __init__(self, env):
        super().__init__(env)
        self.observation_space = spaces.Box(0, 255, (3, 12, 16), np.uint8)

    def observation(self, observation):
        return np.ascontiguousarray(observation.transpose(2, 0, 1))


def test_a_model_of_the_same_env_read_in_another_layout_is_warned_about(tmp_path):
    """scripts/collect.py's record of where the data came from reaches the checkpoint; an agent whose observations put
    the channels on the other axis is warned (the shapes fit, the meaning of the channels is not checked), one whose
    observations are read as the data was is not."""
    data = collect("own/Bars-v0", 40, progress=False)
    config = json.dumps({"env_id": "own/Bars-v0", "env_wrappers": []})
    save_task_data(
        tmp_path / "bars.npz", data.obs, data.labels, env_id="own/Bars-v0", layout=data.layout, config=config
    )
    assert task_data_origin(tmp_path / "bars.npz") == {
        "env_id": "own/Bars-v0",
        "layout": "channels-last (H, W, C) (12, 16, 3) -> (3, 12, 16)",
        "env_wrappers": [],
    }
    model = {"input_shape": [3, 12, 16], "layers": [{"type": "conv", "out": 4, "kernel": 4, "stride": 2},
                                                    {"type": "linear", "out": 3}]}  # fmt: skip
    cfg = from_dict(PretrainConfig, {
        "model": model, "data": {"source": str(tmp_path / "bars.npz"), "test_fraction": 0.25},
        "train": {"abstract_epochs": 1, "concrete_epochs": 1, "batch_size": 16},
        "variants": [{"name": "round", "round": True}], "feedback_steps": [0], "baseline_ae": False,
        "device": "cpu"})  # fmt: skip
    pretrain(cfg, tmp_path / "pre")
    ckpt = str(tmp_path / "pre" / "fsae_round.pt")
    assert load_fsae(ckpt).checkpoint_meta["data"] == {
        "source": str(tmp_path / "bars.npz"),
        **task_data_origin(tmp_path / "bars.npz"),
    }

    def warned(**over) -> list[str]:
        agent = _agent(tmp_path, condition="fsae", fsae_checkpoint=ckpt, **over)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            make_observer(agent, ckpt, "cpu", probe_env(agent))
        return [str(w.message) for w in caught if issubclass(w.category, OriginWarning)]

    assert warned() == []  # read channels-last, as the data was
    (line,) = warned(env_wrappers=[f"{__name__}.ToCHW"])
    assert line == (
        f"{ckpt} was pretrained on own/Bars-v0 images read channels-last (channels-last (H, W, C) (12, 16, 3) -> "
        "(3, 12, 16)), this run's are channels-first ((3, 12, 16) channels-first (C, H, W)): the shapes fit, but check "
        "that the channels mean the same (a model of RGB frames runs on a stack of grey ones without an error)"
    )


class ShrinksLater(gym.ObservationWrapper):
    """Declares Bars' space and keeps to it for three observations, then gives a row less."""

    def __init__(self, env):
        super().__init__(env)
        self.seen = 0

    def observation(self, observation):
        self.seen += 1
        return observation if self.seen <= 3 else observation[1:]


def test_collect_refuses_a_space_broken_after_the_first_reset():
    with pytest.raises(ConfigError) as e:
        collect("own/Bars-v0", 10, make_env=lambda env_id: ShrinksLater(gym.make(env_id)), progress=False)
    assert str(e.value) == (
        "own/Bars-v0 gave an observation of shape (11, 16, 3) uint8 at step 3, but its observation_space declares "
        "Box(0, 255, (12, 16, 3), uint8); the env or one of its wrappers misstates its space"
    )


def test_hints_for_what_is_not_an_image(tmp_path):
    """CartPole's state (a float vector) points at the pixels route, a Dict of pixels at render_only."""
    with pytest.raises(
        ConfigError,
        match=r"not pixels; for the pixels of any env that renders: env_kwargs "
        r"\{render_mode: rgb_array\} and env_wrappers \[\{gymnasium.wrappers.AddRenderObservation",
    ):
        collect("CartPole-v1", 5, progress=False)
    pixels = [{"gymnasium.wrappers.AddRenderObservation": {"render_only": False}}]
    cfg = _agent(tmp_path, env_id="CartPole-v1", env_kwargs={"render_mode": "rgb_array"}, env_wrappers=pixels)
    with pytest.raises(
        ConfigError, match=r"a Dict with 'pixels' \(AddRenderObservation's\): set its render_only: true"
    ):
        probe_env(cfg)


def test_collect_script_on_an_id_of_ones_own_and_an_index_grid(tmp_path, capsys, load_script):
    script = load_script("collect")
    assert script.main(["--env", "mine/Nothing-v0", "--out", str(tmp_path / "x.npz")]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "; an id of your own: name the module that registers it in env_packages (e.g. env_packages: [mymodule])"
        )
    )
    out = tmp_path / "dim.npz"
    assert script.main(["--env", "own/Bars-v0", "--steps", "20", "--out", str(out), "--no-progress",
                        "--set", "env_kwargs={value: 9}", f"env_packages=[{__name__}]"]) == 0  # fmt: skip
    assert capsys.readouterr().out.splitlines()[-1] == (
        "warning: no value above 9 in any image: an index grid (MiniGrid's 'image' holds object indices) rather than "
        "pixels? (minigrid.wrappers.RGBImgPartialObsWrapper gives pixels)"
    )
    assert task_data_origin(out)["layout"] == "channels-last (H, W, C) (12, 16, 3) -> (3, 12, 16)"


def test_an_agent_refuses_a_space_broken_mid_run_in_one_line(tmp_path):
    """The env passed the first reset; three observations later it gives a row less (numpy would fail in the vector
    env's buffer with a traceback naming neither)."""
    with pytest.raises(ConfigError) as e:
        train_agent(_agent(tmp_path, env_wrappers=[f"{__name__}.ShrinksLater"]))
    assert str(e.value) == (
        "own/Bars-v0 gave an observation of shape (11, 16, 3) uint8 at step 3, but its observation_space declares "
        "Box(0, 255, (12, 16, 3), uint8); the env or one of its wrappers misstates its space"
    )


def test_the_guard_passes_observations_on_unchanged():
    guarded, plain = spec.make("own/Bars-v0"), gym.make("own/Bars-v0")
    assert isinstance(guarded, spec.ObservationGuard) and guarded.observation_space == plain.observation_space
    assert isinstance(gym.make(guarded.spec), spec.ObservationGuard)  # its spec rebuilds it (Gymnasium's checker)
    for env in (guarded, plain):
        env.action_space.seed(0)
    (a, _), (b, _) = guarded.reset(seed=3), plain.reset(seed=3)
    assert a is not None and np.array_equal(a, b)
    for _ in range(20):
        a, b = guarded.step(1)[0], plain.step(1)[0]
        assert np.array_equal(a, b)


def test_a_subprocess_worker_that_dies_is_one_line(tmp_path):
    """SB3's SubprocVecEnv workers do not send an error back; the run says which env's worker stopped and where the
    error is, instead of an EOFError from the pipe (and another from closing it)."""
    cfg = _agent(
        tmp_path, env_packages=[__name__], env_wrappers=[f"{__name__}.ShrinksLater"], vec_env="subproc", eval_freq=0
    )
    with pytest.raises(ConfigError) as e:
        train_agent(cfg)
    assert str(e.value) == (
        "a SubprocVecEnv worker of own/Bars-v0 stopped (EOFError); its own error is printed above (vec_env: dummy "
        "gives it as one line)"
    )
