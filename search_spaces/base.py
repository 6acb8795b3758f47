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
SearchSpace = dict[str, Param]


def _check_range(p) -> None:
    if not p.low < p.high:
        raise ConfigError(f"`low < high` must hold, but got (low={p.low}, high={p.high})")
    if p.log and p.low <= 0:
        raise ConfigError(f"a log range needs low > 0, but got low={p.low}")
    if p.role not in ROLES:
        raise ConfigError(f"role={p.role!r} is not valid; choose from: {', '.join(ROLES)}")


def describe(space: SearchSpace) -> list[dict[str, Any]]:
    """One plain row per entry (for tunelab.json and the README)."""
    rows = []
    for name, p in space.items():
        row: dict[str, Any] = {"name": name, "type": type(p).__name__, "unit": p.unit, "role": p.role,
                               "reason": p.reason}
        if isinstance(p, Choice):
            row["options"] = list(p.options)
        else:
            row.update(low=p.low, high=p.high, log=p.log)
        rows.append(row)
    return rows
