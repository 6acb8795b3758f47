"""The statistics of a comparison: Welch's two-sample t over seeds, the paired t over replicates,
the seed-only interval of a mean over replicates, their power, and Holm's correction.

Every function takes plain sequences of per-seed results; `finite` decides which of them count
(None, NaN and infinities are dropped), so an interval, its p-value and its power are always
computed on the same seeds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats


def finite(values) -> np.ndarray:
    """The seeds' results that can enter a statistic: None, NaN and infinities dropped (a seed that
    diverged or never reached the test)."""
    x = np.asarray([float(v) for v in values if v is not None and not pd.isna(v)], dtype=float)
    return x[np.isfinite(x)]


@dataclass(frozen=True)
class Welch:
    """mean(a) - mean(b) with Welch's standard error, degrees of freedom, 95% interval and
    two-sided p-value (NaN where either sample has fewer than 2 finite values)."""

    diff: float
    se: float
    dof: float
    low: float
    high: float
    p_value: float


def welch(a, b, confidence: float = 0.95) -> Welch:
    a, b = finite(a), finite(b)
    if len(a) == 0 or len(b) == 0:
        return Welch(*(math.nan,) * 6)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return Welch(diff, *(math.nan,) * 5)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:  # identical seeds within each method: the difference is exact
        return Welch(diff, 0.0, math.inf, diff, diff, 1.0 if diff == 0 else 0.0)
    share_a, share_b = va / (va + vb), vb / (va + vb)  # Welch-Satterthwaite, scaled: no underflow at tiny spreads
    dof = 1 / (share_a ** 2 / (len(a) - 1) + share_b ** 2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * se
    p_value = float(2 * stats.t.sf(abs(diff) / se, dof))
    return Welch(diff, se, dof, diff - half, diff + half, p_value)


def power_of_t(delta: float, se: float, dof: float, alpha: float = 0.05) -> float:
    """Probability that a two-sided t test at level `alpha` rejects when the true difference is
    `delta`: P(|T| > t_{1-alpha/2, dof}) with T noncentral t(dof, delta / se)."""
    crit = float(stats.t.ppf(1 - alpha / 2, dof))
    noncentrality = delta / se
    # The far tail, P(T < -crit), written as the upper tail of -T: scipy's nct.cdf returns NaN there
    # at some (dof, noncentrality) where nct.sf does not.
    wrong_side = float(stats.nct.sf(crit, dof, -noncentrality))
    return float(stats.nct.sf(crit, dof, noncentrality)) + (0.0 if math.isnan(wrong_side) else wrong_side)


def min_detectable_diff(a: Sequence[float], b: Sequence[float], power: float = 0.8, alpha: float = 0.05) -> float:
    """The true difference that Welch's two-sided test at level `alpha` detects with probability
    `power`, at the observed spreads and sizes of `a` and `b` (noncentral t, exact to solver
    tolerance). NaN where either sample has fewer than 2 finite values; 0 where both spreads are 0.

    Not the 95% interval's half-width: a true difference of the half-width is detected only about
    half the time; at 80% power the detectable difference is about 1.4 times larger.
    """
    return detectable_diff(welch(a, b), power, alpha)


def paired(a, b, confidence: float = 0.95) -> Welch:
    """The paired t test of mean(a - b) over pairs (replicates: a and b are per-replicate means in
    replicate order); pairs where either side is missing are dropped. Same fields as `welch`,
    with n - 1 degrees of freedom; NaN where fewer than 2 pairs remain."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True)
             if len(finite([x])) and len(finite([y]))]
    d = np.asarray([float(x) - float(y) for x, y in pairs], dtype=float)
    if len(d) == 0:
        return Welch(*(math.nan,) * 6)
    diff = float(d.mean())
    if len(d) < 2:
        return Welch(diff, *(math.nan,) * 5)
    se = float(d.std(ddof=1) / math.sqrt(len(d)))
    dof = float(len(d) - 1)
    if se == 0:
        return Welch(diff, 0.0, dof, diff, diff, 1.0 if diff == 0 else 0.0)
    half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * se
    p_value = float(2 * stats.t.sf(abs(diff) / se, dof))
    return Welch(diff, se, dof, diff - half, diff + half, p_value)


def within_replicates(a_groups, b_groups, confidence: float = 0.95) -> Welch:
    """The seed-only test of the mean over replicates of mean(a_r) - mean(b_r): each replicate's data
    draw and search held fixed, only its seeds' spread counted. Standard error sqrt(sum over
    replicates and sides of s^2/n) / R, Welch-Satterthwaite degrees of freedom over those 2R variance
    components; with one replicate exactly `welch`. `a_groups[r]`, `b_groups[r]`: replicate r's seeds.
    A replicate where either side has no finite seed is dropped (as `paired` drops it); NaN where a
    remaining side has fewer than 2."""
    groups = [(finite(a), finite(b)) for a, b in zip(a_groups, b_groups, strict=True)]
    groups = [(a, b) for a, b in groups if len(a) and len(b)]
    if not groups:
        return Welch(*(math.nan,) * 6)
    diff = float(np.mean([a.mean() - b.mean() for a, b in groups]))
    if any(len(x) < 2 for group in groups for x in group):
        return Welch(diff, *(math.nan,) * 5)
    parts = [(x.var(ddof=1) / len(x) / len(groups) ** 2, len(x) - 1) for group in groups for x in group]
    variance = sum(v for v, _ in parts)
    if variance == 0:  # identical seeds within every side: the difference is exact
        return Welch(diff, 0.0, math.inf, diff, diff, 1.0 if diff == 0 else 0.0)
    dof = 1 / sum((v / variance) ** 2 / df for v, df in parts)  # shares, as in `welch`: no underflow
    se = math.sqrt(variance)
    half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * se
    return Welch(diff, se, dof, diff - half, diff + half, float(2 * stats.t.sf(abs(diff) / se, dof)))


def min_detectable_paired_diff(a, b, power: float = 0.8, alpha: float = 0.05) -> float:
    """`min_detectable_diff` for the paired test over replicates (`paired`)."""
    return detectable_diff(paired(a, b), power, alpha)


def detectable_diff(test: Welch, power: float = 0.8, alpha: float = 0.05) -> float:
    """The true difference a two-sided t test of this standard error and degrees of freedom
    detects with probability `power` at level `alpha` (noncentral t)."""
    for name, value in (("power", power), ("alpha", alpha)):
        if not 0 < value < 1:
            raise ValueError(f"{name}={value!r} is out of range; allowed: 0 < {name} < 1")
    if math.isnan(test.se):
        return math.nan
    if test.se == 0 or power <= alpha:  # at delta = 0 the test already rejects with probability alpha
        return 0.0
    high = test.se
    while power_of_t(high, test.se, test.dof, alpha) < power:
        high *= 2
    return float(optimize.brentq(lambda d: power_of_t(d, test.se, test.dof, alpha) - power, 0.0, high,
                                 xtol=1e-12 * test.se, rtol=1e-10))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given (NaN entries stay NaN and do not
    count among the comparisons). Rejecting where the adjusted value is below alpha keeps the
    family-wise error rate at alpha over the comparisons."""
    indexed = [(p, i) for i, p in enumerate(p_values) if p is not None and not math.isnan(p)]
    indexed.sort()
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (len(indexed) - rank) * p))
        adjusted[i] = running
    return adjusted
