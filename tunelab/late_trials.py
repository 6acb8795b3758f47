"""A killed driver's last seconds, put back in step before `tunelab resume` restores the search.

Ray saves its experiment state (the trials), its search generator's state and the searcher's
snapshot together, but copies them, and each trial's result files, from a staging folder to the
storage file by file every ~10 s. A driver killed in between (SIGKILL, the OOM killer, a lost node)
leaves them out of step, and Ray's restore trusts them as they are. In the order `resume` runs them:

- result files still only in the staging folder, on this machine (`tunelab.staged_files`);
- trials Ray created after the snapshot: no state names them (`adopt_trials_created_after_the_snapshot`:
  added to the searcher and the state, ended or to continue, not replaced by new ones);
- trials the snapshot has RUNNING whose own result.json shows they ended
  (`close_trials_ended_on_disk`: recorded ended, not run again);
- the generator's concurrency slots, held for trials the state has ended or never recorded
  (`free_slots_of_ended_trials`: a restored generator waited forever for such a slot).

Each step changes the searcher's snapshot before Ray's experiment state, so a kill in between
leaves what the next resume repairs again.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from tunelab.core import metrics as M
from tunelab.core.files import atomic_write_bytes, atomic_write_text
from tunelab.core.statuses import RayStatus
from tunelab.core.storage import local_path
from tunelab.core.trial_folders import parse_trial_folder_name
from tunelab.ray_state import (SEARCHER_STATE, RayTrial, newest, ray_trials, read_results, session_of,
                               tuner_search_alg)


def ended_on_disk(trial: RayTrial, max_epochs: int) -> bool:
    """Whether an unfinished trial of Ray's snapshot had in fact ended: its result.json holds the
    report after which it ran no more (`ended_by_its_results`)."""
    from tunelab.core.statuses import UNFINISHED_RAY_STATUSES

    if trial.status not in UNFINISHED_RAY_STATUSES:
        return False
    return ended_by_its_results(trial.last_result, max_epochs)


def ended_by_its_results(last: dict[str, Any], max_epochs: int) -> bool:
    """Whether a trial's last result row is one after which it ran no more: the trainable returns
    after it (the last epoch, or a diverged one), or Ray stopped the trial there (ASHA's rung
    decision, or --stop-at: Ray logs that row with `done` true)."""
    if not last:
        return False
    return bool(last.get("done")) or bool(last.get(M.DIVERGED)) or int(last.get(M.EPOCH, 0)) >= max_epochs


def close_trials_ended_on_disk(path: str, max_epochs: int) -> list[str]:
    """Record as ended the trials whose own results say they ended while Ray's snapshot still has
    them running; returns their ids.

    Ray copies its snapshot and each trial's result files from a staging folder to the storage
    every ~10 s, file by file, in the background: a killed driver can leave a trial's result.json
    with its last epoch and its final checkpoint while the snapshot, copied earlier, still has it
    RUNNING at an earlier epoch, or with no checkpoint at all. Ray would run it again from there,
    and the rerun's rows were appended to the trial's results or replaced them.

    The searcher's snapshot is told first (each result it missed, then the end, through Ray's own
    Searcher callbacks), then Ray's experiment state: killed in between, the next resume finds the
    trial ended in the study and merely runs it again, as before.
    """
    folder = local_path(path)
    if folder is None or newest(folder, "experiment_state-*.json") is None:
        return []
    ended = [trial for trial in ray_trials(folder) if ended_on_disk(trial, max_epochs)]
    if not ended:
        return []
    tell_searcher_they_ended(folder, ended)
    record_as_ended(folder, ended)
    for trial in ended:
        print(f"tunelab: trial {trial.trial_id} had ended (epoch {trial.last_result.get(M.EPOCH)} is in its "
              "results) after Ray's last snapshot; recorded it as ended instead of running it again", file=sys.stderr)
    return [trial.trial_id for trial in ended]


def free_slots_of_ended_trials(path: str) -> list[str]:
    """Make the concurrency slots that the search generator's saved state holds (its live trials,
    under --max-concurrent) those of the trials Ray's experiment state has running, pending or
    paused; returns the ids of the slots freed.

    Ray saves the generator's state and the experiment state in one snapshot but copies them to
    the storage file by file: a driver killed between the two leaves a generator that counts as
    live a trial the experiment state has ended, or one it never recorded. Restored so, the
    generator waits forever for that trial to end: `resume` hung with no trial running. A trial
    to run that the generator does not count (one `adopt_trials_created_after_the_snapshot`
    added) is counted: Ray's ConcurrencyLimiter passes a trial's end to the searcher only for
    trials it counts. Run after the steps that end or add trials.
    """
    import ray.cloudpickle as cloudpickle

    from tunelab.compat.ray import live_trial_sets, set_unfinished_live_count
    from tunelab.core.statuses import UNFINISHED_RAY_STATUSES

    folder = local_path(path)
    if folder is None or newest(folder, "experiment_state-*.json") is None:
        return []
    running = {t.trial_id for t in ray_trials(folder) if t.status in UNFINISHED_RAY_STATUSES}
    freed: list[str] = []
    for pattern in ("search_gen_state-*.json", "basic-variant-state-*.json"):
        file = newest(folder, pattern)
        if file is None:
            continue
        with open(file, "rb") as handle:
            state = cloudpickle.load(handle)
        sets = live_trial_sets(state)
        if all(live == running for live in sets):
            continue
        stale = sorted({trial_id for live in sets for trial_id in live} - running)
        for live in sets:
            live.clear()
            live.update(running)
        set_unfinished_live_count(state)
        atomic_write_bytes(file, lambda handle, state=state: cloudpickle.dump(state, handle))
        freed += stale
    return freed


def tell_searcher_they_ended(folder: Path, ended: list[RayTrial]) -> None:
    """Replay into the searcher's snapshot the results and ends of `ended` that it missed."""
    from ray.tune.search import Searcher

    snapshot = newest(folder, SEARCHER_STATE)
    search_alg = tuner_search_alg(folder)
    if snapshot is None or not isinstance(search_alg, Searcher):
        return  # Ray's random search keeps no searcher snapshot: nothing to tell
    search_alg.restore_from_dir(str(folder))
    for trial in ended:
        try:
            for row in trial.results:
                search_alg.on_trial_result(trial.trial_id, row)
            search_alg.on_trial_complete(trial.trial_id, result=trial.last_result)
        except KeyError:
            # The searcher's snapshot, copied after the experiment state, already had the trial
            # ended: Ray's OptunaSearch forgets an ended trial and raises on its id. Nothing to tell.
            continue
    search_alg.save_to_dir(str(folder), session_str=session_of(snapshot))  # Ray's own atomic write, same file name


