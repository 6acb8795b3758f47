"""Ray Tune internals tunelab relies on, each with the reason no public API serves."""
from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def restored_search_state_follows_the_folder() -> Iterator[None]:
    """While a restored Tuner runs: trials created after the restore go to the folder it was
    restored from.

    Ray Tune saves its search generator's state with the Experiment it was made for, whose storage
    names the folder the experiment was first written to, and `Tuner.restore` brings it back
    unchanged. Restored from a copy or a moved folder, new trials would be written to the original
    (which may be somebody else's) and their results lost to this one. After the controller has
    restored that state, it is pointed at the controller's own storage (the restored folder).
    """
    from ray.tune.execution.tune_controller import TuneController

    original = TuneController.resume

    def resume(self, *args, **kwargs):
        original(self, *args, **kwargs)
        _point_search_at(self._search_alg, self._storage)

    TuneController.resume = resume
    try:
        yield
    finally:
        TuneController.resume = original


def _point_search_at(search_alg, storage) -> None:
    """Give a restored search generator's saved experiment spec(s) the restored folder's storage."""
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.search_generator import SearchGenerator

    if isinstance(search_alg, SearchGenerator):
        search_alg._experiment.storage = storage
        search_alg._experiment.spec["storage"] = storage
    elif isinstance(search_alg, BasicVariantGenerator):
        for iterator in search_alg._iterators:
            iterator.unresolved_spec["storage"] = storage
    else:
        raise TypeError(f"a restored search of an unknown kind: {type(search_alg).__name__}")
