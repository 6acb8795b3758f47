"""`tunelab.search.make_search` driving a user's own function trainable in a plain ray.tune.Tuner,
read back through Optuna's own storage."""
import math

import pytest

from tunelab.search_spaces import Choice, Conditional, FloatRange
from tunelab.core.errors import ConfigError
from tunelab.search import make_search

SPACE = {"opt": Choice(("sgd", "adam")),
         "lr": Conditional("opt", (("sgd", FloatRange(1e-2, 1.0, log=True)), ("adam", FloatRange(1e-4, 1e-2, log=True)))),
         "momentum": Conditional("opt", (("sgd", FloatRange(0.0, 0.99)), ("adam", None)))}


def user_trainable(config):
    from ray import tune

    assert ("momentum" in config) == (config["opt"] == "sgd")  # never sampled where it does not apply
    for step in range(1, 10):
        tune.report({"loss": (math.log10(config["lr"]) + 2.5) ** 2 + 1.0 / step})


@pytest.mark.ray
def test_make_search_in_a_users_tuner_records_asha_stops_as_pruned(ray_cluster, tmp_path):
    import optuna
    from ray import tune

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    searcher, scheduler = make_search(SPACE, "loss", "min", max_t=9, num_samples=8, seed=0, storage=storage,
                                      study_name="user")
    # reuse_actors: a trial's worker process takes the next trial (as tunelab's own searches do)
    # rather than eight processes starting, each importing Ray and this module, for microsecond trials
    results = tune.Tuner(user_trainable, tune_config=tune.TuneConfig(
        search_alg=searcher, scheduler=scheduler, metric="loss", mode="min", num_samples=8, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=tmp_path.as_uri(), name="user", verbose=0)).fit()
    assert not results.errors and results.get_best_result().metrics["loss"] < 2
    study = optuna.load_study(study_name="user", storage=storage)
    assert len(study.trials) == 8
    iterations = {r.metrics["trial_id"]: r.metrics["training_iteration"] for r in results}
    for trial in study.trials:
        ray_id = trial.user_attrs["ray_trial_id"]
        opt = trial.params["opt"]
        assert set(trial.params) == {"opt", f"lr|opt={opt}"} | ({"momentum|opt=sgd"} if opt == "sgd" else set())
        assert sorted(trial.intermediate_values) == list(range(1, iterations[ray_id] + 1))
        if iterations[ray_id] == 9:  # ran the full budget: its best value is final
            assert trial.state == optuna.trial.TrialState.COMPLETE
            assert trial.value == min(trial.intermediate_values.values())
        else:  # ASHA stopped it: not a final score
            assert trial.state == optuna.trial.TrialState.PRUNED
    assert any(n < 9 for n in iterations.values()), "ASHA stopped no trial: the test checks nothing about pruning"


@pytest.mark.parametrize("kwargs, message", [
    (dict(space={}), "space must be a non-empty dict"),
    (dict(space={"lr": (1e-3, 1e-1)}), r"space\['lr'\] is \(0.001, 0.1\); use FloatRange"),
    (dict(space={"lr": SPACE["lr"]}), r"space\['lr'\] depends on 'opt', which is not a Choice of this space"),
    (dict(space={"opt": Choice(("sgd", "rmsprop")), "lr": SPACE["lr"]}), "none for opt='rmsprop'"),
    (dict(mode="maximise"), "mode='maximise' is not valid; choose from: min, max"),
    (dict(max_t=0), "max_t=0 is out of range"),
    (dict(reduction_factor=1), "reduction_factor=1 is out of range"),
    (dict(brackets=0), "brackets=0 is out of range; allowed: an integer >= 1"),
    (dict(brackets=2.5), "brackets=2.5 is out of range"),
    # issue 31, 6
    (dict(space={"x": FloatRange(0.0, math.inf)}), r"space\['x'\].high=inf is not valid; allowed: a finite number"),
    (dict(space={"x": FloatRange(-math.inf, 0.0)}), r"space\['x'\].low=-inf is not valid"),
    (dict(space={"opt": Choice(("sgd", "adam")), "lr": Conditional("opt", (("sgd", FloatRange(1e-3, math.inf)),
                                                                         ("adam", None)))}),
     r"space\['lr'\] under opt='sgd'.high=inf is not valid"),
    (dict(num_samples=0), r"num_samples=0 is out of range; allowed: None or an integer >= 1"),
    (dict(num_samples=-4), r"num_samples=-4 is out of range"),
    (dict(num_samples=2.5), r"num_samples=2.5 is out of range"),
    (dict(max_t=-3), r"max_t=-3 is out of range; allowed: an integer >= 1"),
    (dict(metric=""), r"metric='' is not valid"),
    (dict(space={"opt": Choice(("a", "b")), "x": Conditional("y", (("a", Choice(("a", "b"))), ("b", None))),
                 "y": Conditional("x", (("a", Choice(("a", "b"))), ("b", None)))}), "x -> y -> x is a cycle"),
])
def test_make_search_refuses_bad_arguments_naming_them(kwargs, message):
    arguments = {**dict(space=SPACE, metric="loss", mode="min", max_t=9), **kwargs}
    with pytest.raises(ValueError, match=message) as raised:  # the public API raises ValueError
        make_search(**arguments)
    assert isinstance(raised.value, ConfigError)  # and the command line turns it into one line, exit 2