def record_as_ended(folder: Path, ended: list[RayTrial]) -> None:
    """Rewrite `ended` in Ray's newest experiment state as TERMINATED (atomically)."""
    from tunelab.compat.ray import trial_entry_as_ended
    file = newest(folder, "experiment_state-*.json")
    state = json.loads(file.read_text())
    by_id = {trial.trial_id: trial for trial in ended}
    for entry in state["trial_data"]:
        trial = by_id.get(json.loads(entry[0])["trial_id"])
        if trial is None:
            continue
        name = trial.last_result.get("checkpoint_dir_name")
        on_disk = isinstance(name, str) and (folder / trial.dirname / name).is_dir()
        entry[0], entry[1] = trial_entry_as_ended(tuple(entry), trial.results, name if on_disk else None)
    atomic_write_text(file, json.dumps(state, indent=2))




def adopt_trials_created_after_the_snapshot(path: str, max_epochs: int, searcher: Any) -> list[str]:
    """Add to Ray's state the trials it created after its last snapshot; returns their ids.

    Such a trial's folder holds its config (params.json) and the results it reported (with its
    checkpoints), but neither the experiment state nor the searcher's snapshot names it. Ray would
    start a new trial in its place, and the folder (with a finished trial's results) would be left
    outside the experiment's results; resumed on the same Ray instance, Ray even copies such a
    folder's files in again from the killed driver's staging folder. Each is added to the
    searcher's snapshot (`add_to_snapshot`: only what the snapshot lacks), then to the experiment
    state: ended if its results say so, else to continue from its newest checkpoint (or from its
    start; the epochs after the checkpoint run again, as for any killed trial). The generator's
    count of trials created is raised to match, so the search still ends at --num-samples.
    Searchers that cannot add it (Ray's random search remakes the same trial, same id and folder;
    Ray's stock OptunaSearch) keep Ray's behaviour.
    """
    from ray.tune.search import Searcher

    folder = local_path(path)
    state_file = newest(folder, "experiment_state-*.json") if folder is not None else None
    snapshot = newest(folder, SEARCHER_STATE) if folder is not None else None
    if state_file is None or snapshot is None:
        return []
    known = ray_trials(folder)
    found = trials_on_disk(folder, {t.trial_id for t in known})
    orphans = [as_recorded(folder, t, max_epochs) for t in found]
    search_alg = tuner_search_alg(folder)
    if not orphans or not known or not isinstance(search_alg, Searcher):
        return []
    if not searcher.add_to_snapshot(search_alg, snapshot, known + orphans):
        return []
    search_alg.save_to_dir(str(folder), session_str=session_of(snapshot))
    add_to_state(folder, state_file, orphans)
    count_every_trial_created(folder)
    for as_found, trial in zip(found, orphans):
        print(f"tunelab: trial {trial.trial_id} was created after Ray's last snapshot and "
              f"{_how_adopted(as_found, trial)} instead of starting another in its place", file=sys.stderr)
    return [trial.trial_id for trial in orphans]


