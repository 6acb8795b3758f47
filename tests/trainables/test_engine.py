import os
import dataclasses
import math

import pytest

from tunelab.trainables.classifier import Classifier, ClassifierConfig
from tunelab.trainables.config import build_config, parse_set_options
from tunelab.trainables.configs import DataOptions
from tunelab.trainables.data import load_dataset
from tunelab.trainables.engine import train
from tunelab.core.errors import ConfigError
from tunelab.trainables.reporting import LocalReporter

TINY = dict(image_size=8, width=8, epochs=4, batch_size=128, eval_batch_size=256, device="cpu")


@pytest.fixture(scope="module")
def digits8():
    return load_dataset(DataOptions(dataset="digits", image_size=8))


def _run(config, data, out=None):
    reporter = LocalReporter(out, dataclasses.asdict(config), quiet=True)
    train(Classifier(), config, reporter, data=data)
    return reporter


def test_same_seed_gives_identical_metrics_on_cpu(digits8):
    config = ClassifierConfig(**{**TINY, "epochs": 2, "dropout": 0.2})
    a, b = _run(config, digits8).history, _run(config, digits8).history
    drop_time = lambda rows: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]
    assert drop_time(a) == drop_time(b)
    c = _run(dataclasses.replace(config, seed=1), digits8).history
    assert drop_time(c) != drop_time(a)


def test_resume_from_checkpoint_equals_an_uninterrupted_run(digits8, tmp_path):
    full = ClassifierConfig(**TINY)
    straight = _run(full, digits8).history
    # Interrupted after 2 epochs: simulate by a run whose reporter stops the process at epoch 2.
    out = tmp_path / "run"

    class Stop(Exception):
        pass

    class StopAfterTwo(LocalReporter):
        def report(self, metrics, state):
            super().report(metrics, state)
            if metrics["epoch"] == 2:
                raise Stop

    with pytest.raises(Stop):
        train(Classifier(), full, StopAfterTwo(out, dataclasses.asdict(full), quiet=True), data=digits8)
    resumed = _run(full, digits8, out).history
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]
    assert len(resumed) == 4
    assert strip(resumed) == strip(straight)
    assert (out / "metrics.csv").read_text().count("\n") == 5


class _Resumed:
    """A reporter that resumes from a given checkpoint state and records what is reported."""

    def __init__(self, state):
        self.state, self.reports = state, []

    def load_checkpoint(self):
        return self.state

    def report(self, metrics, state):
        self.reports.append((dict(metrics), state()))


def test_a_run_resumed_from_its_last_epochs_checkpoint_reports_that_epoch_again_and_trains_nothing(digits8):
    """A Ray trial whose driver was killed after its last epoch, before the end was recorded, is
    resumed from that checkpoint: it must say how it ended (Ray took a trial that reported nothing
    for one stopped at its previous report), not train again."""
    config = ClassifierConfig(**{**TINY, "epochs": 2})
    first = _Resumed(None)
    last = train(Classifier(), config, first, data=digits8)
    final_state = first.reports[-1][1]
    assert final_state["epoch"] == 2 and final_state["metrics"] == last

    again = _Resumed(final_state)
    returned = train(Classifier(), config, again, data=digits8)
    assert returned == last
    assert [metrics for metrics, _ in again.reports] == [last]  # one report, the last epoch's, unchanged
    assert again.reports[0][1]["model"].keys() == final_state["model"].keys()


def test_a_finished_local_run_pointed_at_again_keeps_one_row_per_epoch(digits8, tmp_path):
    config = ClassifierConfig(**{**TINY, "epochs": 2})
    out = tmp_path / "run"
    done = _run(config, digits8, out).history
    again = _run(config, digits8, out).history
    assert [row["epoch"] for row in again] == [1, 2] and again == done
    assert (out / "metrics.csv").read_text().count("\n") == 3


def test_out_folder_of_another_config_is_refused_not_overwritten(digits8, tmp_path):
    config = ClassifierConfig(**{**TINY, "epochs": 1})
    _run(config, digits8, tmp_path)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(ConfigError, match="another config"):
        _run(dataclasses.replace(config, lr=0.1), digits8, tmp_path)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_contract_metrics_each_epoch_and_best_is_running_max(digits8):
    history = _run(ClassifierConfig(**TINY), digits8).history
    for row in history:
        for key in ("epoch", "train/loss", "train/acc", "val/loss", "val/acc", "val/acc_top5", "val/acc_best"):
            assert key in row
        assert not any(k.startswith("test/") for k in row)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    running = [max(r["val/acc"] for r in history[: i + 1]) for i in range(4)]
    assert [r["val/acc_best"] for r in history] == running


def test_test_split_only_in_confirmation_runs(digits8):
    config = ClassifierConfig(**{**TINY, "epochs": 1})
    reporter = LocalReporter(None, {}, quiet=True)
    final = train(Classifier(), config, reporter, data=digits8, evaluate_test=True)
    assert 0 <= final["test/acc"] <= 1 and "test/acc_top5" in final


def test_divergence_stops_at_once(digits8):
    config = ClassifierConfig(**{**TINY, "optimizer": "sgd", "lr": 1e12, "momentum": 0.0, "batchnorm": False,
                                 "weight_decay": 0.0})
    history = _run(config, digits8).history
    assert len(history) == 1, "a diverged run must stop after the epoch that diverged"
    assert history[0]["diverged"] == 1 and not math.isfinite(history[0]["train/loss"])


