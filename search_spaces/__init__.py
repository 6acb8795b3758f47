"""Per-method search spaces as data (ranges with units and a one-line reason each)."""
from __future__ import annotations

from search_spaces import arcface, classifier, finetune
from search_spaces.base import Choice, FloatRange, IntRange, Param, SearchSpace, describe

SPACES: dict[str, SearchSpace] = {
    "classifier": classifier.SPACE,
    "arcface": arcface.SPACE,
    "finetune": finetune.FINETUNE,
    "randreg": finetune.RANDREG,
    "adarand": finetune.ADARAND,
}

__all__ = ["SPACES", "Choice", "FloatRange", "IntRange", "Param", "SearchSpace", "describe"]
