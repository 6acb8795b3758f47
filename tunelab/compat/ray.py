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


def trial_entry_as_ended(entry: tuple[str, str], rows: list[dict], final_checkpoint: str | None) -> tuple[str, str]:
    """One trial's entry of Ray's experiment state (trial JSON, run metadata JSON), rewritten as
    Ray writes it once the driver has seen the trial end: the result rows it missed added in
    order (its last result, its metric analysis), its checkpoint folder named `final_checkpoint` as
    its latest, TERMINATED.

    Ray's own codec reads and writes the entry (`Trial.from_json_state`, `get_json_state`); the
    checkpoint bookkeeping has no public setter. The final checkpoint is added without Ray's
    eviction, which would delete older checkpoint folders: a trial that runs no more evicts nothing.
    """
    from ray.train._internal.session import _TrainingResult
    from ray.tune import Checkpoint
    from ray.tune.experiment import Trial

    trial = Trial.from_json_state(entry[0], stub=True)  # stub: the trainable need not be registered here
    trial.restore_run_metadata(entry[1])
    seen = int((trial.last_result or {}).get("training_iteration", 0))
    by_iteration = {int(row.get("training_iteration", 0)): row for row in rows}  # a re-run epoch: its last row
    for iteration in sorted(i for i in by_iteration if i > seen):
        trial.update_last_result(dict(by_iteration[iteration]))
    if final_checkpoint is not None:
        manager = trial.run_metadata.checkpoint_manager
        checkpoint = Checkpoint(f"{trial.storage.trial_fs_path}/{final_checkpoint}",
                                filesystem=trial.storage.storage_filesystem)
        result = _TrainingResult(checkpoint=checkpoint, metrics=dict(trial.last_result))
        manager._checkpoint_results.append(result)
        manager._latest_checkpoint_result = result
    trial.set_status(Trial.TERMINATED)
    trial.stub = False  # as the driver wrote it; Tuner.restore resolves the trainable from it
    trial.invalidate_json_state()
    trial.run_metadata.invalidate_cache()
    return trial.get_json_state()
