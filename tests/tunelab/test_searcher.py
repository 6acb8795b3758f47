"""Multi-fidelity bookkeeping of the Optuna searcher, driven by hand (no Ray run needed)."""
from optuna.trial import TrialState

from tunelab.search_spaces.base import Choice, FloatRange
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
    for unusable in ({"val/acc": 0.7, "epoch": float("inf")}, {"val/acc": "0.7", "epoch": 3}, {"epoch": 3},
                     {"val/acc": 0.7, "epoch": None}):  # ignored, as the rebuild from result.json ignores them
        s.on_trial_result("t", unusable)
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

    from tunelab.search_spaces import SPACES
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
        assert sample.params({**config, "seed": 0}) == trial.params  # the inverse the resume rebuild uses
        study.tell(trial, config["lr"])  # any objective: TPE's later proposals must still respect the cases
    assert seen == {"sgd", "adam", "adamw", "rmsprop"}


def test_random_search_draws_conditional_entries_per_trial_reproducibly():
    import numpy as np
    from ray.tune.search.variant_generator import generate_variants

    from tunelab.search_spaces import SPACES
    from tunelab.trainables.classifier import ClassifierConfig
    from tunelab.trainables.config import to_dict
    from tunelab.searchers.random_search import tune_domains

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


def _frozen(number, x, state, values, final=None):
    import optuna

    trial = optuna.trial.create_trial(state=state, value=final, params={"x": x},
                                      distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
                                      intermediate_values=values)
    trial.number = number
    return trial


def test_rung_view_values_each_trial_at_the_highest_rung_with_enough_trials():
    from tunelab.searcher import rung_view

    C, P, R = TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING
    trials = [_frozen(0, 0.1, C, {1: 5.0, 3: 4.0, 9: 3.0}, final=2.5),  # best epoch 2.5 at the top rung
              _frozen(1, 0.2, P, {1: 1.0, 3: 6.0}),
              _frozen(2, 0.3, P, {1: 2.0}),
              _frozen(3, 0.4, R, {1: 0.5})]
    # rung 3 is the highest with two trials that reached it; the one stopped at rung 1 drops out
    view = rung_view(trials, rungs=(1, 3, 9), min_rung_trials=2)
    assert [(t.number, t.state, t.value) for t in view] == [(0, C, 4.0), (1, C, 6.0), (3, R, None)]
    # nothing reaches three trials above rung 1: every finished trial at rung 1
    view = rung_view(trials, rungs=(1, 3, 9), min_rung_trials=3)
    assert [(t.number, t.value) for t in view if t.state == C] == [(0, 5.0), (1, 1.0), (2, 2.0)]
    # a COMPLETE trial counts at the top rung with its own (best-epoch) value
    view = rung_view(trials, rungs=(1, 3, 9), min_rung_trials=1)
    assert [(t.number, t.value) for t in view if t.state == C] == [(0, 2.5)]
    assert trials[1].state == P and trials[1].value is None  # the study's own trials are untouched


def test_rung_tpe_follows_the_best_values_at_a_rung_not_the_trials_that_happened_to_complete():
    """Under ASHA the first trials complete whatever their value. Here four early trials near x=0.9
    completed with poor values; sixteen later ones were stopped at rung 1, the best of them near
    x=0.1. Stock TPE ranks every COMPLETE trial above every PRUNED one and proposes near 0.9; the
    rung view compares all twenty at rung 1 and proposes near 0.1."""
    import numpy as np
    import optuna

    from tunelab.searcher import tpe_sampler

    C, P = TrialState.COMPLETE, TrialState.PRUNED
    rng = np.random.default_rng(0)
    trials = [_frozen(i, 0.9 + 0.02 * i, C, {1: 8.0, 3: 7.0, 9: 6.5}, final=6.0) for i in range(4)]
    for i in range(4, 20):
        x = float(rng.uniform(0, 1))
        trials.append(_frozen(i, x, P, {1: 10 * abs(x - 0.1)}))

    def proposals(sampler):
        study = optuna.create_study(direction="minimize", sampler=sampler)
        study.add_trials(trials)
        dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
        return np.median([study.ask(dist).params["x"] for _ in range(20)])

    assert proposals(tpe_sampler(0, 10, rungs=(1, 3, 9), min_rung_trials=10)) < 0.3
    assert proposals(tpe_sampler(0, 10)) > 0.7


