"""Library internals behind one door: the private names of Ray, Optuna and W&B (and Ray's MLflow
integration) are used only in tunelab/compat/, and the behaviours relied on there are pinned here,
so a version bump that changes one fails in this file, by name."""
from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
from pathlib import Path

import optuna
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tunelab", "trainables", "analysis", "search_spaces")
COMPAT = ROOT / "tunelab" / "compat"
LIBRARIES = ("ray", "optuna", "wandb", "mlflow")
# Private names of the standard library that are documented API.
STDLIB_DOCUMENTED = {"os._exit"}


def _our_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if COMPAT not in p.parents)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    dotted = ".".join(p for p in parts if p != "__init__")
    return dotted if dotted.startswith("tunelab") else f"tunelab.{dotted}"


def _private_imports(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in LIBRARIES
                      and any(_private(part) for part in a.name.split("."))]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIBRARIES:
            module = node.module or ""
            if any(_private(part) for part in module.split(".")):
                found.append(module)
            found += [f"{module}.{a.name}" for a in node.names if _private(a.name)]
    return found


def _private_attributes_of_others(tree: ast.AST) -> list[str]:
    """`x._name` where x is not self or cls: always another object's internals."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            text = ast.unparse(node)
            if text not in STDLIB_DOCUMENTED:
                found.append(f"{text} (line {node.lineno})")
    return found


def _private_names_in(node: ast.ClassDef) -> tuple[set[str], set[str]]:
    """(private names a class body uses or defines on self/cls, those it assigns or defines)."""
    on_self = [n for n in ast.walk(node) if isinstance(n, ast.Attribute) and _private(n.attr)
               and isinstance(n.value, ast.Name) and n.value.id in ("self", "cls")]
    defined = {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and _private(n.name)}
    defined |= {t.id for n in node.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                if isinstance(t, ast.Name) and _private(t.id)}
    assigned = defined | {n.attr for n in on_self if isinstance(n.ctx, ast.Store)}
    return {n.attr for n in on_self} | defined, assigned


def _library(cls) -> bool:
    return cls.__module__.split(".")[0] in LIBRARIES


def _assigned_by_our_classes(cls) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if _library(klass) or klass.__module__ == "builtins":
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        names |= _private_names_in(tree.body[0])[1]
    return names


def _inherited_private_names(module, tree: ast.AST) -> list[str]:
    """Private names a class of `module` uses or defines that Ray, Optuna, W&B or MLflow owns: an
    attribute or method of a library base class (used or overridden), or an attribute a library
    base sets that none of our classes in the hierarchy assigns."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef) or not inspect.isclass(getattr(module, node.name, None)):
            continue
        cls = getattr(module, node.name)
        if not any(_library(base) for base in cls.__mro__):
            continue
        used, _ = _private_names_in(node)
        ours = _assigned_by_our_classes(cls)
        for name in sorted(used):
            owners = [base for base in cls.__mro__[1:] if name in vars(base)]
            if owners and _library(owners[0]):
                found.append(f"{node.name}: {name} of {owners[0].__module__}.{owners[0].__qualname__}")
            elif not owners and name not in ours:
                found.append(f"{node.name}: {name} set by a library base")
    return found


def test_no_private_name_of_ray_optuna_or_wandb_is_used_outside_the_compat_modules():
    uses = []
    for path in _our_files():
        tree = ast.parse(path.read_text())
        where = path.relative_to(ROOT)
        uses += [f"{where}: import {name}" for name in _private_imports(tree)]
        uses += [f"{where}: {text}" for text in _private_attributes_of_others(tree)]
        if path.name != "__main__.py":
            module = importlib.import_module(_module_name(path))
            uses += [f"{where}: {text}" for text in _inherited_private_names(module, tree)]
    assert uses == [], "\n".join(uses)


