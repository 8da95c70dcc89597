"""YAML experiment configs with dotted command-line overrides and typed validation.

A config is a plain nested dict loaded from YAML. Components describe their section with a
dataclass and call :func:`build` to get a validated, typed object, so an unknown key or a wrong
type fails early with the dotted path of the offending entry. The fully resolved config is saved
next to the experiment so every run can be reproduced from its directory alone.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or override that does not fit what the code expects."""


class _Loader(yaml.SafeLoader):
    """``yaml.safe_load``, except that ``1e-3`` is a float (YAML 1.1 only accepts ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def _yaml(text_or_file) -> Any:
    return yaml.load(text_or_file, Loader=_Loader)


def _read(spelt: str | os.PathLike, including: tuple[Path, ...]) -> tuple[dict, list[str]]:
    """One YAML file without its ``include:`` key, and the paths it includes (in order), spelt
    as the recipes' stage markers record them: the including file's directory + the name."""
    path = Path(spelt)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.resolve() in including:
        raise ConfigError(f"include cycle: {' -> '.join(map(str, including + (path,)))}")
    with open(path) as f:
        data = _yaml(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    base = data.pop("include", None)
    names = [] if base is None else [base] if isinstance(base, str) else base
    return data, [os.path.join(os.path.dirname(os.fspath(spelt)) or ".", name) for name in names]


def load_yaml(path: str | os.PathLike, _including: tuple[Path, ...] = ()) -> dict:
    path = Path(path)
    data, includes = _read(path, _including)
    if not includes:
        return data
    merged: dict = {}
    for inc in includes:
        merged = merge(merged, load_yaml(inc, _including + (path.resolve(),)))
    return merge(merged, data)


def config_files(path: str | os.PathLike, _including: tuple[Path, ...] = ()) -> list[str]:
    """``path`` and every file it includes, depth first: what a config's result depends on."""
    _, includes = _read(path, _including)
    inner = _including + (Path(path).resolve(),)
    return [os.fspath(path)] + [f for inc in includes for f in config_files(inc, inner)]


def merge(base: dict, update: dict) -> dict:
    """Recursive dict merge; values of ``update`` win, mappings are merged key by key."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``model.lora.rank=8`` -> (["model", "lora", "rank"], 8); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like dotted.key=value")
    key, raw = text.split("=", 1)
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"override {text!r} has an empty key")
    return keys, _yaml(raw) if raw.strip() else None


def apply_overrides(cfg: dict, overrides: list[str], allow_new: bool = False) -> dict:
    """Apply dotted overrides. Unknown keys are an error unless ``allow_new`` (typos are common)."""
    cfg = copy.deepcopy(cfg)
    for text in overrides:
        add = text.startswith("+")  # "+a.b=1" adds a key the YAML does not spell out
        keys, value = parse_override(text[1:] if add else text)
        allow_new_here = allow_new or add
        node = cfg
        for i, k in enumerate(keys[:-1]):
            if not isinstance(node.get(k), dict):
                if k in node or not allow_new_here:
                    raise ConfigError(_unknown(keys[: i + 1], node, keys))
                node[k] = {}
            node = node[k]
        last = keys[-1]
        if last not in node and not allow_new_here:
            raise ConfigError(_unknown(keys, node, keys))
        old = node.get(last)
        if old is not None and value is not None and not _same_kind(old, value):
            raise ConfigError(
                f"override {'.'.join(keys)}={value!r}: expected {type(old).__name__} "
                f"like the current value {old!r}")
        node[last] = float(value) if isinstance(old, float) and isinstance(value, int) else value
    return cfg


def _same_kind(old: Any, new: Any) -> bool:
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, (int, float)):
        return isinstance(new, (int, float)) and not (isinstance(old, int) and isinstance(new, float))
    return isinstance(new, type(old))


def _unknown(keys: list[str], node: dict, full: list[str]) -> str:
    known = ", ".join(sorted(map(str, node))) or "(none)"
    return (f"unknown config key {'.'.join(keys)!r}; known keys here: {known} "
            f"(to add a key the YAML does not spell out, write --set +{'.'.join(full)}=VALUE)")


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> dict:
    cfg = load_yaml(path) if path else {}
    return apply_overrides(cfg, overrides or [])


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conf", "--config", dest="conf", required=True, help="YAML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config entry, e.g. --set model.lora.rank=8 (repeatable); "
                             "--set +a.b=V adds a key the YAML does not spell out")


def config_from_args(args: argparse.Namespace) -> dict:
    return load_config(args.conf, args.overrides)


def save_config(cfg: dict, exp_dir: str | os.PathLike, name: str = "config.yaml") -> Path:
    """Write the resolved config into the experiment dir (atomically)."""
    from dualspeech.utils.io import atomic_write_text

    path = Path(exp_dir) / name
    atomic_write_text(path, yaml.safe_dump(cfg, sort_keys=False))
    return path


T = typing.TypeVar("T")


def build(cls: type[T], section: dict | None, where: str = "") -> T:
    """Instantiate dataclass ``cls`` from a config section, checking keys and types."""
    section = {} if section is None else section
    if not isinstance(section, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {section!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(section) - set(fields))
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {unknown}; "
                          f"allowed: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in section.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}" if where else name)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint) or (hint if hint in (list, tuple, dict) else None)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        inner = args[0] if args else Any
        items = [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if hint in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    if hint in (int, float, str) and not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value
