"""Search-space entries as plain data: a range or a set of choices, with its unit and a reason.

Roles follow the Google tuning playbook: `scientific` hyperparameters are the ones a comparison
is about, `nuisance` ones must be tuned so the comparison is fair. Entries are checked when
built, so a space that loads is a space that can be sampled.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from tunelab.core.errors import ConfigError

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
        if not distinct(self.options):
            raise ConfigError(f"a choice's options must be distinct, got {list(self.options)!r}")
        if self.role not in ROLES:
            raise ConfigError(f"role={self.role!r} is not valid; choose from: {', '.join(ROLES)}")


Param = Union[FloatRange, IntRange, Choice]


def distinct(values) -> bool:
    """No two values equal. 1, 1.0 and True count as equal: Optuna finds a sampled choice by
    equality, so it could not tell them apart."""
    seen: list[Any] = []
    for value in values:
        if any(value == known for known in seen):
            return False
        seen.append(value)
    return True


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
        if not options or not distinct(options):
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
    A Conditional whose parent is searched must have a case for each option the parent can take.

    Conditionals may chain (momentum `when: schedule`, schedule `when: optimizer`): a child is
    sampled only in trials where its parent was sampled, under the case the parent's value picks.
    So a child whose parent is dropped here is dropped too; cycles are refused."""
    settled: SearchSpace = {name: e for name, e in space.items() if not isinstance(e, Conditional)}
    for name in conditional_order(space):
        entry = space[name]
        parent = settled.get(entry.parent)
        if parent is not None:
            for option in _parent_options(name, entry, parent):
                _check_case(name, entry, option)
            settled[name] = entry
        elif isinstance(space.get(entry.parent), Conditional):
            continue  # its parent is never sampled here: neither is it
        elif (case := entry.case(values[entry.parent])) is not None:
            settled[name] = case
    return {name: settled[name] for name in space if name in settled}


def conditional_order(space: SearchSpace) -> list[str]:
    """The conditional entries' names, each after the conditional entry it depends on (if any), so
    a sampler meets a parent before its children; a cycle of `when` entries is refused, naming it."""
    order: list[str] = []
    for name in space:
        chain = [name]
        while isinstance(space.get(chain[-1]), Conditional) and chain[-1] not in order:
            parent = space[chain[-1]].parent
            if parent in chain:
                cycle = chain[chain.index(parent):] + [parent]
                raise ConfigError(f"search space: {' -> '.join(cycle)} is a cycle of conditional entries "
                                  f"(each `when` names the next); break it by giving {cycle[0]} a plain range "
                                  "or a parent outside the cycle")
            chain.append(parent)
        order.extend(n for n in reversed(chain) if isinstance(space.get(n), Conditional) and n not in order)
    return order


def _parent_options(name: str, entry: Conditional, parent) -> list[Any]:
    """Every value a searched parent can take: a Choice's options, or those of each case of a
    conditional parent (whose cases must then be choices)."""
    if isinstance(parent, Choice):
        return list(parent.options)
    cases = [case for _, case in parent.cases if case is not None] if isinstance(parent, Conditional) else [parent]
    if not all(isinstance(case, Choice) for case in cases):
        raise ConfigError(f"search space: {name} depends on {entry.parent}, which is searched as a range, not a "
                          f"choice; a conditional entry's `when` names an entry with choices")
    options: list[Any] = []
    for case in cases:
        options.extend(o for o in case.options if not any(o == k and type(o) is type(k) for k in options))
    return options


def _check_case(name: str, entry: Conditional, option: Any) -> None:
    try:
        entry.case(option)
    except ConfigError:
        raise ConfigError(f"search space: {name} has a range per {entry.parent} and none for "
                          f"{entry.parent}={option!r}; give {name} one range for every {entry.parent} "
                          f"in --space (e.g. {name}: {{low: ..., high: ...}}) or drop that option") from None


def is_sampled(space: SearchSpace, name: str, config: dict[str, Any]) -> bool:
    """Whether a trial with this config sampled the entry: a plain entry always; a conditional one
    where its parent was sampled and the parent's value has a case for it."""
    entry = space[name]
    if not isinstance(entry, Conditional):
        return True
    if entry.parent in space and not is_sampled(space, entry.parent, config):
        return False
    return entry.case(config[entry.parent]) is not None


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
