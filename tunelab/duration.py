"""Durations as the command line writes them (90m, 2h, 1h30m, 45s): parsed without importing Ray."""
from __future__ import annotations

import math
import re

from tunelab.core.errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_TEXT = 64  # '1h30m' needs 5; no real duration comes near
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str, flag: str = "--time-budget") -> float:
    """'90m', '2h', '1h30m', '45s', '1.5h' or plain seconds -> seconds (> 0)."""
    raw = str(text).strip().lower()
    if len(raw) > MAX_DURATION_TEXT:  # the unit search below is quadratic in a long run of digits
        raise ConfigError(f"{flag} {str(text)[:40]!r}... is not a duration ({len(raw)} characters); "
                          "write e.g. 90m, 2h, 1h30m or 45s")
    try:
        seconds = float(raw)
    except ValueError:
        parts = _PART.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            raise ConfigError(f"{flag} {text!r} is not a duration; write e.g. 90m, 2h, 1h30m or 45s") from None
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{flag} {text!r} is out of range; allowed: a duration > 0 (e.g. 90m, 2h)")
    return seconds


def describe(seconds: float) -> str:
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if v) or "0s"
