"""One owner per fact: the strings and lists two parts of tunelab must agree on are spelled once,
and the hand-kept lists that mirror another's (Ray's file names, the files --overwrite may delete)
are checked here against their owner."""
from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

from tunelab.core.statuses import RayStatus, TrialStatus
from tunelab.core import metrics as M

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tunelab", "analysis", "trainables", "search_spaces")
OWNERS = {"tunelab/core/statuses.py": "trial and Ray statuses", "tunelab/core/metrics.py": "metric names"}
# Other facts that happen to share a spelling with a status or metric: (file, literal) -> what it is.
SAME_SPELLING = {
    ("tunelab/summaries.py", "out_of_time"): "the tune summary's flag (the time budget ended the run)",
    ("tunelab/cli.py", "out_of_time"): "reads that summary flag",
    ("analysis/reproduce.py", "epoch"): "best.yaml's provenance field (the trial's best epoch)",
    ("tunelab/cli.py", "epoch"): "prints that provenance field",
    ("trainables/engine.py", "epoch"): "a checkpoint's own key (the epoch it was saved after)",
}


def _owned_strings() -> set[str]:
    metric_names = {value for name, value in vars(M).items() if name.isupper() and isinstance(value, str)}
    return {s.value for s in TrialStatus} | {s.value for s in RayStatus} | metric_names


def _literals(path: Path):
    """(line, text) of every string constant that is not a docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def test_statuses_and_metric_names_are_spelled_only_by_their_owners():
    owned = _owned_strings()
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative in OWNERS:
                continue
            found += [f"{relative}:{line} {text!r}" for line, text in _literals(path)
                      if text in owned and (relative, text) not in SAME_SPELLING]
    assert not found, "use the owner's name (tunelab.core.statuses, tunelab.core.metrics):\n" + "\n".join(found)


def test_the_same_spelling_list_names_only_literals_still_there():
    for (relative, text), why in SAME_SPELLING.items():
        assert any(t == text for _, t in _literals(ROOT / relative)), f"{relative} no longer spells {text!r} ({why})"


def test_rays_state_files_that_resume_checks_are_named_as_ray_names_them():
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.search import Searcher
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.search_generator import SearchGenerator

    from tunelab.ray_state import OTHER_STATE, SEARCHER_STATE

    rays = {cls.CKPT_FILE_TMPL.format("*") for cls in (TuneController, Searcher, SearchGenerator, BasicVariantGenerator)}
    assert rays == {SEARCHER_STATE, *(p for p in OTHER_STATE if p != "tuner.pkl")}


def test_overwrite_may_delete_every_file_ray_and_tunelab_write_in_an_experiment():
    from ray.tune import result

    from tunelab.analysis.load import TRIAL_FILES as READ_BY_ANALYSIS
    from tunelab.experiment_files import OURS, TRIAL_FILES, TRIAL_FOLDERS
    from tunelab.ray_state import OTHER_STATE, SEARCHER_STATE

    def covered(name: str, patterns: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatchcase(name, p) or name == p for p in patterns)

    for pattern in (SEARCHER_STATE, *OTHER_STATE):
        assert covered(pattern.replace("*", "2026-01-01_00-00-00"), OURS), pattern
    rays_trial_files = (result.EXPR_PROGRESS_FILE, result.EXPR_RESULT_FILE, result.EXPR_PARAM_FILE,
                        result.EXPR_PARAM_PICKLE_FILE, result.EXPR_ERROR_FILE, result.EXPR_ERROR_PICKLE_FILE)
    for name in (*rays_trial_files, *READ_BY_ANALYSIS):
        assert covered(name, TRIAL_FILES), name
    assert covered("checkpoint_000003", TRIAL_FOLDERS)
