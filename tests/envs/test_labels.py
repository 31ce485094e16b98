"""Label sources and image layouts of task data (issue 17, point 3): info keys, Atari RAM, MiniGrid concepts, user
functions; channels-last and grey frames stored channels first; labels that change shape refused."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.envs import FakeImageEnv

from envs.collect import CollectConfig, collect
from envs.labels import ATARI_RAM, MINIGRID_FRONT, LabelConfig, labels_from_info, make_labeler, minigrid_concepts
from envs.spec import image_layout
from fsae.config import ConfigError, from_dict


class CountingImageEnv(gym.Env):
    """Observation at step t (t = 0 at reset) is ``image(t)`` of the given shape; info["t"] = t; episodes of 7 steps."""

    def __init__(self, shape=(6, 5, 3)):
        self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    @staticmethod
    def image(t: int, shape) -> np.ndarray:
        return ((np.arange(np.prod(shape)) * 7 + t) % 256).astype(np.uint8).reshape(shape)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.image(0, self.observation_space.shape), {"t": 0, "half": 0.5}

    def step(self, action):
        self.t += 1
        return self.image(self.t, self.observation_space.shape), 0.0, self.t == 7, False, {"t": self.t, "half": 0.5}


def make_counting(env_id: str, shape=(6, 5, 3)) -> gym.Env:
    return CountingImageEnv(shape)


# Label functions for the tests, reached as "<this module>:<name>" through importlib like a user's.
def step_and_half(env, info):
    return [info["t"] * 0.5, 1.0]


def growing(env, info):
    return np.arange(2 + (info["t"] == 3))


@pytest.mark.parametrize(
    ("shape", "layout", "to_chw", "note"),
    [
        ((6, 5, 3), "auto", lambda x: x.transpose(2, 0, 1), "channels-last (H, W, C) (6, 5, 3) -> (3, 6, 5)"),
        ((3, 6, 5), "auto", lambda x: x, "channels-first (C, H, W) (3, 6, 5) as given"),
        ((6, 5), "auto", lambda x: x[None], "grey (H, W) (6, 5) -> (1, 6, 5)"),
        ((4, 6, 5), "channels_last", lambda x: x.transpose(2, 0, 1), "channels-last (H, W, C) (4, 6, 5) -> (5, 4, 6)"),
        (
            (2, 6, 5, 3),
            "auto",
            lambda x: np.concatenate([x[0].transpose(2, 0, 1), x[1].transpose(2, 0, 1)]),
            "stack (k, H, W, C) (2, 6, 5, 3) -> (6, 6, 5)",
        ),  # a stack of RGB frames: frame i in channels 3i..3i+2
    ],
)
def test_images_are_stored_channels_first_exactly_as_transposed_by_hand(shape, layout, to_chw, note):
    label = LabelConfig(info=["t"])
    data = collect("counting", 20, labels=label, layout=layout, make_env=lambda i: make_counting(i, shape), progress=0)
    assert data.layout == note and data.obs.dtype == np.uint8
    t = [0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5]  # the final observation (t = 7) is the reset's
    assert data.labels.tolist() == [[x] for x in t] and data.labels.dtype == np.int64
    expected = np.stack([to_chw(CountingImageEnv.image(x, shape)) for x in t])
    assert np.array_equal(data.obs, expected)


def test_layout_is_decided_as_sb3_decides_it():
    last, first = FakeImageEnv(n_channels=3, channel_first=False), FakeImageEnv(n_channels=1, channel_first=True)
    assert image_layout(last.observation_space).conversion() == "channels-last (H, W, C) (84, 84, 3) -> (3, 84, 84)"
    assert image_layout(first.observation_space).conversion() == "channels-first (C, H, W) (1, 84, 84) as given"
    with pytest.raises(ConfigError, match=r"the environment: cannot tell which axis of \(6, 2, 5\) holds the channels"):
        image_layout(gym.spaces.Box(0, 255, (6, 2, 5), np.uint8))
    with pytest.raises(ConfigError, match=r"observes Box\(0.0, 1.0, \(3, 4, 4\), float32\), not an image"):
        image_layout(gym.spaces.Box(0, 1, (3, 4, 4), np.float32))


def test_float_labels_keep_their_dtype_and_info_keys_concatenate():
    fn = LabelConfig(function=f"{__name__}:step_and_half")
    data = collect("counting", 9, labels=fn, make_env=make_counting, progress=False)
    assert data.labels.dtype == np.float32 and data.labels.shape == (9, 2)
    assert data.labels[:, 0].tolist() == [0, 0.5, 1, 1.5, 2, 2.5, 3, 0, 0.5] and (data.labels[:, 1] == 1).all()
    keys = collect("counting", 3, labels=LabelConfig(info=["t", "half"]), make_env=make_counting, progress=False)
    assert keys.labels.dtype == np.float32 and keys.labels.tolist() == [[0, 0.5], [1, 0.5], [2, 0.5]]
    assert keys.label_names == ["t", "half"]
    assert labels_from_info({"label": 3}).tolist() == 3 and labels_from_info({"labels": [1, 2], "label": 0}).size == 2
    with pytest.raises(KeyError, match=r"info has no key\(s\) \['score'\]"):
        labels_from_info({"t": 1}, ["t", "score"])


def test_labels_that_change_count_between_steps_are_refused():
    with pytest.raises(ConfigError, match=r"are 3 int64 value\(s\) at step 3 but were 2 int64 at step 0; every"):
        collect("counting", 8, labels=LabelConfig(function=f"{__name__}:growing"), make_env=make_counting, progress=0)


def test_label_config_is_checked_when_it_is_read():
    assert LabelConfig(ram="breakout").ram_addresses() == [72, 99, 101] and LabelConfig().source == "info"
    assert LabelConfig(ram=[0, 127]).names() == ["ram[0]", "ram[127]"]
    assert LabelConfig(function="envs.labels:minigrid_concepts").names() == ["front", "carrying_key", "door_open"]
    bad = [
        ({"ram": [51, 128]}, "labels: ram address 128 is out of range 0..127 (the Atari 2600 has 128 bytes of RAM)"),
        ({"ram": [-1]}, "labels: ram address -1 is out of range 0..127"),
        ({"ram": "pacman"}, "labels: no RAM table 'pacman'; tables: ['breakout', 'pong']"),
        ({"ram": [1], "function": "a:b"}, "labels: give one source, not ram and function"),
        ({"function": "minigrid_concepts"}, "labels: function 'minigrid_concepts' must look like module:function"),
        ({"fuction": "a:b"}, "unknown LabelConfig key 'labels.fuction' (did you mean 'function'?)"),
    ]
    for labels, message in bad:
        with pytest.raises(ConfigError) as err:
            from_dict(CollectConfig, {"labels": labels})
        assert message in str(err.value)
    for spec, message in [
        (
            "envs.labels:minigrid_concept",
            "has no function 'minigrid_concept'; did you mean 'minigrid_concepts'? its "
            "functions: ['labels_from_info', 'make_labeler', 'minigrid_concepts', 'resolve_function']",
        ),
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz' (No module named 'no_such_module_xyz')"),
    ]:
        with pytest.raises(ConfigError) as err:
            make_labeler(LabelConfig(function=spec))
        assert message in str(err.value)


def test_ram_labels_are_the_bytes_at_the_atariari_addresses(tmp_path, capsys, load_script, monkeypatch):
    ale_py = pytest.importorskip("ale_py", reason="the atari extra: pip install -e '.[atari]'")
    gym.register_envs(ale_py)
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # the repository: configs/ by a relative path

    def make(env_id, **kw):
        return gym.wrappers.AtariPreprocessing(gym.make(env_id, **kw), frame_skip=1)

    data = collect("ALE/Pong-v5", 60, 4, labels=LabelConfig(ram="pong"), make_env=make, progress=False)
    assert data.obs.shape == (60, 1, 84, 84) and data.layout == "grey (H, W) (84, 84) -> (1, 84, 84)"
    assert data.labels.dtype == np.float32 and data.label_names == ["player_y", "enemy_y", "ball_x", "ball_y"]
    # the slow reference: the same seeded run by hand, reading the four bytes after each reset and step
    env = make("ALE/Pong-v5")
    env.action_space.seed(4)
    frame, _ = env.reset(seed=4)
    rows, frames = [], []
    for t in range(60):
        if t:
            frame, _, terminated, truncated, _ = env.step(env.action_space.sample())
            assert not (terminated or truncated)  # a Pong episode outlasts 60 steps
        rows.append(env.unwrapped.ale.getRAM()[list(ATARI_RAM["pong"].values())])
        frames.append(frame[None])
    assert np.array_equal(data.labels, np.array(rows, np.float32)) and np.array_equal(data.obs, np.stack(frames))
    assert len(np.unique(data.labels[:, 0])) > 1  # the paddle moves: the bytes are read every step, not once
    # the script on the shipped config: float labels, so no accuracy ceiling in its report
    argv = ["--config", "configs/collect/pong_ram.yaml", "--steps", "6", "--out", str(tmp_path / "p.npz")]
    argv.append("--no-progress")
    assert load_script("collect").main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("labels (6, 4) float32 (player_y, enemy_y, ball_x, ball_y)")
    assert out[1] in ("distinct observations: 5 of 6", "distinct observations: 6 of 6")
    with pytest.raises(ConfigError, match="labels.ram reads Atari RAM, but CountingImageEnv has no ALE"):
        collect("counting", 2, labels=LabelConfig(ram="pong"), make_env=make_counting, progress=False)


def test_minigrid_concepts_by_hand():
    pytest.importorskip("minigrid", reason="the minigrid extra: pip install -e '.[minigrid]'")
    from minigrid.core.world_object import Door, Key, Wall

    env = gym.make("MiniGrid-DoorKey-5x5-v0")
    env.reset(seed=0)
    u = env.unwrapped
    grid = u.grid
    u.agent_pos, u.agent_dir = (1, 1), 0  # facing right, at (2, 1)
    for obj, front in [(None, "empty"), (Wall(), "wall"), (Key("yellow"), "key"), (Door("yellow"), "door")]:
        grid.set(2, 1, obj)
        assert minigrid_concepts(env, {}).tolist()[0] == MINIGRID_FRONT.index(front)
    doors = [o for o in grid.grid if o is not None and o.type == "door"]
    for door in doors:
        door.is_open = False
    u.carrying = None
    assert minigrid_concepts(env, {})[1:].tolist() == [0, 0]
    u.carrying = Key("yellow")
    doors[0].is_open = True
    assert minigrid_concepts(env, {})[1:].tolist() == [1, 1]
    with pytest.raises(ConfigError, match="minigrid_concepts needs a MiniGrid env, got CountingImageEnv"):
        minigrid_concepts(CountingImageEnv(), {})
