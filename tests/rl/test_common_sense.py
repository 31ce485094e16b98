"""The common-sense wrappers: values by hand, declared spaces, batched == per-env bit for bit, terminal observations,
frozen model, refused checkpoints."""

from __future__ import annotations

import copy
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import DummyVecEnv

import envs  # noqa: F401  (registers the fsae/ ids)
import rl.common_sense as rl_cs
from fsae.checkpoint import CheckpointError, load_fsae, save_fsae
from fsae.model import FSAE, FSAEConfig, LayerSpec
from rl.common_sense import (
    CommonSense,
    Regenerator,
    VecCommonSense,
    make_regenerator,
    union,
    union_space,
)
from rl.lookup import rounded_codes


def tiny_fsae(shape=(1, 28, 28), seed=0, **kw) -> FSAE:
    torch.manual_seed(seed)
    model = FSAE(FSAEConfig(input_shape=shape, layers=[LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 10)], **kw))
    # Scale the concrete half up so the regeneration spans the whole [0, 1] range (and the clamp is exercised).
    with torch.no_grad():
        for p in model.concrete.parameters():
            p.mul_(4.0)
    return model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "fsae_jump.pt"
    save_fsae(path, tiny_fsae(jumps="last"), variant="jump")
    return path


class FakeImageEnv(gym.Env):
    """Seeded random uint8 images (1, 28, 28); episodes end after a random 1..5 steps, terminated or truncated."""

    observation_space = spaces.Box(0, 255, (1, 28, 28), np.uint8)
    action_space = spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.left = int(self.np_random.integers(1, 6))
        return self._obs(), {}

    def _obs(self):
        return self.np_random.integers(0, 256, (1, 28, 28), dtype=np.uint8)

    def step(self, action):
        self.left -= 1
        end = self.left == 0
        terminated = end and action == 0
        return self._obs(), float(action), terminated, end and not terminated, {}


# --------------------------------------------------------------------------------------------------------------------


def test_union_values_by_hand(ckpt):
    regen = make_regenerator("fsae", ckpt, "cpu", dtype="float64")
    obs = np.random.default_rng(0).integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)
    with torch.no_grad():
        xhat = regen.model(torch.from_numpy(obs).double() / 255).numpy()
    q = np.round(np.clip(xhat, 0, 1) * 255).astype(np.uint8)
    assert 0 < (q == 0).mean() < 1 and (q == 255).any(), "the test model should cover the clamp on both sides"
    stacked = union(obs, regen, "stack")
    assert stacked.dtype == np.uint8 and stacked.shape == (3, 2, 28, 28)
    np.testing.assert_array_equal(stacked[:, :1], obs)
    np.testing.assert_array_equal(stacked[:, 1:], q)
    np.testing.assert_array_equal(union(obs, regen, "max"), np.maximum(obs, q))
    # Rounded half up, checked on single pixels with Python ints: (a + b + 1) // 2.
    mean = union(obs, regen, "mean")
    for idx in [(0, 0, 0, 0), (1, 0, 14, 14), (2, 0, 27, 3)]:
        a, b = int(obs[idx]), int(q[idx])
        assert mean[idx] == (a + b + 1) // 2
    assert mean.shape == (3, 1, 28, 28) and mean.dtype == np.uint8
    copy = union(obs, make_regenerator("copy"), "stack")
    np.testing.assert_array_equal(copy, np.concatenate([obs, obs], 1))
    assert make_regenerator("none") is None


