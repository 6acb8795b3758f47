"""Search-space entries as plain data: a range or a set of choices, with its unit and a reason.

Roles follow the Google tuning playbook: `scientific` hyperparameters are the ones a comparison
is about, `nuisance` ones must be tuned so the comparison is fair. Entries are checked when
built, so a space that loads is a space that can be sampled.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from trainables.errors import ConfigError

ROLES = ("scientific", "nuisance")


@dataclass(frozen=True)
class _Range:
    low: float
    high: float
    log: bool = False
    unit: str = ""
    reason: str = ""
    role: str = "nuisance"

    def __post_init__(self):
        _check_range(self)


@dataclass(frozen=True)
class FloatRange(_Range):
    """A real-valued range, sampled uniformly (or log-uniformly)."""


@dataclass(frozen=True)
class IntRange(_Range):
    """An integer range, both ends included."""


@dataclass(frozen=True)
class Choice:
    options: tuple
    unit: str = ""
    reason: str = ""
    role: str = "nuisance"

    def __post_init__(self):
        if not self.options:
            raise ConfigError("a choice needs at least one option")
        if self.role not in ROLES:
            raise ConfigError(f"role={self.role!r} is not valid; choose from: {', '.join(ROLES)}")


Param = Union[FloatRange, IntRange, Choice]


@dataclass(frozen=True)
class Conditional:
    """An entry that depends on another entry's choice, sampled define-by-run (Optuna's native form).

    `cases` pairs each option of the `parent` Choice with the range searched under it, or None
    where the key does not apply there: then it is not sampled, the config's value stands, and
    neither importance nor the edge-of-range flag sees it. Example: Adam diverges at learning
    rates where SGD is fine, so `lr` gets a range per optimizer; momentum exists for SGD only.
    """

    parent: str
    cases: tuple[tuple[Any, Param | None], ...]
    unit: str = ""
    reason: str = ""
    role: str = "nuisance"

    def __post_init__(self):
        options = [option for option, _ in self.cases]
        if not options or len(set(map(repr, options))) < len(options):
            raise ConfigError(f"a conditional entry needs distinct options of {self.parent!r}, got {options!r}")
        if any(case is not None and not isinstance(case, (FloatRange, IntRange, Choice)) for _, case in self.cases):
            raise ConfigError("a conditional entry's cases are FloatRange, IntRange, Choice or None")
        if self.role not in ROLES:
            raise ConfigError(f"role={self.role!r} is not valid; choose from: {', '.join(ROLES)}")

    def case(self, option: Any) -> Param | None:
        for known, case in self.cases:
            if known == option and type(known) is type(option):
                return case
        raise ConfigError(f"{self.parent}={option!r} has no case in a conditional entry; "
                          f"its cases are: {', '.join(repr(o) for o, _ in self.cases)}")


Entry = Union[FloatRange, IntRange, Choice, Conditional]
SearchSpace = dict[str, Entry]


def settle_conditions(space: SearchSpace, values: dict[str, Any]) -> SearchSpace:
    """The space with every Conditional whose parent is not searched replaced by its case for the
    parent's value in `values` (the fixed or default config), or dropped where it does not apply.
    A Conditional whose parent is searched must have a case for each of the parent's options."""
    settled: SearchSpace = {}
    for name, entry in space.items():
        if not isinstance(entry, Conditional):
            settled[name] = entry
            continue
        parent = space.get(entry.parent)
        if isinstance(parent, Choice):
            for option in parent.options:
                try:
                    entry.case(option)
                except ConfigError:
                    raise ConfigError(f"search space: {name} has a range per {entry.parent} and none for "
                                      f"{entry.parent}={option!r}; give {name} one range for every {entry.parent} "
                                      f"in --space (e.g. {name}: {{low: ..., high: ...}}) or drop that option") from None
            settled[name] = entry
        elif (case := entry.case(values[entry.parent])) is not None:
            settled[name] = case
    return settled


def conditionals(space: SearchSpace) -> dict[str, Conditional]:
    return {name: e for name, e in space.items() if isinstance(e, Conditional)}


def _param_row(p: Param) -> dict[str, Any]:
    if isinstance(p, Choice):
        return {"type": "Choice", "options": list(p.options)}
    return {"type": type(p).__name__, "low": p.low, "high": p.high, "log": p.log}


def _check_range(p) -> None:
    if not p.low < p.high:
        raise ConfigError(f"`low < high` must hold, but got (low={p.low}, high={p.high})")
    if p.log and p.low <= 0:
        raise ConfigError(f"a log range needs low > 0, but got low={p.low}")
    if p.role not in ROLES:
        raise ConfigError(f"role={p.role!r} is not valid; choose from: {', '.join(ROLES)}")


def _param_from_row(row: dict[str, Any]) -> Param:
    if row["type"] == "Choice":
        return Choice(tuple(row["options"]), unit=row.get("unit", ""), reason=row.get("reason", ""),
                      role=row.get("role", "nuisance"))
    cls = {"FloatRange": FloatRange, "IntRange": IntRange}[row["type"]]
    return cls(row["low"], row["high"], log=row["log"], unit=row.get("unit", ""), reason=row.get("reason", ""),
               role=row.get("role", "nuisance"))


def space_from_description(rows: list[dict[str, Any]]) -> SearchSpace:
    """The inverse of `describe`: the space an experiment record says was searched (`resume` rebuilds
    the search from it, not from a --space file that may have changed since)."""
    space: SearchSpace = {}
    for row in rows:
        if row["type"] != "Conditional":
            space[row["name"]] = _param_from_row(row)
            continue
        cases = tuple((case["when"], None if case["type"] == "not sampled" else _param_from_row(case))
                      for case in row["cases"])
        space[row["name"]] = Conditional(row["parent"], cases, unit=row.get("unit", ""),
                                         reason=row.get("reason", ""), role=row.get("role", "nuisance"))
    return space


def describe(space: SearchSpace) -> list[dict[str, Any]]:
    """One plain row per entry (for tunelab.json and the README)."""
    rows = []
    for name, p in space.items():
        row: dict[str, Any] = {"name": name, "type": type(p).__name__, "unit": p.unit, "role": p.role,
                               "reason": p.reason}
        if isinstance(p, Conditional):
            row["parent"] = p.parent
            row["cases"] = [{"when": option, **(_param_row(case) if case is not None else {"type": "not sampled"})}
                            for option, case in p.cases]
        else:
            row.update({k: v for k, v in _param_row(p).items() if k != "type"})
        rows.append(row)
    return rows