def test_rung_view_properties_over_random_studies():
    """Any mix of trials: finished trials in the view all reached one rung, the highest that at
    least `min_rung_trials` reached (else the lowest), and are valued there; RUNNING trials stay;
    FAIL and trials short of the rung drop out; the study's trials are never changed."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from tunelab.searcher import rung_view, value_at_rung

    rungs = (1, 3, 9)
    trial_strategy = st.tuples(st.sampled_from([TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING,
                                                TrialState.FAIL]),
                               st.integers(1, 9), st.floats(-5, 5))

    @settings(max_examples=150, deadline=None)
    @given(st.lists(trial_strategy, max_size=25), st.integers(1, 8))
    def check(specs, min_trials):
        trials = []
        for number, (state, reached, base) in enumerate(specs):
            if state == TrialState.COMPLETE:
                reached = 9
            values = {step: base + step for step in range(1, reached + 1)}
            trials.append(_frozen(number, 0.5, state, values, final=base if state == TrialState.COMPLETE else None))
        before = [(t.state, t.value, dict(t.intermediate_values)) for t in trials]
        view = rung_view(trials, rungs, min_trials)
        finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        counts = {r: sum(value_at_rung(t, r, 9) is not None for t in finished) for r in rungs}
        chosen = max([r for r in rungs if counts[r] >= min_trials], default=1)
        seen = {t.number: t for t in view}
        for t in trials:
            if t.state == TrialState.RUNNING:
                assert seen[t.number].state == TrialState.RUNNING
            elif t.state == TrialState.FAIL or value_at_rung(t, chosen, 9) is None:
                assert t.number not in seen
            else:
                assert seen[t.number].state == TrialState.COMPLETE
                assert seen[t.number].value == value_at_rung(t, chosen, 9)
        assert [t.number for t in view] == sorted(seen)
        assert before == [(t.state, t.value, dict(t.intermediate_values)) for t in trials]

    check()


# ----------------------------------------------------------------------------- issue 31, 6: chained conditionals

def _chained_space() -> dict:
    """The classifier space with schedule searched under sgd only and momentum under schedule (a chain)."""
    from tunelab.search_spaces import SPACES
    from tunelab.search_spaces.base import Choice, Conditional, FloatRange

    space = dict(SPACES["classifier"])
    space["schedule"] = Conditional("optimizer", (("sgd", Choice(("cosine", "step"))), ("adam", None),
                                                  ("adamw", None), ("rmsprop", None)))
    space["momentum"] = Conditional("schedule", (("cosine", FloatRange(0.8, 0.9)), ("step", FloatRange(0.9, 0.99))))
    return {"momentum": space.pop("momentum"), **space}  # the child first: samplers must order them


def _check_chain(config: dict, default_momentum=None) -> None:
    """momentum is drawn only where schedule was drawn (sgd), from schedule's case."""
    if config["optimizer"] != "sgd":
        assert config.get("momentum", default_momentum) == default_momentum
        return
    low, high = (0.8, 0.9) if config["schedule"] == "cosine" else (0.9, 0.99)
    assert low <= config["momentum"] <= high, config


def test_optuna_samples_a_chained_entry_only_under_its_sampled_parent():
    import optuna

    from tunelab.searcher import DefineByRun, tpe_sampler

    sample = DefineByRun(_chained_space())
    study = optuna.create_study(direction="maximize", sampler=tpe_sampler(0, 5, conditional=True))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        config = sample(trial)
        assert ("schedule" in config) == ("momentum" in config) == (config["optimizer"] == "sgd")
        _check_chain(config)
        seen.add(config.get("schedule"))
        assert sample.params({**config, "seed": 0}) == trial.params
        study.tell(trial, config["lr"])
    assert seen == {None, "cosine", "step"}


