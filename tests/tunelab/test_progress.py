"""The status line a person follows during `tune` (no Ray needed: trials are plain objects here)."""
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tunelab.progress import ProgressLines, _duration


def _trial(trial_id, status, epoch, value=None):
    return SimpleNamespace(trial_id=trial_id, status=status, last_result={"epoch": epoch, "val/acc": value})


def test_status_line_counts_trials_epochs_and_bounds_the_time_left():
    lines = ProgressLines(num_samples=4, metric="val/acc", max_epochs=10, every_s=30)
    lines.best = 0.91
    trials = [_trial("a", "TERMINATED", 10), _trial("b", "TERMINATED", 1), _trial("c", "RUNNING", 4, 0.5),
              _trial("d", "PENDING", 0)]
    line = lines.status_line(trials, elapsed_s=30.0)  # 15 epochs in 30 s: 2 s an epoch, 25 left at most
    assert line.startswith("2/4 trials done, epochs 15/40 of the budget, best val/acc 0.9100, time left <= 50s")
    assert line.endswith("running: c epoch 4/10 0.5000")


def test_durations_read_as_people_write_them():
    assert [_duration(s) for s in (5, 75, 3600 * 2 + 60 * 5)] == ["5s", "1m15s", "2h05m"]


@pytest.mark.parametrize("text, seconds", [("90m", 5400), ("2h", 7200), ("1h30m", 5400), ("45s", 45), ("1.5h", 5400),
                                           ("1d", 86400), ("30", 30), (" 2H ", 7200), ("0.5", 0.5)])
def test_durations_parse_to_seconds(text, seconds):
    from tunelab.duration import parse_duration

    assert parse_duration(text) == seconds


@given(st.text(max_size=12))
def test_any_duration_text_parses_to_a_positive_finite_number_or_is_refused(text):
    import math

    from tunelab.core.errors import ConfigError
    from tunelab.duration import parse_duration

    try:
        seconds = parse_duration(text)
    except ConfigError as exc:
        assert str(exc).startswith(f"--time-budget {text!r}")
        return
    assert math.isfinite(seconds) and seconds > 0


def test_a_time_budget_is_refused_outside_the_main_thread_where_tunes_stop_cannot_reach():
    import threading

    from tunelab.core.errors import ConfigError
    from tunelab.budget import start_session

    caught = []

    def session():
        try:
            start_session(10.0)
        except ConfigError as exc:
            caught.append(str(exc))

    worker = threading.Thread(target=session)
    worker.start()
    worker.join()
    assert caught == ["--time-budget needs the search to run in the main thread of its process"]
    assert start_session(None) is None  # no budget: any thread


def test_a_resumed_search_counts_on_from_the_trials_it_restored(capsys):
    lines = ProgressLines(num_samples=4, metric="val/acc", max_epochs=10, every_s=30)  # as unpickled at resume
    restored = [SimpleNamespace(trial_id="a", status="TERMINATED", last_result={"epoch": 10, "val/acc_best": 0.8}),
                SimpleNamespace(trial_id="b", status="ERROR", last_result={"epoch": 2, "val/acc_best": 0.3}),
                SimpleNamespace(trial_id="c", status="PENDING", last_result={"epoch": 4, "val/acc_best": 0.9})]
    lines.on_step_begin(0, restored)
    assert lines.ended == 2 and lines.best == 0.9  # the running trial's best so far counts too
    ended = SimpleNamespace(trial_id="c", status="TERMINATED", path="x", last_result={"epoch": 10, "val/acc_best": 0.95})
    lines.on_trial_complete(1, restored, ended)
    assert "(3/4 done)" in capsys.readouterr().err
    lines.on_step_begin(2, restored)  # counted once, at the first step only
    assert lines.ended == 3
