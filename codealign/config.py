"""Typed stage configs: dataclass defaults < YAML file < command-line overrides.

Every stage declares one dataclass. ``load_config(Cls, path, overrides)`` builds it:

* a YAML mapping sets fields; nested dataclass fields take nested mappings;
* ``overrides`` are ``key=value`` strings (dotted keys reach nested fields), parsed as YAML scalars;
* an unknown key is a :class:`ConfigError` naming the key, the file and the closest valid key;
* a value of the wrong type is a :class:`ConfigError` naming the key and the expected type.

Stages that wrap a TRL trainer use TRL's own field names and hand them through with
:func:`trl_kwargs`, so a TRL user can read our YAML without a glossary.

This module imports no torch, transformers or trl: it is on the ``--help`` path.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from codealign.errors import UserError

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """A config problem, phrased as one line for the user."""


def _closest(key: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert one YAML value against a field annotation; raise ConfigError on mismatch."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str):  # "a,b" from the command line
            value = [yaml.safe_load(v) if args and args[0] is not str else v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "1e-4" as a string
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _init_fields(obj: Any) -> dict[str, Any]:
    """A dataclass instance as a nested dict of its init fields (what YAML would have to say to rebuild it)."""
    return {
        f.name: _init_fields(getattr(obj, f.name))
        if dataclasses.is_dataclass(getattr(obj, f.name))
        else getattr(obj, f.name)
        for f in dataclasses.fields(obj)
        if f.init
    }


def field_default(f: dataclasses.Field) -> Any:
    """The default value of a dataclass field (its factory called)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _build(cls: type[T], data: dict[str, Any], where: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key '{key}'{_closest(str(key), list(fields))}")
        default = field_default(fields[key])
        if isinstance(value, dict) and dataclasses.is_dataclass(default) and not isinstance(default, type):
            # A partial section keeps the field's own default values (which may differ from the class's).
            value = merge_dicts(_init_fields(default), value)
        kwargs[key] = _coerce(
            value, hints[key], f"{where}: '{key}'" if ":" not in where else f"{where}.{key}"
        )
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a section")
    node[parts[-1]] = value


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """``["a=1", "b.c=x"]`` -> nested dict; values parsed as YAML scalars."""
    data: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}': expected KEY=VALUE")
        key, raw = item.split("=", 1)
        _set_dotted(data, key.strip().replace("-", "_"), yaml.safe_load(raw) if raw else "")
    return data


def merge_dicts(*parts: dict[str, Any]) -> dict[str, Any]:
    """Later parts over earlier ones, nested mappings merged key by key (none is modified)."""
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge_dicts(out[key], value)
            else:
                out[key] = value
    return out


def shipped_configs() -> Path:
    """The directory of the shipped YAMLs: package data ``codealign.configs``, which is the repository's
    ``configs/`` in a checkout (an editable install maps it there) and ``codealign/configs/`` in a wheel."""
    import importlib.resources

    return Path(str(importlib.resources.files("codealign.configs")))


def config_path(path: str | Path) -> Path:
    """``path`` from the working directory, else the shipped config it names; ConfigError if neither.

    Shipped configs are named ``configs/<file>.yaml`` as in the repository (grpo.yaml's ``reward_config``,
    the README's commands), so the same name works in a checkout, from any directory, and from a wheel."""
    path = Path(path)
    if not path.is_file() and not path.is_absolute() and path.parts[:1] == ("configs",):
        shipped = shipped_configs().joinpath(*path.parts[1:])
        if shipped.is_file():
            path = shipped
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    return path


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = config_path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{line} invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of config keys")
    return data


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
) -> T:
    """Build ``cls`` from defaults, then the YAML at ``path``, then ``overrides`` (CLI wins)."""
    data = read_yaml(path) if path is not None else {}
    # Build from the file alone first, so an unknown key is reported against the file that has it.
    cfg = _build(cls, data, str(path) if path is not None else "defaults")
    extra = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    if not extra:
        return cfg
    return _build(cls, merge_dicts(data, extra), "command line")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, JSON-able dict of a config (for DB rows and saved run metadata)."""
    return dataclasses.asdict(cfg)


def trl_kwargs(cfg: Any, trl_config_cls: type, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of ``cfg`` that ``trl_config_cls`` also has, by the same name, ready to pass through.

    A stage dataclass also carries ``trl_extra: dict`` for rarely used TRL/TrainingArguments keys; those
    are checked here, so a typo in them is reported with the TRL class it was meant for.
    """
    valid = {f.name for f in dataclasses.fields(trl_config_cls) if f.init}
    out = {
        f.name: getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)
        if f.name in valid and f.name not in exclude
    }
    for key, value in (getattr(cfg, "trl_extra", None) or {}).items():
        if key not in valid:
            raise ConfigError(
                f"trl_extra: '{key}' is not a {trl_config_cls.__name__} field{_closest(key, sorted(valid))}"
            )
        out[key] = value
    return out