def test_make_search_gives_metric_and_mode_to_the_scheduler_too():
    """A user's TuneConfig need not repeat them; it may repeat them, not change them (Ray refuses)."""
    _, scheduler = make_search(SPACE, "loss", "min", max_t=9)
    assert (scheduler._metric, scheduler._mode) == ("loss", "min")
    assert scheduler.set_search_properties(None, None) and scheduler.set_search_properties("loss", "min")
    assert (scheduler._metric, scheduler._mode, scheduler._metric_op) == ("loss", "min", -1.0)
    assert not scheduler.set_search_properties("acc", None) and not scheduler.set_search_properties(None, "max")


@pytest.mark.ray
def test_make_search_in_a_users_tuner_without_metric_and_mode_in_tune_config(ray_cluster, tmp_path):
    from ray import tune

    searcher, scheduler = make_search(SPACE, "loss", "min", max_t=9, num_samples=6, seed=0)
    results = tune.Tuner(user_trainable, tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                                                     num_samples=6, reuse_actors=True),
                         run_config=tune.RunConfig(storage_path=tmp_path.as_uri(), name="plain", verbose=0)).fit()
    assert not results.errors and len(results) == 6
    assert min(r.metrics["loss"] for r in results) == results.get_best_result("loss", "min").metrics["loss"]
    assert any(r.metrics["training_iteration"] < 9 for r in results), "ASHA stopped no trial: it saw no metric"


def test_make_search_brackets_give_asha_hyperband_brackets():
    """bracket k's first rung is at grace_period x reduction_factor^k (Ray's AsyncHyperBand)."""
    _, scheduler = make_search(SPACE, "loss", "min", max_t=27, grace_period=1, reduction_factor=3, brackets=3)
    first_rungs = sorted(min(milestone for milestone, _ in bracket._rungs) for bracket in scheduler._brackets)
    assert first_rungs == [1, 3, 9]
    _, default = make_search(SPACE, "loss", "min", max_t=27)
    assert len(default._brackets) == 4  # the default since the peer benchmark (benchmarks/peers.md): the 4th never stops early
    assert sorted(m for m, _ in default._brackets[3]._rungs if m < 27) == []
    _, short = make_search(SPACE, "loss", "min", max_t=4, grace_period=3, brackets=5)
    # rungs (3, 4): two brackets at most, one deciding at epoch 3 and one that never stops early
    assert sorted(sorted(m for m, _ in b._rungs) for b in short._brackets) == [[], [3]]


def test_asha_brackets_are_drawn_from_the_seed():
    """Ray draws each trial's bracket from numpy's global generator; tunelab's from its seed."""
    from types import SimpleNamespace

    import numpy as np

    def brackets_drawn(seed):
        _, scheduler = make_search(SPACE, "loss", "min", max_t=27, seed=seed)
        scheduler.set_search_properties("loss", "min")
        drawn = []
        for i in range(40):
            np.random.seed(i)  # what Ray's own draw would follow
            scheduler.on_trial_add(None, SimpleNamespace(trial_id=str(i)))
            drawn.append(scheduler._brackets.index(scheduler._trial_info[str(i)]))
        return drawn

    assert brackets_drawn(0) == brackets_drawn(0) != brackets_drawn(1)
    assert set(brackets_drawn(0)) == {0, 1, 2, 3}


def test_brackets_are_drawn_with_hyperbands_allocation():
    """Hyperband (Li et al. 2018) runs n_s = ceil(B / (s + 1) x eta^s) trials in the bracket with s
    early stops. max_t 27, eta 3, 4 brackets: s = 3, 2, 1, 0 -> 27, 12, 6, 4 trials of 49."""
    import numpy as np

    _, scheduler = make_search(SPACE, "loss", "min", max_t=27, brackets=4)
    assert np.allclose(scheduler._bracket_p, np.array([27, 12, 6, 4]) / 49)
    _, nine = make_search(SPACE, "loss", "min", max_t=9, brackets=4)  # capped at 3 brackets: 9, 5, 3 of 17
    assert np.allclose(nine._bracket_p, np.array([9, 5, 3]) / 17)
    _, two = make_search(SPACE, "loss", "min", max_t=100, reduction_factor=2, brackets=2)
    # rungs 1, 2, 4, ..., 64 below 100: s = 7 and 6 -> ceil(2/8 x 128) = 32, ceil(2/7 x 64) = 19
    assert np.allclose(two._bracket_p, np.array([32, 19]) / 51)