def test_regenerator_with_feedback_is_the_models_feedback_regeneration(ckpt):
    """feedback_steps > 0 sends observations through FSAE.regenerate(x, steps=T), quantised like the plain pass."""
    regen = make_regenerator("fsae", ckpt, "cpu", feedback_steps=2, dtype="float64")
    obs = np.random.default_rng(1).integers(0, 256, (4, 1, 28, 28), dtype=np.uint8)
    with torch.no_grad():
        xhat = regen.model.regenerate(torch.from_numpy(obs).double() / 255, steps=2).numpy()
    expected = np.round(np.clip(xhat, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(regen(obs), expected)
    plain = make_regenerator("fsae", ckpt, "cpu", dtype="float64")(obs)
    assert (regen(obs) != plain).any(), "feedback changed nothing: the test would not tell T = 2 from T = 0"
    assert regen.describe()["feedback_steps"] == 2


@pytest.mark.parametrize("mode", ["stack", "max", "mean"])
def test_check_env_and_space(ckpt, mode):
    env = CommonSense(gym.make("fsae/DigitBandit-v0"), make_regenerator("fsae", ckpt, "cpu"), union=mode)
    assert env.observation_space == union_space(gym.make("fsae/DigitBandit-v0").observation_space, mode)
    assert env.observation_space.shape == ((2, 28, 28) if mode == "stack" else (1, 28, 28))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "wrapped env" and "minimal resolution 36x36 for NatureCNN" notes
        gym_check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=False)
    obs, _ = env.reset(seed=0)
    for _ in range(20):
        assert env.observation_space.contains(obs)
        obs, *_ = env.step(env.action_space.sample())


def test_regenerator_is_frozen(ckpt):
    regen = make_regenerator("fsae", ckpt, "cpu")
    assert not regen.model.training
    assert not any(p.requires_grad for p in regen.model.parameters())
    assert all(p.dtype == torch.float32 for p in regen.model.parameters())  # the fast default
    out = regen(np.zeros((2, 1, 28, 28), np.uint8))
    assert out.dtype == np.uint8 and out.shape == (2, 1, 28, 28)


def test_holders_of_one_model_do_not_move_or_cast_it_under_each_other():
    """A regenerator in float64 beside one in float32 and an encoder, all of one model: each keeps its own dtype (a
    frozen copy where the model's is another), and the caller's model is frozen but stays float32."""
    from rl.perception import Encoder

    model = tiny_fsae()
    r64 = Regenerator(model, dtype="float64")
    r32, enc = Regenerator(model), Encoder(model, "code")
    obs = np.random.default_rng(0).integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in model.parameters()) and not model.training
    assert r32.model is model and enc.model is model and r64.model is not model
    assert all(p.dtype == torch.float64 for p in r64.model.parameters())
    with torch.no_grad():
        expected = model.double()(torch.from_numpy(obs).double() / 255).numpy()  # the caller's to change, now
    np.testing.assert_array_equal(r64(obs), np.round(np.clip(expected, 0, 1) * 255).astype(np.uint8))


class FlippedImageEnv(FakeImageEnv):
    """Observations as views with a negative stride (``np.flipud`` of each image), as some wrappers return them."""

    def _obs(self):
        return super()._obs()[:, ::-1]


def test_per_env_wrapper_reads_views_with_negative_strides(ckpt):
    """CommonSense hands the regenerator the env's array itself (no DummyVecEnv buffer copies it first)."""
    regen = make_regenerator("fsae", ckpt, "cpu", dtype="float64")
    env = CommonSense(FlippedImageEnv(), regen)
    obs, _ = env.reset(seed=3)
    raw = FlippedImageEnv().reset(seed=3)[0]
    assert raw.strides[1] < 0
    np.testing.assert_array_equal(obs, union(raw[None].copy(), regen, "stack")[0])


@pytest.mark.parametrize("mode", ["stack", "mean"])
def test_batched_equals_per_env_wrapper(ckpt, mode):
    """VecCommonSense over raw envs == a DummyVecEnv of CommonSense envs, bit for bit, terminal observations too.

    float64: batch-size invariant to far below one grey level (see ``rl.common_sense``).
    """
    regen = make_regenerator("fsae", ckpt, "cpu", dtype="float64")
    n = 6
    per_env = DummyVecEnv([lambda: CommonSense(FakeImageEnv(), regen, mode)] * n)
    batched = VecCommonSense(DummyVecEnv([FakeImageEnv] * n), regen, mode)
    per_env.seed(7)
    batched.seed(7)
    np.testing.assert_array_equal(per_env.reset(), batched.reset())
    actions = np.random.default_rng(1).integers(0, 3, (40, n))
    n_terminal, staggered = 0, 0
    for a in actions:
        o1, r1, d1, i1 = per_env.step(a)
        o2, r2, d2, i2 = batched.step(a)
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(d1, d2)
        for j in np.flatnonzero(d1):
            np.testing.assert_array_equal(i1[j]["terminal_observation"], i2[j]["terminal_observation"])
            n_terminal += 1
        staggered += 0 < d1.sum() < n  # some envs end, others go on: the terminal gather picks a subset
    assert n_terminal > 2 * n, "episodes of 1..5 steps: the loop must have crossed many episode ends"
    assert staggered > 5


