import dataclasses
import itertools

import pytest

from tunelab.search_spaces import SPACES, Choice, Conditional, FloatRange, IntRange
from tunelab.search_spaces.base import settle_conditions
from tunelab.trainables import METHOD_CLASSES
from tunelab.trainables.config import build_config, field_names
from tunelab.core.errors import ConfigError


@pytest.mark.parametrize("method", sorted(SPACES))
def test_every_entry_is_a_config_key_with_unit_and_reason(method):
    keys = field_names(METHOD_CLASSES[method].config_class)
    for name, param in SPACES[method].items():
        assert name in keys, f"{method}: {name} is not a config key"
        assert param.unit and param.reason, f"{method}: {name} lacks a unit or a reason"


def _corner(p, corner):
    if isinstance(p, Choice):
        return p.options[0] if corner == "low" else p.options[-1]
    return getattr(p, corner)


@pytest.mark.parametrize("method", sorted(SPACES))
def test_space_corners_build_valid_configs(method):
    """Every corner of every sub-space: under each option of a conditional entry's parent, the
    corners of that option's range."""
    config_class = METHOD_CLASSES[method].config_class
    space = SPACES[method]
    parents = {e.parent for e in space.values() if isinstance(e, Conditional)}
    options = {parent: space[parent].options for parent in parents}
    for corner in ("low", "high"):
        for chosen in itertools.product(*options.values()):
            values = {name: _corner(p, corner) for name, p in space.items() if not isinstance(p, Conditional)}
            values.update(zip(options, chosen))
            for name, entry in space.items():
                if isinstance(entry, Conditional) and entry.case(values[entry.parent]) is not None:
                    values[name] = _corner(entry.case(values[entry.parent]), corner)
            build_config(config_class, values)  # raises if a corner is not a valid config


def test_conditional_entries_cover_their_parent_and_are_refused_when_malformed():
    lr = SPACES["classifier"]["lr"]
    assert {o for o, _ in lr.cases} == set(SPACES["classifier"]["optimizer"].options)
    assert lr.case("adam").high < lr.case("sgd").high  # Adam diverges where SGD is fine
    assert SPACES["classifier"]["momentum"].case("adam") is None  # Adam has no momentum to search
    with pytest.raises(ConfigError, match="optimizer='nadam' has no case"):
        lr.case("nadam")
    with pytest.raises(ConfigError, match="distinct options"):
        Conditional("optimizer", (("sgd", FloatRange(0.1, 1.0)), ("sgd", None)))
    with pytest.raises(ConfigError, match="distinct options"):
        Conditional("optimizer", ())


def test_settling_a_conditional_entry_on_a_fixed_parent_and_refusing_an_uncovered_option():
    space = dict(SPACES["classifier"])
    fixed_sgd = settle_conditions({k: v for k, v in space.items() if k != "optimizer"},
                                  {"optimizer": "sgd"})
    assert fixed_sgd["lr"] == SPACES["classifier"]["lr"].case("sgd")
    fixed_adam = settle_conditions({k: v for k, v in space.items() if k != "optimizer"}, {"optimizer": "adam"})
    assert "momentum" not in fixed_adam  # not searched: the config's value stands
    space["optimizer"] = Choice(("sgd", "adagrad"))
    with pytest.raises(ConfigError, match="lr has a range per optimizer and none for optimizer='adagrad'; give lr one range"):
        settle_conditions(space, {})


