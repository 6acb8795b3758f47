"""Multi-fidelity bookkeeping of the Optuna searcher, driven by hand (no Ray run needed)."""
from optuna.trial import TrialState

from search_spaces.base import Choice, FloatRange
from tunelab.searcher import MultiFidelityOptunaSearch

SPACE = {"lr": FloatRange(1e-3, 1e-1, log=True, unit="u", reason="r"), "opt": Choice(("a", "b"), unit="u", reason="r")}


def _searcher():
    return MultiFidelityOptunaSearch(SPACE, "val/acc", "max", max_t=3, seed=0, n_startup_trials=2)


def _run(searcher, trial_id, values, **last):
    config = searcher.suggest(trial_id)
    assert 1e-3 <= config["lr"] <= 1e-1 and config["opt"] in ("a", "b")
    result = {}
    for epoch, value in enumerate(values, start=1):
        result = {"val/acc": value, "epoch": epoch, "diverged": 0, **last}
        searcher.on_trial_result(trial_id, result)
    return result


def test_full_budget_trial_is_complete_with_its_best_epoch():
    s = _searcher()
    s.on_trial_complete("t", _run(s, "t", [0.5, 0.9, 0.8]))
    trial = s._ot_study.trials[0]
    assert trial.state == TrialState.COMPLETE and trial.value == 0.9
    assert trial.intermediate_values == {1: 0.5, 2: 0.9, 3: 0.8}


def test_trial_stopped_early_is_pruned_not_complete():
    s = _searcher()
    s.on_trial_complete("t", _run(s, "t", [0.3]))
    trial = s._ot_study.trials[0]
    assert trial.state == TrialState.PRUNED and trial.intermediate_values == {1: 0.3}


def test_diverged_trial_is_pruned_and_errored_trial_failed():
    s = _searcher()
    s.on_trial_complete("d", _run(s, "d", [0.2, 0.1], diverged=1))
    last = _run(s, "e", [0.4])
    s.on_trial_complete("e", last, error=True)
    states = [t.state for t in s._ot_study.trials]
    assert states == [TrialState.PRUNED, TrialState.FAIL]


def test_repeated_epochs_and_nan_are_not_reported_twice():
    s = _searcher()
    s.suggest("t")
    s.on_trial_result("t", {"val/acc": 0.5, "epoch": 1})
    s.on_trial_result("t", {"val/acc": 0.6, "epoch": 1})  # e.g. after a restore
    s.on_trial_result("t", {"val/acc": float("nan"), "epoch": 2})
    assert s._intermediate_values("t") == {1: 0.5}


def test_sampler_is_seeded_multivariate_with_constant_liar():
    sampler = _searcher()._ot_study.sampler
    assert sampler._multivariate and sampler._constant_liar and sampler._n_startup_trials == 2
    a, b = _searcher(), _searcher()
    assert [a.suggest(f"t{i}") for i in range(3)] == [b.suggest(f"t{i}") for i in range(3)]


def test_final_epoch_given_only_at_completion_is_recorded():
    s = _searcher()
    s.suggest("t")
    for epoch, value in ((1, 0.2), (2, 0.4)):
        s.on_trial_result("t", {"val/acc": value, "epoch": epoch})
    s.on_trial_complete("t", {"val/acc": 0.7, "epoch": 3, "diverged": 0})
    trial = s._ot_study.trials[0]
    assert trial.intermediate_values == {1: 0.2, 2: 0.4, 3: 0.7} and trial.state == TrialState.COMPLETE
    assert trial.value == 0.7


def test_a_trial_already_told_is_not_told_again():
    s = _searcher()
    s.on_trial_complete("t", _run(s, "t", [0.5, 0.9, 0.8]))
    s._completed_trials.discard("t")  # as after restoring a searcher snapshot older than the study
    s.on_trial_result("t", {"val/acc": 0.95, "epoch": 3})
    s.on_trial_complete("t", {"val/acc": 0.95, "epoch": 3})
    trial = s._ot_study.trials[0]
    assert trial.state == TrialState.COMPLETE and trial.value == 0.9


# ----------------------------------------------------------------------------- conditional spaces

def _in_case(config: dict, entry) -> bool:
    case = entry.case(config[entry.parent])
    return case.low <= config["lr"] <= case.high


def test_tpe_samples_conditional_entries_only_where_they_apply_and_within_their_option_range():
    import optuna

    from search_spaces import SPACES
    from tunelab.searcher import DefineByRun, tpe_sampler

    space = SPACES["classifier"]
    sample = DefineByRun(space)
    study = optuna.create_study(direction="maximize", sampler=tpe_sampler(0, 5, conditional=True))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        config = sample(trial)
        seen.add(config["optimizer"])
        assert _in_case(config, space["lr"])
        assert ("momentum" in config) == (config["optimizer"] in ("sgd", "rmsprop"))
        assert f"lr|optimizer={config['optimizer']}" in trial.params and "lr" not in trial.params
        study.tell(trial, config["lr"])  # any objective: TPE's later proposals must still respect the cases
    assert seen == {"sgd", "adam", "adamw", "rmsprop"}


def test_random_search_draws_conditional_entries_per_trial_reproducibly():
    import numpy as np
    from ray.tune.search.variant_generator import generate_variants

    from search_spaces import SPACES
    from trainables.classifier import ClassifierConfig
    from trainables.config import to_dict
    from tunelab.driver import tune_domains

    space = SPACES["classifier"]

    def configs(seed):
        domains = tune_domains(space, to_dict(ClassifierConfig()), seed)
        state = np.random.RandomState(seed)
        return [next(generate_variants(domains, random_state=state))[1] for _ in range(40)]

    drawn = configs(0)
    assert drawn == configs(0) and drawn != configs(1)
    assert len({c["lr"] for c in drawn}) == 40  # a fresh draw per trial, not one value copied
    for config in drawn:
        assert _in_case(config, space["lr"])
        if config["optimizer"] in ("adam", "adamw"):
            assert config["momentum"] == ClassifierConfig().momentum  # not drawn: the default stands
        else:
            assert 0.8 <= config["momentum"] <= 0.99
