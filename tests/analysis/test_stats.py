"""tunelab.analysis.stats against independently computed answers: scipy's Welch test, a simulation of
the power that min_detectable_diff promises, hand-worked Holm adjustments."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from tunelab.analysis.stats import (holm, min_detectable_diff, min_detectable_paired_diff, paired, power_of_t, welch,
                            within_replicates)

A = [0.91, 0.88, 0.93, 0.90, 0.87, 0.92, 0.89, 0.94]
B = [0.86, 0.85, 0.90, 0.83, 0.88, 0.84, 0.87]


def test_welch_matches_scipy_p_value_and_interval():
    test = welch(A, B)
    reference = scipy_stats.ttest_ind(A, B, equal_var=False)
    assert test.p_value == pytest.approx(reference.pvalue, rel=1e-12)
    low, high = reference.confidence_interval(0.95)
    assert (test.low, test.high) == pytest.approx((low, high), rel=1e-12)
    assert test.diff == pytest.approx(np.mean(A) - np.mean(B))


def test_welch_drops_non_finite_seeds_and_needs_two_of_each():
    assert welch(A + [math.nan, math.inf, None], B) == welch(A, B)
    one = welch([0.9], B)
    assert one.diff == pytest.approx(0.9 - np.mean(B)) and math.isnan(one.p_value) and math.isnan(one.low)
    assert math.isnan(welch([], B).diff)


def test_paired_matches_scipy_ttest_rel_p_value_and_interval():
    a, b = A[:6], B[:6]
    test = paired(a, b)
    reference = scipy_stats.ttest_rel(a, b)
    assert test.p_value == pytest.approx(reference.pvalue, rel=1e-12)
    assert (test.low, test.high) == pytest.approx(reference.confidence_interval(0.95), rel=1e-12)
    assert (test.diff, test.dof) == pytest.approx((np.mean(np.subtract(a, b)), 5))


def test_paired_drops_a_replicate_missing_on_either_side_and_needs_two_pairs():
    a, b = A[:6], B[:6]
    assert paired(a + [math.nan], b + [0.5]) == paired(a, b)
    assert paired(a + [0.5], b + [None]) == paired(a, b)
    assert math.isnan(paired([0.9], [0.8]).p_value) and paired([0.9], [0.8]).diff == pytest.approx(0.1)
    with pytest.raises(ValueError):
        paired(a, b[:-1])  # replicates pair by position: unequal lengths are a caller's bug


def test_min_detectable_paired_diff_is_detected_with_the_stated_power_by_simulation():
    a, b = A[:7], B
    delta = min_detectable_paired_diff(a, b)
    sd = np.std(np.subtract(a, b), ddof=1)
    rng = np.random.default_rng(1)
    d = rng.normal(delta, sd, size=(4000, 7))
    rejected = scipy_stats.ttest_1samp(d, 0.0, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.8, abs=0.025)


def test_min_detectable_diff_is_detected_with_the_stated_power_by_simulation():
    """Draw many pairs of samples of the observed sizes and spreads with the returned true
    difference; scipy's Welch test must reject in 80% of them (binomial s.e. 0.6% at 4000)."""
    delta = min_detectable_diff(A, B)
    rng = np.random.default_rng(0)
    sa, sb = np.std(A, ddof=1), np.std(B, ddof=1)
    draws = 4000
    a = rng.normal(delta, sa, size=(draws, len(A)))
    b = rng.normal(0.0, sb, size=(draws, len(B)))
    rejected = scipy_stats.ttest_ind(a, b, axis=1, equal_var=False).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.8, abs=0.025)


def test_min_detectable_diff_solves_the_noncentral_t_power_equation():
    test = welch(A, B)
    delta = min_detectable_diff(A, B, power=0.9, alpha=0.01)
    crit = scipy_stats.t.ppf(0.995, test.dof)
    nc = delta / test.se
    power = scipy_stats.nct.sf(crit, test.dof, nc) + scipy_stats.nct.sf(crit, test.dof, -nc)
    assert power == pytest.approx(0.9, abs=1e-8)


