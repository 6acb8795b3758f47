"""benchmarks/coverage.py's machinery against known answers (its measurements are in
benchmarks/coverage.md, not here): the estimators recover known components, the seed-only interval
covers 95% where seeds are the only noise and not where they are not, the paired interval covers
95%, the verdicts are compare's own functions'."""
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tunelab.analysis import stats

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "coverage.py"


@pytest.fixture(scope="module")
def coverage():
    spec = importlib.util.spec_from_file_location("coverage_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def components(sd_u=0.0, sd_v=0.0, sd_search=0.0, seed_sds=(0.04, 0.02, 0.03, 0.05, 0.025), grid=0):
    """An `estimate` file's fields the simulation reads, with chosen components; the first method is the baseline."""
    rng = np.random.default_rng(1)
    methods = {}
    for i, sd in enumerate(seed_sds):
        residuals = rng.normal(0, 1, 25)
        residuals = (residuals - residuals.mean()) / residuals.std(ddof=1) * sd
        methods[f"m{i}"] = {"mean": 0.9, "seed_sd": sd, "n_seeds": 25, "residuals": residuals.tolist()}
    return {"format": 1, "baseline": "m0", "methods": methods, "data_draw": {"sd_u": sd_u, "sd_v_data": sd_v},
            "search": {"sd_search": sd_search}, "source": {"test_images": grid}}


def within(measured, expected, z=3.5):
    value, se = measured
    return abs(value - expected) <= z * se + 1e-12


def test_the_two_way_estimator_recovers_known_components(coverage):
    rng = np.random.default_rng(0)
    m, r, s = 5, 200, 4
    sd_u, sd_v, seed_sds = 0.03, 0.02, np.array([0.03, 0.04, 0.05, 0.04, 0.03])
    y = (rng.normal(0, 1, m)[:, None, None] + rng.normal(0, sd_u, (1, r, 1)) + rng.normal(0, sd_v, (m, r, 1))
         + rng.normal(0, 1, (m, r, s)) * seed_sds[:, None, None])
    got = coverage.two_way_components(y)
    assert got["df_seed"] == m * r * (s - 1) and got["df_inter"] == (m - 1) * (r - 1) and got["df_draw"] == r - 1
    assert got["var_e"] == pytest.approx(np.mean(seed_sds ** 2), rel=0.05)  # the methods' mean seed variance
    assert got["var_v"] == pytest.approx(sd_v ** 2, rel=0.3)
    assert got["var_u"] == pytest.approx(sd_u ** 2, rel=0.3)
    assert 0 < got["var_v_se"] < 0.3 * got["var_v"] and 0 < got["var_u_se"] < 0.3 * got["var_u"]


def test_the_two_way_estimator_reports_a_negative_raw_component_and_truncates_it(coverage):
    y = np.zeros((2, 3, 2))
    y[:, :, 1] = 1.0  # all the spread is within cells: no draw or interaction effect at all
    got = coverage.two_way_components(y)
    assert got["var_e"] == pytest.approx(0.5)
    assert got["var_v_raw"] < 0 and got["var_v"] == 0.0 and got["var_u"] == 0.0
    with pytest.raises(ValueError, match="seeds >= 2"):
        coverage.two_way_components(np.zeros((2, 3, 1)))


def test_the_one_way_estimator_recovers_a_known_between_group_variance_also_when_pooled(coverage):
    rng = np.random.default_rng(0)
    layouts = [rng.normal(0, 0.02, (300, 1)) + rng.normal(0, 0.04, (300, 3)) for _ in range(3)]
    one = coverage.one_way_components(layouts[0])
    assert one["df_between"] == 299 and one["df_within"] == 600
    assert one["var_between"] == pytest.approx(0.02 ** 2, rel=0.35)
    pooled = coverage.pooled_one_way(layouts)
    assert pooled["df_between"] == 897 and pooled["ms_within"] == pytest.approx(0.04 ** 2, rel=0.1)
    assert pooled["var_between"] == pytest.approx(0.02 ** 2, rel=0.25)


def test_with_seed_noise_only_the_seed_only_and_the_paired_interval_both_cover_95_percent(coverage):
    model = coverage.Model(components(), noise="normal", search_scale=1.0)
    rng = np.random.default_rng(3)
    zero = np.zeros(5)
    welch = coverage.simulate_cell(model, rng, 400, 1, 10, zero)
    paired = coverage.simulate_cell(model, rng, 400, 8, 3, zero)
    assert within(welch["coverage"], 0.95) and within(paired["coverage"], 0.95)
    assert within(welch["significant"], 0.05) and within(paired["significant"], 0.05)
    assert welch["any_resolved"][0] <= 0.05 + 3.5 * welch["any_resolved"][1]  # Holm keeps the family at 5%


def test_with_a_between_replicate_component_only_the_paired_interval_keeps_95_percent(coverage):
    model = coverage.Model(components(sd_u=0.03, sd_v=0.02, sd_search=0.02), noise="normal", search_scale=1.0)
    rng = np.random.default_rng(4)
    welch = coverage.simulate_cell(model, rng, 300, 1, 25, np.zeros(5))
    paired = coverage.simulate_cell(model, rng, 300, 5, 5, np.zeros(5))
    assert welch["coverage"][0] < 0.75  # sd_v 0.028 against seed-only s.e. about 0.009: far too narrow
    assert within(paired["coverage"], 0.95)


def test_power_at_the_true_sd_detectable_difference_is_80_percent(coverage):
    model = coverage.Model(components(sd_v=0.015), noise="normal", search_scale=1.0)
    sd = model.sd_of_replicate_difference(4)[1:]
    mdd = [stats.detectable_diff(stats.Welch(0.0, x / math.sqrt(6), 5.0, 0, 0, 1)) for x in sd]
    cell = coverage.simulate_cell(model, np.random.default_rng(5), 500, 6, 4, np.r_[0.0, mdd])
    assert within(cell["significant"], 0.8)


def test_the_truth_counts_rounding_to_the_test_grid_and_clipping(coverage):
    model = coverage.Model(components(grid=179), noise="normal", search_scale=1.0)
    truth = model.truth(np.r_[0.0, 0.03, 0.0, 0.09, -0.03])
    assert truth[0] == 0.0 and truth[1] == pytest.approx(0.03, abs=5e-4)
    assert truth[3] < 0.09 - 0.002  # 0.99 +- 0.05 is clipped at 1
    y = model.draw(np.random.default_rng(0), 10, 2, 3, np.zeros(5))
    assert y.shape == (10, 5, 2, 3) and np.allclose(y * 179, np.round(y * 179)) and y.max() <= 1.0


def test_the_verdicts_are_compare_s_own_paired_welch_and_holm(coverage):
    rng = np.random.default_rng(6)
    y = 0.9 + rng.normal(0, 0.03, (3, 5, 4, 2))
    got = coverage.verdicts(y)
    for i in range(3):
        tests = [stats.paired(y[i, j].mean(axis=1), y[i, 0].mean(axis=1)) for j in range(1, 5)]
        assert got["p"][i].tolist() == [t.p_value for t in tests] and got["low"][i].tolist() == [t.low for t in tests]
        assert got["p_holm"][i].tolist() == stats.holm([t.p_value for t in tests])
        assert got["resolved"][i].tolist() == [p < 0.05 for p in stats.holm([t.p_value for t in tests])]
    single = coverage.verdicts(y[:, :, :1])
    assert single["p"][0, 0] == stats.welch(y[0, 1, 0], y[0, 0, 0]).p_value


def test_simulate_prints_every_table_with_its_goals(tmp_path):
    path = tmp_path / "components.json"
    path.write_text(json.dumps(components(sd_u=0.01, sd_v=0.01, sd_search=0.01, grid=179)))
    result = subprocess.run([sys.executable, str(SCRIPT), "simulate", "--components", str(path), "--comparisons", "20",
                             "--replicates", "3", "--seeds", "3", "--single-seeds", "5", "--search-scales", "1",
                             "--noise", "empirical", "--mdd-sample", "10", "--power-diffs", "0.05"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "## Coverage of the 95% interval" in out and "## Power" in out and "## min_detectable_paired_diff" in out
    assert "R=1 S=5  Welch over seeds (seed-only)" in out and "(seed-only: no goal)" in out
    assert any(line.startswith("empirical") and "R=3 S=3" in line and ("PASS" in line or "MISS" in line)
               for line in out.splitlines())


def test_a_goal_is_measured_with_its_standard_error(coverage):
    assert coverage.goal((0.95, 0.002), 0.93, 0.97) == "PASS"
    assert coverage.goal((0.051, 0.004), -math.inf, 0.05) == "MISS~"  # within 2 s.e. of the edge: undecided
    assert coverage.goal((0.049, 0.004), -math.inf, 0.05) == "PASS~"
    assert coverage.goal((0.0, 0.0), -math.inf, 0.05) == "PASS"
    assert coverage.goal((0.90, 0.005), 0.93, 0.97) == "MISS"