def test_batched_float32_within_one_grey_level(ckpt):
    """In the default float32, batches of 64 and 64 batches of one may round a few pixels to a neighbouring level."""
    regen = make_regenerator("fsae", ckpt, "cpu")
    obs = np.random.default_rng(0).integers(0, 256, (64, 1, 28, 28), dtype=np.uint8)
    batched = union(obs, regen).astype(np.int16)
    single = np.concatenate([union(o[None], regen) for o in obs]).astype(np.int16)
    np.testing.assert_array_equal(batched[:, :1], single[:, :1])  # the raw half is untouched
    diff = np.abs(batched - single)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_terminal_observation_transformed(ckpt):
    """The terminal observation is the union of the raw terminal observation, not the raw one or the next reset's."""
    regen = make_regenerator("fsae", ckpt, "cpu")
    raw = DummyVecEnv([FakeImageEnv] * 3)
    wrapped = VecCommonSense(DummyVecEnv([FakeImageEnv] * 3), regen, "stack")
    raw.seed(3)
    wrapped.seed(3)
    raw.reset()
    wrapped.reset()
    seen = 0
    for _ in range(12):
        a = np.zeros(3, np.int64)
        o_raw, _, d_raw, i_raw = raw.step(a)
        o_w, _, _, i_w = wrapped.step(a)
        np.testing.assert_array_equal(o_w, union(o_raw, regen, "stack"))
        for j in np.flatnonzero(d_raw):
            t_raw, t_w = i_raw[j]["terminal_observation"], i_w[j]["terminal_observation"]
            assert t_w.shape == (2, 28, 28) and t_raw.shape == (1, 28, 28)
            np.testing.assert_array_equal(t_w, union(t_raw[None], regen, "stack")[0])
            np.testing.assert_array_equal(t_w[:1], t_raw)
            seen += 1
    assert seen >= 3


def test_step_batch_puts_the_terminal_observations_after_the_step():
    obs = np.arange(4 * 2).reshape(4, 2)
    infos = [{}, {"terminal_observation": np.array([10, 11])}, {}, {"terminal_observation": np.array([30, 31])}]
    dones = np.array([False, True, True, True])  # env 2 ended without a terminal observation: not in the batch
    batch, ended = rl_cs.step_batch(obs, dones, infos)
    assert ended == [1, 3]
    np.testing.assert_array_equal(batch, [[0, 1], [2, 3], [4, 5], [6, 7], [10, 11], [30, 31]])
    batch, ended = rl_cs.step_batch(obs, np.zeros(4, bool), [{}] * 4)
    assert batch is obs and ended == []  # no episode ended: the step's observations as they are


def test_mismatched_checkpoint_refused(ckpt):
    space = gym.make("fsae/DigitSum-v0").observation_space  # (1, 28, 56)
    with pytest.raises(CheckpointError) as e:
        make_regenerator("fsae", ckpt, "cpu", observation_space=space, env_name="fsae/DigitSum-v0")
    msg = str(e.value)
    assert "(1, 28, 28)" in msg and "(1, 28, 56)" in msg and "\n" not in msg
    with pytest.raises(CheckpointError, match=r"\(1, 28, 56\)"):
        CommonSense(gym.make("fsae/DigitSum-v0"), make_regenerator("fsae", ckpt, "cpu"))
    # Channels too: a 3-channel model on 1-channel observations.
    rgb = Regenerator(tiny_fsae(shape=(3, 28, 28)))
    with pytest.raises(CheckpointError, match=r"\(3, 28, 28\).*\(1, 28, 28\)"):
        VecCommonSense(DummyVecEnv([FakeImageEnv]), rgb)


def test_condition_and_checkpoint_kind_must_agree(tmp_path):
    ae = tmp_path / "autoencoder.pt"
    save_fsae(ae, tiny_fsae(head="linear"), variant="autoencoder")
    fsae = tmp_path / "fsae_round.pt"
    save_fsae(fsae, tiny_fsae(round=True), variant="round")
    with pytest.raises(CheckpointError, match="conventional autoencoder"):
        make_regenerator("fsae", ae)
    with pytest.raises(CheckpointError, match="variant 'round'"):
        make_regenerator("autoencoder", fsae)
    assert make_regenerator("autoencoder", ae).describe()["variant"] == "autoencoder"
    with pytest.raises(CheckpointError, match="does not exist"):
        make_regenerator("fsae", tmp_path / "missing.pt")


# -- on a GPU: the regenerator replayed as a CUDA graph (deselected by default; run `pytest -m gpu` on a GPU machine) --


