"""Analysis functions on hand-built frames, checked against values computed independently."""
import json
import math

import numpy as np
import pandas as pd
from scipy import stats
import pytest

from tunelab.analysis.load import trial_status, trial_summary
from tunelab.analysis.replicates import comparison_table
from tunelab.analysis.importance import importance
from tunelab.analysis.tables import comparison, edge_params, mean_ci, welch_diff_ci


def _rows():
    # Two trials: "a" peaks at epoch 2 (0.9) then drops; "b" stopped after 1 epoch.
    return pd.DataFrame([
        dict(experiment="e", method="m", dataset="d", trial_id="a", status="finished", epoch=1, **{"val/acc": 0.5, "time/epoch_s": 1.0, "config/lr": 0.1}),
        dict(experiment="e", method="m", dataset="d", trial_id="a", status="finished", epoch=2, **{"val/acc": 0.9, "time/epoch_s": 1.5, "config/lr": 0.1}),
        dict(experiment="e", method="m", dataset="d", trial_id="a", status="finished", epoch=3, **{"val/acc": 0.8, "time/epoch_s": 2.0, "config/lr": 0.1}),
        dict(experiment="e", method="m", dataset="d", trial_id="b", status="stopped", epoch=1, **{"val/acc": 0.3, "time/epoch_s": 1.0, "config/lr": 0.001}),
    ])


def test_summary_takes_the_best_epoch_not_the_last():
    summary = trial_summary(_rows()).set_index("trial_id")
    assert summary.loc["a", "val/acc"] == 0.9 and summary.loc["a", "best_epoch"] == 2
    assert summary.loc["a", "epochs"] == 3 and summary.loc["a", "compute_s"] == pytest.approx(4.5)
    assert summary.loc["b", "best_epoch"] == 1 and summary.loc["b", "epochs"] == 1


def test_summary_of_a_trial_that_never_reported():
    rows = pd.concat([_rows(), pd.DataFrame([dict(experiment="e", method="m", dataset="d", trial_id="c",
                                                  status="errored", epoch=pd.NA)])], ignore_index=True)
    summary = trial_summary(rows).set_index("trial_id")
    assert summary.loc["c", "epochs"] == 0 and pd.isna(summary.loc["c", "best_epoch"])


def test_status_rules():
    finished = pd.DataFrame({"epoch": [1, 2, 3], "diverged": [0, 0, 0]})
    assert trial_status(finished, False, "TERMINATED", 3) == "finished"
    assert trial_status(finished.iloc[:1], False, "TERMINATED", 3) == "stopped"
    assert trial_status(finished.iloc[:1], False, "RUNNING", 3) == "incomplete"
    assert trial_status(finished, True, "ERROR", 3) == "errored"
    assert trial_status(finished, True, "", 3) == "errored"  # no Ray state to say otherwise
    assert trial_status(finished, True, "TERMINATED", 3) == "finished"  # failed once, retried, finished
    assert trial_status(pd.DataFrame({"epoch": [1], "diverged": [1]}), False, "TERMINATED", 3) == "diverged"


def test_mean_ci_matches_the_t_formula():
    values = [0.90, 0.92, 0.97]
    mean, std, low, high = mean_ci(values)
    # t(0.975, df=2) = 4.302652729911275 (tables); std by hand: sqrt(sum((x - mean)^2) / 2)
    by_hand_std = math.sqrt(sum((v - 0.93) ** 2 for v in values) / 2)
    assert mean == pytest.approx(0.93) and std == pytest.approx(by_hand_std)
    assert high - mean == pytest.approx(4.302652729911275 * by_hand_std / math.sqrt(3))
    assert mean_ci([0.5])[0] == 0.5 and math.isnan(mean_ci([0.5])[1])


def test_welch_interval_by_hand():
    a, b = [0.9, 0.92, 0.94], [0.8, 0.85, 0.83, 0.82]
    diff, low, high = welch_diff_ci(a, b)
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 4
    dof = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3)
    from scipy import stats
    half = stats.t.ppf(0.975, dof) * math.sqrt(va + vb)
    assert diff == pytest.approx(np.mean(a) - np.mean(b))
    assert (low, high) == pytest.approx((diff - half, diff + half))