def test_random_search_draws_a_chained_entry_only_under_its_drawn_parent():
    import numpy as np
    from ray.tune.search.variant_generator import generate_variants

    from tunelab.trainables.classifier import ClassifierConfig
    from tunelab.trainables.config import to_dict
    from tunelab.searchers.random_search import tune_domains

    defaults = to_dict(ClassifierConfig())
    domains = tune_domains(_chained_space(), defaults, 0)
    state = np.random.RandomState(0)
    drawn = [next(generate_variants(domains, random_state=state))[1] for _ in range(60)]
    for config in drawn:
        _check_chain(config, defaults["momentum"])
        if config["optimizer"] != "sgd":
            assert config["schedule"] == defaults["schedule"]  # not drawn: the default stands
    assert {c["schedule"] for c in drawn if c["optimizer"] == "sgd"} == {"cosine", "step"}


def test_a_space_file_with_a_chain_is_searched_as_a_chain(tmp_path):
    """`tunelab tune --space` with the issue's chain: resolve_space keeps both conditionals."""
    from tunelab.search_spaces.base import Conditional
    from tunelab.search_plan import resolve_space
    from tunelab.tune_options import TuneOptions, fixed_values

    (tmp_path / "chain.yaml").write_text(
        "schedule: {when: optimizer, cases: {sgd: {choices: [cosine, step]}, adam: null, adamw: null, rmsprop: null}}\n"
        "momentum: {when: schedule, cases: {cosine: {low: 0.8, high: 0.9}, step: {low: 0.9, high: 0.99}}}\n")
    opts = TuneOptions(method="classifier", space=str(tmp_path / "chain.yaml"))
    space = resolve_space(opts, fixed_values(opts))
    assert isinstance(space["schedule"], Conditional) and space["momentum"].parent == "schedule"
    fixed = TuneOptions(method="classifier", space=str(tmp_path / "chain.yaml"), sets=["optimizer=adam"])
    assert "schedule" not in (settled := resolve_space(fixed, fixed_values(fixed))) and "momentum" not in settled


# ----------------------------------------------------------------------------- cluster scale: cost per suggestion

def test_first_seen_groups_are_optunas_groups_over_any_order_of_finishing():
    """FirstSeenGroups reads each finished trial once; Optuna's _GroupDecomposedSearchSpace reads
    them all at every call. Same groups, same order, whatever order trials finish in."""
    import optuna
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from optuna.search_space.group_decomposed import _GroupDecomposedSearchSpace

    from tunelab.compat.optuna import FirstSeenGroups

    names = ["a", "b", "c", "d", "e"]
    distribution = optuna.distributions.FloatDistribution(0, 1)
    trial_strategy = st.tuples(st.sets(st.sampled_from(names), min_size=1),
                               st.sampled_from([TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]))

    @settings(max_examples=100, deadline=None)
    @given(st.lists(trial_strategy, min_size=1, max_size=12), st.randoms(use_true_random=False), st.booleans())
    def check(specs, shuffle, include_pruned):
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study = optuna.create_study()
        running = [(study.ask({n: distribution for n in sorted(keys)}), state) for keys, state in specs]
        order = list(range(len(running)))
        shuffle.shuffle(order)  # trials finish in any order; each call below sees the study as it is
        mine = FirstSeenGroups(include_pruned)
        for k in order:
            trial, state = running[k]
            study.tell(trial, 0.0 if state == TrialState.COMPLETE else None, state=state)
            expected = _GroupDecomposedSearchSpace(include_pruned).calculate(study).search_spaces
            assert mine.calculate(study).search_spaces == expected

    check()


def test_internal_columns_are_optunas_internal_repr_for_any_group():
    """`_Columns` turns a list of trials' parameters into TPE's internal numbers once and answers
    every group from them; Optuna's `_get_internal_repr` loops over the trials per group. Same
    arrays (values, order, dtype) for any trials and any group, empty ones included."""
    import numpy as np
    import optuna
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from tunelab.compat.optuna import _Columns

    space = {"x": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True),
             "n": optuna.distributions.IntDistribution(1, 9),
             "opt": optuna.distributions.CategoricalDistribution(("sgd", "adam", None)),
             "flag": optuna.distributions.CategoricalDistribution((True, False))}
    values = {"x": st.floats(1e-3, 1.0), "n": st.integers(1, 9), "opt": st.sampled_from(("sgd", "adam", None)),
              "flag": st.booleans()}
    params = st.fixed_dictionaries({}, optional=values)
    reference = optuna.samplers.TPESampler(seed=0)
    study = optuna.create_study()

    @settings(max_examples=200, deadline=None)
    @given(st.lists(params, max_size=8), st.lists(st.sets(st.sampled_from(list(space))), min_size=1, max_size=4))
    def check(all_params, groups):
        trials = [optuna.trial.create_trial(params=p, distributions={k: space[k] for k in p}, value=0.0)
                  for p in all_params]
        columns = _Columns(trials, [t.params for t in trials])
        for group in groups:
            search_space = {name: space[name] for name in sorted(group)}
            expected = reference._get_internal_repr(trials, search_space, study)
            got = columns.internal(search_space)
            assert got.keys() == expected.keys()
            for name in expected:
                assert got[name].dtype == expected[name].dtype
                np.testing.assert_array_equal(got[name], expected[name])

    check()


