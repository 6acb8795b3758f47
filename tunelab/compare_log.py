"""compare's progress lines on stderr, each marked as compare's (its searches print their own)."""
from __future__ import annotations

import sys

PREFIX = "[tunelab compare]"


def say(text: str) -> None:
    print(f"{PREFIX} {text}", file=sys.stderr, flush=True)