def test_edge_flags_are_log_aware():
    space = [{"name": "lr", "low": 1e-4, "high": 1e-1, "log": True},
             {"name": "wd", "low": 0.0, "high": 1.0, "log": False},
             {"name": "opt", "options": ["a", "b"]}]
    # 1.3e-4 is 3.8% of the way on a log scale (edge), though 0.03% on a linear one; 0.5 mid-range.
    assert edge_params({"lr": 1.3e-4, "wd": 0.5, "opt": "a"}, space) == ["lr"]
    assert edge_params({"lr": 3e-3, "wd": 0.97}, space) == ["wd"]
    assert edge_params({"lr": 3e-3, "wd": 0.5}, space) == []


def test_comparison_rows_and_difference_to_baseline():
    summary = pd.concat([trial_summary(_rows()), trial_summary(_rows().assign(method="base"))], ignore_index=True)
    confirmations = pd.DataFrame({"method": ["m"] * 3 + ["base"] * 3, "dataset": ["d"] * 6, "seed": [0, 1, 2] * 2,
                                  "test/acc": [0.9, 0.92, 0.94, 0.8, 0.82, 0.84]})
    table = comparison(summary, confirmations, baseline="base",
                       spaces={"m": [{"name": "lr", "low": 1e-3, "high": 1e-1, "log": True}]}).set_index("method")
    row = table.loc["m"]
    assert row["trials"] == 2 and row["epochs"] == 4 and row["best_val_acc"] == 0.9 and row["best_trial"] == "a"
    assert row["n_seeds"] == 3 and row["test_acc_mean"] == pytest.approx(0.92)
    assert row["diff_vs_baseline"] == pytest.approx(0.10)
    assert row["edge_params"] == "lr"  # lr=0.1 is the top of [1e-3, 1e-1]
    assert json.loads(row["best_config"]) == {"lr": 0.1}
    assert math.isnan(table.loc["base", "diff_vs_baseline"])


def test_importance_finds_the_parameter_that_matters():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        lr, wd = 10 ** rng.uniform(-4, -1), rng.uniform(0, 1)
        rows.append({"trial_id": str(i), "val/acc": -abs(math.log10(lr) + 2.5) + 0.01 * rng.normal(),
                     "config/lr": lr, "config/wd": wd})
    space = [{"name": "lr", "type": "FloatRange", "low": 1e-4, "high": 1e-1, "log": True},
             {"name": "wd", "type": "FloatRange", "low": 0.0, "high": 1.0, "log": False}]
    found = importance(pd.DataFrame(rows), space).set_index("param")["importance"]
    assert found["lr"] > 0.8 > found["wd"]


def test_importance_beyond_its_cap_is_computed_on_a_seeded_sample_and_says_so(monkeypatch):
    from tunelab.analysis import importance as module

    monkeypatch.setattr(module, "MAX_IMPORTANCE_TRIALS", 20)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        lr, wd = 10 ** rng.uniform(-4, -1), rng.uniform(0, 1)
        rows.append({"trial_id": str(i), "val/acc": -abs(math.log10(lr) + 2.5), "config/lr": lr, "config/wd": wd})
    space = [{"name": "lr", "type": "FloatRange", "low": 1e-4, "high": 1e-1, "log": True},
             {"name": "wd", "type": "FloatRange", "low": 0.0, "high": 1.0, "log": False}]
    found = module.importance(pd.DataFrame(rows), space)
    assert found.set_index("param")["importance"]["lr"] > 0.8
    assert found.equals(module.importance(pd.DataFrame(rows), space))  # the same sample each time
    assert module.importance_note(pd.DataFrame(rows)) == "computed on a seeded random 20 of the 60 full-budget trials"


def test_mean_and_difference_intervals_drop_the_same_non_finite_seeds():
    a = [0.90, 0.92, float("nan"), 0.94]
    b = [0.80, 0.85, 0.82]
    diff, low, high = welch_diff_ci(a, b)
    expected = welch_diff_ci([0.90, 0.92, 0.94], b)
    assert not math.isnan(diff) and (diff, low, high) == pytest.approx(expected)
    assert diff == pytest.approx(mean_ci(a)[0] - mean_ci(b)[0])
    assert welch_diff_ci([0.9, float("inf"), 0.91], b) == pytest.approx(welch_diff_ci([0.9, 0.91], b))


