"""Per-method search spaces as data (ranges with units and a one-line reason each)."""
from __future__ import annotations

from tunelab.search_spaces import arcface, classifier, finetune
from tunelab.search_spaces.base import Choice, Conditional, FloatRange, IntRange, Param, SearchSpace, describe

SPACES: dict[str, SearchSpace] = {
    "classifier": classifier.SPACE,
    "arcface": arcface.SPACE,
    "finetune": finetune.FINETUNE,
    "randreg": finetune.RANDREG,
    "adarand": finetune.ADARAND,
}


def space_for(method: str) -> SearchSpace:
    """The search space of a registered method: its own entry in SPACES, else that of the nearest
    method it extends (a new regulariser subclassing RandReg searches RandReg's space until it is
    given one of its own)."""
    if method in SPACES:  # every built-in method: no need to import its training code
        return SPACES[method]
    from tunelab.trainables import METHOD_CLASSES

    for cls in METHOD_CLASSES[method].__mro__:
        name = cls.__dict__.get("name")
        if name in SPACES:
            return SPACES[name]
    raise KeyError(f"method {method!r} has no search space and extends no method that has one")

__all__ = ["SPACES", "space_for", "Choice", "Conditional", "FloatRange", "IntRange", "Param", "SearchSpace", "describe"]