def test_config_rejects_unknown_keys_and_lists_valid_ones():
    with pytest.raises(ConfigError, match="unknown config key 'nosuchkey'; valid keys: .*batch_size"):
        build_config(ClassifierConfig, {"nosuchkey": 1})


@pytest.mark.parametrize("values,message", [
    ({"optimizer": "adamm"}, "optimizer='adamm' is not valid; choose from: sgd, adagrad, rmsprop, adam, adamw"),
    ({"lr": "-1"}, r"lr=-1.0 is out of range; allowed: \(0, inf\]"),
    ({"epochs": "2.5"}, "epochs='2.5' is not a valid int"),
    ({"nesterov": "maybe"}, "nesterov='maybe' is not a valid bool"),
    ({"schedule": "linear"}, "schedule='linear' is not valid"),
    ({"milestones": "3,99", "epochs": "10"}, r"milestones=99 is out of range"),
])
def test_config_values_are_checked(values, message):
    with pytest.raises(ConfigError, match=message):
        build_config(ClassifierConfig, values)


def test_set_strings_are_typed_by_the_dataclass():
    config = build_config(ClassifierConfig, parse_set_options(
        ["lr=0.05", "epochs=3", "nesterov=true", "milestones=1,2", "hflip=none", "data_dir=/x"]))
    assert config.lr == 0.05 and config.epochs == 3 and config.nesterov is True
    assert config.milestones == (1, 2) and config.hflip is None and config.data_dir == "/x"
    with pytest.raises(ConfigError, match="malformed"):
        parse_set_options(["lr"])


def test_memory_cap_is_set_for_a_device_index_as_torch_requires(monkeypatch):
    """torch.cuda.set_per_process_memory_fraction takes an index, and raised ValueError for a bare
    torch.device("cuda") on a real GPU (test_cuda.py runs it there); CI has no GPU, so the call's
    arguments are checked here."""
    import torch

    from tunelab.trainables.engine import configure_backend

    calls = []
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d=None: calls.append((f, d)))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    config = ClassifierConfig(**{**TINY, "gpu_memory_fraction": 0.25})
    configure_backend(config, torch.device("cuda"))
    configure_backend(config, torch.device("cuda", 1))
    assert calls == [(0.25, 0), (0.25, 1)]


def test_confirmation_tests_the_weights_of_the_best_val_epoch(digits8, monkeypatch):
    """The test metrics come from the epoch a search would score the run by (its first best val/acc),
    not from the last epoch: checked against test evaluated by hand at every epoch."""
    from tunelab.trainables import engine

    by_epoch, real = {}, engine.evaluate

    def recording(run, split):
        result = real(run, split)
        if split == "val":
            by_epoch["now"] = len(by_epoch.get("val", [])) + 1
            by_epoch.setdefault("val", []).append(result["val/acc"])
            by_epoch.setdefault("test_each", []).append(real(run, "test")["test/acc"])
        return result

    monkeypatch.setattr(engine, "evaluate", recording)
    config = ClassifierConfig(**{**TINY, "epochs": 4, "lr": 0.05})
    final = train(Classifier(), config, LocalReporter(None, {}, quiet=True), data=digits8, evaluate_test=True)
    vals = by_epoch["val"]
    best_epoch = vals.index(max(vals)) + 1
    assert final["test/epoch"] == best_epoch
    assert final["test/acc"] == by_epoch["test_each"][best_epoch - 1]
    assert final["val/acc_best"] == max(vals)


def test_faults_reach_confirmation_runs_and_a_seed_scoped_sleep_slows_only_that_seed(digits8, tmp_path, monkeypatch):
    """Tests arm faults from outside (TUNELAB_FAULTS_DIR): a confirmation run trains like a trial,
    so a `raise` token fires in it, and `sleep.seed-N` pauses only the run with seed N."""
    from tunelab.analysis.reproduce import confirm
    from tunelab.trainables import faults

    monkeypatch.setenv(faults.FAULTS_ENV, str(tmp_path))
    naps = []
    monkeypatch.setattr(faults.time, "sleep", naps.append)
    (tmp_path / "sleep.seed-3").write_text("7.5")
    values = {**TINY, "epochs": 2}
    confirm("classifier", values, seed=2, data=digits8)
    assert naps == []
    confirm("classifier", values, seed=3, data=digits8)
    assert naps == [7.5, 7.5]  # once per epoch
    (tmp_path / "raise@2").touch()
    with pytest.raises(faults.InjectedFault, match="epoch 2"):
        confirm("classifier", values, seed=2, data=digits8)
    assert not (tmp_path / "raise@2").exists()


def test_a_hold_token_pauses_one_process_once_with_a_marker_while_it_waits(tmp_path, monkeypatch):
    from tunelab.trainables import faults

    monkeypatch.setenv(faults.FAULTS_ENV, str(tmp_path))
    markers = []
    monkeypatch.setattr(faults.time, "sleep", lambda s: markers.append((s, sorted(p.name for p in tmp_path.iterdir()))))
    (tmp_path / "hold@2").touch()
    assert faults.before_epoch(1) is False and markers == []
    faults.before_epoch(2)
    assert markers == [(faults.HOLD_S, [f"held.{os.getpid()}"])]  # the token claimed, the marker there
    assert list(tmp_path.iterdir()) == []  # the marker goes when the wait ends
    faults.before_epoch(2)
    assert len(markers) == 1  # once only