def test_comparison_says_how_many_seeds_were_dropped():
    summary = pd.DataFrame({"method": ["a", "b"], "dataset": ["d", "d"], "trial_id": ["1", "2"], "val/acc": [0.9, 0.8],
                            "best_epoch": [1, 1], "epochs": [1, 1], "compute_s": [1.0, 1.0]})
    confirmations = pd.DataFrame({"method": ["a"] * 3 + ["b"] * 3, "dataset": ["d"] * 6, "seed": [0, 1, 2] * 2,
                                  "test/acc": [0.9, float("nan"), 0.92, 0.8, 0.81, 0.82]})
    table = comparison(summary, confirmations, baseline="b").set_index("method")
    assert table.loc["a", "n_seeds"] == 2 and table.loc["a", "seeds_dropped"] == 1
    assert table.loc["b", "n_seeds"] == 3 and table.loc["b", "seeds_dropped"] == 0
    assert not math.isnan(table.loc["a", "diff_vs_baseline"])


def test_one_rule_ranks_trials_ties_by_trial_id_and_skips_non_finite():
    from tunelab.core.ranking import rank_trials

    summary = pd.DataFrame({"trial_id": ["c", "a", "b", "d", "e"], "val/acc": [0.9, 0.9, 0.8, float("nan"),
                                                                               float("inf")],
                            "method": ["m"] * 5, "dataset": ["d"] * 5})
    assert list(rank_trials(summary, "val/acc", "max")["trial_id"]) == ["a", "c", "b"]
    assert list(rank_trials(summary, "val/acc", "min")["trial_id"]) == ["b", "a", "c"]
    from tunelab.analysis.tables import best_trials

    assert best_trials(summary)["trial_id"].tolist() == ["a"]


def test_experiments_of_one_method_with_other_search_settings_get_rows_of_their_own():
    from tunelab.analysis.report import method_labels

    def record(name, algorithm, samples):
        return {"method": "arcface", "dataset": "digits", "name": name, "search": {"algorithm": algorithm},
                "scheduler": {"kind": "asha", "max_t": 4}, "options": {"num_samples": samples}}

    same = method_labels({"/r/a": record("a", "optuna", 8), "/r/b": record("b", "optuna", 8)})
    assert same == {"/r/a": "arcface", "/r/b": "arcface"}  # the same search twice: pooled
    other = method_labels({"/r/a": record("a", "optuna", 8), "/r/b": record("b", "random", 8),
                           "/r/c": record("c", "optuna", 32)})
    assert other == {"/r/a": "arcface [a]", "/r/b": "arcface [b]", "/r/c": "arcface [c]"}


def test_importance_scores_full_budget_trials_only_and_needs_enough_of_them():
    from tunelab.analysis.importance import MIN_IMPORTANCE_TRIALS, importance_note

    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        lr, wd = 10 ** rng.uniform(-4, -1), rng.uniform(0, 1)
        finished = i % 2 == 0
        # stopped trials' early values follow wd, not lr: scored as final they would make wd look important
        value = -abs(math.log10(lr) + 2.5) if finished else -5.0 * wd
        rows.append({"trial_id": str(i), "val/acc": value, "status": "finished" if finished else "stopped",
                     "config/lr": lr, "config/wd": wd})
    space = [{"name": "lr", "type": "FloatRange", "low": 1e-4, "high": 1e-1, "log": True},
             {"name": "wd", "type": "FloatRange", "low": 0.0, "high": 1.0, "log": False}]
    found = importance(pd.DataFrame(rows), space).set_index("param")["importance"]
    assert found["lr"] > 0.8 > found["wd"]
    assert importance_note(pd.DataFrame(rows)) is None
    few = pd.DataFrame(rows[: 2 * (MIN_IMPORTANCE_TRIALS - 1)])  # MIN - 1 finished trials
    assert importance(few, space).empty
    assert f"{MIN_IMPORTANCE_TRIALS - 1} trial(s) ran the full budget" in importance_note(few)


def test_importance_is_read_from_the_stored_study_when_there_is_one(tmp_path):
    import optuna

    from tunelab.analysis.report import method_importance

    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="exp", storage=url, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):  # the objective depends on lr only; pruned trials would say otherwise
        trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
                           "wd": optuna.distributions.FloatDistribution(0.0, 1.0)})
        study.tell(trial, -abs(math.log10(trial.params["lr"]) + 2.5))
    pruned = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
                        "wd": optuna.distributions.FloatDistribution(0.0, 1.0)})
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    record = {"name": "exp", "search": {"optuna_storage": url}}
    files = pd.DataFrame({"trial_id": ["x"], "val/acc": [0.5], "status": ["finished"]})  # would be too few
    found, note = method_importance(files, [record], space=[])
    assert note is None and found.set_index("param")["importance"]["lr"] > 0.8
    gone = {"name": "missing", "search": {"optuna_storage": f"sqlite:///{tmp_path / 'none.db'}"}}
    found, note = method_importance(files, [gone], space=[])  # the study is not there: the files answer
    assert found.empty and "1 trial(s) ran the full budget" in note


