"""Frozen config dataclasses built from plain dicts (Tune's config, --set, YAML files).

Every key is checked against the dataclass fields (unknown keys are refused with the list of
valid ones) and every value is coerced to the field's annotated type, so `--set lr=0.1` and a
Tune sample of 0.1 give the same config.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import yaml

from tunelab.core.errors import ConfigError, choices_text

C = TypeVar("C")

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def unwrap_optional(annotation):
    """Return (inner type, allows None) for `X | None` / Optional[X]."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def coerce(name: str, value: Any, annotation) -> Any:
    """Convert `value` (a string from the command line, or a Python value) to `annotation`."""
    inner, optional = unwrap_optional(annotation)
    if isinstance(value, str) and optional and value.strip().lower() in {"none", "null", "auto", ""}:
        return None
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{name}=None is not allowed; expected {getattr(inner, '__name__', inner)}")
    try:
        return _coerce_inner(value, inner)
    except (TypeError, ValueError) as exc:
        kind = getattr(inner, "__name__", str(inner))
        finite = " (a finite number)" if kind == "float" else ""
        raise ConfigError(f"{name}={value!r} is not a valid {kind}{finite}") from exc


def _coerce_inner(value: Any, inner) -> Any:
    if inner is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(value)
    if inner is int:
        if isinstance(value, bool):
            raise TypeError(value)
        as_float = float(value)
        if not as_float.is_integer():
            raise ValueError(value)
        return int(as_float)
    if inner is float:
        if isinstance(value, bool):
            raise TypeError(value)
        number = float(value)
        if not math.isfinite(number):  # no setting means anything at NaN or infinity
            raise ValueError(value)
        return number
    if inner is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise TypeError(value)
        return str(value)
    if typing.get_origin(inner) is tuple:
        (item_type, _ellipsis) = typing.get_args(inner)
        if isinstance(value, str):
            value = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        return tuple(_coerce_inner(v, item_type) for v in value)
    raise TypeError(f"unsupported field type {inner}")


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def build_config(cls: type[C], values: Mapping[str, Any]) -> C:
    """Build `cls` from `values`, refusing unknown keys and coercing each value's type."""
    hints = typing.get_type_hints(cls)
    valid = field_names(cls)
    unknown = [k for k in values if k not in valid]
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r}; valid keys: {choices_text(sorted(valid))}")
    kwargs = {k: coerce(k, v, hints[k]) for k, v in values.items()}
    return cls(**kwargs)


def parse_set_options(pairs: list[str] | None) -> dict[str, Any]:
    """Parse `--set key=value` strings; values stay strings and are typed by build_config."""
    result: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r} is malformed; expected KEY=VALUE, e.g. --set lr=0.01")
        result[key.strip()] = value.strip()
    return result


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a key written twice in one mapping (plain YAML keeps the last one,
    so `cases: {sgd: ..., sgd: null}` would silently drop a range)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                continue  # unhashable keys are refused later, as before
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is written twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)

    @classmethod
    def read(cls, stream) -> Any:
        """What yaml.safe_load does, with this loader (kept off yaml.load, which can be unsafe)."""
        loader = cls(stream)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()


def read_yaml_mapping(path: str, label: str, shape: str, missing_hint: str = "") -> dict[str, Any]:
    """A YAML mapping read with the safe loader; every problem is one ConfigError line.

    `label` names the file in messages (e.g. "--config 'c.yaml'"), `shape` says what the mapping
    should hold, `missing_hint` what to do when the file does not exist.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = _UniqueKeyLoader.read(handle)
    except FileNotFoundError:
        raise ConfigError(f"{label}: no such file{missing_hint}") from None
    except IsADirectoryError:
        raise ConfigError(f"{label} is a folder; give a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{label} is not UTF-8 text (a binary file?); give a YAML file") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise ConfigError(f"{label} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"{label} is nested too deeply to be a config file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{label} must {shape}, got {type(data).__name__}")
    odd = [k for k in data if not isinstance(k, str)]
    if odd:
        raise ConfigError(f"{label}: key {odd[0]!r} is not a name; keys are config names such as lr")
    return data


def load_config_file(path: str) -> dict[str, Any]:
    """Read a YAML (or JSON) mapping of config keys."""
    return read_yaml_mapping(path, f"--config {path!r}", "hold a mapping of key: value")


def to_dict(config) -> dict[str, Any]:
    """A plain dict of the config with tuples as lists (YAML/JSON friendly)."""
    out = {}
    for key, value in dataclasses.asdict(config).items():
        out[key] = list(value) if isinstance(value, tuple) else value
    return out