def test_the_scan_finds_each_kind_of_private_use(tmp_path):
    """The count above is 0 because the scan finds nothing, not because it looks nowhere."""
    source = (
        "from ray.tune.search.optuna import OptunaSearch\n"
        "from ray._private.services import canonicalize_bootstrap_address\n"
        "from ray.air.integrations.wandb import _QueueItem\n"
        "class Mine(OptunaSearch):\n"
        "    def _suggest_from_define_by_run_func(self, func, trial):\n"
        "        return self._ot_study, trial._trial_id\n"
    )
    tree = ast.parse(source)
    assert _private_imports(tree) == ["ray._private.services", "ray.air.integrations.wandb._QueueItem"]
    assert _private_attributes_of_others(tree) == ["trial._trial_id (line 6)"]
    (tmp_path / "scan_probe.py").write_text(source)
    found = _inherited_private_names(_load(tmp_path / "scan_probe.py"), tree)
    assert found == ["Mine: _ot_study set by a library base",
                     "Mine: _suggest_from_define_by_run_func of ray.tune.search.optuna.optuna_search.OptunaSearch"]


def _load(path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("scan_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- Optuna's internals pinned

def test_optuna_storage_ids_and_trials_as_the_sampler_reads_them():
    from tunelab.compat.optuna import storage_trial_id, study_storage, trials_of

    study = optuna.create_study()
    asked = study.ask()
    study.tell(asked, 1.0)
    frozen = study.trials[0]
    assert storage_trial_id(asked) == storage_trial_id(frozen)
    assert study_storage(study).get_trial(storage_trial_id(frozen)).value == 1.0
    assert [t.number for t in trials_of(study, deepcopy=False, use_cache=False)] == [0]


def test_tpe_samples_through_the_study_view():
    """TPESampler's relative sampling reads the study's trials through `_get_trials` of what
    `_sample` is given: the view's trials are the ones TPE learns from."""
    from tunelab.compat.optuna import StudyTrialsView, TPESamplerOverStudyView

    seen = []

    class Counting(StudyTrialsView):
        def trials(self, deepcopy, use_cache):
            trials = super().trials(deepcopy, use_cache)
            seen.append(len(trials))
            return trials

    class Sampler(TPESamplerOverStudyView):
        def study_view(self, study):
            return Counting(study)

    study = optuna.create_study(sampler=Sampler(seed=0, n_startup_trials=2, multivariate=True))
    for _ in range(4):
        study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_float("y", 0, 1), n_trials=1)
    assert seen, "TPE never read the trials through the view"


def test_tpe_reads_groups_and_running_trials_params_where_the_savings_hook_in():
    """TPESamplerOverStudyView replaces `_group_decomposed_search_space` (what `group=True` TPE asks
    for its groups) and answers `_get_params` (how TPE reads a trial's params, a running one's from
    JSON) once per suggestion: both must still be where TPE looks."""
    from tunelab.compat.optuna import FirstSeenGroups, TPESamplerOverStudyView

    reads, groups = [], []

    class Counting(FirstSeenGroups):
        def calculate(self, study, use_cache=False):
            groups.append(1)
            return super().calculate(study, use_cache)

    class Sampler(TPESamplerOverStudyView):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            assert isinstance(self._group_decomposed_search_space, FirstSeenGroups)
            self._group_decomposed_search_space = Counting(include_pruned=True)

        def _get_params(self, trial, study):
            reads.append(trial.state)
            return super()._get_params(trial, study)

    with pytest.warns(optuna.exceptions.ExperimentalWarning):  # `group`: as tunelab's tpe_sampler silences it
        sampler = Sampler(seed=0, n_startup_trials=2, multivariate=True, group=True, constant_liar=True)
    study = optuna.create_study(sampler=sampler)
    running = study.ask()
    running.suggest_float("x", 0, 1)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=4)
    assert groups, "TPE never asked for its groups"
    assert optuna.trial.TrialState.RUNNING in reads, "TPE never read a running trial's params"