def test_a_missing_study_file_is_not_created_by_a_report(tmp_path):
    from tunelab.analysis.importance import study_importance

    assert study_importance(f"sqlite:///{tmp_path / 'none.db'}", "exp") is None
    assert not (tmp_path / "none.db").exists()


def test_each_difference_says_whether_it_is_resolved_after_holm_and_what_80_percent_power_needs():
    from tunelab.analysis.report_markdown import resolution_lines
    from tunelab.analysis.stats import holm, min_detectable_diff
    from tunelab.analysis.tables import format_table

    summary = pd.DataFrame({"method": ["clear", "close", "base"], "dataset": ["d"] * 3, "trial_id": ["1", "2", "3"],
                            "val/acc": [0.9, 0.8, 0.8], "best_epoch": [1] * 3, "epochs": [1] * 3,
                            "compute_s": [1.0] * 3})
    tests = {"clear": [0.90, 0.92, 0.94], "close": [0.80, 0.86, 0.83], "base": [0.80, 0.85, 0.82]}
    confirmations = pd.DataFrame([{"method": m, "dataset": "d", "seed": i, "test/acc": v}
                                  for m, values in tests.items() for i, v in enumerate(values)])
    table = comparison(summary, confirmations, baseline="base")
    rows = table.set_index("method")
    p_values = [stats.ttest_ind(tests[m], tests["base"], equal_var=False).pvalue for m in ("clear", "close")]
    for method, p, adjusted in zip(("clear", "close"), p_values, holm(p_values)):
        assert rows.loc[method, "diff_p_value"] == pytest.approx(p)
        assert rows.loc[method, "diff_p_holm"] == pytest.approx(adjusted)
        assert rows.loc[method, "diff_resolved"] == (adjusted < 0.05)
        assert rows.loc[method, "min_detectable_diff"] == pytest.approx(min_detectable_diff(tests[method], tests["base"]))
    assert rows.loc["clear", "diff_resolved"] and not rows.loc["close", "diff_resolved"]
    assert rows.loc["base", "diff_resolved"] is None and math.isnan(rows.loc["base", "min_detectable_diff"])
    text = format_table(table).splitlines()
    detectable = rows.loc["close", "min_detectable_diff"]
    assert text[1].endswith("  resolved") and f"not resolved (80% power needs |d| > {detectable:.3f})" in text[2]
    assert text[-1].startswith("intervals: 95%, over training seeds only, for one data draw and one search")
    assert "Holm-adjusted p < 0.05 over the 2 comparisons" in text[-1]
    said = "\n".join(resolution_lines(table))
    assert "**clear** vs base: +0.0967" in said and "resolved (Holm-adjusted p = " in said
    assert "not with no difference" in said
    low, high = rows.loc["close", "diff_ci95_low"], rows.loc["close", "diff_ci95_high"]
    assert f"compatible with no difference, with losses down to {low:+.4f} and with gains up to {high:+.4f}" in said
    assert f"a true difference of {detectable:.4f} would be detected with 80% power" in said
    assert "could not have been resolved" not in said and "needs |d|" not in said


def test_a_chained_conditional_applies_only_where_its_parent_was_sampled():
    """momentum `when: schedule`, schedule `when: optimizer` (sgd only): under adam the schedule holds
    its default, so momentum there is no draw and is neither flagged nor scored."""
    from tunelab.analysis.tables import applied_case
    from tunelab.search_spaces.base import Choice, Conditional, FloatRange, describe

    space = describe({"optimizer": Choice(("sgd", "adam")),
                      "schedule": Conditional("optimizer", (("sgd", Choice(("cosine", "step"))), ("adam", None))),
                      "momentum": Conditional("schedule", (("cosine", FloatRange(0.8, 0.9)), ("step", None)))})
    momentum = space[2]
    assert applied_case(momentum, {"optimizer": "sgd", "schedule": "cosine"}, space)["high"] == 0.9
    assert applied_case(momentum, {"optimizer": "adam", "schedule": "cosine"}, space) is None
    assert edge_params({"optimizer": "sgd", "schedule": "cosine", "momentum": 0.9}, space) == ["momentum"]
    assert edge_params({"optimizer": "adam", "schedule": "cosine", "momentum": 0.9}, space) == []


