"""Dotted `section.key=value` overrides on a config's nested dict, typed coercion, and the legacy flat keys.

This module works on plain nested dicts (what `Config.to_dict()` gives and YAML holds) and knows no config
class, so `training.config` can build on it. Keys are dotted paths: `optim.lr`, `model.width`,
`data.preprocess.input_size`.

Legacy flat keys: before `data` held a `PreprocessConfig`, it copied three of its fields. Those names stay
valid everywhere a key is read (command-line overrides, presets, a saved `config.yaml`) and map onto the
nested field:

    data.input_size     -> data.preprocess.input_size
    data.crop_to_liver  -> data.preprocess.crop
    data.registration   -> data.preprocess.registration

The flat names are also the ones errors and run comparisons report (`data.input_size=512, not 96`), since
they are what users type.
"""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from mpliver.errors import ConfigError

LEGACY_KEYS = {
    "data.input_size": "data.preprocess.input_size",
    "data.crop_to_liver": "data.preprocess.crop",
    "data.registration": "data.preprocess.registration",
}
_SHORT_KEYS = {nested: flat for flat, nested in LEGACY_KEYS.items()}


def canonical_key(key: str) -> str:
    """The nested key a legacy flat key stands for (`data.input_size` -> `data.preprocess.input_size`)."""
    return LEGACY_KEYS.get(key, key)


def short_key(key: str) -> str:
    """The name users type for a nested key: its legacy flat name where it has one, else the key itself."""
    return _SHORT_KEYS.get(key, key)


def migrate_legacy(tree: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """A copy of `tree` with the legacy flat `data` keys moved under `data.preprocess` (a run folder
    written before `data` held a `PreprocessConfig`); both forms of one key at once is a `ConfigError`."""
    out = copy.deepcopy(dict(tree))
    data = out.get("data")
    if not isinstance(data, dict):
        return out
    for flat, nested in LEGACY_KEYS.items():
        name, field = flat.split(".")[1], nested.split(".")[2]
        if name not in data:
            continue
        preprocess = data.setdefault("preprocess", {})
        if not isinstance(preprocess, dict):
            raise ConfigError(f"{source}: data.preprocess must be a mapping")
        if field in preprocess:
            raise ConfigError(f"{source}: both {flat} and {nested} are given; keep one")
        preprocess[field] = data.pop(name)
    return out


def parse_value(raw: str) -> Any:
    """Parse an override value: numbers (also `1e-3`, which YAML 1.1 keeps as text), then YAML."""
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    try:
        return yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        return raw


def parse_override(item: str) -> tuple[str, Any]:
    """`'optim.lr=1e-3'` -> `('optim.lr', 0.001)`; the key is canonical (legacy flat keys mapped)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override '{item}' must look like section.key=value (e.g. optim.lr=1e-3)")
    return canonical_key(key), parse_value(raw.strip())


def override_keys(overrides: Sequence[str]) -> set[str]:
    """The canonical keys that `key=value` strings set (malformed items are left to `parse_override`)."""
    return {canonical_key(item.partition("=")[0].strip()) for item in overrides}


def apply_overrides(tree: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of the nested dict `tree` with `section.key=value` strings applied in order (values parsed as
    YAML). Only the top-level path is checked here: the config class names an unknown key when it is built."""
    out = copy.deepcopy(dict(tree))
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(out, key, value)
    return out


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set `tree[a][b][c] = value` for `key='a.b.c'`; every part but the last must name a mapping already in
    `tree`, and a mapping value merges into the mapping it replaces."""
    *path, name = key.split(".")
    example = " (keys look like model.width, optim.lr, data.batch_size)"
    if not path or not name:
        raise ConfigError(f"unknown config key '{key}'{example}")
    node = tree
    for i, part in enumerate(path):
        node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise ConfigError(f"unknown config key '{short_key(key)}'{example if i == 0 else ''}")
    if isinstance(node.get(name), dict) and isinstance(value, dict):
        node[name] = deep_merge(node[name], value)
    else:
        node[name] = value


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`top` over `base`: mappings merge key by key, any other value of `top` replaces the one of `base`."""
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(out.get(key), dict) and isinstance(value, Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{'data': {'preprocess': {'crop': True}}}` -> `{'data.preprocess.crop': True}`."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert `value` to the annotated type `hint`, or raise `ConfigError` naming `key`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif origin is dict or hint is dict:
        if isinstance(value, dict):
            return dict(value)
    elif origin is tuple:
        return _coerce_tuple(value, typing.get_args(hint), key)
    else:  # pragma: no cover - every config field is one of these types
        return value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{key} must be {name}, got {value!r}")


def _coerce_tuple(value: Any, args: tuple[Any, ...], key: str) -> tuple[Any, ...]:
    """A list or tuple as `tuple[T, ...]` or a fixed `tuple[A, B]`, each item coerced."""
    if isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], key) for v in value)
        if len(value) == len(args):
            return tuple(coerce(v, a, key) for v, a in zip(value, args, strict=True))
    what = f"a list of {len(args)}" if args and args[-1] is not Ellipsis else "a list"
    raise ConfigError(f"{key} must be {what}, got {value!r}")