@pytest.fixture
def cuda() -> str:
    if not torch.cuda.is_available():
        pytest.fail("the gpu tests need a CUDA GPU (torch.cuda.is_available() is False); run them on a GPU machine")
    return "cuda"


@pytest.mark.gpu
@pytest.mark.parametrize("jumps, feedback_steps", [([], 0), ("all", 0), ("last", 2)])
def test_cuda_graph_equals_plain_forward(cuda, jumps, feedback_steps):
    """The captured graph returns the plain forward pass's uint8 regeneration bit for bit, on new data after the
    capture too, one graph per batch shape."""
    model = tiny_fsae(jumps=jumps)
    graphed = Regenerator(model, cuda, feedback_steps)
    plain = Regenerator(model, cuda, feedback_steps, cuda_graph=False)
    assert graphed.cuda_graph and not plain.cuda_graph
    rng = np.random.default_rng(0)
    for b in (1, 8, 8, 64, 1, 8):
        obs = rng.integers(0, 256, (b, 1, 28, 28), dtype=np.uint8)
        np.testing.assert_array_equal(graphed(obs), plain(obs))
    assert sorted(graphed._graphs) == [(1, 1, 28, 28), (8, 1, 28, 28), (64, 1, 28, 28)]


@pytest.mark.gpu
@pytest.mark.parametrize("head", ["softmax", "groups"])
def test_cuda_graph_of_the_lookup_equals_the_forward_pass(cuda, head):
    """On a GPU the lookup is captured as a graph too (the abstract pass and the lookup): the same images as the plain
    forward pass, with or without a graph."""
    model = rounded_fsae(head)
    graphed, plain = Regenerator(model, cuda), Regenerator(model, cuda, lookup=False, cuda_graph=False)
    assert graphed.lookup and graphed.cuda_graph
    rng = np.random.default_rng(0)
    for b in (1, 8, 8, 64):
        obs = rng.integers(0, 256, (b, 1, 28, 28), dtype=np.uint8)
        np.testing.assert_array_equal(graphed(obs), plain(obs))
    assert sorted(graphed._graphs) == [(1, 1, 28, 28), (8, 1, 28, 28), (64, 1, 28, 28)]


@pytest.mark.gpu
def test_cuda_graph_vec_wrapper_equals_plain(cuda, ckpt):
    """VecCommonSense with the graphed regenerator == with the plain one, terminal observations (other batch shapes)
    included."""
    wrapped = {
        graph: VecCommonSense(
            DummyVecEnv([FakeImageEnv] * 6), Regenerator(load_fsae(ckpt), cuda, cuda_graph=graph), "stack"
        )
        for graph in (True, False)
    }
    for venv in wrapped.values():
        venv.seed(5)
    np.testing.assert_array_equal(wrapped[True].reset(), wrapped[False].reset())
    n_terminal = 0
    for a in np.random.default_rng(2).integers(0, 3, (30, 6)):
        (o1, _, d1, i1), (o2, _, _, i2) = wrapped[True].step(a), wrapped[False].step(a)
        np.testing.assert_array_equal(o1, o2)
        for j in np.flatnonzero(d1):
            np.testing.assert_array_equal(i1[j]["terminal_observation"], i2[j]["terminal_observation"])
            n_terminal += 1
    assert n_terminal > 6


def test_cuda_graph_only_on_cuda():
    """On the CPU the flag is off whatever was asked, and the identity ('copy') never captures."""
    assert not Regenerator(tiny_fsae(), "cpu").cuda_graph
    assert not Regenerator(None, "cuda").cuda_graph
    assert Regenerator(tiny_fsae(), "cpu").describe()["cuda_graph"] is False
    assert Regenerator(tiny_fsae(), "cpu:0")(np.zeros((2, 1, 28, 28), np.uint8)).shape == (2, 1, 28, 28)


@pytest.mark.gpu
def test_cuda_graph_regenerator_shared_by_per_env_wrappers(cuda, ckpt):
    """Per-env wrappers made after the regenerator captured graphs (gymnasium deep-copies wrapper arguments into
    env.spec) share it instead of copying it, and it pickles without its graphs."""
    regen = Regenerator(load_fsae(ckpt), cuda)
    obs = np.random.default_rng(0).integers(0, 256, (2, 1, 28, 28), dtype=np.uint8)
    expected = regen(obs)
    assert regen._graphs
    assert copy.deepcopy(regen) is regen
    per_env = DummyVecEnv([lambda: CommonSense(FakeImageEnv(), regen, "stack")] * 2)
    assert per_env.reset().shape == (2, 2, 28, 28)
    clone = pickle.loads(pickle.dumps(regen))
    assert clone.cuda_graph and not clone._graphs
    np.testing.assert_array_equal(clone(obs), expected)