def test_the_table_carries_selection_val_confirmation_val_and_their_difference():
    from tunelab.analysis.report_markdown import selection_lines
    from tunelab.analysis.tables import format_table

    summary = pd.DataFrame({"method": ["a", "base"], "dataset": ["d"] * 2, "trial_id": ["1", "2"],
                            "val/acc": [0.95, 0.90], "best_epoch": [3, 2], "epochs": [3, 3], "compute_s": [1.0] * 2})
    confirmations = pd.DataFrame([{"method": m, "dataset": "d", "seed": i, "test/acc": t, "val/acc_best": v}
                                  for m, pairs in {"a": [(0.90, 0.91), (0.88, 0.89)],
                                                   "base": [(0.85, 0.88), (0.87, 0.86)]}.items()
                                  for i, (t, v) in enumerate(pairs)])
    table = comparison(summary, confirmations, baseline="base").set_index("method")
    assert table.loc["a", "confirm_val_acc_mean"] == pytest.approx(0.90)
    assert table.loc["a", "optimism"] == pytest.approx(0.95 - 0.90)
    assert table.loc["base", "optimism"] == pytest.approx(0.90 - 0.87)
    text = format_table(table.reset_index())
    assert "conf val" in text.splitlines()[0] and "0.9000   +0.0500" in text.splitlines()[1]
    said = "\n".join(selection_lines(table.reset_index()))
    assert "| a | 0.9500 | 0.9000 | +0.0500 | 0.8900 |" in said


def _replicated(shifts: dict[str, list[float]], seeds: int = 4, seed: int = 0):
    """Trials and confirmations of len(shifts[m]) replicates: each method's seeds scatter around its
    replicate's shift (a draw every method of the replicate shares, plus the method's own)."""
    rng = np.random.default_rng(seed)
    trials, confirmations = [], []
    for method, values in shifts.items():
        for r, shift in enumerate(values):
            trials.append({"method": method, "dataset": "d", "trial_id": f"{method}{r}", "replicate": r,
                           "val/acc": 0.9 + r / 100, "best_epoch": r + 1, "epochs": 2, "compute_s": 1.0,
                           "config/lr": 0.01 * (r + 1)})
            confirmations += [{"replicate": r, "method": method, "dataset": "d", "seed": 10 * r + i,
                               "test/acc": 0.85 + shift + rng.normal(0, 0.01), "val/acc_best": 0.88}
                              for i in range(seeds)]
    return pd.DataFrame(trials), pd.DataFrame(confirmations)


def test_across_replicates_the_headline_is_the_paired_t_over_replicate_means_and_holm_over_methods():
    from tunelab.analysis.stats import detectable_diff, holm, paired, welch, within_replicates

    summary, confirmations = _replicated({"up": [0.05, 0.02, 0.06], "same": [0.0, -0.02, 0.03],
                                          "base": [0.0, -0.01, 0.02]})
    rows = comparison_table(summary, confirmations, baseline="base").set_index("method")
    means = confirmations.groupby(["method", "replicate"])["test/acc"].mean()
    p_values = []
    for method in ("up", "same"):
        a, b = means[method].to_numpy(), means["base"].to_numpy()
        reference = stats.ttest_rel(a, b)
        p_values.append(reference.pvalue)
        row = rows.loc[method]
        assert row["diff_vs_baseline"] == pytest.approx(np.mean(a - b))
        assert (row["diff_ci95_low"], row["diff_ci95_high"]) == pytest.approx(reference.confidence_interval(0.95))
        assert row["diff_p_value"] == pytest.approx(reference.pvalue)
        assert row["min_detectable_diff"] == pytest.approx(detectable_diff(paired(a, b)))
        assert row["diff_test"] == "paired-replicates" and row["replicates"] == 3 and row["n_seeds"] == 12
        groups = [[list(confirmations.query(f"method == '{m}' and replicate == {r}")["test/acc"]) for r in range(3)]
                  for m in (method, "base")]
        seeds_only = within_replicates(*groups)
        assert (row["seed_diff_ci95_low"], row["seed_diff_ci95_high"]) == pytest.approx(
            (seeds_only.low, seeds_only.high))
        assert seeds_only.diff == pytest.approx(row["diff_vs_baseline"])  # one difference, two intervals
    for method, adjusted in zip(("up", "same"), holm(p_values)):
        assert rows.loc[method, "diff_p_holm"] == pytest.approx(adjusted)
        assert rows.loc[method, "diff_resolved"] == (adjusted < 0.05)
    up = rows.loc["up"]
    assert up["test_acc_mean"] == pytest.approx(means["up"].mean()) and up["test_acc_std"] == pytest.approx(
        means["up"].std(ddof=1))
    assert up["trials"] == 3 and up["best_val_acc"] == pytest.approx(0.91) and up["best_trial"] == "up0,up1,up2"
    assert json.loads(up["best_config"]) == [{"lr": 0.01}, {"lr": 0.02}, {"lr": 0.03}]
    assert up["optimism"] == pytest.approx(0.91 - 0.88)
    assert pd.isna(rows.loc["base", "diff_test"]) and math.isnan(rows.loc["base", "seed_diff_ci95_low"])
    # one replicate alone is the comparison without replicates (its seed-only Welch interval)
    one = comparison(summary[summary["replicate"] == 1], confirmations[confirmations["replicate"] == 1],
                     baseline="base").set_index("method")
    a, b = (confirmations.query(f"method == '{m}' and replicate == 1")["test/acc"] for m in ("up", "base"))
    assert (one.loc["up", "diff_ci95_low"], one.loc["up", "diff_ci95_high"]) == pytest.approx(
        (welch(a, b).low, welch(a, b).high))


