"""Moved to `tunelab.core.errors` (the bottom layer every package imports); kept so older imports work."""
from tunelab.core.errors import *  # noqa: F401,F403
from tunelab.core.errors import ConfigError, DataError, TunelabError, check_choice, check_range, choices_text  # noqa: F401