def test_the_copied_tpe_sampling_step_samples_as_optunas_own():
    """TPESamplerOverStudyView's `_sample` is Optuna's `_sample` (5.0) with the split made once a
    suggestion, reading `optuna.samplers._tpe.sampler._split_trials` and `default_gamma` and the
    sampler's `_get_internal_repr`. With finished, pruned and running trials (constant liar), the
    same seed gives the same sample as Optuna's own step: a version that changes the step fails here."""
    import threading

    from optuna.trial import TrialState

    from tunelab.compat.optuna import TPESamplerOverStudyView, _Suggestion, storage_trial_id, study_storage

    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0),
             "k": optuna.distributions.CategoricalDistribution(("a", "b", "c"))}
    study = optuna.create_study()
    for n in range(60):
        trial = study.ask(space)
        if n % 2:
            continue  # left running: as many as finished, so the liar's count matters
        trial.report(float(n % 7), 1)
        study.tell(trial, float(n % 7) if n % 3 else None, state=TrialState.COMPLETE if n % 3 else TrialState.PRUNED)
    asked = study.ask()
    frozen = study_storage(study).get_trial(storage_trial_id(asked))

    def sample(own: bool) -> dict:
        sampler = TPESamplerOverStudyView(seed=3, multivariate=True, constant_liar=True, n_startup_trials=2)
        if own:
            return optuna.samplers.TPESampler._sample(sampler, study, frozen, space)
        sampler._views[threading.get_ident()] = _Suggestion(study)
        return sampler._sample(study, frozen, space)

    assert sample(own=False) == sample(own=True)


# ----------------------------------------------------------------------------- Ray's internals pinned

def test_ray_optuna_search_state_has_public_names():
    from tunelab.search import make_search
    from tunelab.search_spaces.base import FloatRange

    searcher, _ = make_search({"lr": FloatRange(1e-3, 1e-1, log=True)}, "val/acc", "max", max_t=3, grace_period=1,
                              reduction_factor=3, seed=0, time_attr="epoch", num_samples=4, n_startup_trials=1)
    config = searcher.suggest("t1")
    assert "lr" in config and set(searcher.optuna_trials) == {"t1"}
    assert isinstance(searcher.optuna_study, optuna.Study) and searcher.completed_trial_ids == set()
    searcher.on_trial_complete("t1", {"epoch": 3, "val/acc": 0.5})
    assert searcher.completed_trial_ids == {"t1"}
    assert searcher.optuna_study.trials[0].state == optuna.trial.TrialState.COMPLETE


def test_ray_asha_state_has_public_names():
    from tunelab.search import make_search
    from tunelab.search_spaces.base import FloatRange

    _, asha = make_search({"lr": FloatRange(1e-3, 1e-1, log=True)}, "val/acc", "max", max_t=9, grace_period=1,
                          reduction_factor=3, seed=0, time_attr="epoch", num_samples=4, n_startup_trials=1)
    assert asha.max_t == 9 and asha.reduction_factor == 3 and asha.metric_op == 1.0 and asha.mode == "max"
    # each bracket's milestones end at max_t; the ones below it stop trials early
    assert sorted(sorted(asha.early_stopping_steps(b)) for b in asha.brackets) == [[1, 3, 9], [3, 9], [9]]


def test_ray_checkpoint_bookkeeping_round_trips_through_its_codec(tmp_path):
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.train._internal.session import _TrainingResult
    from ray.tune import Checkpoint, CheckpointConfig
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    from tunelab.compat.ray import drop_checkpoints

    metadata = _TrainingRunMetadata()
    metadata.checkpoint_manager = _CheckpointManager(CheckpointConfig(num_to_keep=3))
    for i in range(3):
        (tmp_path / f"checkpoint_{i:06d}").mkdir()
        metadata.checkpoint_manager.register_checkpoint(
            _TrainingResult(checkpoint=Checkpoint(str(tmp_path / f"checkpoint_{i:06d}")), metrics={"epoch": i}))
    gone = str(tmp_path / "checkpoint_000000")
    kept_json, dropped = drop_checkpoints(metadata.get_json_state(), lambda path: path == gone)
    assert dropped == 1
    manager = _TrainingRunMetadata.from_json_state(kept_json).checkpoint_manager
    assert manager.latest_checkpoint_result.checkpoint.path == str(tmp_path / "checkpoint_000002")
    assert manager.best_checkpoint_results[0].checkpoint.path != gone
    same, none = drop_checkpoints(kept_json, lambda path: False)
    assert none == 0 and same == kept_json


def test_ray_recorded_cluster_address_answers_as_ray_does():
    from tunelab.compat.ray import recorded_cluster_address

    try:
        address = recorded_cluster_address()
    except ConnectionError:
        return  # nothing recorded on this machine: Ray's own answer
    assert address is None or isinstance(address, str)


