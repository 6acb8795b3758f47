"""Moved to `tunelab.core.metrics` (the bottom layer every package imports); kept so older imports work."""
from tunelab.core.metrics import *  # noqa: F401,F403
