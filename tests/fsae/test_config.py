"""Tests for fsae.config: strict dataclass loading, YAML quirks, overrides, and FSAEConfig validation."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass, field

import pytest
import yaml

from fsae.config import ConfigError, apply_overrides, from_dict, load_config, load_yaml, to_dict
from fsae.model import FSAEConfig, LayerSpec, paper_layers
from fsae.pretrain import PretrainConfig


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# --- unknown keys and wrong types -----------------------------------------------------------------------------------


def test_unknown_key_names_it_suggests_a_match_and_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        from_dict(FSAEConfig, {"head": "softmax", "leaky_slop": 0.2})
    msg = _one_line(err)
    assert "unknown FSAEConfig key 'leaky_slop'" in msg
    assert "did you mean 'leaky_slope'?" in msg
    assert "valid keys:" in msg
    for key in ("input_shape", "layers", "head", "groups", "leaky_slope", "eps", "round", "jumps", "feedback_gain"):
        assert f"'{key}'" in msg


def test_unknown_nested_key_names_its_path():
    with pytest.raises(ConfigError) as err:
        from_dict(FSAEConfig, {"layers": [{"type": "linear", "out": 4}, {"type": "linear", "out": 3, "kernal": 3}]})
    msg = _one_line(err)
    assert "unknown LayerSpec key 'layers[1].kernal'" in msg and "did you mean 'kernel'?" in msg


def test_unknown_key_without_close_match_has_no_suggestion():
    with pytest.raises(ConfigError) as err:
        from_dict(FSAEConfig, {"zzz": 1})
    assert "did you mean" not in _one_line(err)


@pytest.mark.parametrize(
    ("d", "expected"),
    [
        ({"layers": [{"type": "linear", "out": "abc"}]}, "layers[0].out: expected an integer, got 'abc'"),
        ({"layers": [{"type": "linear", "out": True}]}, "layers[0].out: expected an integer, got True"),
        ({"layers": [{"type": "linear", "out": 2.5}]}, "layers[0].out: expected an integer, got 2.5"),
        ({"round": "yes"}, "round: expected true/false, got 'yes'"),
        ({"eps": "small"}, "eps: expected a number, got 'small'"),
        ({"eps": False}, "eps: expected a number, got False"),
        ({"head": 3}, "head: expected a string, got 3"),
        ({"input_shape": [1, 28]}, "input_shape: expected 3 items, got 2"),
        ({"input_shape": 28}, "input_shape: expected a list, got 28"),
        ({"layers": ["conv"]}, "layers[0]: expected a mapping for LayerSpec, got 'conv'"),
        ({"jumps": 7}, "jumps: 7 fits none of"),
    ],
)
def test_wrong_types_fail_with_the_field_path(d, expected):
    with pytest.raises(ConfigError) as err:
        from_dict(FSAEConfig, d)
    assert expected in _one_line(err)


def test_not_a_mapping_fails():
    with pytest.raises(ConfigError, match="expected a mapping"):
        from_dict(FSAEConfig, [1, 2])  # type: ignore[arg-type]


# --- coercion ---------------------------------------------------------------------------------------------------------


def test_yaml_exponent_string_is_coerced_to_float():
    raw = yaml.safe_load("eps: 1e-3\nfeedback_gain: 2\n")
    assert raw["eps"] == "1e-3"  # PyYAML's YAML 1.1 quirk: no dot, so a string
    config = from_dict(FSAEConfig, raw)
    assert config.eps == 0.001 and isinstance(config.eps, float)
    assert config.feedback_gain == 2.0 and isinstance(config.feedback_gain, float)


def test_integral_float_is_coerced_to_int():
    config = from_dict(FSAEConfig, {"feedback_steps": 1.0e1, "layers": [{"type": "linear", "out": 10.0}]})
    assert config.feedback_steps == 10 and isinstance(config.feedback_steps, int)
    assert config.layers[0].out == 10 and isinstance(config.layers[0].out, int)


def test_nested_layer_dicts_are_built():
    config = from_dict(
        FSAEConfig,
        {
            "input_shape": [3, 28, 56],
            "layers": [{"type": "conv", "out": 8, "kernel": 5, "stride": 2}, {"type": "linear", "out": 4}],
            "head": "sigmoid",
            "jumps": "all",
        },
    )
    assert config.input_shape == (3, 28, 56)
    assert config.layers == [LayerSpec("conv", 8, 5, 2), LayerSpec("linear", 4, 3, 1)]
    assert all(isinstance(s, LayerSpec) for s in config.layers)
    assert config.jump_layers() == [1]
    assert config.code_size == 4


# --- invalid values ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("d", "expected"),
    [
        ({"head": "foo"}, "head must be one of"),
        ({"jumps": [7]}, "jump layer 7 out of range: hidden layers are 1..4"),
        ({"jumps": [0]}, "jump layer 0 out of range"),
        ({"jumps": "some"}, "jumps must be a list of layers or one of"),
        ({"head": "groups", "groups": [3, 3]}, "needs groups summing to the last layer's out (10)"),
        ({"head": "groups"}, "needs groups summing"),
        ({"leaky_slope": 1.5}, "leaky_slope must be in (0, 1)"),
        ({"eps": 0.0}, "eps must be in (0, 0.5)"),
        ({"feedback_steps": -1}, "feedback_steps must be >= 0"),
        ({"feedback_gain": 0}, "feedback_gain must be > 0"),
        ({"layers": [{"type": "conv", "out": 4}]}, "the last layer must be 'linear'"),
        ({"layers": []}, "needs at least one layer"),
        ({"layers": [{"type": "pool", "out": 4}]}, "layer type must be 'conv' or 'linear'"),
        ({"layers": [{"type": "linear", "out": 0}]}, "layer sizes must be positive"),
        # settings of another head, which would be silently ignored
        ({"groups": [5, 5]}, "groups [5, 5] apply to head 'groups', not 'softmax'"),
        ({"head": "sigmoid", "round_grid": 0.5}, "round_grid applies to head 'linear' (head 'sigmoid' rounds to its"),
    ],
)
def test_invalid_values_raise_config_error(d, expected):
    with pytest.raises(ConfigError) as err:
        from_dict(FSAEConfig, d)
    assert expected in _one_line(err)


@pytest.mark.parametrize(
    ("d", "expected"),
    [
        ({"baseline_epochs": -1}, "epochs must be >= 0, got abstract, concrete, baseline = (10, 10, -1)"),
        ({"eval_batch_size": 0}, "eval_batch_size must be > 0, got 0"),
        ({"batch_size": -2}, "batch_size must be > 0, got -2"),
    ],
)
def test_invalid_train_values_raise_config_error(d, expected):
    with pytest.raises(ConfigError) as err:
        from_dict(PretrainConfig, {"train": d})
    assert _one_line(err) == f"train: {expected}"  # the section named


@pytest.mark.parametrize(
    ("d", "expected"),
    [
        ({"data": {"source": "mnist", "test_source": "t.npz"}}, "data: data.test_source 't.npz' applies to task data"),
        ({"data": {"source": "d.npz", "target": "attributes"}}, "data: data.target 'attributes' is MNIST's; task"),
        (
            {"model": {"head": "linear"}, "variants": [{"name": "plain"}, {"name": "r", "round": True}]},
            "variant 'r': round on head 'linear' needs round_grid > 0 (without a grid the round network is the plain",
        ),
    ],
)
def test_settings_that_would_be_ignored_are_refused(d, expected):
    with pytest.raises(ConfigError) as err:
        from_dict(PretrainConfig, d)
    assert expected in _one_line(err)


@pytest.mark.parametrize(("key", "kind"), [(1, "int"), (True, "bool"), (None, "NoneType")])
def test_a_key_that_is_not_text_is_one_line(key, kind):
    """YAML reads `1:` as a number and `on:` or `yes:` as true: one line asking to quote it, not a TypeError."""
    with pytest.raises(ConfigError) as err:
        from_dict(PretrainConfig, {"seed": 1, key: 2})
    assert _one_line(err) == f"PretrainConfig key {key!r} is a {kind}, not a name; quote it"
    with pytest.raises(ConfigError) as err:
        from_dict(PretrainConfig, {"train": {key: 2}})
    assert _one_line(err) == f"TrainConfig key train.{key!r} is a {kind}, not a name; quote it"


def test_config_checks_survive_python_O():
    """Under ``python -O`` asserts vanish; the checks of user input must not."""
    code = textwrap.dedent("""
        from fsae.characteristics import LetheOptions
        from fsae.config import ConfigError
        from fsae.model import FSAEConfig
        from fsae.train import TrainConfig
        assert False, "asserts are on"  # skipped under -O
        for make in (lambda: FSAEConfig(head="foo"), lambda: TrainConfig(eval_batch_size=0),
                     lambda: LetheOptions(replay_fraction=1.0)):
            try:
                make()
            except ConfigError as e:
                print(e)
    """)
    proc = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [
        "head must be one of ('softmax', 'sigmoid', 'groups', 'linear'), got 'foo'",
        "eval_batch_size must be > 0, got 0",
        "replay_fraction must be in [0, 1), got 1.0",
    ]


def test_valid_groups_and_jumps():
    config = from_dict(FSAEConfig, {"head": "groups", "groups": [4, 6], "jumps": [4, 2, 2]})
    assert config.jump_layers() == [2, 4]
    assert from_dict(FSAEConfig, {"jumps": "last"}).jump_layers() == [4]
    assert from_dict(FSAEConfig, {"jumps": "none"}).jump_layers() == []


# --- round trip -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        FSAEConfig(),
        FSAEConfig(
            input_shape=(3, 29, 31),
            layers=[LayerSpec("conv", 4, 4, 3), LayerSpec("linear", 5)],
            head="groups",
            groups=[3, 2],
            leaky_slope=0.1,
            eps=1e-4,
            round=True,
            jumps="all",
            feedback_steps=3,
            feedback_gain=0.5,
        ),
        FSAEConfig(layers=[LayerSpec("linear", 2)], head="linear", round=True, round_grid=0.5),
    ],
)
def test_to_dict_from_dict_round_trip(config):
    d = to_dict(config)
    first = config.layers[0]
    assert d["layers"][0] == {"type": first.type, "out": first.out, "kernel": first.kernel, "stride": first.stride}
    assert isinstance(d["input_shape"], list)
    assert from_dict(FSAEConfig, d) == config
    # through YAML text as well, as a run directory stores it
    assert from_dict(FSAEConfig, yaml.safe_load(yaml.safe_dump(d))) == config


def test_to_dict_of_default_is_plain():
    d = to_dict(FSAEConfig())
    assert d["input_shape"] == [1, 28, 28]
    assert [layer["out"] for layer in d["layers"]] == [s.out for s in paper_layers()] == [32, 64, 64, 64, 10]
    assert d["leaky_slope"] == 0.3 and d["jumps"] == [] and d["head"] == "softmax"


# --- overrides and files ----------------------------------------------------------------------------------------------


def test_apply_overrides_with_dotted_keys():
    d = {"model": {"head": "softmax", "eps": 1e-6}, "seed": 0}
    out = apply_overrides(d, ["model.head=groups", "model.groups=[5, 5]", "seed=3", "train.lr=1e-3", "name=", "x=a=b"])
    assert out is d
    assert d == {
        "model": {"head": "groups", "eps": 1e-6, "groups": [5, 5]},
        "seed": 3,
        "train": {"lr": "1e-3"},  # parsed as YAML, so still a string: from_dict coerces it where a float is expected
        "name": "",
        "x": "a=b",
    }
    assert apply_overrides({"a": 1}, None) == {"a": 1}


@pytest.mark.parametrize(
    ("override", "expected"), [("seed", "must look like key=value"), ("seed.sub=1", "'seed' is not a section")]
)
def test_bad_overrides_raise(override, expected):
    with pytest.raises(ConfigError) as err:
        apply_overrides({"seed": 0}, [override])
    assert expected in _one_line(err)


def test_load_config_from_yaml_file_with_overrides(tmp_path):
    path = tmp_path / "fsae.yaml"
    path.write_text(
        "input_shape: [1, 28, 28]\n"
        "layers:\n"
        "  - {type: conv, out: 8, kernel: 5, stride: 2}\n"
        "  - {type: linear, out: 10}\n"
        "eps: 1e-5\n"
        "jumps: last\n"
    )
    config = load_config(FSAEConfig, path, ["round=true", "eps=2e-5"])
    assert config.layers == [LayerSpec("conv", 8, 5, 2), LayerSpec("linear", 10)]
    assert config.eps == 2e-5 and config.round is True and config.jump_layers() == [1]
    assert load_config(FSAEConfig, path).eps == 1e-5
    assert load_config(FSAEConfig) == FSAEConfig()  # no file: defaults

    with pytest.raises(ConfigError, match="unknown FSAEConfig key 'rund'"):
        load_config(FSAEConfig, path, ["rund=true"])
    with pytest.raises(ConfigError, match="'layers' is not a section"):  # list items cannot be overridden by index
        load_config(FSAEConfig, path, ["layers.0.out=4"])


def test_load_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError) as err:
        load_yaml(bad)
    assert "is not valid YAML" in _one_line(err)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping at the top level"):
        load_yaml(bad)
    bad.write_text("")
    assert load_yaml(bad) == {}


# --- a generic dataclass: Optional, Literal, dict, nested -------------------------------------------------------------


@dataclass
class _Inner:
    lr: float = 1e-3
    mode: str = "a"


@dataclass
class _Outer:
    inner: _Inner = field(default_factory=_Inner)
    name: str | None = None
    tags: dict[str, int] = field(default_factory=dict)
    sizes: tuple[int, ...] = (1,)


def test_generic_dataclass_fields():
    o = from_dict(_Outer, {"inner": {"lr": "3e-4"}, "name": None, "tags": {"a": 1}, "sizes": [2, 3, 4]})
    assert o == _Outer(_Inner(lr=3e-4), None, {"a": 1}, (2, 3, 4))
    with pytest.raises(ConfigError, match=r"tags.a: expected an integer"):
        from_dict(_Outer, {"tags": {"a": "x"}})
    with pytest.raises(ConfigError, match="unknown _Inner key 'inner.lrr'"):
        from_dict(_Outer, {"inner": {"lrr": 1}})
    assert from_dict(_Outer, to_dict(o)) == o