def test_ray_mlflow_callback_keeps_a_run_per_trial(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    from tunelab.compat.ray import MLflowRunsByTrial

    class Callback(MLflowRunsByTrial, MLflowLoggerCallback):
        pass

    callback = Callback(tracking_uri=tmp_path.as_uri(), experiment_name="pinned")
    callback.setup()
    assert callback.run_id_of("trial") is None
    callback.set_run_id("trial", "run-1")
    assert callback.run_id_of("trial") == "run-1"


def test_ray_wandb_classes_forward_the_private_hooks():
    pytest.importorskip("wandb")
    from tunelab.compat.ray import wandb_classes

    actor, callback = wandb_classes()
    assert "_handle_result" in vars(actor) and "_logger_actor_cls" in vars(callback)
    parameters = inspect.signature(callback.start_logging_actor).parameters
    assert list(parameters)[:2] == ["self", "trial"]


def test_ray_trials_of_state_are_those_experiment_analysis_loads_without_their_results(tmp_path):
    import shutil

    from ray.tune import ExperimentAnalysis

    from tunelab.compat.ray import trials_of_state
    from tunelab.ray_state import newest

    moved = tmp_path / "moved" / "exp"  # recorded elsewhere: checkpoint paths must follow the folder
    shutil.copytree(Path(__file__).parents[1] / "data" / "experiment-0.1.0", moved)
    state = newest(moved, "experiment_state-*.json")
    ours = trials_of_state(state, moved, {"RUNNING", "PENDING", "PAUSED", "TERMINATED", "ERROR"})
    theirs = ExperimentAnalysis(str(moved)).trials
    assert [(t.trial_id, t.status, t.checkpoint.path) for t in ours] == \
           [(t.trial_id, t.status, t.checkpoint.path) for t in theirs]
    assert ours and all(Path(t.checkpoint.path).parent.parent == moved for t in ours)
    # filtered by the status in the file (RUNNING here) before decoding; Ray restores it as PENDING
    assert [t.status for t in ours] == ["PENDING"] and trials_of_state(state, moved, {"TERMINATED", "ERROR"}) == []


def test_ray_tuner_restore_builds_its_analysis_from_the_name_the_patch_replaces():
    from ray.tune.analysis import ExperimentAnalysis
    from ray.tune.impl import tuner_internal

    from tunelab.compat.ray import restore_reads_no_results

    assert tuner_internal.ExperimentAnalysis is ExperimentAnalysis
    assert callable(ExperimentAnalysis._fetch_trial_dataframes)
    with restore_reads_no_results():
        patched = tuner_internal.ExperimentAnalysis
        assert issubclass(patched, ExperimentAnalysis) and patched._fetch_trial_dataframes(None) == {}
    assert tuner_internal.ExperimentAnalysis is ExperimentAnalysis



def test_ray_snapshot_clock_a_restore_resets_is_the_one_its_controller_reads(monkeypatch):
    """no_snapshot_right_after_restore sets `_checkpoint_manager._last_save_time` once
    TuneController.resume has run: a snapshot that is not forced comes only a period after it."""
    import time
    from types import SimpleNamespace

    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager
    from ray.tune.execution.tune_controller import TuneController

    from tunelab.compat.ray import no_snapshot_right_after_restore

    manager = _ExperimentCheckpointManager(storage=SimpleNamespace(experiment_driver_staging_path="unused"),
                                           checkpoint_period=10)
    assert manager._last_save_time == float("-inf")  # left so, a new session saves in its first step
    restored = []
    monkeypatch.setattr(TuneController, "resume", lambda self, *args, **kwargs: restored.append(self))
    controller = SimpleNamespace(_checkpoint_manager=manager)
    with no_snapshot_right_after_restore():
        before = time.monotonic()
        TuneController.resume(controller, "resume config")
    assert restored == [controller] and before <= manager._last_save_time <= time.monotonic()
    saved = []
    manager.sync_up_experiment_state(save_fn=lambda: saved.append(1))
    assert saved == []  # within the period after the restore: not saved
