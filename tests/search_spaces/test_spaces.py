import dataclasses
import pytest

from search_spaces import SPACES, Choice, FloatRange, IntRange
from trainables import METHOD_CLASSES
from trainables.config import build_config, field_names
from trainables.errors import ConfigError


@pytest.mark.parametrize("method", sorted(SPACES))
def test_every_entry_is_a_config_key_with_unit_and_reason(method):
    keys = field_names(METHOD_CLASSES[method].config_class)
    for name, param in SPACES[method].items():
        assert name in keys, f"{method}: {name} is not a config key"
        assert param.unit and param.reason, f"{method}: {name} lacks a unit or a reason"


@pytest.mark.parametrize("method", sorted(SPACES))
def test_space_corners_build_valid_configs(method):
    config_class = METHOD_CLASSES[method].config_class
    for corner in ("low", "high"):
        values = {}
        for name, p in SPACES[method].items():
            if isinstance(p, Choice):
                values[name] = p.options[0] if corner == "low" else p.options[-1]
            else:
                values[name] = getattr(p, corner)
        build_config(config_class, values)  # raises if a corner is not a valid config


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
