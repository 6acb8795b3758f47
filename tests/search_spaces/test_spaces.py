import dataclasses
import itertools

import pytest

from search_spaces import SPACES, Choice, Conditional, FloatRange, IntRange
from search_spaces.base import settle_conditions
from trainables import METHOD_CLASSES
from trainables.config import build_config, field_names
from trainables.errors import ConfigError


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
    from search_spaces import space_for

    space = space_for(method)
    assert space and set(space) <= {f.name for f in dataclasses.fields(METHOD_CLASSES[method].config_class)}
