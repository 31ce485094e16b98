"""Tests for fsae.checkpoint: bit-exact save/load round trip, clear errors for bad files, no pickle execution."""

from __future__ import annotations

import os
import pickle
import stat
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsae.checkpoint import (
    FORMAT_VERSION,
    FSAE_FORMAT,
    CheckpointError,
    atomic_save,
    atomic_write_json,
    load_fsae,
    safe_load,
    save_fsae,
    sha256_file,
)
from fsae.config import to_dict
from fsae.model import FSAE, FSAEConfig, LayerSpec

# The model's strided conv leaves a row and a column of its 12x12 input unread on purpose: the output padding of its
# inverse has to round-trip too.
pytestmark = pytest.mark.filterwarnings("ignore::fsae.model.StrideWarning")


def _model() -> FSAE:
    """A non-default FSAE: groups head, a jump list, round on, feedback fields set, strided conv on 1x12x12."""
    torch.manual_seed(0)
    config = FSAEConfig(
        input_shape=(1, 12, 12),
        layers=[LayerSpec("conv", 4, 3, 2), LayerSpec("linear", 8), LayerSpec("linear", 5)],
        head="groups",
        groups=[3, 2],
        leaky_slope=0.2,
        eps=1e-5,
        round=True,
        jumps=[1, 2],
        feedback_steps=2,
        feedback_gain=0.5,
    )
    model = FSAE(config)
    model.init_concrete(torch.rand(8, 1, 12, 12))  # weights other than PyTorch's defaults
    return model.eval()


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# --- round trip -------------------------------------------------------------------------------------------------------


def test_round_trip_is_bit_identical(tmp_path):
    model = _model()
    meta = {"variant": "round+jumps", "epoch": 3, "metrics": {"mse": 0.0125, "cos": [0.9, 0.95]}, "ok": True}
    path = save_fsae(tmp_path / "sub" / "fsae.pt", model, **meta)
    assert path == tmp_path / "sub" / "fsae.pt" and path.is_file()

    loaded = load_fsae(path)
    assert loaded.config == model.config
    assert loaded.config.jumps == [1, 2] and loaded.config.input_shape == (1, 12, 12)
    assert loaded.jumps == [1, 2]
    assert loaded.checkpoint_meta == meta
    assert not loaded.training
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k

    x = torch.rand(6, 1, 12, 12)
    assert torch.equal(loaded(x), model(x))
    assert torch.equal(loaded.regenerate(x), model.regenerate(x))
    labels = torch.tensor([[0, 1], [2, 0]])
    assert torch.equal(loaded.generate_labels(labels), model.generate_labels(labels))

    raw = safe_load(path)
    assert raw["format"] == FSAE_FORMAT and raw["format_version"] == FORMAT_VERSION
    assert raw["config"] == to_dict(model.config)


def test_saving_again_gives_the_same_bytes_hash_only_for_same_weights(tmp_path):
    """A checkpoint loaded and saved again is the same file, byte for byte (so its SHA-256, the runs' record of it,
    holds); other weights give another hash."""
    model = _model()
    a = save_fsae(tmp_path / "a.pt", model)
    b = save_fsae(tmp_path / "b.pt", load_fsae(a))
    assert len(sha256_file(a)) == 64 and sha256_file(b) == sha256_file(a) and b.read_bytes() == a.read_bytes()
    assert torch.equal(load_fsae(b)(torch.ones(1, 1, 12, 12)), model(torch.ones(1, 1, 12, 12)))
    with torch.no_grad():
        model.concrete.layers[0].bias.add_(1.0)
    c = save_fsae(tmp_path / "c.pt", model)
    assert sha256_file(c) != sha256_file(a)


def test_a_channels_last_model_saves_the_bytes_its_reload_saves(tmp_path):
    """Pretraining saves networks placed channels-last (``fsae.runtime.place``); a loaded model is contiguous. Both
    give the same file."""
    model = FSAE(FSAEConfig((2, 12, 12), [LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 3)]))
    model = model.to(memory_format=torch.channels_last)  # 2 input channels: a layout of its own (1 would not be)
    assert not model.abstract.layers[0].weight.is_contiguous()
    a = save_fsae(tmp_path / "a.pt", model)
    b = save_fsae(tmp_path / "b.pt", load_fsae(a))
    assert b.read_bytes() == a.read_bytes()


@pytest.mark.parametrize("drop", ["config", "state_dict"])
def test_a_checkpoint_without_its_config_or_weights_is_one_line(tmp_path, drop):
    ckpt = {"format": FSAE_FORMAT, "format_version": FORMAT_VERSION, "config": {}, "state_dict": {}}
    del ckpt[drop]
    path = atomic_save(ckpt, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=f"has no '{drop}' mapping; it is damaged or not from pretrain.py"):
        load_fsae(path)


# --- bad files --------------------------------------------------------------------------------------------------------


