"""The benchmark scripts' own edges (their measurements are on the pages benchmarks/*.md, not here)."""
import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

PEERS = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


def _peers_module():
    spec = importlib.util.spec_from_file_location("peers", PEERS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peers_refuses_to_overwrite_an_earlier_runs_rows(tmp_path):
    out = tmp_path / "peers.csv"
    out.write_text("problem,method,seed\nmfh3_good,tunelab,0\n")
    result = subprocess.run([sys.executable, str(PEERS), "--problems", "mfh3_good", "--out", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"peers.py: --out {out} exists (an earlier run's rows); give another file name"
    assert out.read_text() == "problem,method,seed\nmfh3_good,tunelab,0\n"


@pytest.mark.long
def test_a_syne_tune_peer_run_twice_with_one_seed_gives_the_same_rows(tmp_path):
    # ASHACQR draws from numpy's global generator besides its own seeded one; unseeded, two runs
    # of seed 0 found different configurations. Needs the bench extra (`make bench-install`).
    pytest.importorskip("syne_tune")
    pytest.importorskip("mfpbench")
    rows = []
    for run in ("first", "second"):
        out = tmp_path / f"{run}.csv"
        subprocess.run([sys.executable, str(PEERS), "--problems", "mfh3_good", "--methods", "st_ashacqr",
                        "--seeds", "1", "--budget", "4", "--cap", "1000", "--out", str(out)],
                       check=True, capture_output=True, timeout=600)
        rows.append(pd.read_csv(out).drop(columns="seconds"))
    # Past ASHACQR's 5 initial random draws: at this budget two unseeded runs of seed 0 differed
    # (13 and 16 trials, regret 0.370 and 0.395), so the test sees the global generator's use.
    assert len(rows[0]) == 1 and rows[0]["trials"].iloc[0] > 10
    pd.testing.assert_frame_equal(rows[0], rows[1])


def test_a_trial_trained_in_process_leaves_the_searchers_global_generators_where_they_were():
    # Training seeds random and np.random with the trial's seed; Syne Tune draws its random
    # configurations from np.random, so without isolation every suggestion after a trial repeated.
    peers = _peers_module()
    problem = peers.digits_classifier()
    config = peers.sample_define_by_run(problem.space, peers.random_suggest(np.random.default_rng(0)))
    steps = []
    random.seed(7), np.random.seed(7)
    expected = (random.random(), np.random.random())
    random.seed(7), np.random.seed(7)
    problem.run(config, lambda step, loss: steps.append((step, loss)) or step < 2)
    assert [step for step, _ in steps] == [1, 2] and all(0.0 <= loss <= 1.0 for _, loss in steps)
    assert (random.random(), np.random.random()) == expected


def test_the_table_takes_a_later_files_rows_over_an_earlier_files_for_the_same_run(tmp_path):
    header = "problem,method,seed,checkpoint,regret\n"
    stored, rerun = tmp_path / "stored.csv", tmp_path / "rerun.csv"
    stored.write_text(header + "p,a,0,10,0.9\np,a,1,10,0.8\np,b,0,10,0.5\np,b,1,10,0.5\n")
    rerun.write_text(header + "p,a,0,10,0.1\n")
    result = subprocess.run([sys.executable, str(PEERS), "--table", str(stored), str(rerun)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "1 rows replaced by a later file's rows of the same problem, method, seed, checkpoint" in result.stdout
    # a over seeds 0 and 1 is now 0.1 and 0.8: median 0.45 (0.85 had the stored row been kept or counted twice)
    assert "0.450 [0.275, 0.625]" in result.stdout and "0.500 [0.500, 0.500]" in result.stdout


@pytest.mark.parametrize("content, expected", [
    (b"\x00\xff\xfe binary", "cannot be read as CSV"),
    (b"", "cannot be read as CSV"),
    (b"a,b\n1,2\n", "is not a peers.py --out file: no column problem, method, seed, checkpoint, regret"),
    (None, "cannot be read as CSV"),  # a directory
])
def test_the_table_refuses_a_file_that_is_not_an_earlier_run_in_one_line(tmp_path, content, expected):
    path = tmp_path / "rows.csv"
    path.mkdir() if content is None else path.write_bytes(content)
    result = subprocess.run([sys.executable, str(PEERS), "--table", str(path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith(f"peers.py: --table '{path}' ") and expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


HEADER = "problem,method,seed,checkpoint,regret,steps,trials,full_budget_trials\n"


@pytest.mark.parametrize("body, expected", [
    ("p,a,0,10,,5,5,1\np,b,0,10,0.5,5,5,1\n", "line 2: regret is empty"),
    ("p,a,0,10,0.5,5,5,1\np,b,0,10,abc,5,5,1\n", "line 3: regret 'abc' is not a finite number within +-1e+06"),
    ("p,a,0,10,inf,5,5,1\n", "line 2: regret 'inf' is not a finite number within +-1e+06"),
    ("p,,0,10,0.5,5,5,1\n", "line 2: no method"),
    ("p, ,0,10,0.5,5,5,1\n", "line 2: no method"),
    (",a,0,10,0.5,5,5,1\n", "line 2: no problem"),
    ("p,a,zero,10,0.5,5,5,1\n", "line 2: seed 'zero' is not a finite number"),
    ("p,a,0,10,1e308,5,5,1\n", "line 2: regret '1e308' is not a finite number within +-1e+06"),
    ("p,a,0,10,0.1,5,-3,1\n", "line 2: trials '-3' is not a count >= 0"),
    ("p,a,0,10,0.1,5,5,1,extra\n", "line 2: 9 fields, the header has 8"),  # pandas shifted every column
    ("p,a,0,10,0.1,5,5,1\n\np,b,0,10,abc,5,5,1\n", "line 4: regret 'abc' is not a finite number within +-1e+06"),
    ("", "has a header and no rows"),
    ("p,a,0,10,0.5,5,many,1\n", "line 2: trials 'many' is not a count >= 0"),
])
def test_the_table_refuses_a_row_it_would_otherwise_drop_or_misread_in_one_line(tmp_path, capsys, body, expected):
    peers = _peers_module()
    path = tmp_path / "rows.csv"
    path.write_text(HEADER + body)
    code = _table(peers, path)
    err = capsys.readouterr().err
    assert code == 2 and err == f"peers.py: --table '{path}' {expected}\n"


def _table(peers, *paths) -> int:
    argv = sys.argv
    sys.argv = ["peers.py", "--table", *map(str, paths)]
    try:
        peers.main()
        return 0
    except SystemExit as stop:
        return stop.code
    finally:
        sys.argv = argv


def test_a_cell_where_a_peer_shares_no_seed_is_unjudged_not_a_tie(tmp_path, capsys):
    peers = _peers_module()
    rows = pd.concat([_rows(10, {"tunelab": [0.1, 0.2, 0.3], "optuna": [0.2, 0.4, 0.6]}),
                      _rows(10, {"random": [0.5, 0.5]}).assign(seed=[7, 8])])
    lines = peers.verdicts(rows)
    assert lines[0] == "tunelab on p @ 10: unjudged (random: no seed run by both)"
    assert lines[-1].startswith("0 win, 0 tie, 0 loss over 0 cells") and lines[-1].endswith(
        "; 1 cell(s) unjudged, left out of the count")


def test_effort_is_left_out_of_a_table_whose_files_lack_its_columns(tmp_path, capsys):
    peers = _peers_module()
    path = tmp_path / "rows.csv"
    path.write_text("problem,method,seed,checkpoint,regret,trials\np,tunelab,0,10,0.1,4\np,optuna,0,10,0.2,4\n")
    assert _table(peers, path) == 0
    assert "median per run" not in capsys.readouterr().out


def test_any_table_file_is_read_or_refused_in_one_line(tmp_path_factory):
    """Hypothesis over the reader: whatever cells a file holds, --table prints its table (exit 0)
    or refuses the file in one line (exit 2), never a traceback."""
    import contextlib
    import io

    from hypothesis import HealthCheck, given, settings, strategies as st

    peers = _peers_module()
    cell = st.one_of(st.sampled_from(["", "nan", "inf", "-1", "0", "0.5", "1e308", "tunelab", "optuna", "p", " "]),
                     st.integers(-3, 3).map(str), st.floats(allow_nan=True).map(str),
                     st.text(alphabet="ab,\"\n 0.-", max_size=6))
    row = st.lists(cell, min_size=8, max_size=8)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(row, min_size=1, max_size=6))
    def check(rows):
        path = tmp_path_factory.mktemp("table") / "rows.csv"
        pd.DataFrame(rows, columns=HEADER.strip().split(",")).to_csv(path, index=False)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = _table(peers, path)
        assert code in (0, 2), err.getvalue()
        if code == 2:
            assert err.getvalue().startswith(f"peers.py: --table '{path}' ") and err.getvalue().count("\n") == 1

    check()


def _rows(checkpoint, regrets_by_method):
    return pd.DataFrame([{"problem": "p", "method": method, "seed": seed, "checkpoint": checkpoint, "regret": regret}
                         for method, regrets in regrets_by_method.items() for seed, regret in enumerate(regrets)])


def _verdict(peers, rows) -> str:
    lines = peers.verdicts(rows)
    assert lines[-1].endswith("(Wilcoxon signed-rank by seed, Holm over each cell's peers, alpha 0.05)")
    return lines[0].split(": ", 1)[1].split(" ", 1)[0]


def test_a_consistent_small_loss_with_overlapping_iqrs_is_a_loss():
    # tunelab 0.01 behind the peer on every one of 20 seeds, both spread over 0..1: the IQRs overlap
    # almost wholly (the rule this replaces called it tied), the paired test sees 20 of 20.
    peers = _peers_module()
    base = np.linspace(0.0, 1.0, 20)
    rows = _rows(25, {"tunelab": base + 0.01, "optuna": base})
    assert _verdict(peers, rows) == "loss"
    assert "optuna +0.0100 [+0.0100, +0.0100]" in peers.verdicts(rows)[0]


def test_a_hair_lower_median_without_a_consistent_difference_is_a_tie():
    peers = _peers_module()
    rng = np.random.default_rng(3)
    peer = rng.uniform(0, 1, 20)
    mine = peer + rng.normal(0, 0.2, 20)
    mine += np.median(peer) - np.median(mine) - 0.001  # a median 0.001 lower, differences of both signs
    rows = _rows(50, {"tunelab": mine, "st_bohb": peer})
    assert np.median(mine) < np.median(peer)
    assert _verdict(peers, rows) == "tie"


def test_a_clean_sweep_over_every_peer_is_a_win_and_one_peer_level_makes_it_a_tie():
    peers = _peers_module()
    base = np.linspace(0.1, 0.5, 20)
    sweep = {"tunelab": base, "optuna": base + 0.05, "st_asha": base + 0.2, "tunelab_3brackets": base + 1}
    assert _verdict(peers, _rows(100, sweep)) == "win"  # tunelab's own variants are not peers
    assert _verdict(peers, _rows(100, {**sweep, "random": base})) == "tie"


def test_holm_adjusts_over_the_peers_of_a_cell():
    peers = _peers_module()
    assert peers.holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})


def test_seeds_are_paired_and_only_shared_seeds_count():
    peers = _peers_module()
    rows = _rows(10, {"tunelab": [0.1, 0.2, 0.3], "optuna": [0.2, 0.4, 0.6, 9.0]})
    assert "n=3" in peers.verdicts(rows)[0]


def test_every_stored_run_file_that_the_benchmark_pages_name_is_in_the_repository():
    # The benchmark pages' (benchmarks/*.md) `--table` commands and notes name files under
    # benchmarks/peers_runs/ (some as globs); a reader who runs them on a fresh clone must find
    # every one (a new rows file once went uncommitted while a page cited it).
    import re

    root = PEERS.parents[1]
    text = "\n".join(page.read_text() for page in sorted((root / "benchmarks").glob("*.md")))
    named = set(re.findall(r"benchmarks/peers_runs/[\w*.{},-]+\.csv", text))
    assert len(named) > 10  # the pattern still finds the commands
    missing = []
    for name in named:
        stems = re.match(r"(.*)\{(.*)\}(.*)", name)
        for path in ([stems[1] + part + stems[3] for part in stems[2].split(",")] if stems else [name]):
            if not list(root.glob(path)):
                missing.append(path)
    assert not missing, missing


def test_the_rules_power_is_its_size_under_no_effect_and_grows_with_the_effect():
    import re

    peers = _peers_module()
    lines = peers.power(20, 4, effects=(0.0, 0.5, 1.0), draws=2000)
    first, last = zip(*[map(float, re.findall(r"power (\S+) at Holm's first.*?, (\S+) at its last", line)[0])
                        for line in lines])
    assert abs(last[0] - 0.05) < 0.02 and abs(first[0] - 0.05 / 4) < 0.01  # no effect: the test's size
    assert first[0] < first[1] < first[2] and last[0] < last[1] < last[2]


def _replayed_module():
    _peers_module()  # puts benchmarks/ on the path, as running peers.py does
    import replayed

    return replayed


def _small_space():
    from tunelab.search_spaces import Choice, FloatRange
    from tunelab.search_spaces.base import Conditional

    return {"lr": FloatRange(1e-4, 1e-2, log=True), "head": Choice(("a", "b")),
            "m": Conditional("head", (("a", FloatRange(0.0, 1.0)), ("b", None)))}


def test_the_replayed_distance_scales_each_entry_over_its_range_and_counts_a_mismatch_as_one():
    replayed = _replayed_module()
    space = _small_space()
    one = {"lr": 1e-3, "head": "a", "m": 0.5}
    # log10 1e-3 -> 1e-2 is half of the range's 2 decades: 0.5**2; m 0.5 -> 0.1: 0.4**2
    assert replayed.distance(space, one, {"lr": 1e-2, "head": "a", "m": 0.1}) == pytest.approx(0.25 + 0.16)
    # another head: 1 for the head, 1 for the margin that applies to one of them only
    assert replayed.distance(space, one, {"lr": 1e-3, "head": "b"}) == pytest.approx(2.0)
    # a margin left in a config where it does not apply is not compared
    assert replayed.distance(space, {"lr": 1e-3, "head": "b", "m": 0.9}, {"lr": 1e-3, "head": "b"}) == 0.0


def _curves_table(tmp_path, rows):
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"method": "arcface", "epochs": 3, "rows": rows}))
    return path


def test_a_replayed_problem_answers_with_the_nearest_stored_curve_and_its_regret_spans_the_table(tmp_path):
    replayed = _replayed_module()
    base = {"s": 30.0, "head": "cosface", "m": 0.3, "n_feats": 128, "lr": 1e-3, "weight_decay": 1e-4,
            "head_lr_factor": 1.0}
    rows = [{"config": {**base, "lr": 1e-4}, "losses": [0.9, 0.8, 0.7]},
            {"config": {**base, "lr": 1e-2}, "losses": [0.5, 0.3, 0.1]},
            {"config": {**base, "head": "normsoftmax"} | {"m": 0.3}, "losses": [0.6, 0.5, 0.4]}]
    problem = replayed.Replayed("t", _curves_table(tmp_path, rows))
    seen = []
    problem.run({**base, "lr": 5e-3}, lambda step, loss: seen.append((step, loss)) or True)
    assert seen == [(1, 0.5), (2, 0.3), (3, 0.1)]  # lr 5e-3 is nearer 1e-2 than 1e-4 on the log scale
    seen.clear()
    problem.run({**base, "head": "normsoftmax", "lr": 1e-4}, lambda step, loss: seen.append(loss) or step < 2)
    assert seen == [0.6, 0.5]  # the head counts 1 + the margin 1: more than any lr gap; stopped after 2
    assert (problem.optimum, problem.worst) == (0.1, 0.7)
    assert problem.regret(0.1) == 0.0 and problem.regret(0.7) == 1.0 and problem.regret(0.4) == pytest.approx(0.5)


class _Counting:
    max_steps = 2

    def __init__(self):
        self.trained = []

    def run(self, config, on_step):
        self.trained.append(config)
        on_step(1, 1.0 - config["x"]), on_step(2, 0.5 - config["x"] / 2)


def test_tabulating_continues_an_interrupted_table_and_refuses_one_drawn_otherwise(tmp_path):
    replayed = _replayed_module()
    path = tmp_path / "t.json"

    def draws(seed):
        rng = np.random.default_rng(seed)
        return lambda: {"x": float(rng.random())}

    first = _Counting()
    replayed.tabulate(first, draws(1), 2, path, {"method": "m"})
    second = _Counting()
    replayed.tabulate(second, draws(1), 3, path, {"method": "m"})
    stored = json.loads(path.read_text())
    assert len(first.trained) == 2 and len(second.trained) == 1  # the first two were not trained again
    assert [row["config"] for row in stored["rows"]] == first.trained + second.trained
    assert stored["rows"][0]["losses"] == [1.0 - first.trained[0]["x"], 0.5 - first.trained[0]["x"] / 2]
    assert stored["epochs"] == 2 and stored["method"] == "m"
    before = path.read_bytes()
    with pytest.raises(replayed.OtherTable, match="holds other configurations than this sample draws"):
        replayed.tabulate(_Counting(), draws(2), 3, path, {"method": "m"})
    assert path.read_bytes() == before


def test_a_searcher_without_conditions_gets_the_union_of_a_conditional_choice():
    from tunelab.search_spaces import SPACES

    flat = _peers_module().flattened(SPACES["arcface"])
    assert flat["easy_margin"].options == (False, True)
    assert (flat["m"].low, flat["m"].high) == (0.1, 0.8)  # ArcFace's radians and CosFace's cosine units


def test_the_stored_arcface_table_is_the_seeded_sample_it_says_it_is():
    # Anyone can redraw the stored configurations from the seed (training them again takes an hour).
    peers = _peers_module()
    problem = peers.get_problem("digits_arcface")
    suggest = peers.random_suggest(np.random.default_rng(peers.TABLE_SEED))
    redrawn = [peers.sample_define_by_run(problem.space, suggest) for _ in problem.configs]
    assert problem.configs == redrawn
    assert len(problem.configs) >= 300 and all(len(curve) == problem.max_steps == 27 for curve in problem.curves)
    assert problem.table["fixed"] == peers.ARCFACE_FIXED and problem.table["loss"] == "1 - val/acc"


@pytest.mark.parametrize("argv, expected", [
    (["--tabulate", "digits_classifier"], "peers.py: --tabulate 'digits_classifier' is not a tabular problem; "
                                          "choose from: digits_arcface"),
    (["--tabulate", "digits_arcface", "--configs", "0"], "peers.py: --configs 0 must be at least 1")])
def test_tabulate_refuses_a_bad_request_in_one_line(argv, expected):
    result = subprocess.run([sys.executable, str(PEERS), *argv], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stderr.strip()) == (2, expected)


def test_the_ablation_judges_tunelab_against_its_variants_only():
    peers = _peers_module()
    base = np.linspace(0.1, 0.5, 20)
    rows = _rows(50, {"tunelab": base, "tunelab_norank": base + 0.1, "tunelab_1bracket": base + 0.02,
                      "tunelab_before": base + 0.3, "optuna": base - 0.2})
    ablation = peers.verdicts(rows, ablation=True)
    assert ablation[0].startswith("tunelab on p @ 50: win (tunelab_1bracket -0.0200")  # the peer that beats it is not there
    assert "optuna" not in ablation[0]
    assert ablation[-1] == ("1 win, 0 tie, 0 loss over 1 cells (Wilcoxon signed-rank by seed, Holm over each "
                            "cell's ablation variants, alpha 0.05)")
    assert peers.verdicts(rows)[0].startswith("tunelab on p @ 50: loss (optuna +0.2000")  # and the variants are no peers
    worse = _rows(50, {"tunelab": base, "tunelab_norank": base - 0.05, "tunelab_before": base + 0.3})
    assert peers.verdicts(worse, ablation=True)[0].startswith("tunelab on p @ 50: loss")


def test_the_ablation_flag_without_stored_rows_is_refused_in_one_line():
    result = subprocess.run([sys.executable, str(PEERS), "--ablation"], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stderr.strip()) == (2, "peers.py: --ablation judges stored rows: give it with "
                                                             "--table CSV...")


@pytest.mark.long
def test_the_simulated_slots_keep_their_bookkeeping():
    # scale.py simulate: the driver's real calls on a simulated clock. Every trial starts and ends,
    # no more than `slots` run at once, each reports 1, 3 or 9 epochs, and a slot is never more
    # than fully busy.
    spec = importlib.util.spec_from_file_location("scale", PEERS.parent / "scale.py")
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    row = scale.simulated_one("optuna", 3, 15)
    assert row["ended"] == 15 and row["most_running"] == 3
    assert 15 <= row["results"] <= 15 * scale.MAX_T
    assert 0.5 < row["occupancy"] <= 1.0 and row["gap_p50_s"] >= 0.0
    assert row["simulated_s"] >= 15 / 3 * scale.EPOCH_S  # 15 trials of one epoch at least, 3 at a time


def test_a_run_that_ends_before_its_budget_writes_no_row(tmp_path, monkeypatch, capsys):
    # Ray's Tuner returns, not raises, on Ctrl-C: an interrupted run once left a row of regret 1.0
    # and 0 trials, which the table would have read as a real result.
    peers = _peers_module()
    out = tmp_path / "rows.csv"
    monkeypatch.setitem(peers.RUNNERS, "random", lambda log, seed, cap: log.record(1, 0.5))
    monkeypatch.setattr(sys, "argv", ["peers.py", "--problems", "digits_arcface", "--methods", "random", "--seeds", "1",
                                      "--budget", "2", "--out", str(out)])
    with pytest.raises(SystemExit) as ended:
        peers.main()
    assert ended.value.code == 1 and not out.exists()
    assert capsys.readouterr().err.strip() == (f"peers.py: digits_arcface random seed 0 ended after 1 of 54 steps and 1 "
                                               f"of 400 trials (interrupted?); its rows are not written, those before "
                                               f"it are in {out}")


@pytest.mark.parametrize("argv, expected", [
    (["--problems", "digits_arcfce"], "peers.py: --problems 'digits_arcfce' is not known; choose from: mfh3_good"),
    (["--problems", "digits_arcface", "--methods", "random,rndom"], "peers.py: --methods 'rndom' is not known; choose from: tunelab"),
    (["--problems", "digits_arcface", "--seeds", "0"], "peers.py: --seeds 0 must be at least 1"),
    (["--problems", "digits_arcface", "--budget", "-3"], "peers.py: --budget -3 must be at least 1"),
    (["--problems", "digits_arcface", "--cap", "0"], "peers.py: --cap 0 must be at least 1"),
    (["--problems", "digits_arcface", "--out", "{d}/no/such/folder/x.csv"], "peers.py: --out {d}/no/such/folder/x.csv: no folder"),
    (["--tabulate", ""], "peers.py: --tabulate '' is not a tabular problem; choose from: digits_arcface"),
    (["--reference", ""], "peers.py: --reference '' is not a training problem; choose from: digits_classifier, digits_adarand"),
    (["--table", "{d}/rows.csv", "--ablation"], "peers.py: --table: no problem and checkpoint has rows of tunelab and of one of "
                                               "its variants (tunelab_norank, tunelab_1bracket, tunelab_before)"),
    (["--table", "{d}/peerless.csv", "--ablation"], "peers.py: --table: no problem and checkpoint has rows of tunelab "
                                                    "and of one of its variants"),
])
def test_a_bad_request_is_refused_in_one_line_before_any_run(tmp_path, monkeypatch, capsys, argv, expected):
    peers = _peers_module()
    (tmp_path / "rows.csv").write_text("problem,method,seed,checkpoint,regret\np,tunelab,0,10,0.1\np,optuna,0,10,0.2\n")
    (tmp_path / "peerless.csv").write_text("problem,method,seed,checkpoint,regret\np,tunelab_norank,0,10,0.1\n"
                                           "p,tunelab_before,0,10,0.2\n")  # variants, no tunelab
    monkeypatch.setitem(peers.RUNNERS, "random", lambda log, seed, cap: pytest.fail("a run started"))
    monkeypatch.setattr(sys, "argv", ["peers.py", *[a.replace("{d}", str(tmp_path)) for a in argv]])
    with pytest.raises(SystemExit) as refused:
        peers.main()
    error = capsys.readouterr().err
    assert refused.value.code == 2 and error.count("\n") == 1
    assert error.startswith(expected.replace("{d}", str(tmp_path)))


@pytest.mark.long
@pytest.mark.parametrize("page", ["peers-heldout.md", "peers-verdicts.md"])
def test_the_verdict_tables_of_a_page_are_what_its_commands_print(page):
    # The headline claims are restated from the rule's output: each `--table` command on the page,
    # run on the stored rows, must give the count line the page shows, followed by its table with
    # the same verdict per cell and, for a loss, the same figures.
    import glob
    import re
    import shlex

    peers = _peers_module()
    root = PEERS.parents[1]
    text = (root / "benchmarks" / page).read_text()
    commands = [shlex.split(line.strip()) for line in text.splitlines() if "benchmarks/peers.py" in line
                and "--table" in line and line.startswith("    .venv/bin/python")]
    assert commands, "the page names no --table command"
    lines = text.splitlines()
    for command in commands:
        files = [f for arg in command[command.index("--table") + 1:] if not arg.startswith("--")
                 for f in sorted(glob.glob(str(root / arg)))]
        rows = peers.latest_rows(pd.concat([peers.read_rows(f, None) for f in files], ignore_index=True))
        printed = peers.verdicts(rows, ablation="--ablation" in command)
        count = printed[-1]
        assert count in lines, f"{page} does not show: {count}"
        table = []
        for line in lines[lines.index(count) + 1:]:
            if table and not line.startswith("|"):
                break
            if line.startswith("| ") and not line.startswith("| problem"):
                table.append([cell.strip() for cell in line.strip("|").split("|")])
        cells = [re.match(r"tunelab on (\S+) @ (\S+): (\w+) \((.*)\)$", line).groups() for line in printed[:-1]]
        assert [(p, c, f"**{v}**") for p, c, v, _ in cells] == [tuple(row[:3]) for row in table]
        for (_, _, verdict, detail), row in zip(cells, table):
            if verdict == "loss":
                for phrase in re.findall(r"(\S+ [+-]\d\.\d+ \[[^]]+\] Holm p \S+) n=\d+ worse", detail):
                    assert phrase in row[3], (row, phrase)


def test_every_part_of_scale_all_is_a_command_the_script_takes():
    # `scale.py all` runs each part with the arguments the benchmark page records; a renamed flag
    # would otherwise surface twenty minutes into the run.
    spec = importlib.util.spec_from_file_location("scale", PEERS.parent / "scale.py")
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    parser = scale.build_parser()
    parts = [parser.parse_args(list(argv)) for argv in scale.EVERY_PART]
    assert [p.command for p in parts] == ["driver", "simulate", "experiments", "cluster"]
    assert parts[1].slots == [64, 256, 512] and parts[2].report_trials == 10000 and parts[3].slots == 64
