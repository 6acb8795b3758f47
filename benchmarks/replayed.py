"""A real-training search problem stored as a table of learning curves and replayed, as HPOBench's
tabular benchmarks are: training every configuration a search asks for is too slow on two cores
for 20 seeds x a dozen methods, so a random sample of the space is trained once, every epoch's loss
is stored, and a search is answered from the table.

A configuration asked for is answered with the curve of the nearest stored configuration: each
numeric entry scaled to 0..1 over its range (log-scaled where the range is), a categorical entry
and a conditional entry that applies to one configuration only each 1 apart when they differ;
squared differences summed, ties to the first stored. The replayed problem is the table itself:
its optimum is the best final loss stored, its worst the worst final loss stored, so a regret of 0
means a search found the best configuration that was trained.

Made by `peers.py --tabulate digits_arcface --configs N` (benchmarks/peers-heldout.md).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable


def _scaled(entry, value) -> float:
    low, high, value = float(entry.low), float(entry.high), float(value)
    if entry.log:
        low, high, value = math.log(low), math.log(high), math.log(max(value, 1e-300))
    return (value - low) / (high - low)


def _applied(space: dict, config: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Each entry that applies to `config`: its name -> (the plain entry it was drawn from, value)."""
    from tunelab.search_spaces.base import Conditional

    applied = {}
    for name, entry in space.items():
        if isinstance(entry, Conditional):
            entry = entry.case(config[entry.parent])
        if entry is not None and name in config:
            applied[name] = (entry, config[name])
    return applied


def distance(space: dict, a: dict[str, Any], b: dict[str, Any]) -> float:
    """How far apart two configurations of `space` are (see the module's docstring)."""
    return _distance(_applied(space, a), _applied(space, b))


def _distance(mine: dict[str, tuple[Any, Any]], theirs: dict[str, tuple[Any, Any]]) -> float:
    from tunelab.search_spaces import Choice

    total = 0.0
    for name in mine.keys() | theirs.keys():
        if name not in mine or name not in theirs:
            total += 1.0
            continue
        entry, value = mine[name]
        other = theirs[name][1]
        if isinstance(entry, Choice):
            total += 0.0 if value == other and type(value) is type(other) else 1.0
        else:
            total += (_scaled(entry, value) - _scaled(entry, other)) ** 2
    return total


class Replayed:
    """A problem (peers.Problem's interface) answered from a stored table of learning curves."""

    def __init__(self, name: str, path: Path):
        from tunelab.search_spaces import SPACES

        table = json.loads(Path(path).read_text())
        self.name, self.path, self.table = name, Path(path), table
        self.space = SPACES[table["method"]]
        self.max_steps = int(table["epochs"])
        self.configs = [row["config"] for row in table["rows"]]
        self._applied = [_applied(self.space, config) for config in self.configs]
        self.curves = [[float(loss) for loss in row["losses"]] for row in table["rows"]]
        finals = [curve[-1] for curve in self.curves]
        self.optimum, self.worst = min(finals), max(finals)

    def nearest(self, config: dict[str, Any]) -> int:
        mine = _applied(self.space, config)
        distances = [_distance(mine, stored) for stored in self._applied]
        return distances.index(min(distances))

    def run(self, config: dict[str, Any], on_step: Callable[[int, float], bool]) -> None:
        for step, loss in enumerate(self.curves[self.nearest(config)], start=1):
            if not on_step(step, loss):
                return

    def regret(self, value: float) -> float:
        return (value - self.optimum) / (self.worst - self.optimum)


class OtherTable(ValueError):
    """The file to continue holds configurations another sample drew."""


def tabulate(problem, sample: Callable[[], dict[str, Any]], configs: int, path: Path, about: dict) -> None:
    """Train `configs` configurations drawn by `sample()` on the training problem `problem` for its
    max_steps epochs each, storing each one's every loss in `path`. The file is rewritten (whole,
    by rename) after each configuration, and a rerun continues where an interrupted one stopped:
    the draws are seeded, so the first configurations are the ones already stored."""
    from tunelab.core.files import atomic_write_text

    path = Path(path)
    rows = _stored_rows(path)
    drawn = [sample() for _ in range(configs)]
    if any(row["config"] != config for row, config in zip(rows, drawn)):
        raise OtherTable(f"{path} holds other configurations than this sample draws; give it another name or "
                         "remove it")
    if len(rows) >= configs:
        print(f"{path} already holds {len(rows)} configurations: nothing to train")
    for config in drawn[len(rows):]:
        losses: list[float] = []
        problem.run(config, lambda step, loss, losses=losses: losses.append(loss) or True)
        if len(losses) != problem.max_steps:
            raise SystemExit(f"--tabulate: {config} reported {len(losses)} epochs of {problem.max_steps}")
        rows.append({"config": config, "losses": losses})
        atomic_write_text(path, json.dumps({**about, "epochs": problem.max_steps, "rows": rows}) + "\n")
        print(f"{len(rows)}/{configs}: final loss {losses[-1]:.4f}", flush=True)



def _stored_rows(path: Path) -> list:
    """The rows of a table to continue (none if there is no file), or OtherTable naming what is wrong."""
    if not path.exists() and not path.is_symlink():
        return []
    try:
        rows = json.loads(path.read_text())["rows"]
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as error:
        raise OtherTable(f"{path} cannot be read as a table of curves ({type(error).__name__}); give it another "
                         "name or remove it") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) and "config" in row for row in rows):
        raise OtherTable(f"{path} is not a table of curves (its rows are not configurations); give it another name "
                         "or remove it")
    return rows
