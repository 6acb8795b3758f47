"""Cluster scale, measured: what the driver spends per suggestion and per result as finished
trials accumulate, side by side for tunelab's searcher, Ray's stock OptunaSearch and random search.

    python benchmarks/scale.py driver --history 1000 3000 10000 --suggestions 100
    python benchmarks/scale.py simulate --slots 64 256 512 --trials 2000   # many slots, simulated clock
    python benchmarks/scale.py all   # every part at the recorded sizes, each timed

`driver` makes, without actors, the calls Tune's driver makes (ASHA's order: scheduler, then
searcher), after prefilling H finished trials: each searcher's study gets H trials drawn at
random from its own space (Optuna's `add_trials`), with intermediate values at the rungs ASHA
would have stopped them at (tunelab's searcher records ASHA's stops as PRUNED; Ray's stock one as
COMPLETE with the last value, as it does live), and the scheduler sees their results, so its
rung cut-offs are those of H trials. Then `--suggestions` new trials are suggested and run
through the rungs (9 epochs, reduction factor 3, tunelab's 4 Hyperband brackets). Each (searcher,
H) runs in a fresh process: its peak RSS is that process's. Figures: p50 and p99 of a suggestion
and of a result (scheduler + searcher), and peak RSS.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEARCHERS = ("optuna", "optuna-stock", "random")
MEASURED = ("optuna", "optuna-stock")  # random: see the note in benchmarks/scale.md
MAX_T, METRIC = 9, "val/acc"


def _options(search: str, trials: int):
    from tunelab.tune_options import TuneOptions

    return TuneOptions(method="classifier", search=search, max_epochs=MAX_T, num_samples=trials, scheduler="asha",
                       seed=0)


def _curve(rng: np.random.Generator) -> tuple[list[float], int]:
    """A trial's val/acc per epoch (rising to a random plateau) and the epoch ASHA's bracket stops it at."""
    plateau = rng.uniform(0.1, 0.95)
    values = [plateau * (1 - np.exp(-(e + 1) / 3)) for e in range(MAX_T)]
    stop = rng.choice([1, 3, 9], p=[0.6, 0.25, 0.15])
    return values, int(stop)


class Stub:
    """The trial fields Ray's ASHA reads."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id
        self.status = "RUNNING"


def _prefill_study(study, ask_space, history: int, pruned_state, rng: np.random.Generator) -> None:
    import optuna

    draws = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(history):
        trial = ask_space(draws)
        values, stop = _curve(rng)
        for epoch in range(1, stop + 1):
            trial.report(values[epoch - 1], epoch)
        if pruned_state == "COMPLETE" or stop == MAX_T:
            draws.tell(trial, max(values[:stop]))
        else:
            draws.tell(trial, state=optuna.trial.TrialState.PRUNED)
    study.add_trials(draws.get_trials(deepcopy=False))


def _prefill_scheduler(scheduler, history: int, rng: np.random.Generator) -> None:
    for i in range(history):
        trial = Stub(f"prefill_{i}")
        scheduler.on_trial_add(None, trial)
        values, _ = _curve(rng)
        for epoch in range(1, MAX_T + 1):
            decision = scheduler.on_trial_result(None, trial, {METRIC: values[epoch - 1], "epoch": epoch})
            if decision == "STOP" or epoch == MAX_T:
                scheduler.on_trial_complete(None, trial, {METRIC: values[epoch - 1], "epoch": epoch})
                break


