"""The driver's checks, run without starting Ray (everything here fails before Ray would start)."""
import pytest

from tunelab.core.errors import ConfigError
from tunelab import cluster, driver, search_plan
from tunelab.cli import main
from tunelab.driver import run_tune
from tunelab.search_plan import resolve_space
from tunelab.tune_options import TuneOptions, fixed_values
from tunelab.experiments import prepare_folder


def test_fixed_values_pin_device_threads_and_gpu_fraction():
    assert fixed_values(TuneOptions("classifier"))["device"] == "cpu"
    gpu = fixed_values(TuneOptions("classifier", gpus_per_trial=0.25, cpus_per_trial=2))
    assert gpu["device"] == "cuda" and gpu["gpu_memory_fraction"] == 0.25 and gpu["threads"] == 2
    told = fixed_values(TuneOptions("classifier", gpus_per_trial=0.25, sets=["device=cpu"]))
    assert told["device"] == "cpu" and "gpu_memory_fraction" not in told
    assert fixed_values(TuneOptions("classifier", max_epochs=7))["epochs"] == 7


def test_set_values_leave_the_search_space():
    opts = TuneOptions("classifier", sets=["lr=0.01", "optimizer=sgd"])
    space = resolve_space(opts, fixed_values(opts))
    assert "lr" not in space and "optimizer" not in space and "weight_decay" in space


@pytest.mark.parametrize("opts,message", [
    (TuneOptions("classifierx"), "method='classifierx' is not known; choose from: classifier, finetune"),
    (TuneOptions("classifier", search="grid"), "--search 'grid' is not valid; choose from: optuna, random"),
    (TuneOptions("classifier", scheduler="pbt"), "--scheduler 'pbt' is not valid; choose from: asha, fifo"),
    (TuneOptions("classifier", num_samples=0), "--num-samples 0 is out of range; allowed: >= 1"),
    (TuneOptions("classifier", reduction_factor=1), "--reduction-factor 1 is out of range; allowed: >= 2"),
    (TuneOptions("classifier", gpus_per_trial=1.5), "--gpus-per-trial 1.5 is not valid"),
    (TuneOptions("classifier", cpus_per_trial=0), "--cpus-per-trial 0 is out of range"),
    (TuneOptions("classifier", sets=["epochs=3"]), "--set epochs is not allowed in tune; use --max-epochs"),
    (TuneOptions("classifier", sets=["optimizer=adamm"]), "optimizer='adamm' is not valid"),
    (TuneOptions("classifier", space="/nonexistent.yaml"), "--space '/nonexistent.yaml': no such file"),
    (TuneOptions("classifier", checkpoint_interval_s=-1), "--checkpoint-interval -1 is out of range"),
    (TuneOptions("classifier", keep_checkpoints=0), "--keep-checkpoints 0 is out of range; allowed: >= 1"),
    (TuneOptions("classifier", stop_at=float("inf")), "--stop-at inf is not valid"),
])
def test_bad_options_fail_before_ray_starts(opts, message, monkeypatch):
    monkeypatch.setattr(search_plan, "connect_ray", lambda address: pytest.fail("Ray must not start"))
    with pytest.raises(ConfigError, match=message):
        run_tune(opts)


def test_existing_experiment_is_refused_and_kept(tmp_path):
    from tests.tunelab.test_not_ours import write_experiment

    write_experiment(tmp_path / "exp")
    (tmp_path / "exp" / "result.json").write_text("precious")  # not where Ray writes one: the user's
    with pytest.raises(ConfigError, match="already exists; continue it with `tunelab resume"):
        prepare_folder(str(tmp_path / "exp"), overwrite=False)
    assert (tmp_path / "exp" / "tuner.pkl").exists()
    prepare_folder(str(tmp_path / "exp"), overwrite=True)
    assert [p.name for p in (tmp_path / "exp").iterdir()] == ["result.json"]
    assert (tmp_path / "exp" / "result.json").read_text() == "precious"


def test_unwritable_storage_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is not writable"):
        prepare_folder(str(tmp_path / "file" / "exp"), overwrite=False)


def test_gpu_request_on_a_cluster_without_gpus(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 2.0}}])
    with pytest.raises(ConfigError, match="--gpus-per-trial 0.25 but the Ray cluster has 0 GPUs"):
        cluster.check_cluster(TuneOptions("classifier", gpus_per_trial=0.25), "/tmp/runs")