def test_regenerator_deepcopy_shares_and_pickle_round_trips(ckpt):
    """A deep copy is the same (frozen) regenerator, not a copy of the model per wrapped env; a pickled one
    regenerates the same images."""
    regen = make_regenerator("fsae", ckpt, "cpu")
    assert copy.deepcopy(regen) is regen
    assert CommonSense(FakeImageEnv(), regen, "stack")._saved_kwargs["regenerator"] is regen  # what env.spec records
    obs = np.random.default_rng(0).integers(0, 256, (4, 1, 28, 28), dtype=np.uint8)
    regen._graphs[(4, 1, 28, 28)] = lambda: None  # stands in for a captured graph: not picklable
    clone = pickle.loads(pickle.dumps(regen))
    assert clone._graphs == {}
    regen._graphs.clear()
    np.testing.assert_array_equal(clone(obs), regen(obs))


def test_cuda_graph_cap_falls_back_to_plain_forward(ckpt, monkeypatch):
    """The first max_graphs batch shapes are captured (once each), any further shape runs the plain forward pass.

    The dispatch is checked on the CPU with a stand-in for the capture: a 'graph' whose replay runs the plain forward
    pass into the static output buffer, as the CUDA graph does (that one is checked by the gpu tests above).
    """
    regen = make_regenerator("fsae", ckpt, "cpu")
    plain = make_regenerator("fsae", ckpt, "cpu")
    regen.cuda_graph, regen.max_graphs = True, 2
    captured = []

    class Replay:
        def __init__(self, static_in, static_out):
            self.static_in, self.static_out = static_in, static_out

        def replay(self):
            self.static_out.copy_(regen._regenerate(self.static_in))

    def capture(shape):
        captured.append(shape)
        static_in = torch.zeros(shape, dtype=torch.uint8)
        static_out = torch.zeros(shape, dtype=torch.uint8)
        return Replay(static_in, static_out), static_in, static_out

    monkeypatch.setattr(regen, "_capture", capture)
    rng = np.random.default_rng(0)
    for b in (3, 5, 3, 7, 5, 7):
        obs = rng.integers(0, 256, (b, 1, 28, 28), dtype=np.uint8)
        np.testing.assert_array_equal(regen(obs), plain(obs))
    assert captured == [(3, 1, 28, 28), (5, 1, 28, 28)]
    assert sorted(regen._graphs) == captured


# -- the lookup: a round model without jumps regenerates one of a few prototype images ------------------------------


def rounded_fsae(head: str = "softmax", seed: int = 0, jumps=(), shape=(1, 28, 28)) -> FSAE:
    """A round model whose random images fall into many different rounded codes (its abstract weights scaled up)."""
    out, groups = {"softmax": (10, []), "groups": (7, [3, 4]), "sigmoid": (3, [])}[head]
    torch.manual_seed(seed)
    layers = [LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 16), LayerSpec("linear", out)]
    cfg = FSAEConfig(input_shape=shape, layers=layers, head=head, groups=groups, round=True, jumps=list(jumps))
    model = FSAE(cfg)
    with torch.no_grad():
        for p in model.concrete.parameters():
            p.mul_(2.0)
        for p in model.abstract.parameters():
            p.mul_(3.0)
    return model