def test_without_replicates_the_seed_only_interval_is_the_headline():
    summary = pd.DataFrame({"method": ["a", "b"], "dataset": ["d", "d"], "trial_id": ["1", "2"], "val/acc": [0.9, 0.8],
                            "best_epoch": [1, 1], "epochs": [1, 1], "compute_s": [1.0, 1.0]})
    confirmations = pd.DataFrame({"method": ["a"] * 3 + ["b"] * 3, "dataset": ["d"] * 6, "seed": [0, 1, 2] * 2,
                                  "test/acc": [0.9, 0.91, 0.92, 0.8, 0.81, 0.83]})
    row = comparison(summary, confirmations, baseline="b").set_index("method").loc["a"]
    assert (row["seed_diff_ci95_low"], row["seed_diff_ci95_high"]) == (row["diff_ci95_low"], row["diff_ci95_high"])
    assert row["replicates"] == 1 and row["diff_test"] == "welch-seeds"


def test_the_table_and_report_say_what_an_interval_over_replicates_covers():
    from tunelab.analysis.replicates import by_replicate
    from tunelab.analysis.report_markdown import replicate_lines, resolution_lines, selection_lines
    from tunelab.analysis.tables import format_table

    summary, confirmations = _replicated({"up": [0.05, 0.02, 0.06], "base": [0.0, -0.01, 0.02]})
    table = comparison_table(summary, confirmations, baseline="base")
    row = table.set_index("method").loc["up"]
    text = format_table(table).splitlines()
    assert "seeds only" in text[0]
    assert f"[{row['seed_diff_ci95_low']:+.3f}, {row['seed_diff_ci95_high']:+.3f}]" in text[1]
    assert text[-1].startswith("intervals: 95%, across 3 replicates of the whole pipeline")
    assert "paired t over their mean differences (2 df)" in text[-1] and "over training seeds only" not in text[-1]
    said = "\n".join(resolution_lines(table))
    assert f"**up** vs base: {row['diff_vs_baseline']:+.4f} [{row['diff_ci95_low']:+.4f}, " in said
    assert "across 3 replicates" in said and "with 3 replicates and this spread" in said
    assert "over the seeds only (each replicate's draw and search held fixed)" in said
    assert "replicates are the independent unit" in said and "the paired t's unadjusted p" in said
    assert "needs |d|" not in said and "could not have been resolved" not in said
    assert "mean over the replicates" in "\n".join(selection_lines(table))
    per = by_replicate(summary, confirmations, "base")
    assert list(per["replicate"]) == [0, 0, 1, 1, 2, 2] and set(per["replicates"]) == {1}
    assert any(line.startswith("| 2 | up | 0.9200 |") for line in replicate_lines(per))


def test_the_coverage_line_names_holm_only_where_there_are_several_comparisons():
    from tunelab.analysis.tables import coverage_note

    one = coverage_note(pd.DataFrame({"diff_p_value": [None, 0.01], "replicates": [1, 1]}))
    four = coverage_note(pd.DataFrame({"diff_p_value": [None, 0.01, 0.2, 0.3, 0.9], "replicates": [3] * 5}))
    assert one.endswith("; resolved = p < 0.05 (one comparison with the baseline)") and "Holm" not in one
    assert four.endswith("; resolved = Holm-adjusted p < 0.05 over the 4 comparisons with the baseline")
    assert "across 3 replicates" in four and "training seeds only" in one