def one(search: str, history: int, suggestions: int) -> dict:
    """One searcher at one history size, in this process."""
    import optuna

    from tunelab.compat.ray import optuna_space_of, optuna_study_of
    from tunelab.search_spaces import space_for
    from tunelab.searcher_plugins import searcher_for

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rng = np.random.default_rng(0)
    opts = _options(search, history + suggestions)
    search_alg, param_space, scheduler = searcher_for(search).build(opts, dict(space_for("classifier")), "scale")
    scheduler.set_search_properties(METRIC, "max")
    began = time.perf_counter()
    if search == "random":
        from ray.tune.experiment import Experiment

        from tunelab.tune_options import fixed_values

        config = {**fixed_values(opts), **param_space}  # as the driver gives Ray the space
        search_alg.add_configurations([Experiment("scale", lambda config: None, config=config,
                                                  num_samples=history + suggestions, storage_path="/tmp/scale")])
        for _ in range(history):
            search_alg.next_trial()  # the history random search keeps: how many it has drawn
        suggest = lambda trial_id: search_alg.next_trial()
    else:
        search_alg.set_search_properties(METRIC, "max", {})
        study = optuna_study_of(search_alg)
        if search == "optuna":
            space = search_alg.optuna_space
            ask = lambda draws: (lambda t: (space(t), t)[1])(draws.ask())
            _prefill_study(study, ask, history, "PRUNED", rng)
        else:
            distributions = optuna_space_of(search_alg)
            ask = lambda draws: draws.ask(fixed_distributions=distributions)
            _prefill_study(study, ask, history, "COMPLETE", rng)
        suggest = search_alg.suggest
    _prefill_scheduler(scheduler, history, rng)
    prefill_s = time.perf_counter() - began
    suggest_s, result_s = [], []
    for k in range(suggestions):
        trial = Stub(f"new_{k}")
        started = time.perf_counter()
        config = suggest(trial.trial_id)
        suggest_s.append(time.perf_counter() - started)
        assert config is not None, f"{search} suggested nothing"
        if search == "random":
            trial = Stub(config.trial_id)
        scheduler.on_trial_add(None, trial)
        values, _ = _curve(rng)
        for epoch in range(1, MAX_T + 1):
            result = {METRIC: values[epoch - 1], "epoch": epoch, "training_iteration": epoch}
            started = time.perf_counter()
            decision = scheduler.on_trial_result(None, trial, result)
            ended = decision == "STOP" or epoch == MAX_T
            if search != "random":
                search_alg.on_trial_result(trial.trial_id, result)
                if ended:
                    search_alg.on_trial_complete(trial.trial_id, result)
            if ended:
                scheduler.on_trial_complete(None, trial, result)
            result_s.append(time.perf_counter() - started)
            if ended:
                break
    ms = lambda xs, q: 1000 * float(np.percentile(xs, q))
    return {"search": search, "history": history, "suggest_p50_ms": ms(suggest_s, 50),
            "suggest_p99_ms": ms(suggest_s, 99), "result_p50_ms": ms(result_s, 50), "result_p99_ms": ms(result_s, 99),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "prefill_s": prefill_s}