def test_rounded_codes_by_hand():
    """Row i of the table is the code whose digits spell i, the first digit the most significant."""
    codes = rounded_codes(rounded_fsae("groups"))  # groups [3, 4]: 12 codes of 7 units
    assert codes.shape == (12, 7)
    assert codes[0].tolist() == [1, 0, 0, 1, 0, 0, 0]  # (0, 0)
    assert codes[6].tolist() == [0, 1, 0, 0, 0, 1, 0]  # (1, 2)
    assert codes[11].tolist() == [0, 0, 1, 0, 0, 0, 1]  # (2, 3)
    sig = rounded_codes(rounded_fsae("sigmoid"))
    assert sig.tolist() == [[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    assert torch.equal(rounded_codes(rounded_fsae("softmax")), torch.eye(10))
    # the regeneration depends on more than the rounded code, or the codes are unbounded: no table
    assert rounded_codes(rounded_fsae(jumps=[1])) is None
    assert rounded_codes(tiny_fsae()) is None  # plain
    assert rounded_codes(tiny_fsae(head="linear", round=True, round_grid=0.5)) is None
    assert rounded_codes(rounded_fsae("softmax"), max_codes=9) is None
    assert not Regenerator(rounded_fsae(jumps=[1])).lookup and Regenerator(rounded_fsae()).lookup
    assert not Regenerator(rounded_fsae(), lookup=False).lookup
    info = Regenerator(rounded_fsae("groups")).describe()
    assert info["lookup"] is True and info["prototypes"] == 12


@pytest.mark.parametrize("gemm", [True, False])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("head", ["softmax", "groups", "sigmoid"])
def test_lookup_equals_forward_pass(head, dtype, gemm):
    """The lookup returns the forward pass's uint8 regeneration bit for bit, from batches of one (the per-env wrapper)
    to 64, in both precisions, with its abstract pass as GEMMs (``fsae.gemm``, the default on a CPU) or by
    AbstractNet, over images that reach most rounded codes."""
    model = rounded_fsae(head)
    fast, full = Regenerator(model, dtype=dtype, gemm=gemm), Regenerator(model, dtype=dtype, lookup=False)
    assert fast.lookup and not full.lookup and fast.describe()["gemm"] is gemm
    rng = np.random.default_rng(0)
    seen = set()
    for b in (1, 1, 2, 3, 8, 9, 64, 64):
        obs = rng.integers(0, 256, (b, 1, 28, 28), dtype=np.uint8)
        np.testing.assert_array_equal(fast(obs), full(obs))
        with torch.no_grad():
            x = torch.from_numpy(obs).to(fast.dtype) / 255
            seen |= set(fast._lookup.rows(fast.model.abstract(x)[1][-1]).tolist())
    table = fast._lookup.table
    assert len(seen) >= 0.6 * len(table), f"the images reached only {len(seen)} of {len(table)} codes"
    if gemm:  # the GEMM pass served most batches (the rest had a winner too close to call)
        assert fast._lookup.exact_batches <= 2


@pytest.mark.parametrize("head", ["softmax", "groups", "sigmoid"])
def test_feedback_cannot_change_a_rounded_regeneration(head):
    """Round without jumps: every feedback step keeps the concept (or is refused), so the output is F(x) after any T:
    the claim that lets the lookup skip the feedback passes, checked on the model and on the regenerator."""
    model = rounded_fsae(head).double().eval()
    x = torch.rand(64, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        trace = model.regenerate(x, steps=6, trace=True, gain=1.0)
        y0 = model(x)
    assert all(torch.equal(y, y0) for y in trace)
    obs = np.random.default_rng(3).integers(0, 256, (16, 1, 28, 28), dtype=np.uint8)
    with_fb = Regenerator(model, feedback_steps=3, dtype="float64", lookup=False)
    np.testing.assert_array_equal(Regenerator(model, feedback_steps=3, dtype="float64")(obs), with_fb(obs))
    np.testing.assert_array_equal(with_fb(obs), Regenerator(model, dtype="float64", lookup=False)(obs))


@pytest.mark.parametrize("head", ["softmax", "groups"])
def test_lookup_in_both_wrappers_equals_forward_pass(head):
    """Batched and per-env wrappers with the lookup (and feedback steps) give the observations, terminal ones included,
    of the per-env wrapper that runs the full forward pass with feedback, bit for bit."""
    model = rounded_fsae(head)
    lookup, full = (Regenerator(model, feedback_steps=2, dtype="float64", lookup=k) for k in (True, False))
    n = 5
    venvs = [
        DummyVecEnv([lambda: CommonSense(FakeImageEnv(), full, "stack")] * n),
        DummyVecEnv([lambda: CommonSense(FakeImageEnv(), lookup, "stack")] * n),
        VecCommonSense(DummyVecEnv([FakeImageEnv] * n), lookup, "stack"),
    ]
    for v in venvs:
        v.seed(11)
    first = [v.reset() for v in venvs]
    for o in first[1:]:
        np.testing.assert_array_equal(o, first[0])
    n_terminal = 0
    for a in np.random.default_rng(4).integers(0, 3, (30, n)):
        (o0, _, d0, i0), *rest = [v.step(a) for v in venvs]
        for o, _, _, i in rest:
            np.testing.assert_array_equal(o, o0)
            for j in np.flatnonzero(d0):
                np.testing.assert_array_equal(i[j]["terminal_observation"], i0[j]["terminal_observation"])
                n_terminal += 1
    assert n_terminal > 2 * n
