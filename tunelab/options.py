"""Command-line options declared once.

Each option is a dataclass field of the options object the driver takes (`TuneOptions`,
`CompareOptions`) and carries its flag, help and metavar in the field's metadata. The argparse
arguments and the object built from parsed arguments are both derived from those fields, so an
option's name, type, default and help live in one place. An option another command shares is
declared with `shared`, which copies it and may change only its default.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from tunelab.trainables.config import unwrap_optional


def option(default: Any, help: str, *, flag: str | None = None, metavar: str | None = None,
           repeat: bool = False, parse: Any = None) -> Any:
    """A command-line option: `--name-with-dashes` unless `flag` says otherwise; `repeat` collects a list;
    `parse` replaces the field type as argparse's `type` (to name the valid range when a value is refused)."""
    meta = {"help": help, "flag": flag, "metavar": metavar, "repeat": repeat, "parse": parse}
    if repeat:
        return dataclasses.field(default_factory=list, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def shared(options_class: type, name: str, **default: Any) -> Any:
    """The option `name` of `options_class`, declared again for another command (only its default may differ)."""
    source = options_class.__dataclass_fields__[name]
    value = default.get("default", source.default)
    if source.metadata.get("repeat"):
        return dataclasses.field(default_factory=list, metadata=source.metadata)
    return dataclasses.field(default=value, metadata=source.metadata)


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


class _Unset:
    """argparse's default for an option the user did not give (see `add_arguments(track_given=...)`)."""

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:  # reads as "nothing given" where an empty value would
        return False


UNSET = _Unset()


def add_arguments(parser: argparse.ArgumentParser, options_class: type, track_given: bool = False) -> None:
    """One argparse argument per option field of `options_class` (fields without help are not options).

    With `track_given`, an option left out parses as UNSET rather than its default, so `given`
    can tell which options the user set (a preset fills only the others); `from_args` then uses
    the field's default."""
    hints = typing.get_type_hints(options_class)
    for f in dataclasses.fields(options_class):
        meta = f.metadata
        if "help" not in meta:
            continue
        kind, _ = unwrap_optional(hints[f.name])
        if meta["repeat"]:
            parser.add_argument(flag_of(f), dest=f.name, action="append", default=[], metavar=meta["metavar"],
                                help=meta["help"])
        elif kind is bool:
            parser.add_argument(flag_of(f), dest=f.name, action="store_true", help=meta["help"])
        else:
            shown = "" if f.default in (None, "") or "default" in meta["help"] else f" (default {f.default})"
            parse = meta.get("parse") or (kind if kind in (int, float) else str)
            parser.add_argument(flag_of(f), dest=f.name, type=parse,
                                default=UNSET if track_given else f.default, metavar=meta["metavar"],
                                help=meta["help"] + shown)


def from_args(options_class: type, args: argparse.Namespace, **given: Any):
    """The options object of the parsed arguments; `given` supplies or replaces fields."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(options_class) if hasattr(args, f.name)}
    return options_class(**{k: v for k, v in {**values, **given}.items() if v is not UNSET})


def given(args: argparse.Namespace) -> set[str]:
    """The options the user gave on the command line (parsed with `track_given`; switches count
    when on)."""
    return {name for name, value in vars(args).items()
            if value is not UNSET and value is not False and not (isinstance(value, list) and not value)}


def to_argv(options: Any) -> list[str]:
    """The command-line options that rebuild `options` (the inverse of `from_args`): every option
    whose value differs from its default, in declaration order."""
    argv: list[str] = []
    for f in dataclasses.fields(options):
        if "help" not in f.metadata:
            continue
        value = getattr(options, f.name)
        default = [] if f.metadata["repeat"] else f.default
        if value == default:
            continue
        if f.metadata["repeat"]:
            argv += [f"{flag_of(f)}={item}" for item in value]
        elif isinstance(value, bool):
            if value:  # a switch: off is its default
                argv.append(flag_of(f))
        else:
            # FLAG=VALUE: a value starting with '-' is not read as another flag
            argv.append(f"{flag_of(f)}={value!r}" if isinstance(value, float) else f"{flag_of(f)}={value}")
    return argv