def test_resume_of_a_folder_that_is_not_an_experiment(tmp_path, capsys):
    assert main(["resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a tunelab experiment" in err[0] and str(tmp_path) in err[0]


def _exit_code(args) -> int:
    """main()'s exit code, whether it returns it or argparse raises SystemExit."""
    try:
        return main(args)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("args,fragment", [
    (["tune", "classifier", "--search", "grid"], "--search 'grid'"),
    (["tune", "classifier", "--num-samples", "many"], "argument --num-samples: invalid int value: 'many'"),
    (["tune", "nosuch"], "argument METHOD: invalid choice: 'nosuch'"),
])
def test_tune_command_line_errors_are_one_line(capsys, args, fragment):
    assert _exit_code(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]


def test_random_search_takes_the_concurrency_limit():
    # Tune ignores TuneConfig.max_concurrent_trials when handed a generator instance.
    opts = TuneOptions("classifier", search="random", max_concurrent=3)
    searcher, sampled, _ = driver.build_search(opts, resolve_space(opts, fixed_values(opts)), "x")
    assert searcher.max_concurrent == 3 and "lr" in sampled


@pytest.mark.parametrize("mode,values,stops_after", [
    ("max", [0.5, 0.89, 0.9, 0.1], 3),
    ("min", [1.5, 0.95, 0.9, 1.1], 3),
    ("max", [0.5, None, 0.7], None),
])
def test_stop_at_ends_the_search_at_the_first_result_that_reaches_it(mode, values, stops_after):
    from tunelab.stopping import StopWhenReached

    stopper = StopWhenReached("val/acc", mode, 0.9)
    decisions = [stopper(f"t{i % 2}", {} if v is None else {"val/acc": v}) for i, v in enumerate(values)]
    first = decisions.index(True) + 1 if True in decisions else None
    assert first == stops_after
    assert stopper.stop_all() == (stops_after is not None)
    assert all(decisions[first - 1:]) if first else not any(decisions)


def test_a_relative_backbone_path_is_made_absolute_for_trials_running_elsewhere(tmp_path, monkeypatch):
    from tunelab.tune_options import TuneOptions, fixed_values

    monkeypatch.chdir(tmp_path)
    fixed = fixed_values(TuneOptions(method="finetune", sets=["pretrained=backbones/b.pt"]))
    assert fixed["pretrained"] == str(tmp_path / "backbones" / "b.pt")
    assert fixed_values(TuneOptions(method="finetune", sets=["pretrained=auto"]))["pretrained"] == "auto"


def test_tune_builds_its_optuna_and_asha_pair_with_the_public_make_search(monkeypatch):
    import tunelab.search
    import tunelab.searchers.tpe

    calls = []
    real = tunelab.search.make_search
    monkeypatch.setattr(tunelab.searchers.tpe, "make_search", lambda *a, **k: calls.append(k) or real(*a, **k))
    opts = TuneOptions("classifier", max_epochs=9, grace_period=2, reduction_factor=3, num_samples=16)
    searcher, sampled, scheduler = driver.build_search(opts, resolve_space(opts, fixed_values(opts)), "x")
    assert len(calls) == 1 and calls[0]["time_attr"] == "epoch" and sampled == {}
    assert (scheduler._max_t, scheduler._reduction_factor, scheduler._time_attr) == (9, 3, "epoch")
    assert sorted(milestone for milestone, _ in scheduler._brackets[0]._rungs) == [2, 6]  # grace 2, x3
    assert searcher._max_t == 9


def test_resume_rebuilds_a_random_search_param_space_from_the_record(tmp_path):
    """Ray resolves its `tune.sample_from` placeholders on restore only from a param_space given again
    (issue 31, 1): the same keys as the search was started with, the space taken from the record."""
    from ray.tune.search.sample import Function

    from tunelab.search_spaces import SPACES
    from tunelab.search_spaces.base import describe
    from tunelab.tune_options import TuneOptions
    from tunelab.searcher_plugins import searcher_for

    def restored_param_space(opts, record, path):
        return searcher_for(opts.search).restored_param_space(opts, record, path)

    record = {"fixed": {"epochs": 3, "seed": 0}, "search_space": describe(SPACES["classifier"])}
    space = restored_param_space(TuneOptions(method="classifier", search="random"), record, str(tmp_path))
    assert set(space) == {"epochs", "seed", *SPACES["classifier"]}
    assert isinstance(space["lr"], Function) and space["epochs"] == 3
    assert restored_param_space(TuneOptions(method="classifier"), record, str(tmp_path)) is None  # Optuna's own
    record["search_space"] = [{"name": "lr", "type": "FloatRange", "low": 1.0}]  # a hand-edited record
    with pytest.raises(ConfigError, match="field 'search_space' does not describe a search space"):
        restored_param_space(TuneOptions(method="classifier", search="random"), record, str(tmp_path))


def test_keep_checkpoints_is_the_number_ray_keeps_for_each_trial(tmp_path):
    from tunelab.driver import run_config

    for keep in (1, 2, 5):
        config = run_config(TuneOptions("classifier", keep_checkpoints=keep), "n", str(tmp_path), {})
        assert config.checkpoint_config.num_to_keep == keep
        assert config.checkpoint_config.checkpoint_score_attribute == "val/acc"