def _in_fresh_process(mode: str, *values, what: str) -> dict:
    """This script's `mode` (`_one`, `_simulated`, `_cluster`) run in a process of its own, so its
    peak RSS and imports are its own: the row it prints last; a failure ends the benchmark naming `what`."""
    done = subprocess.run([sys.executable, __file__, mode, *map(str, values)], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{what}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def driver(args) -> None:
    rows = []
    print(f"{'searcher':14} {'history':>8} {'suggest p50/p99 ms':>20} {'result p50/p99 ms':>19} {'peak RSS MB':>12}")
    for history in args.history:
        for search in args.searchers:
            row = _in_fresh_process("_one", search, history, args.suggestions, what=f"{search} at {history}")
            rows.append(row)
            print(f"{search:14} {history:>8} {row['suggest_p50_ms']:>9.1f} / {row['suggest_p99_ms']:<8.1f} "
                  f"{row['result_p50_ms']:>8.2f} / {row['result_p99_ms']:<8.2f} {row['peak_rss_mb']:>10.0f}", flush=True)
        by = {r["search"]: r for r in rows if r["history"] == history}
        if "optuna" in by and "optuna-stock" in by:
            print(f"{'':14} {history:>8} tunelab / stock suggest p99: "
                  f"{by['optuna']['suggest_p99_ms'] / by['optuna-stock']['suggest_p99_ms']:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


# ----------------------------------------------------------------------------- big experiments

TINY = ["image_size=8", "width=8", "batch_size=128"]


def _tunelab(args: list[str], **kwargs) -> subprocess.Popen:
    import os

    env = {**os.environ, "RAY_ADDRESS": "local", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "tunelab", *args], env=env, cwd=ROOT, **kwargs)


def template(folder: Path, planned: int, epochs: int) -> Path:
    """A real, interrupted tunelab experiment: a search of `planned` trials of `epochs` epochs,
    stopped (SIGTERM, saved) once its first trial has ended. Its files are what a big
    experiment's trials are cloned from."""
    import signal

    storage = folder / "template"
    search = _tunelab(["tune", "classifier", "--num-samples", str(planned), "--max-epochs", str(epochs),
                       "--scheduler", "fifo", "--max-concurrent", "1", "--storage", str(storage), "--name", "exp",
                       "--checkpoint-interval", "3600", *sum((["--set", s] for s in TINY), [])],
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in search.stderr:
        if "finished after" in line:
            search.send_signal(signal.SIGTERM)
            break
    search.communicate(timeout=300)
    return storage / "exp"


def clone_experiment(source: Path, target: Path, trials: int, seed: int = 0) -> float:
    """`target`: `source` (an experiment with one ended trial) with `trials` ended trials, each a copy
    of that trial's files with its own id, config and learning curve; Ray's experiment state names
    them all (entries built by Ray's own Trial class), the searcher's snapshot is rebuilt from them
    and the generator's count raised, as `resume` would. Returns the seconds it took."""
    import shutil
    import uuid

    import pandas as pd

    from tunelab.compat.ray import trial_entry_like
    from tunelab.core.record import FINAL_STATUSES, read_record, write_record
    from tunelab.late_trials import count_every_trial_created, free_slots_of_ended_trials
    from tunelab.ray_state import SEARCHER_STATE, check_and_repair, newest, ray_trials
    from tunelab.searcher_plugins import searcher_for

    began = time.perf_counter()
    shutil.copytree(source, target)
    (first,) = [t for t in ray_trials(target) if t.results]
    progress = pd.read_csv(target / first.dirname / "progress.csv")
    params = json.loads((target / first.dirname / "params.json").read_text())
    state_file = newest(target, "experiment_state-*.json")
    state = json.loads(state_file.read_text())
    entry = tuple(state["trial_data"][0])
    state["trial_data"] = [list(entry)]
    rng = np.random.default_rng(seed)
    ids = {first.trial_id}
    while len(ids) < trials:
        ids.add(uuid.UUID(int=int(rng.integers(2**63)) << 64).hex[:8])
    for trial_id in sorted(ids - {first.trial_id}):
        plateau = float(rng.uniform(0.1, 0.95))
        curve = plateau * (1 - np.exp(-(np.arange(len(progress)) + 1) / 5))
        config = {**params, "lr": float(10 ** rng.uniform(-4, -1))}
        rows = [{**row, "val/acc": float(curve[i]), "val/acc_best": float(curve[: i + 1].max()), "trial_id": trial_id}
                for i, row in enumerate(first.results)]
        dirname = f"classifier_{trial_id}"
        (target / dirname).mkdir()
        (target / dirname / "params.json").write_text(json.dumps(config))
        (target / dirname / "result.json").write_text("".join(json.dumps(row) + "\n" for row in rows))
        progress.assign(**{"val/acc": curve, "val/acc_best": np.maximum.accumulate(curve), "trial_id": trial_id}).to_csv(
            target / dirname / "progress.csv", index=False)
        state["trial_data"].append(list(trial_entry_like(entry, trial_id, config, dirname, rows, None, ended=True)))
    state_file.write_text(json.dumps(state))
    record = read_record(target)
    record.pop(FINAL_STATUSES, None)  # the template's one trial; each trial's status is then read from Ray's state
    write_record(str(target), record)
    for snapshot in target.glob(SEARCHER_STATE):
        snapshot.unlink()  # rebuilt from the trials, as resume rebuilds a lost one
    check_and_repair(str(target), searcher_for("optuna"))
    count_every_trial_created(target)
    free_slots_of_ended_trials(str(target))
    return time.perf_counter() - began


def _measured(args: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MB, exit code) of `tunelab ARGS` in a fresh process."""
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", (
        "import resource, subprocess, sys, json\n"
        "code = subprocess.run([sys.executable, '-m', 'tunelab', *sys.argv[1:]], stdout=subprocess.DEVNULL).returncode\n"
        "print(json.dumps([resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code]))"), *args],
        capture_output=True, text=True, cwd=ROOT)
    rss_kb, code = json.loads(done.stdout.strip().splitlines()[-1])
    return time.perf_counter() - began, rss_kb / 1024, code


def time_to_first_new_trial(experiment: Path, known: set[str], limit_s: float = 900) -> tuple[float, int]:
    """(seconds from `tunelab resume` starting until a trial folder not in `known` holds params.json,
    its exit code once stopped with SIGTERM)."""
    import signal

    began = time.perf_counter()
    resume = _tunelab(["resume", str(experiment)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = None
    while first is None and resume.poll() is None and time.perf_counter() - began < limit_s:
        with __import__("os").scandir(experiment) as entries:
            if any(e.name not in known and e.name.startswith("classifier_") and e.is_dir()
                   and (experiment / e.name / "params.json").exists() for e in entries):
                first = time.perf_counter() - began
        time.sleep(0.1)
    resume.send_signal(signal.SIGTERM)
    return (first if first is not None else float("nan")), resume.wait(timeout=300)


def experiments(args) -> None:
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="scale-", dir=args.workdir))
    try:
        _big_experiments(args, work)
    finally:
        if args.workdir is None:  # about 1 GB at the recorded sizes; in a --workdir they are kept
            shutil.rmtree(work, ignore_errors=True)


def _big_experiments(args, work: Path) -> None:
    from ray.tune import ExperimentAnalysis

    source = template(work, max(args.report_trials, args.resume_trials) + 2, args.epochs)
    print(f"template: {source} (one ended trial of {args.epochs} epochs)", flush=True)
    for trials, purpose in ((args.report_trials, "report"), (args.resume_trials, "resume")):
        target = work / f"{purpose}_{trials}" / "exp"
        target.parent.mkdir()
        made_s = clone_experiment(source, target, trials)
        size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) / 2**20
        print(f"{purpose}: {trials} trials x {args.epochs} epochs made in {made_s:.0f} s, {size:.0f} MB", flush=True)
        if purpose == "report":
            began = time.perf_counter()
            analysis = ExperimentAnalysis(str(target))
            print(f"  ray.tune.ExperimentAnalysis reads it: {len(analysis.trials)} trials in "
                  f"{time.perf_counter() - began:.1f} s", flush=True)
            for command in (["report", str(target), "--out", str(work / "report")], ["best", str(target)]):
                wall, rss, code = _measured(command)
                print(f"  tunelab {command[0]}: {wall:.1f} s, peak RSS {rss:.0f} MB, exit {code}", flush=True)
        else:
            known = {p.name for p in target.iterdir()}
            first, code = time_to_first_new_trial(target, known)
            print(f"  tunelab resume: first new trial's folder after {first:.1f} s (then SIGTERM: exit {code})",
                  flush=True)


# ----------------------------------------------------------------------------- a real Ray run

EPOCH_S = 1.0  # each epoch of a cluster-run trial sleeps this long, then reports


def _sleeper(config: dict) -> None:
    """A trial that costs its slot EPOCH_S a epoch and no CPU: a learning curve from its config."""
    import os

    from ray import tune

    lr = float(config.get("lr") or 0.01)
    plateau = 0.95 - 0.3 * abs(np.log10(lr) + 2.0) / 2.0  # best near lr 0.01
    for epoch in range(1, config["epochs"] + 1):
        time.sleep(EPOCH_S)
        tune.report({METRIC: plateau * (1 - np.exp(-epoch / 3)), "epoch": epoch, "pid": os.getpid()})


class Timeline:
    """When each trial started and ended, how many results came, and the trial processes' memory."""

    def __init__(self):
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.results = 0
        self.processes: set[int] = set()  # the trial processes (Ray workers) that reported
        self.worker_rss_mb: list[float] = []
        self._next_sample = 0.0

    def callback(self):
        from ray.tune import Callback

        timeline = self

        class Recorder(Callback):
            def on_trial_start(self, iteration, trials, trial, **info):
                timeline.started.setdefault(trial.trial_id, time.perf_counter())

            def on_trial_complete(self, iteration, trials, trial, **info):
                timeline.ended[trial.trial_id] = time.perf_counter()

            def on_trial_error(self, iteration, trials, trial, **info):
                timeline.ended[trial.trial_id] = time.perf_counter()

            def on_trial_result(self, iteration, trials, trial, result, **info):
                timeline.results += 1
                timeline.processes.add(result.get("pid"))
                if time.perf_counter() > timeline._next_sample:
                    timeline._next_sample = time.perf_counter() + 10
                    timeline.sample_workers()

        return Recorder()

    def sample_workers(self) -> None:
        import psutil

        for process in psutil.process_iter(["cmdline", "memory_info"]):
            cmdline = process.info["cmdline"] or []
            if cmdline and cmdline[0].startswith("ray::ImplicitFunc"):
                self.worker_rss_mb.append(process.info["memory_info"].rss / 2**20)


def cluster_one(search: str, slots: int, trials: int, epochs: int) -> dict:
    """One real Ray run in this process: `slots` logical CPUs, one trial a slot."""
    import os
    import shutil
    import tempfile

    import ray
    from ray import tune

    from tunelab.compat.ray import timed_snapshots
    from tunelab.driver import allow_parallel_pending_trials
    from tunelab.trial_files import SaveEndedTrialFiles
    from tunelab.whole_snapshot import KeepWholeSnapshot
    from tunelab.search_spaces import space_for
    from tunelab.searcher_plugins import searcher_for
    from tunelab.tune_options import TuneOptions, fixed_values

    opts = TuneOptions(method="classifier", search=search, max_epochs=epochs, num_samples=trials, scheduler="asha",
                       seed=0)
    search_alg, param_space, scheduler = searcher_for(search).build(opts, dict(space_for("classifier")), "scale")
    ray.init(num_cpus=slots, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    allow_parallel_pending_trials(opts)  # as tunelab's driver does for every --search (Ray's default: 1)
    timeline, snapshots = Timeline(), []
    storage = tempfile.mkdtemp(prefix="scale-cluster-")
    tuner = tune.Tuner(
        tune.with_resources(_sleeper, {"cpu": 1}),
        param_space={**fixed_values(opts), **param_space, "epochs": epochs},
        tune_config=tune.TuneConfig(search_alg=search_alg, scheduler=scheduler, metric=METRIC, mode="max",
                                    num_samples=trials, reuse_actors=True),
        # tunelab's own driver callbacks, as `tunelab tune` runs them: their cost is part of the driver's
        run_config=tune.RunConfig(name=search, storage_path=storage, verbose=0,
                                  callbacks=[SaveEndedTrialFiles(), KeepWholeSnapshot(), timeline.callback()]))
    cpu_before, began = os.times(), time.perf_counter()
    try:
        with timed_snapshots(snapshots):
            grid = tuner.fit()
        wall = time.perf_counter() - began
        cpu_after = os.times()
        ray.shutdown()
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    driver_cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    return {"search": search, "slots": slots, "trials": len(grid), "wall_s": wall, "results": timeline.results,
            "results_per_s": timeline.results / wall, "trial_processes": len(timeline.processes), "driver_cpu_fraction": driver_cpu / wall,
            **_occupancy(timeline, slots), **_snapshot_growth(snapshots),
            "worker_rss_mb_median": float(np.median(timeline.worker_rss_mb)) if timeline.worker_rss_mb else None,
            "epoch_s": EPOCH_S}


def _occupancy(timeline: Timeline, slots: int) -> dict:
    """Busy slot-seconds over slots x time, while trials were still waiting to start (from the first
    start to the last: after it no trial is left to fill a slot), and the gap from a trial's end to
    the start of the trial that took its slot (the k-th end against the (slots + k)-th start)."""
    starts = sorted(timeline.started.values())
    first, last = starts[0], starts[-1]
    busy = sum(max(0.0, min(timeline.ended.get(t, last), last) - max(s, first)) for t, s in timeline.started.items())
    ends = sorted(timeline.ended.values())
    gaps = [starts[slots + k] - ends[k] for k in range(min(len(starts) - slots, len(ends)))]
    return {"occupancy": busy / (slots * (last - first)) if last > first else None,
            "gap_p50_s": float(np.percentile(gaps, 50)) if gaps else None,
            "gap_p99_s": float(np.percentile(gaps, 99)) if gaps else None}


def _snapshot_growth(durations: list[float]) -> dict:
    if not durations:
        return {}
    n = len(durations)
    return {"snapshots": n, "snapshot_first_s": float(np.median(durations[: max(1, n // 10)])),
            "snapshot_last_s": float(np.median(durations[-max(1, n // 10):])),
            "snapshot_max_s": float(max(durations))}


# ----------------------------------------------------------------------------- many slots, simulated

def simulated_one(search: str, slots: int, trials: int) -> dict:
    """`slots` trial slots without actors: the driver's own calls, made for real and timed (a
    suggestion per trial start; per result ASHA, then the searcher, as in `one`), placed on a
    simulated clock. Each trial reports one epoch every EPOCH_S whatever the driver does (its
    curve from `_curve`); the driver, one thread, handles one call at a time, each when it is due
    and the driver is free, taking the call's measured time. A slot is busy from its trial's
    start until the driver has handled that trial's last result; then it waits for the driver's
    next suggestion. Left out: Ray's own per-result and per-start costs (actors, the event loop,
    snapshots) - the real 64-slot run above has those."""
    import heapq
    from types import SimpleNamespace

    from tunelab.search_spaces import space_for
    from tunelab.searcher_plugins import searcher_for

    rng = np.random.default_rng(0)
    opts = _options(search, trials)
    search_alg, _, scheduler = searcher_for(search).build(opts, dict(space_for("classifier")), "scale")
    scheduler.set_search_properties(METRIC, "max")
    search_alg.set_search_properties(METRIC, "max", {})

    timeline = SimpleNamespace(started={}, ended={})
    free_at = [0.0] * slots  # when each free slot became free (a heap)
    due: list = []  # (time, order, trial id, epoch): results on their way (a heap)
    curves, starts, driver_at, busy, results, suggest_s = {}, 0, 0.0, 0.0, 0, []
    while starts < trials or due:
        start_due = free_at[0] if free_at and starts < trials else float("inf")
        if start_due <= (due[0][0] if due else float("inf")):
            heapq.heappop(free_at)
            begin = max(driver_at, start_due)
            trial = Stub(f"t{starts}")
            _, took = _timed(search_alg.suggest, trial.trial_id)
            scheduler.on_trial_add(None, trial)
            driver_at, busy, starts = begin + took, busy + took, starts + 1
            suggest_s.append(took)
            timeline.started[trial.trial_id] = driver_at
            curves[trial.trial_id] = (trial, _curve(rng)[0])
            heapq.heappush(due, (driver_at + EPOCH_S, starts, trial.trial_id, 1))
            continue
        at, order, trial_id, epoch = heapq.heappop(due)
        trial, values = curves[trial_id]
        result = {METRIC: values[epoch - 1], "epoch": epoch, "training_iteration": epoch}
        begin = max(driver_at, at)
        ended, took = _timed(_handle_result, search_alg, scheduler, trial, result)
        driver_at, busy, results = begin + took, busy + took, results + 1
        if ended:
            timeline.ended[trial_id] = driver_at
            heapq.heappush(free_at, driver_at)
        else:
            heapq.heappush(due, (timeline.started[trial_id] + (epoch + 1) * EPOCH_S, order, trial_id, epoch + 1))
    makespan = max(timeline.ended.values())
    moments = sorted([(t, 1) for t in timeline.started.values()] + [(t, -1) for t in timeline.ended.values()])
    running = np.cumsum([change for _, change in moments])  # at a tie, an end before a start
    ms = lambda xs, q: 1000 * float(np.percentile(xs, q))
    return {"search": search, "slots": slots, "trials": trials, "simulated_s": makespan, "results": results,
            "results_per_s": results / makespan, "driver_busy_fraction": busy / makespan,
            "suggest_p50_ms": ms(suggest_s, 50), "suggest_p99_ms": ms(suggest_s, 99), "ended": len(timeline.ended),
            "most_running": int(running.max()), **_occupancy(timeline, slots)}


def _timed(call, *args):
    began = time.perf_counter()
    out = call(*args)
    return out, time.perf_counter() - began


def _handle_result(search_alg, scheduler, trial, result: dict) -> bool:
    """What Tune's driver calls for one result (ASHA, then the searcher); whether the trial ended."""
    ended = scheduler.on_trial_result(None, trial, result) == "STOP" or result["epoch"] == MAX_T
    search_alg.on_trial_result(trial.trial_id, result)
    if ended:
        search_alg.on_trial_complete(trial.trial_id, result)
        scheduler.on_trial_complete(None, trial, result)
    return ended


def _shown(value: float | None, form: str, unit: str = "") -> str:
    """A figure, or n/a where there is none (with no more trials than slots, none waited for a slot)."""
    return "n/a" if value is None else f"{value:{form}}{unit}"


def simulate(args) -> None:
    print(f"simulated: {args.trials} trials of at most {MAX_T} epochs of {EPOCH_S:.0f} s, the driver's calls timed "
          "for real", flush=True)
    for slots in args.slots:
        for search in args.searchers:
            row = _in_fresh_process("_simulated", search, slots, args.trials, what=f"{search} at {slots} slots")
            occupancy = row["occupancy"] and 100 * row["occupancy"]
            print(f"  {slots:>4} slots {search:13} occupancy {_shown(occupancy, '.1f', '%')}; "
                  f"slot gap p50/p99 {_shown(row['gap_p50_s'], '.3f')} / {_shown(row['gap_p99_s'], '.3f', ' s')}; "
                  f"driver busy {100 * row['driver_busy_fraction']:.0f}%; "
                  f"{row['results_per_s']:.0f} results/s; suggest p50/p99 {row['suggest_p50_ms']:.1f} / "
                  f"{row['suggest_p99_ms']:.1f} ms; {row['simulated_s']:.0f} simulated s", flush=True)


def cluster(args) -> None:
    print(f"{args.slots} slots, {args.trials} trials of at most {args.epochs} epochs of {EPOCH_S:.0f} s (ASHA stops "
          "most early)", flush=True)
    for search in args.searchers:
        row = _in_fresh_process("_cluster", search, args.slots, args.trials, args.epochs, what=search)
        print(json.dumps(row), flush=True)
        print(f"  {search}: {row['trials']} trials in {row['wall_s']:.0f} s; {row['results_per_s']:.1f} results/s; "
              f"driver CPU {100 * row['driver_cpu_fraction']:.0f}% of a core; occupancy "
              f"{100 * row['occupancy']:.1f}%; slot gap p50/p99 {row['gap_p50_s']:.2f} / {row['gap_p99_s']:.2f} s; "
              f"snapshot first/last/max {row.get('snapshot_first_s', 0):.3f} / {row.get('snapshot_last_s', 0):.3f} / "
              f"{row.get('snapshot_max_s', 0):.3f} s; {row['trial_processes']} trial processes, RSS median "
              f"{row['worker_rss_mb_median']:.0f} MB",
              flush=True)


def positive(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("driver", help="driver-side cost per suggestion and per result, without actors")
    d.add_argument("--history", type=int, nargs="+", default=[1000, 3000, 10000])
    d.add_argument("--suggestions", type=int, default=20)
    d.add_argument("--searchers", nargs="+", default=list(MEASURED), choices=SEARCHERS)
    d.add_argument("--out", help="write the rows as JSON here")
    e = sub.add_parser("experiments", help="report/best on a big experiment, and resume of another")
    e.add_argument("--report-trials", type=int, default=10000)
    e.add_argument("--resume-trials", type=int, default=5000)
    e.add_argument("--epochs", type=int, default=30)
    e.add_argument("--workdir", default=None, help="where the experiments are made (a temporary folder)")
    c = sub.add_parser("cluster", help="a real Ray run: many trial slots, trials that sleep 1 s an epoch")
    c.add_argument("--slots", type=int, default=64)
    c.add_argument("--trials", type=int, default=2000)
    c.add_argument("--epochs", type=int, default=10)
    c.add_argument("--searchers", nargs="+", default=list(SEARCHERS), choices=SEARCHERS)
    m = sub.add_parser("simulate", help="many trial slots on a simulated clock, the driver's calls timed for real")
    m.add_argument("--slots", type=positive, nargs="+", default=[64, 256, 512])
    m.add_argument("--trials", type=positive, default=2000)
    m.add_argument("--searchers", nargs="+", default=list(MEASURED), choices=MEASURED)
    sub.add_parser("all", help="every part at the sizes benchmarks/scale.md records, timed (18 minutes on 2 cores)")
    return parser


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        print(json.dumps(one(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_simulated":
        print(json.dumps(simulated_one(sys.argv[2], *map(int, sys.argv[3:5]))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_cluster":
        print(json.dumps(cluster_one(sys.argv[2], *map(int, sys.argv[3:6]))))
        return
    parser = build_parser()
    args = parser.parse_args()
    if args.command == "all":
        return every_part(parser)
    {"driver": driver, "experiments": experiments, "cluster": cluster, "simulate": simulate}[args.command](args)


# The sizes the benchmark page records; the real Ray run's 300 trials (not 2,000) are what fits
# this machine's 2 cores (the page says why).
EVERY_PART = (("driver", "--history", "1000", "3000", "10000", "--suggestions", "100"),
              ("simulate", "--slots", "64", "256", "512", "--trials", "2000"),
              ("experiments", "--report-trials", "10000", "--resume-trials", "5000", "--epochs", "30"),
              ("cluster", "--slots", "64", "--trials", "300", "--epochs", "10", "--searchers", "optuna", "random"))


def every_part(parser: argparse.ArgumentParser) -> None:
    parts = {"driver": driver, "experiments": experiments, "cluster": cluster, "simulate": simulate}
    began, took = time.perf_counter(), {}
    for argv in EVERY_PART:
        print(f"== scale.py {' '.join(argv)}", flush=True)
        start = time.perf_counter()
        parts[argv[0]](parser.parse_args(list(argv)))
        took[argv[0]] = time.perf_counter() - start
    print("wall: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in took.items())
          + f"; all {time.perf_counter() - began:.0f} s", flush=True)


if __name__ == "__main__":
    main()