def test_a_search_suggests_the_same_configs_with_the_per_suggestion_savings_as_without():
    """One rung view per suggestion and the groups read once save most of a suggestion's cost at
    10,000 trials (benchmarks/scale.md); the samples must not change. The reference builds the
    view anew for each group and lets Optuna find the groups from every trial each time."""
    import numpy as np
    import optuna
    from optuna.search_space.group_decomposed import _GroupDecomposedSearchSpace

    from tunelab.search_spaces import SPACES
    from tunelab.searcher import DefineByRun, tpe_sampler

    def configs(saving: bool) -> list[dict]:
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        sampler = tpe_sampler(3, n_startup_trials=5, conditional=True, rungs=(1, 3, 9), min_rung_trials=4)
        if not saving:
            sampler._group_decomposed_search_space = _GroupDecomposedSearchSpace(True)
            sampler.sample_relative = lambda study, trial, space: optuna.samplers.TPESampler.sample_relative(
                sampler, study, trial, space)
        study = optuna.create_study(direction="minimize", sampler=sampler)
        sample = DefineByRun(SPACES["classifier"])
        rng = np.random.default_rng(0)
        out, open_trials = [], []
        for _ in range(40):
            trial = study.ask()
            out.append(sample(trial))
            open_trials.append(trial)
            if len(open_trials) == 3:  # three running at once: the constant liar sees the others
                for running in open_trials:
                    stop = int(rng.choice([1, 3, 9]))
                    for step in range(1, stop + 1):
                        running.report(float(rng.random()) / step, step)
                    if stop == 9:
                        study.tell(running, float(rng.random()) / 9)
                    else:
                        study.tell(running, state=TrialState.PRUNED)
                open_trials = []
        return out

    saved = configs(saving=True)
    assert saved == configs(saving=False)
    assert len({c["optimizer"] for c in saved}) > 1 and len({c["lr"] for c in saved}) == 40


