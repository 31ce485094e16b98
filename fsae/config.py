"""Typed configuration: dataclasses loaded from YAML plus ``key=value`` overrides.

Contents:
    ConfigError     -- raised for any bad config; its message is one line saying what to fix.
    check           -- ``check(ok, message)``: raise ``ConfigError`` unless ok (config checks that survive -O).
    from_dict       -- build a (possibly nested) dataclass from a plain dict, rejecting unknown keys and wrong types.
    to_dict         -- the inverse: a dataclass as plain YAML/JSON-able values.
    apply_overrides -- apply ``a.b=value`` strings (values parsed as YAML) to a plain dict.
    load_config     -- YAML file + overrides -> dataclass, in one call.

Every project config (``FSAEConfig``, ``PretrainConfig``, ``CollectConfig``, ``LabelConfig``, ``AgentConfig``,
``SweepConfig`` and its ``RayConfig``) goes through
``from_dict``, so a typo such as ``lerning_rate`` fails at once with the valid keys and a close match,
instead of being silently ignored six hours into a run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message says which and what is allowed."""


def check(ok: object, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``ok``: validation of user input that, unlike ``assert``, survives
    ``python -O``."""
    if not ok:
        raise ConfigError(message)


_SPELLED_OUT = {"lr": "learning_rate"}


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    # No whole-key match: compare with the spelled-out tails of the keys, so that 'lerning_rate' (or 'learning_rate')
    # finds 'abstract_lr' and 'concrete_lr'.
    tails: dict[str, list[str]] = {}
    for name in valid:
        for words in (name.split("_"), [_SPELLED_OUT.get(w, w) for w in name.split("_")]):
            for i in range(1, len(words)):
                names = tails.setdefault("_".join(words[i:]), [])
                names += [name] if name not in names else []
    close = difflib.get_close_matches(key, list(tails), n=1, cutoff=0.8)
    return " (did you mean " + " or ".join(f"'{n}'" for n in tails[close[0]]) + "?)" if close else ""


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the type annotation ``tp``; return it converted where that is lossless."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for option in get_args(tp):
            with contextlib.suppress(ConfigError):
                return _coerce(value, option, where)
        raise ConfigError(f"{where}: {value!r} fits none of {_type_name(tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f"{where}: {value!r} is not one of {list(get_args(tp))}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_coerce(k, kt, where): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():  # 1.0e+6 steps
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise TypeError(f"{where}: unsupported annotation {tp!r}")  # a bug in a config class, not in user input


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def from_dict(cls: type[T], d: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``d``; unknown keys and wrong types raise :class:`ConfigError`."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {d!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    prefix = f"{where}." if where else ""
    for key in d:  # YAML reads `1:` as a number and `on:` / `yes:` as true: never a field's name
        if not isinstance(key, str):
            raise ConfigError(f"{cls.__name__} key {prefix}{key!r} is a {type(key).__name__}, not a name; quote it")
    unknown = sorted(set(d) - set(fields))
    if unknown:
        valid = sorted(fields)
        key = unknown[0]
        raise ConfigError(f"unknown {cls.__name__} key '{prefix}{key}'{_suggest(key, valid)}; valid keys: {valid}")
    kwargs = {}
    for name, value in d.items():
        kwargs[name] = _coerce(value, hints[name], f"{where}.{name}" if where else name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, AssertionError) as e:  # __post_init__'s checks: say which section
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def to_dict(obj: Any) -> Any:
    """A dataclass (nested) as plain dicts, lists and scalars, ready for YAML, JSON or ``torch.save``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def apply_overrides(d: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``["a.b=1", "c=[1, 2]"]`` to a nested dict (in place, and returned). Values are parsed as YAML."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value (e.g. train.lr=0.001)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            reason = str(e).splitlines()[0]
            raise ConfigError(f"override '{item}': the value is not valid YAML ({reason}); quote or fix it") from None
        node = d
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': '{p}' is not a section")
        node[parts[-1]] = value
    return d


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file raises :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """YAML file (optional) + ``key=value`` overrides -> ``cls`` instance, all checked."""
    d = load_yaml(path) if path is not None else {}
    return from_dict(cls, apply_overrides(d, overrides))
