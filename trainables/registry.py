"""Name -> object registries filled by decorators (models, datasets), as timm's `@register_model`."""
from __future__ import annotations

from typing import Any, Callable


def registrar(table: dict[str, Any], kind: str, listed: tuple[str, ...] = ()) -> Callable[..., Callable[[Any], Any]]:
    """A decorator factory that registers an object in `table` under one or more names;
    a name registered twice, or one missing from `listed` (tunelab.trainables.catalog, which the command
    line checks without importing the builders), is a programming error, reported with `kind`."""
    from tunelab.trainables.catalog import check_listed

    def register(*names: str):
        def wrap(obj):
            for name in names:
                check_listed(kind, name, listed)
                if name in table:
                    raise KeyError(f"{kind} {name!r} is registered twice")
                table[name] = obj
            return obj
        return wrap
    return register