def test_the_rung_view_kept_between_suggestions_is_the_one_built_afresh():
    """FinishedAtRungs reads each finished trial once and keeps its copies; at every moment of a
    study whose trials finish in any order its view must equal rung_view of the trials as they are."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from tunelab.searcher import FinishedAtRungs, rung_view

    rungs = (1, 3, 9)
    spec = st.tuples(st.sampled_from([TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]),
                     st.integers(1, 9), st.one_of(st.floats(-5, 5), st.just(float("nan"))), st.integers(0, 6))

    @settings(max_examples=150, deadline=None)
    @given(st.lists(spec, max_size=20), st.integers(1, 6))
    def check(specs, min_trials):
        kept, study = FinishedAtRungs(rungs), object()
        for now in range(len(specs) + 7):  # trial j starts at j and finishes `lag` steps later
            trials = []
            for number, (state, reached, base, lag) in enumerate(specs[:now + 1]):
                if number + lag > now:
                    state = TrialState.RUNNING
                reached = 9 if state == TrialState.COMPLETE else reached
                values = {step: base + step for step in range(1, reached + 1)}
                final = (base if base == base else 0.0) if state == TrialState.COMPLETE else None  # NaN: only reported
                trial = _frozen(number, 0.5, state, values, final=final)
                trial._trial_id = number
                trials.append(trial)
            expected = rung_view(trials, rungs, min_trials)
            got = kept.view(study, trials, min_trials)
            assert [(t.number, t.state, t.values) for t in got] == [(t.number, t.state, t.values) for t in expected]

    check()


def _stopped_at_rung_one(study, sample, trials: int) -> None:
    """`trials` trials of `study`, each sampled by `sample`, reported once at step 1 and pruned."""
    for _ in range(trials):
        trial = study.ask()
        sample(trial)
        trial.report(0.5, 1)
        study.tell(trial, state=TrialState.PRUNED)

def test_what_is_kept_between_suggestions_stays_out_of_the_searchers_snapshot():
    """Ray pickles the searcher (study and sampler) at each experiment snapshot: the kept copies
    would make it grow with every finished trial; after a restore they are read again."""
    import pickle

    import optuna

    from tunelab.search_spaces import SPACES
    from tunelab.searcher import DefineByRun, tpe_sampler

    sampler = tpe_sampler(0, n_startup_trials=2, conditional=True, rungs=(1, 3), min_rung_trials=1)
    study = optuna.create_study(sampler=sampler)
    sample = DefineByRun(SPACES["classifier"])
    _stopped_at_rung_one(study, sample, 6)
    assert sampler._finished._values and sampler._group_decomposed_search_space._read  # kept while it runs
    restored = pickle.loads(pickle.dumps(sampler))
    assert not restored._finished._values and not restored._group_decomposed_search_space._read
    assert restored._finished.rungs == (1, 3)
    restored_study = optuna.create_study(sampler=restored)
    restored_study.add_trials(study.trials)
    trial = restored_study.ask()
    assert sample(trial)  # samples again, reading the trials anew
    assert len(restored._finished._values) == 6


def test_what_is_kept_for_one_study_is_not_used_for_another():
    """Two in-memory studies number their trials' storage ids alike: a sampler, or what it keeps,
    used with a second study must read that study's trials, not the first one's."""
    import optuna
    from optuna.search_space.group_decomposed import _GroupDecomposedSearchSpace

    from tunelab.compat.optuna import FirstSeenGroups
    from tunelab.searcher import FinishedAtRungs, rung_view

    C = TrialState.COMPLETE
    first = [_frozen(0, 0.1, C, {1: 1.0, 3: 1.0}, final=1.0), _frozen(1, 0.2, C, {1: 2.0, 3: 2.0}, final=2.0)]
    second = [_frozen(0, 0.9, C, {1: 5.0, 3: 5.0}, final=5.0), _frozen(1, 0.8, C, {1: 6.0, 3: 6.0}, final=6.0)]
    for number, trial in enumerate(first + second):
        trial._trial_id = number % 2
    kept = FinishedAtRungs((1, 3))
    kept.view("first study", first, 1)
    assert [t.values for t in kept.view("second study", second, 1)] == [t.values for t in rung_view(second, (1, 3), 1)]

    groups = FirstSeenGroups(include_pruned=True)
    studies = []
    for names in (("a",), ("a", "b")):
        study = optuna.create_study()
        trial = study.ask({n: optuna.distributions.FloatDistribution(0, 1) for n in names})
        study.tell(trial, 0.0)
        studies.append(study)
        assert groups.calculate(study).search_spaces == _GroupDecomposedSearchSpace(True).calculate(study).search_spaces


def test_a_sampler_pickled_by_an_earlier_tunelab_samples_after_a_restore():
    """Experiments recorded before the per-suggestion savings hold a sampler without them (the
    0.1.0 experiment in tests/data resumes through this)."""
    import pickle

    import optuna
    from optuna.search_space.group_decomposed import _GroupDecomposedSearchSpace

    from tunelab.compat.optuna import FirstSeenGroups
    from tunelab.search_spaces import SPACES
    from tunelab.searcher import DefineByRun, tpe_sampler

    sampler = tpe_sampler(0, n_startup_trials=1, conditional=True, rungs=(1, 3), min_rung_trials=1)
    del sampler.__dict__["_finished"], sampler.__dict__["_views"]
    sampler._group_decomposed_search_space = _GroupDecomposedSearchSpace(True)
    restored = pickle.loads(pickle.dumps(sampler))
    assert isinstance(restored._group_decomposed_search_space, FirstSeenGroups)
    study = optuna.create_study(sampler=restored)
    _stopped_at_rung_one(study, DefineByRun(SPACES["classifier"]), 4)
    assert len(restored._finished._values) == 3  # the savings are back