def test_missing_file_raises(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_fsae(tmp_path / "nope.pt")
    assert "does not exist" in _one_line(err) and "nope.pt" in str(err.value)


@pytest.mark.parametrize("keep", [0.5, 0.1, 0.0])
def test_truncated_file_raises(tmp_path, keep):
    good = save_fsae(tmp_path / "good.pt", _model()).read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(good[: int(len(good) * keep)])
    with pytest.raises(CheckpointError) as err:
        load_fsae(bad)
    assert "truncated or not a PyTorch file" in _one_line(err) and "bad.pt" in str(err.value)


def test_not_a_pytorch_file_raises(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_bytes(b"h\x01\xff not a checkpoint")  # a legacy pickle: 'h' is BINGET of memo 1, not there
    with pytest.raises(CheckpointError, match=r"truncated or not a PyTorch file \(KeyError: 1\)"):
        load_fsae(path)


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ('{\n  "abstract/test_accuracy": 0.98', "JSON, such as a run's metrics.json"),
        ("hello, not a checkpoint\n", "text"),
    ],
)
def test_a_text_file_is_not_a_checkpoint(tmp_path, text, what):
    """``--fsae runs/.../metrics.json`` says the file is not a checkpoint, not that it holds unsafe objects."""
    path = tmp_path / "metrics.json"
    path.write_text(text)
    with pytest.raises(CheckpointError) as err:
        load_fsae(path)
    assert _one_line(err) == (
        f"{path} is not a checkpoint: it holds {what}, not the .pt file a run writes; pass that file (an FSAE: "
        "a pretraining run's fsae_<variant>.pt or autoencoder.pt; to resume: its train_state.pt), or re-create it"
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_arbitrary_bytes_raise_checkpoint_error(tmp_path, blob):
    # torch.load fails on garbage with UnpicklingError, EOFError, KeyError, IndexError, struct.error, ...: all of them
    # must surface as one CheckpointError line.
    path = tmp_path / "garbage.pt"
    path.write_bytes(blob)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Detected pickle protocol ..." for some byte strings
        with pytest.raises(CheckpointError) as err:
            load_fsae(path)
    _one_line(err)


def test_other_format_tag_raises(tmp_path):
    state = _model().state_dict()
    path = atomic_save({"format": "someone-else/policy", "format_version": 1, "state_dict": state}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError) as err:
        load_fsae(path)
    assert "not an FSAE checkpoint" in _one_line(err) and "someone-else/policy" in str(err.value)

    atomic_save({"state_dict": state}, path)  # no tag at all
    with pytest.raises(CheckpointError, match="no format tag"):
        load_fsae(path)


def test_other_format_version_raises(tmp_path):
    path = save_fsae(tmp_path / "v.pt", _model())
    ckpt = safe_load(path)
    ckpt["format_version"] = FORMAT_VERSION + 1
    atomic_save(ckpt, path)
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1}"):
        load_fsae(path)


def test_non_dict_checkpoint_raises(tmp_path):
    path = atomic_save(torch.zeros(3), tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="holds a Tensor, not a checkpoint dict"):
        safe_load(path)


def test_weights_that_do_not_fit_the_config_raise(tmp_path):
    path = save_fsae(tmp_path / "w.pt", _model())
    ckpt = safe_load(path)
    del ckpt["state_dict"]["concrete.layers.0.bias"]  # a missing key
    atomic_save(ckpt, path)
    with pytest.raises(CheckpointError) as err:
        load_fsae(path)
    assert _one_line(err).endswith("weights do not fit its config (concrete.layers.0.bias missing from the file)")

    ckpt = safe_load(save_fsae(path, _model()))
    ckpt["config"]["layers"][1]["out"] = 9  # 8 -> 9 units after the 4x5x5 conv output: 6 tensors change shape
    atomic_save(ckpt, path)
    with pytest.raises(CheckpointError) as err:
        load_fsae(path)
    assert _one_line(err).endswith(
        "weights do not fit its config (abstract.layers.1.weight: file (8, 100), config (9, 100); "
        "abstract.layers.1.bias: file (8,), config (9,); 4 more)"
    )


def test_invalid_saved_config_raises(tmp_path):
    ckpt = safe_load(save_fsae(tmp_path / "c.pt", _model()))
    ckpt["config"]["lerning_rate"] = 0.1
    atomic_save(ckpt, tmp_path / "c.pt")
    with pytest.raises(CheckpointError) as err:
        load_fsae(tmp_path / "c.pt")
    assert "config this code cannot build" in _one_line(err) and "lerning_rate" in str(err.value)


class _Payload:
    """Pickles as a call to Path.touch(marker): loading it with a full unpickler would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_unread(tmp_path, writer):
    live = tmp_path / "live_marker"
    pickle.loads(pickle.dumps(_Payload(live)))  # the payload is real: a plain unpickler runs it
    assert live.exists()

    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    obj = {"format": FSAE_FORMAT, "format_version": FORMAT_VERSION, "config": {}, "meta": _Payload(marker)}
    if writer == "torch.save":
        torch.save(obj, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(obj, f)
    with pytest.raises(CheckpointError) as err:
        load_fsae(path)
    assert "refused unread" in _one_line(err)
    assert not marker.exists()


# --- atomic_save ------------------------------------------------------------------------------------------------------


def test_atomic_files_get_the_mode_of_a_plain_write(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    for path in (atomic_save({"a": 1}, tmp_path / "a.pt"), atomic_write_json(tmp_path / "m.json", {"a": 1})):
        assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask  # not 0o600


def test_atomic_save_leaves_no_temp_files(tmp_path):
    path = atomic_save({"a": torch.arange(3)}, tmp_path / "ck.pt")
    atomic_save({"a": torch.arange(4)}, path)  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]
    assert torch.equal(safe_load(path)["a"], torch.arange(4))


def test_failed_atomic_save_keeps_old_file_and_leaves_no_temp_files(tmp_path):
    path = atomic_save({"a": torch.arange(3)}, tmp_path / "ck.pt")
    before = path.read_bytes()
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        atomic_save({"a": lambda: 0}, path)  # a lambda cannot be pickled: torch.save fails midway
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]
    assert path.read_bytes() == before
