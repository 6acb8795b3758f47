"""`--search random`: Ray Tune's own random search (BasicVariantGenerator) over the space as Ray Tune
domains; conditional entries are drawn from the case of their parent's sampled value."""
from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from tunelab.core.record import TUNELAB_FILE
from tunelab.search_spaces.base import Choice, Conditional, IntRange, SearchSpace, space_from_description
from tunelab.searchers.common import build_scheduler
from tunelab.trainables.config import build_config, to_dict
from tunelab.core.errors import ConfigError
from tunelab.tune_options import TuneOptions, fixed_values


class RandomSearch:
    name = "random"
    keeps_an_optuna_study = False

    def describe(self, opts: TuneOptions) -> str:
        return "random"

    def build(self, opts: TuneOptions, space: SearchSpace, study_name: str):
        from ray.tune.search.basic_variant import BasicVariantGenerator

        from tunelab.trainables import METHOD_CLASSES

        # Tune ignores TuneConfig.max_concurrent_trials for a generator instance; it takes it here.
        defaults = to_dict(build_config(METHOD_CLASSES[opts.method].config_class, fixed_values(opts)))
        return (BasicVariantGenerator(random_state=opts.seed, max_concurrent=opts.max_concurrent),
                tune_domains(space, defaults, opts.seed), build_scheduler(opts))

    def restored_param_space(self, opts: TuneOptions, record: dict[str, Any], path: str) -> dict[str, Any] | None:
        """The param_space a random search was started with, for `Tuner.restore`.

        Ray saves the space with every `tune.sample_from` function (the conditional entries) replaced by a
        placeholder, and resolves placeholders only from a param_space given to this run: without one,
        trials created after the restore keep `('__fn_ph', ...)` as their config values. The space is
        rebuilt from the record (what was searched), not from a --space file that may have changed.
        """
        from tunelab.trainables import METHOD_CLASSES

        fixed = dict(record["fixed"])
        defaults = to_dict(build_config(METHOD_CLASSES[opts.method].config_class, fixed))
        try:
            space = space_from_description(record["search_space"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}/{TUNELAB_FILE}: field 'search_space' does not describe a search space "
                              f"({type(exc).__name__}: {exc}); a random search resumes from it") from None
        return {**fixed, **tune_domains(space, defaults, opts.seed)}

    def rebuild(self, search_alg, trials) -> bool:
        return False  # nothing to rebuild: Ray's generator keeps no searcher snapshot

    def add_to_snapshot(self, search_alg, snapshot, trials) -> bool:
        return False  # Ray's random search remakes such a trial itself (same id, config and folder)


SEARCHER = RandomSearch()


def tune_domains(space: SearchSpace, defaults: dict[str, Any], seed: int) -> dict[str, Any]:
    """The space as Ray Tune domains, for random search. A conditional entry is drawn (with its own
    seeded generator) from the case of its parent's sampled value; where it does not apply, the
    config's value stands."""
    from ray import tune

    out = {}
    for name, p in space.items():
        if isinstance(p, Conditional):
            plain = sorted(n for n, e in space.items() if not isinstance(e, Conditional))
            out[name] = tune.sample_from(ConditionalDraw(name, p, defaults[name], seed, plain,
                                                         conditional_ancestors(space, p)))
        elif isinstance(p, Choice):
            out[name] = tune.choice(list(p.options))
        elif isinstance(p, IntRange):
            out[name] = tune.lograndint(p.low, p.high + 1) if p.log else tune.randint(p.low, p.high + 1)
        else:
            out[name] = tune.loguniform(p.low, p.high) if p.log else tune.uniform(p.low, p.high)
    return out


class ConditionalDraw:
    """tune.sample_from's function for one conditional entry (a class, so Ray can pickle it).

    Ray copies the whole space for every trial, so a generator kept here would restart with each
    copy; the draw is seeded instead by the search seed, the entry's name and the trial's values
    of the plain entries (drawn by Ray's seeded generator): reproducible, and different per trial.
    """

    def __init__(self, name: str, entry: Conditional, default: Any, seed: int, plain: list[str],
                 ancestors: tuple[Conditional, ...] = ()):
        self.name, self.entry, self.default, self.seed, self.plain = name, entry, default, seed, plain
        self.ancestors = ancestors  # the conditional entries above it, the topmost first

    def __call__(self, config) -> Any:
        # A chained entry is drawn only where every conditional entry above it was drawn: a parent
        # that was not holds its default, which is no draw (and may have no case here at all).
        for ancestor in getattr(self, "ancestors", ()):
            if ancestor.case(_drawn(config, ancestor.parent)) is None:
                return self.default
        case = self.entry.case(_drawn(config, self.entry.parent))
        if case is None:
            return self.default
        drawn = repr([_drawn(config, name) for name in self.plain]).encode()
        return draw(case, np.random.default_rng([self.seed, zlib.crc32(self.name.encode()), zlib.crc32(drawn)]))


def conditional_ancestors(space: SearchSpace, entry: Conditional) -> tuple[Conditional, ...]:
    """The conditional entries a chained entry depends on, the topmost first (none for a plain parent)."""
    chain: list[Conditional] = []
    while isinstance(parent := space.get(entry.parent), Conditional):
        chain.insert(0, parent)
        entry = parent
    return tuple(chain)


def _drawn(config, key: str) -> Any:
    """A value of the trial's config as Ray resolves it: attribute access on Ray's guard raises
    (and Ray retries later) while the value is not drawn yet; item access would see the domain."""
    try:
        return getattr(config, key)
    except AttributeError:
        return config[key]


def draw(p, rng: np.random.Generator) -> Any:
    if isinstance(p, Choice):
        return p.options[int(rng.integers(len(p.options)))]
    if isinstance(p, IntRange):
        if p.log:
            return int(min(p.high, math.floor(math.exp(rng.uniform(math.log(p.low), math.log(p.high + 1))))))
        return int(rng.integers(p.low, p.high + 1))
    if p.log:
        return float(math.exp(rng.uniform(math.log(p.low), math.log(p.high))))
    return float(rng.uniform(p.low, p.high))
