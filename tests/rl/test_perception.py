"""The conditions 'code' and 'features': the frozen abstract network's answer handed to the agent as a Dict obs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_common_sense import FakeImageEnv, tiny_fsae
from test_train_agent import tiny_config

import rl.env_factory
from fsae.checkpoint import CheckpointError, safe_load, save_fsae
from fsae.config import ConfigError
from rl.agent import train_agent
from rl.extractor import ImageVectorExtractor
from rl.perception import Encoder, Perception, VecPerception, make_encoder
from rl.run_folder import condition_label


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrain")
    save_fsae(folder / "fsae_round.pt", tiny_fsae(round=True), variant="round")
    torch.manual_seed(1)
    save_fsae(folder / "autoencoder.pt", tiny_fsae(head="linear"), variant="autoencoder")
    return folder


def obs_batch(n=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)


def test_code_features_and_rounded_code_by_hand(ckpts):
    """code = softmax of the logits, features = the flattened leaky-ReLU conv output, code_round = one-hot argmax."""
    model = tiny_fsae(round=True)
    obs = obs_batch()
    x = torch.from_numpy(obs).float() / 255
    conv, fc = model.abstract.layers
    h1 = torch.nn.functional.leaky_relu(conv(x), 0.3)  # the hidden activation, slope 0.3
    logits = fc(h1.flatten(1))
    code = Encoder(model, "code")(obs)
    np.testing.assert_allclose(code, torch.softmax(logits, -1).detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(Encoder(model, "features")(obs), h1.flatten(1).detach().numpy(), rtol=1e-5, atol=1e-6)
    rounded = Encoder(model, "code", code_round=True)(obs)
    np.testing.assert_array_equal(rounded, np.eye(10, dtype=np.float32)[logits.argmax(-1).numpy()])
    assert Encoder(model, "features").size == 4 * 13 * 13  # conv 4x4 stride 2 on 28x28: 4 channels of 13x13


def test_dict_space_and_extractor(ckpts):
    enc = make_encoder("code", ckpts / "fsae_round.pt")
    env = Perception(FakeImageEnv(), enc)
    assert isinstance(env.observation_space, spaces.Dict)
    assert env.observation_space["image"] == FakeImageEnv.observation_space
    assert env.observation_space["code"].shape == (10,) and env.observation_space["code"].dtype == np.float32
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    extractor = ImageVectorExtractor(env.observation_space, features_dim=32)
    out = extractor({"image": torch.zeros(3, 1, 28, 28), "code": torch.full((3, 10), 7.0)})
    assert out.shape == (3, 42) and extractor.features_dim == 42
    assert torch.equal(out[:, 32:], torch.full((3, 10), 7.0))  # the code passes through unchanged


@pytest.mark.parametrize("what", ["code", "features"])
def test_batched_equals_per_env(ckpts, what):
    """VecPerception (one forward pass per vector step) == a DummyVecEnv of Perception envs, terminal obs included.

    Images bit for bit; vectors to float32 rounding (a batch of 6 and six batches of one may use other kernels)."""
    enc = make_encoder(what, ckpts / "fsae_round.pt")
    n = 6
    per_env = DummyVecEnv([lambda: Perception(FakeImageEnv(), enc)] * n)
    batched = VecPerception(DummyVecEnv([FakeImageEnv] * n), enc)
    per_env.seed(7)
    batched.seed(7)

    def same(a, b):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_allclose(a["code"], b["code"], rtol=1e-5, atol=1e-6)

    same(per_env.reset(), batched.reset())
    n_terminal = 0
    for a in np.random.default_rng(1).integers(0, 3, (30, n)):
        o1, r1, d1, i1 = per_env.step(a)
        o2, r2, d2, i2 = batched.step(a)
        same(o1, o2)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(d1, d2)
        for j in np.flatnonzero(d1):
            same(i1[j]["terminal_observation"], i2[j]["terminal_observation"])
            n_terminal += 1
    assert n_terminal > 2 * n


def test_encoder_is_frozen(ckpts):
    enc = make_encoder("features", ckpts / "fsae_round.pt")
    assert not any(p.requires_grad for p in enc.model.parameters()) and not enc.model.training
    before = {k: v.clone() for k, v in enc.model.state_dict().items()}
    enc(obs_batch())
    assert all(torch.equal(v, enc.model.state_dict()[k]) for k, v in before.items())


def test_encoder_reads_views_with_negative_strides(ckpts):
    enc = make_encoder("code", ckpts / "fsae_round.pt")
    obs = obs_batch()
    flipped = obs[:, :, ::-1]
    np.testing.assert_array_equal(enc(flipped), enc(flipped.copy()))


def test_checkpoints_that_do_not_fit_are_refused(ckpts):
    import gymnasium as gym

    import envs  # noqa: F401

    space = gym.make("fsae/DigitSum-v0").observation_space  # (1, 28, 56)
    with pytest.raises(CheckpointError) as e:
        make_encoder("code", ckpts / "fsae_round.pt", observation_space=space, env_name="fsae/DigitSum-v0")
    assert "(1, 28, 28)" in str(e.value) and "(1, 28, 56)" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="conventional autoencoder"):
        make_encoder("code", ckpts / "autoencoder.pt")


def test_config_checks_and_labels(tmp_path, ckpts):
    with pytest.raises(ConfigError, match="code_round applies to condition 'code'"):
        tiny_config(tmp_path, condition="features", code_round=True)
    with pytest.raises(ConfigError, match="union 'max' does not apply"):
        tiny_config(tmp_path, condition="code", union="max")
    ckpt = str(ckpts / "fsae_round.pt")
    assert condition_label(tiny_config(tmp_path, condition="code", fsae_checkpoint=ckpt)) == "code"
    assert (
        condition_label(tiny_config(tmp_path, condition="code", fsae_checkpoint=ckpt, code_round=True)) == "code-round"
    )
    assert condition_label(tiny_config(tmp_path, condition="features", fsae_checkpoint=ckpt)) == "features"


def test_train_agent_writes_the_same_tags_as_raw(tmp_path, ckpts, monkeypatch):
    """A tiny PPO run under 'code' trains (MultiInputPolicy), keeps the encoder frozen (its weights after training are
    the checkpoint's, bit for bit) and logs the tags of 'none'."""
    ckpt = str(ckpts / "fsae_round.pt")
    made = []
    original = rl.env_factory.make_encoder
    monkeypatch.setattr(rl.env_factory, "make_encoder", lambda *a, **k: made.append(original(*a, **k)) or made[-1])
    raw = train_agent(tiny_config(tmp_path, condition="none"))
    code = train_agent(tiny_config(tmp_path, condition="code", fsae_checkpoint=ckpt))
    assert code["fsae/weights_unchanged"] is True and code["timesteps"] == raw["timesteps"]
    saved, after = safe_load(ckpt)["state_dict"], made[0].model.state_dict()
    assert set(saved) == set(after) and all(torch.equal(after[k].cpu(), v.to(after[k].dtype)) for k, v in saved.items())

    def tags(run_dir):
        acc = EventAccumulator(str(run_dir)).Reload()
        return set(acc.Tags()["scalars"])

    assert tags(code["run_dir"]) == tags(raw["run_dir"])
    assert "eval/mean_reward" in tags(code["run_dir"])
