"""The trackers behind `tunelab tune --mlflow URI`, `--wandb PROJECT`: a small protocol and a registry.

A tracker is one module in `tunelab/trackers/` that defines `TRACKER`, an object with the
attributes and methods of `Tracker`; `REGISTERED` maps its option name to that module. Adding one
is that module and one line here: its option then appears on `tune` and `compare` (a field of
TuneOptions and CompareOptions, `with_tracker_options`), is checked before anything starts,
recorded in tunelab.json and shown by `--dry-run`, and its callbacks join every search. Tracker
modules are imported when the options are declared, so they import their library (and Ray's
integration) only inside their methods. Every registered tracker runs through a tiny search read
back by its own library in tests/tunelab/test_trackers_contract.py.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tunelab.tune_options import TuneOptions

REGISTERED: dict[str, str] = {  # option name (--NAME, TuneOptions.NAME) -> the module defining TRACKER
    "mlflow": "tunelab.trackers.mlflow",
    "wandb": "tunelab.trackers.wandb",
}


class Tracker(Protocol):
    name: str  # its option: --NAME on the command line, NAME in TuneOptions and in the record
    extra: str  # the optional extra that installs its library: pip install -e '.[EXTRA]'
    option: dataclasses.Field  # the option's declaration (tunelab.options.option), default None
    # Folders it writes inside the experiment folder -> the name patterns it writes in each, which
    # `--overwrite` deletes with the experiment's own files (and nothing else there).
    folders_in_experiment: dict[str, tuple[str, ...]]

    def check(self, value: str) -> None:
        """Refuse a bad value, a missing extra or an unusable service in one ConfigError, before anything starts."""

    def resolve(self, value: str) -> str:
        """The value as recorded: one that means the same from any folder (a relative path made absolute)."""

    def callbacks(self, value: str, opts: TuneOptions, record: dict[str, Any]) -> list:
        """The Ray Tune callbacks that log every trial of the search `record` describes."""

    def retire(self, value: str, name: str, experiment: str) -> None:
        """--overwrite: mark the runs of the experiment being replaced as no longer current (its own
        undoable way), saying which on stderr; runs of other experiments stay."""


def tracker_for(name: str) -> Tracker:
    return importlib.import_module(REGISTERED[name]).TRACKER


def with_tracker_options(options_class: type) -> type:
    """Declare each registered tracker's option on an options class (before @dataclass reads it)."""
    annotations = options_class.__dict__.get("__annotations__", {})
    for name in REGISTERED:
        annotations[name] = "str | None"
        setattr(options_class, name, _copy(tracker_for(name).option))
    options_class.__annotations__ = annotations
    return options_class


def _copy(field: dataclasses.Field) -> dataclasses.Field:
    return dataclasses.field(default=field.default, metadata=field.metadata)


def folders_in_experiment() -> dict[str, tuple[str, ...]]:
    return {folder: patterns for name in REGISTERED
            for folder, patterns in tracker_for(name).folders_in_experiment.items()}


def given(opts: Any) -> dict[str, str]:
    """{tracker name: its value} for the trackers the options turn on."""
    return {name: getattr(opts, name) for name in REGISTERED if getattr(opts, name, None) is not None}


def resolve(opts: Any) -> dict[str, str]:
    """The trackers' values as recorded (`Tracker.resolve`), to replace in the options."""
    return {name: tracker_for(name).resolve(value) for name, value in given(opts).items()}


def check(opts: Any) -> None:
    for name, value in given(opts).items():
        tracker_for(name).check(value)


def callbacks(opts: TuneOptions, record: dict[str, Any]) -> list:
    return [callback for name, value in given(opts).items()
            for callback in tracker_for(name).callbacks(value, opts, record)]


def retire(opts: TuneOptions, name: str, experiment: str) -> None:
    for tracker, value in given(opts).items():
        tracker_for(tracker).retire(value, name, experiment)
