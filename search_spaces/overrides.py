"""`--space FILE`: narrow, extend or drop entries of a method's search space from YAML.

    lr: {low: 1.0e-4, high: 1.0e-2}        # narrow an entry (log scale kept); one range for every
                                           # optimizer where the default has one per optimizer
    optimizer: {choices: [sgd, adamw]}     # fewer choices
    dropout: {low: 0.0, high: 0.5}         # add a config key that was not searched
    label_smoothing: null                  # drop an entry (its default, or --set, applies)
    momentum:                              # a range per option of another entry (null: not sampled)
      when: optimizer
      cases: {sgd: {low: 0.8, high: 0.99}, rmsprop: {low: 0.0, high: 0.9}, adam: null, adamw: null}

`when` may name another conditional entry whose cases are choices (a chain): the child is then
sampled only in trials where that entry was sampled, and needs a case for each of its choices.
A cycle of `when` entries is refused.

Every problem is reported before anything starts, as one line naming the key and the rule.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from tunelab.search_spaces.base import Choice, Conditional, FloatRange, IntRange, Param, SearchSpace, distinct
from tunelab.trainables.config import build_config, field_names, read_yaml_mapping, unwrap_optional
from tunelab.trainables.configs import DataOptions
from tunelab.core.errors import ConfigError

ENTRY_KEYS = ("low", "high", "log", "choices", "unit", "reason", "role")
_DATA_REASON = "defines the data split every trial shares (loaded once per experiment); fix it with --set"
# Keys a trial cannot vary: trials share one loaded dataset, and the run-level ones are set by tune's options.
# Searching them would record a value in the best config that the trial never used.
NOT_SEARCHABLE: dict[str, str] = {
    **{f.name: _DATA_REASON for f in dataclasses.fields(DataOptions)},
    "epochs": "is the budget ASHA schedules; use --max-epochs",
    "seed": "seeds the sampler and every trial; use --seed",
    "device": "follows the resources a trial reserves; use --gpus-per-trial",
    "threads": "follows the CPUs a trial reserves; use --cpus-per-trial",
    "gpu_memory_fraction": "follows the GPU share a trial reserves; use --gpus-per-trial",
}


def envelope(entry: Conditional) -> Param | None:
    """The smallest single range holding every case of a conditional entry (log if all are), with
    its unit and reason; None when its cases are not numeric ranges of one kind."""
    cases = [case for _, case in entry.cases if case is not None]
    kinds = {type(case) for case in cases}
    if len(kinds) != 1 or kinds & {Choice}:
        return None
    return kinds.pop()(min(c.low for c in cases), max(c.high for c in cases), log=all(c.log for c in cases),
                       unit=entry.unit, reason=entry.reason, role=entry.role)


def load_space_file(path: str) -> dict[str, Any]:
    return read_yaml_mapping(path, f"--space {path!r}", "map config keys to ranges")


def apply_overrides(space: SearchSpace, overrides: dict[str, Any], config_class) -> SearchSpace:
    """A new space: `space` with each YAML entry applied; checks every rule first."""
    valid = field_names(config_class)
    result = dict(space)
    for key, entry in overrides.items():
        if key not in valid:
            raise ConfigError(f"--space: unknown key {key!r}; valid keys: {', '.join(sorted(valid))}")
        if key in NOT_SEARCHABLE and entry is not None:
            raise ConfigError(f"--space: {key} cannot be searched: it {NOT_SEARCHABLE[key]}")
        if entry is None:
            result.pop(key, None)
            continue
        if not isinstance(entry, dict):
            raise ConfigError(f"--space: {key} must be a mapping such as {{low: 0.1, high: 1.0}} or "
                              f"{{choices: [a, b]}} (or null to drop it), got {entry!r}")
        if "when" in entry or "cases" in entry:
            result[key] = _conditional(key, space.get(key), entry, config_class)
            continue
        bad = [k for k in entry if k not in ENTRY_KEYS]
        if bad:
            raise ConfigError(f"--space: {key} has unknown field {bad[0]!r}; valid fields: {', '.join(ENTRY_KEYS)}")
        result[key] = _merge(key, space.get(key), entry, config_class)
    return result


CONDITIONAL_KEYS = ("when", "cases", "unit", "reason", "role")


def _conditional(key: str, old, entry: dict, config_class) -> Conditional:
    """`{when: PARENT, cases: {OPTION: {low, high, ...} | {choices: [...]} | null}}`: a range per option
    of PARENT (null: not sampled under that option). Each case is checked as a plain new entry: it
    inherits nothing (give `log: true` where wanted)."""
    bad = [k for k in entry if k not in CONDITIONAL_KEYS]
    if bad:
        raise ConfigError(f"--space: {key} has unknown field {bad[0]!r}; a conditional entry takes: "
                          f"{', '.join(CONDITIONAL_KEYS)}")
    parent, cases = entry.get("when"), entry.get("cases")
    if parent == key or parent not in field_names(config_class):
        raise ConfigError(f"--space: {key}.when must name another config key (the choice it depends on), "
                          f"got {parent!r}")
    if not isinstance(cases, dict) or not cases:
        raise ConfigError(f"--space: {key}.cases must map each option of {parent} to a range, choices or null, "
                          f"got {cases!r}")
    settled = []
    for option, case in cases.items():
        value = getattr(build_config(config_class, {parent: option}), parent)  # as the config holds it
        if case is not None and not isinstance(case, dict):
            raise ConfigError(f"--space: {key}.cases.{option} must be a mapping or null, got {case!r}")
        wrong = [k for k in (case or {}) if k not in ENTRY_KEYS]
        if wrong:
            raise ConfigError(f"--space: {key}.cases.{option} has unknown field {wrong[0]!r}; valid fields: "
                              f"{', '.join(ENTRY_KEYS)}")
        settled.append((value, None if case is None else _merge(key, None, case, config_class)))
    if not distinct([option for option, _ in settled]):
        raise ConfigError(f"--space: {key}.cases must name distinct options of {parent}, got {list(cases)!r} "
                          f"(as {parent} values: {[option for option, _ in settled]!r})")
    common = {f: entry[f] for f in ("unit", "reason", "role") if f in entry}
    unit = common.pop("unit", getattr(old, "unit", "") or "")
    reason = common.pop("reason", getattr(old, "reason", "") or "from --space")
    return Conditional(parent, tuple(settled), unit=unit, reason=reason, **common)


def _merge(key: str, old: Param | Conditional | None, entry: dict, config_class) -> Param:
    if isinstance(old, Conditional):
        old = envelope(old)  # one range for every option replaces the range per option
    annotation, _ = unwrap_optional(typing.get_type_hints(config_class)[key])
    common = {f: entry[f] for f in ("unit", "reason", "role") if f in entry}
    as_range = any(f in entry for f in ("low", "high"))
    if "choices" in entry or (isinstance(old, Choice) and not as_range):
        choices = entry.get("choices", list(old.options) if isinstance(old, Choice) else None)
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"--space: {key}.choices must be a non-empty list, got {choices!r}")
        if any(f in entry for f in ("low", "high", "log")):
            raise ConfigError(f"--space: {key} mixes choices with low/high/log; give one or the other")
        plain = (str, int, float, bool, type(None))
        if any(not isinstance(c, plain) for c in choices) or len(set(map(repr, choices))) < len(choices):
            raise ConfigError(f"--space: {key}.choices must be distinct plain values (text, numbers, true/false), "
                              f"got {choices!r}")
        # each choice as the config will hold it (names a bad choice and the valid ones)
        given, choices = choices, [getattr(build_config(config_class, {key: c}), key) for c in choices]
        if not distinct(choices):
            raise ConfigError(f"--space: {key}.choices must be distinct, got {given!r} (as {key} values: {choices!r})")
        if any(isinstance(c, tuple) for c in choices):
            raise ConfigError(f"--space: {key} is a list setting and cannot be searched; fix it with --set")
        base = old if isinstance(old, Choice) else Choice(tuple(choices), unit="", reason="from --space")
        return dataclasses.replace(base, options=tuple(choices), **common)
    if annotation not in (int, float):
        raise ConfigError(f"--space: {key} is a {getattr(annotation, '__name__', annotation)} setting; "
                          "give it as {choices: [...]}")
    fields = {}
    for name in ("low", "high"):
        value = entry.get(name, getattr(old, name, None))
        if value is None:
            raise ConfigError(f"--space: {key} needs {name}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"--space: {key}.{name} must be a finite number, got {value!r}")
        if annotation is int and not float(value).is_integer():
            raise ConfigError(f"--space: {key}.{name} must be an integer, got {value!r}")
        fields[name] = annotation(value)
    log = entry.get("log", getattr(old, "log", False))
    if not isinstance(log, bool):
        raise ConfigError(f"--space: {key}.log must be true or false, got {log!r}")
    if fields["low"] >= fields["high"]:
        raise ConfigError(f"--space: {key} needs low < high, got low={fields['low']}, high={fields['high']}")
    if log and fields["low"] <= 0:
        raise ConfigError(f"--space: {key} is on a log scale and needs low > 0, got low={fields['low']}")
    for name in ("low", "high"):
        build_config(config_class, {key: fields[name]})  # the range must lie inside what the config allows
    cls = IntRange if annotation is int else FloatRange
    base = old if isinstance(old, cls) else cls(fields["low"], fields["high"], log, unit="", reason="from --space")
    return dataclasses.replace(base, low=fields["low"], high=fields["high"], log=log, **common)