def _how_adopted(as_found: RayTrial, trial: RayTrial) -> str:
    """What was done with an adopted trial, in words: `as_found` on disk, `trial` as added."""
    if trial.status == RayStatus.TERMINATED:
        return f"had ended at epoch {trial.last_result.get(M.EPOCH)}; added it as ended"
    resumes_from = (f"after its checkpoint at epoch {trial.last_result.get(M.EPOCH)}" if trial.results
                    else "from its start (no checkpoint on disk)")
    return f"had reported {len(as_found.results)} epoch(s); added it to continue {resumes_from}"


def as_recorded(folder: Path, trial: RayTrial, max_epochs: int) -> RayTrial:
    """An unrecorded trial as it will be added: TERMINATED with every row if it ended, else PENDING
    with the rows up to its newest checkpoint on disk (the ones a continued run will not redo)."""
    if ended_by_its_results(trial.last_result, max_epochs):
        return dataclasses.replace(trial, status=RayStatus.TERMINATED.value)
    kept = [row for row in trial.results if _checkpoint_on_disk(folder, trial, row)]
    last_kept = trial.results.index(kept[-1]) + 1 if kept else 0
    return dataclasses.replace(trial, status=RayStatus.PENDING.value, results=trial.results[:last_kept])


def _checkpoint_on_disk(folder: Path, trial: RayTrial, row: dict[str, Any]) -> bool:
    name = row.get("checkpoint_dir_name")
    return isinstance(name, str) and (folder / trial.dirname / name).is_dir()


def trials_on_disk(folder: Path, known: set[str]) -> list[RayTrial]:
    """The trial folders of the experiment that Ray's state does not name, in the order they were made."""
    method = json.loads((folder / "tunelab.json").read_text(encoding="utf-8"))["method"]
    found = []
    for trial_folder in sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime):
        parsed = parse_trial_folder_name(trial_folder.name, method)
        params = trial_folder / "params.json"
        if parsed is None or parsed[1] in known or trial_folder.is_symlink() or not params.is_file():
            continue
        try:
            config = json.loads(params.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            continue  # unreadable: left to Ray
        found.append(RayTrial(trial_id=parsed[1], status="", config=config,
                              results=read_results(trial_folder / "result.json"), dirname=trial_folder.name))
    return found


def add_to_state(folder: Path, state_file: Path, trials: list[RayTrial]) -> None:
    """Append `trials` to Ray's experiment state (atomically), shaped like its other trials: ended
    (TERMINATED) or to continue (PENDING), each with its rows and newest checkpoint."""
    from tunelab.compat.ray import trial_entry_like

    state = json.loads(state_file.read_text(encoding="utf-8"))
    template = tuple(state["trial_data"][0])
    for trial in trials:
        last = trial.last_result
        checkpoint = last.get("checkpoint_dir_name") if _checkpoint_on_disk(folder, trial, last) else None
        state["trial_data"].append(list(trial_entry_like(template, trial.trial_id, trial.config, trial.dirname,
                                                         trial.results, checkpoint,
                                                         ended=trial.status == RayStatus.TERMINATED)))
    atomic_write_text(state_file, json.dumps(state, indent=2))


def count_every_trial_created(folder: Path) -> None:
    """Raise the search generator's count of trials created to the trials of Ray's state."""
    import ray.cloudpickle as cloudpickle

    file = newest(folder, "search_gen_state-*.json")
    if file is None:
        return
    with open(file, "rb") as handle:
        state = cloudpickle.load(handle)
    trials = len(ray_trials(folder))
    if isinstance(state.get("counter"), int) and state["counter"] < trials:
        state["counter"] = trials
        atomic_write_bytes(file, lambda handle: cloudpickle.dump(state, handle))