@pytest.mark.parametrize("make,message", [
    (lambda: FloatRange(1.0, 1.0), "`low < high` must hold"),
    (lambda: FloatRange(0.0, 1.0, log=True), "log range needs low > 0"),
    (lambda: IntRange(3, 2), "`low < high` must hold"),
    (lambda: Choice(()), "at least one option"),
    (lambda: FloatRange(0.1, 1.0, role="main"), "role='main' is not valid"),
])
def test_bad_entries_are_refused(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


@pytest.mark.parametrize("method", list(METHOD_CLASSES))
def test_every_registered_method_has_a_search_space(method):
    from tunelab.search_spaces import space_for

    space = space_for(method)
    assert space and set(space) <= {f.name for f in dataclasses.fields(METHOD_CLASSES[method].config_class)}


# ----------------------------------------------------------------------------- issue 31, 6: chains, cycles, duplicates

def _chain() -> dict:
    """schedule exists for sgd only; momentum depends on schedule (a chain of two conditionals)."""
    return {"momentum": Conditional("schedule", (("cosine", FloatRange(0.8, 0.99)), ("step", None))),
            "schedule": Conditional("optimizer", (("sgd", Choice(("cosine", "step"))), ("adam", None))),
            "optimizer": Choice(("sgd", "adam")),
            "lr": FloatRange(1e-3, 1e-1, log=True)}


def test_chained_conditionals_are_kept_while_searched_and_dropped_with_a_parent_that_is_not():
    from tunelab.search_spaces.base import conditional_order, is_sampled

    space = _chain()
    assert settle_conditions(space, {}) == space
    assert conditional_order(space) == ["schedule", "momentum"]  # a parent before its child
    under_sgd = settle_conditions({k: v for k, v in space.items() if k != "optimizer"}, {"optimizer": "sgd"})
    assert under_sgd["schedule"] == Choice(("cosine", "step")) and under_sgd["momentum"] == space["momentum"]
    under_adam = settle_conditions({k: v for k, v in space.items() if k != "optimizer"}, {"optimizer": "adam"})
    assert set(under_adam) == {"lr"}  # schedule is not searched under adam, so neither is momentum
    assert is_sampled(space, "momentum", {"optimizer": "sgd", "schedule": "cosine"})
    assert not is_sampled(space, "momentum", {"optimizer": "sgd", "schedule": "step"})
    assert not is_sampled(space, "momentum", {"optimizer": "adam", "schedule": "cosine"})  # the default


def test_a_child_needs_a_case_for_every_option_its_conditional_parent_can_take():
    space = _chain()
    space["momentum"] = Conditional("schedule", (("cosine", FloatRange(0.8, 0.99)),))
    with pytest.raises(ConfigError, match="momentum has a range per schedule and none for schedule='step'"):
        settle_conditions(space, {})


def test_a_conditional_entry_on_a_range_is_refused():
    space = _chain()
    space["momentum"] = Conditional("lr", ((0.01, FloatRange(0.8, 0.99)),))
    with pytest.raises(ConfigError, match="momentum depends on lr, which is searched as a range, not a choice"):
        settle_conditions(space, {})


@pytest.mark.parametrize("cycle", [("a", "b"), ("a", "b", "c")])
def test_a_cycle_of_conditional_entries_is_refused_naming_it(cycle):
    space = {"x": Choice((1, 2))}
    for name, parent in zip(cycle, cycle[1:] + cycle[:1]):
        space[name] = Conditional(parent, (("u", Choice(("u", "v"))), ("v", None)))
    shown = " -> ".join(cycle + cycle[:1])
    with pytest.raises(ConfigError, match=f"search space: {shown} is a cycle of conditional entries"):
        settle_conditions(space, {})


@pytest.mark.parametrize("options", [("sgd", "sgd"), (32, 32.0), (1, True)])
def test_choices_must_be_distinct(options):
    with pytest.raises(ConfigError, match="options must be distinct"):
        Choice(options)
    with pytest.raises(ConfigError, match="distinct options"):
        Conditional("x", tuple((o, None) for o in options))


@pytest.mark.parametrize("space", [*SPACES.values(), _chain()], ids=[*SPACES, "chain"])
def test_a_described_space_is_rebuilt_exactly_from_its_record(space):
    import json

    from tunelab.search_spaces.base import describe, space_from_description

    rows = json.loads(json.dumps(describe(space)))  # as tunelab.json holds them
    rebuilt = space_from_description(rows)
    assert describe(rebuilt) == rows  # every range, choice and case (a case's own unit is not recorded)
    assert {name: type(entry) for name, entry in rebuilt.items()} == {name: type(e) for name, e in space.items()}
