"""Errors that reach the user as one line and exit code 2 (bad input at the edges)."""


class TunelabError(ValueError):
    """A user-facing error: the message names the bad value and what is allowed."""


class ConfigError(TunelabError):
    """An unknown config key, a value of the wrong type, or a value out of range."""


class DataError(TunelabError):
    """A dataset that is missing, corrupted, or unusable (e.g. one class)."""


def choices_text(choices) -> str:
    return ", ".join(str(c) for c in choices)


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not valid; choose from: {choices_text(choices)}")


def check_range(name: str, value, low=None, high=None, *, low_open=False, high_open=False,
                high_name: str | None = None) -> None:
    """Raise unless low <(=) value <(=) high; the message states the interval. `high_name` names the
    key a bound comes from (warmup_epochs <= epochs), for the message and the config reference."""
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        hi = f"{high_name}={hi}" if high_name else hi
        raise ConfigError(f"{name}={value!r} is out of range; allowed: {left}{lo}, {hi}{right}")