def test_at_80_percent_power_the_detectable_difference_is_about_1_4_half_widths():
    """The 95% half-width is detected only about half the time; the 80%-power difference is larger."""
    test = welch(A, B)
    half = (test.high - test.low) / 2
    assert power_of_t(half, test.se, test.dof) == pytest.approx(0.5, abs=0.03)
    assert 1.3 < min_detectable_diff(A, B) / half < 1.5


def test_min_detectable_diff_is_within_2_percent_of_the_normal_shortcut_at_large_sizes():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 400), rng.normal(0, 2, 300)
    se = math.sqrt(np.var(a, ddof=1) / 400 + np.var(b, ddof=1) / 300)
    shortcut = (scipy_stats.norm.ppf(0.975) + scipy_stats.norm.ppf(0.8)) * se
    assert min_detectable_diff(a, b) == pytest.approx(shortcut, rel=0.02)


@pytest.mark.parametrize("power,alpha", [(0.0, 0.05), (1.0, 0.05), (0.8, 0.0), (0.8, 1.5), (math.nan, 0.05)])
def test_min_detectable_diff_refuses_meaningless_levels(power, alpha):
    with pytest.raises(ValueError, match="out of range"):
        min_detectable_diff(A, B, power=power, alpha=alpha)


def test_min_detectable_diff_edges():
    assert math.isnan(min_detectable_diff([0.9], B))
    assert min_detectable_diff([0.9, 0.9], [0.8, 0.8]) == 0.0


@given(st.lists(st.floats(-1, 1), min_size=2, max_size=12), st.lists(st.floats(-1, 1), min_size=2, max_size=12))
@settings(max_examples=60, deadline=None)
def test_min_detectable_diff_grows_with_power(a, b):
    low, high = min_detectable_diff(a, b, power=0.6), min_detectable_diff(a, b, power=0.9)
    assert (math.isnan(low) and math.isnan(high)) or low <= high


def test_holm_hand_worked():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    adjusted = holm([math.nan, 0.01, 0.02])
    assert math.isnan(adjusted[0]) and adjusted[1:] == pytest.approx([0.02, 0.02])
    assert holm([]) == []


def test_holm_controls_the_family_wise_error_under_the_null():
    """Four true-null comparisons (uniform p-values): Holm rejects any at most 5% of the time."""
    rng = np.random.default_rng(2)
    families = rng.uniform(size=(20000, 4))
    any_rejected = np.mean([min(holm(list(p))) < 0.05 for p in families])
    assert any_rejected <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 20000)


def test_seed_only_interval_of_one_replicate_is_welch():
    assert within_replicates([A], [B]) == welch(A, B)
    assert within_replicates([A + [math.nan]], [B]) == welch(A, B)


def test_seed_only_interval_over_replicates_covers_the_draws_held_fixed_95_percent_of_the_time():
    """Three replicates whose draws shift each side by a fixed amount: over fresh seeds, the interval
    covers the mean of the three differences about 95% of the time (simulation, not the formula)."""
    rng = np.random.default_rng(3)
    shift_a, shift_b = [0.02, -0.03, 0.05], [0.0, 0.01, -0.02]
    truth = float(np.mean(np.subtract(shift_a, shift_b)))
    covered = []
    for _ in range(2000):
        a = [rng.normal(0.9 + s, 0.02, size=5) for s in shift_a]
        b = [rng.normal(0.9 + s, 0.01, size=4) for s in shift_b]
        test = within_replicates(a, b)
        covered.append(test.low <= truth <= test.high)
    assert np.mean(covered) == pytest.approx(0.95, abs=0.015)


def test_seed_only_interval_drops_a_replicate_as_paired_does_and_needs_two_seeds_a_side():
    a, b = [A[:4], A[4:]], [B[:3], B[3:]]
    assert within_replicates(a + [[math.nan]], b + [[0.8, 0.9]]) == within_replicates(a, b)
    one = within_replicates([[0.9], [0.8, 0.85]], [[0.7, 0.75], [0.8, 0.82]])
    assert one.diff == pytest.approx(np.mean([0.9 - 0.725, 0.825 - 0.81])) and math.isnan(one.low)
