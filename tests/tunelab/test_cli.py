"""The command line: exit codes, one-line errors, the --json contract."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given as hypothesis_given
from hypothesis import settings
from hypothesis import strategies as st

from tunelab.cli import build_parser, main
from tunelab.tune_options import TuneOptions
from tunelab.options import from_args, to_argv

from tests.in_process import tunelab as run_cli  # `tunelab ARGS` in this process: exit code, stdout, stderr


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.long
def test_train_classifier_on_digits_default_config_reaches_95_percent():
    """Acceptance: the default config, exactly as the README runs it."""
    result = run_cli("train", "classifier", "--dataset", "digits", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    final = json.loads(result.stdout.strip().splitlines()[-1])
    assert final["val/acc"] >= 0.95
    assert final["epoch"] == 15 and "test/acc" not in final


def test_missing_cifar_folder_exits_2_naming_the_path():
    result = run_cli("train", "classifier", "--dataset", "cifar10", "--data-dir", "/nonexistent")
    assert_one_line_error(result, "/nonexistent", "cifar10")


@pytest.mark.parametrize("args,fragments", [
    (["--set", "optimizer=adamm"], ["optimizer='adamm'", "sgd, adagrad, rmsprop, adam, adamw"]),
    (["--set", "nosuchkey=1"], ["nosuchkey", "valid keys:", "batch_size", "weight_decay"]),
    (["--set", "model=resnet9"], ["model='resnet9'", "resnet18"]),
    (["--set", "schedule=linear"], ["schedule='linear'", "cosine"]),
    (["--set", "lr"], ["--set 'lr' is malformed", "KEY=VALUE"]),
    (["--set", "epochs=two"], ["epochs='two'", "int"]),
    (["--dataset", "mnist"], ["dataset='mnist'", "digits, cifar10, cifar100, imagefolder:PATH"]),
    (["--config", "/nonexistent.yaml"], ["/nonexistent.yaml", "no such file"]),
])
def test_bad_train_input_exits_2_with_one_line(capsys, args, fragments):
    assert main(["train", "classifier", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    for fragment in fragments:
        assert fragment in err[0]


def test_unknown_method_is_one_line_listing_methods():
    result = run_cli("train", "clasifier")
    assert_one_line_error(result, "clasifier", "classifier")


def test_the_installed_console_script_exits_2_with_one_line():
    """The one run of the real `tunelab` console script (the environment's bin folder, as `make run`
    calls it): the entry point is installed, and an exit code and a one-line error come back
    through the interpreter's own exit."""
    script = Path(sys.executable).parent / "tunelab"
    assert script.is_file(), f"no console script {script}: install the package (make install)"
    result = subprocess.run([str(script), "train", "clasifier"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert_one_line_error(result, "invalid choice: 'clasifier'", "classifier")


def test_config_file_and_set_precedence(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 5\nimage_size: 8\nwidth: 8\nbatch_size: 256\n")
    assert main(["train", "classifier", "--config", str(config), "--set", "epochs=1", "--json",
                 "--out", str(tmp_path / "out")]) == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert final["epoch"] == 1
    assert (tmp_path / "out" / "metrics.csv").exists() and (tmp_path / "out" / "checkpoint.pt").exists()


def test_config_file_that_is_not_a_mapping(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    assert main(["train", "classifier", "--config", str(bad)]) == 2
    assert "must hold a mapping" in capsys.readouterr().err


@pytest.mark.long
def test_train_arcface_on_digits_default_config_is_accurate_without_labels_at_eval():
    """Acceptance of the arcface issue: margin-free val/acc and Recall@1 both >= 0.95."""
    # a hang bound, not a timing assertion: the full default run takes minutes on a busy 2-core machine
    result = run_cli("train", "arcface", "--dataset", "digits", "--json", timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    final = json.loads(result.stdout.strip().splitlines()[-1])
    assert final["val/acc"] >= 0.95 and final["val/recall@1"] >= 0.95
    assert 0 < final["val/map@r"] <= 1


@pytest.mark.parametrize("setting,fragments", [
    ("m=2.0", ["m=2.0", "[0, 1.5708)"]),
    ("s=0", ["s=0.0", "(0, inf]"]),
])
def test_bad_arcface_margin_or_scale_exits_2(capsys, setting, fragments):
    assert main(["train", "arcface", "--set", setting]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(f in err[0] for f in fragments)


@pytest.mark.long
def test_offline_pretrain_then_fine_tune_all_three_quickly(tmp_path):
    """The fine-tuning path end to end through the command line, at a 2-epoch budget."""
    checkpoint = tmp_path / "r18.pt"
    # 20 images per class to pretrain on (x 4 rotations): the backbone's quality is not the point here
    result = run_cli("pretrain", "--out", str(checkpoint), "--set", "epochs=1", "--set", "image_size=8",
                     "--set", "train_per_class=20", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    for method in ("finetune", "randreg", "adarand"):
        result = run_cli("train", method, "--set", f"pretrained={checkpoint}", "--set", "epochs=2",
                         "--set", "image_size=8", "--json")
        assert result.returncode == 0, result.stderr[-2000:]
        final = json.loads(result.stdout.strip().splitlines()[-1])
        assert final["epoch"] == 2 and "train/feat_norm" in final
    assert "prior/inter_cos" in final


@pytest.mark.slow
def test_offline_pretrain_then_fine_tune_all_three(tmp_path):
    """Acceptance of the fine-tuning issue, default configs: pretrain offline, then the three methods."""
    checkpoint = tmp_path / "r18.pt"
    result = run_cli("pretrain", "--out", str(checkpoint), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["checkpoint"] == str(checkpoint)
    result = run_cli("train", "adarand", "--dataset", "digits", "--set", f"pretrained={checkpoint}", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    final = json.loads(result.stdout.strip().splitlines()[-1])
    assert final["val/acc"] >= 0.95
    assert final["train/feat_norm"] > 0 and -1 <= final["prior/inter_cos"] <= 1
    for method in ("finetune", "randreg"):
        result = run_cli("train", method, "--set", f"pretrained={checkpoint}", "--set", "epochs=2", "--json")
        assert result.returncode == 0, result.stderr[-2000:]
        assert "val/acc" in json.loads(result.stdout.strip().splitlines()[-1])
    # An existing checkpoint is never overwritten.
    again = run_cli("pretrain", "--out", str(checkpoint))
    assert_one_line_error(again, str(checkpoint), "already exists")


def test_imagenet_weights_missing_exits_2_naming_the_file(tmp_path):
    # torch reads TORCH_HOME when it looks for the file (torch.hub.get_dir), not at start-up
    result = run_cli("train", "finetune", "--set", "pretrained=imagenet", "--set", "width=64",
                     "--set", "cifar_stem=false", env={"TORCH_HOME": str(tmp_path)})
    assert_one_line_error(result, "resnet18-f37072fd.pth", "is missing", str(tmp_path))


def test_options_are_declared_once_the_command_line_and_the_objects_agree():
    import dataclasses

    from tunelab.cli import build_parser
    from tunelab.compare_options import CompareOptions, parse_methods
    from tunelab.tune_options import TuneOptions
    from tunelab.options import from_args

    parser = build_parser()
    assert from_args(TuneOptions, parser.parse_args(["tune", "classifier"])) == TuneOptions("classifier")
    parsed = from_args(CompareOptions, (args := parser.parse_args(["compare"])), methods=parse_methods(args.methods))
    assert parsed == CompareOptions()
    given = parser.parse_args(["tune", "arcface", "--num-samples", "3", "--set", "lr=0.1", "--set", "s=8",
                               "--checkpoint-interval", "0", "--overwrite", "--stop-at", "0.9"])
    opts = from_args(TuneOptions, given)
    assert (opts.num_samples, opts.sets, opts.checkpoint_interval_s, opts.overwrite, opts.stop_at) == \
        (3, ["lr=0.1", "s=8"], 0.0, True, 0.9)
    # every option compare shares with tune has tune's help
    tune_help = {f.name: f.metadata.get("help") for f in dataclasses.fields(TuneOptions)}
    for f in dataclasses.fields(CompareOptions):
        if f.name in tune_help:
            assert f.metadata["help"] == tune_help[f.name], f.name


def test_train_accepts_the_file_best_writes(tmp_path, capsys):
    from tunelab.analysis.reproduce import write_best
    from tunelab.trainables import get_method
    from tunelab.trainables.config import build_config, to_dict

    config = to_dict(build_config(get_method("classifier").config_class,
                                  {"image_size": 8, "width": 8, "epochs": 1, "lr": 0.01, "device": "cpu"}))
    write_best({"method": "classifier", "config": config,
                "provenance": {"trial_id": "abc", "epoch": 1, "metric": "val/acc", "value": 0.5}}, tmp_path / "b.yaml")
    assert main(["train", "classifier", "--config", str(tmp_path / "b.yaml"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["epoch"] == 1
    assert main(["train", "arcface", "--config", str(tmp_path / "b.yaml")]) == 2
    assert "best config of method 'classifier', not 'arcface'" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("tunelab 0.")


def test_a_preset_fills_only_the_options_not_given():
    from tunelab.cli import build_parser
    from tunelab.compare_options import PRESETS, CompareOptions, with_preset
    from tunelab.options import from_args, given

    parser = build_parser()

    def parsed(*argv):
        args = parser.parse_args(["compare", *argv])
        return with_preset(from_args(CompareOptions, args), given(args))

    assert parsed() == CompareOptions()
    assert parsed("--preset", "transfer-digits") == CompareOptions(preset="transfer-digits")  # the defaults
    cifar = parsed("--preset", "transfer-cifar", "--seeds", "3", "--train-per-class", "10")
    assert (cifar.dataset, cifar.classes, cifar.source_classes) == ("cifar10", "5-9", "0-4")
    assert cifar.num_samples == PRESETS["transfer-cifar"]["num_samples"]
    # given values win, even one equal to the option's own default (10)
    assert (cifar.seeds, cifar.train_per_class) == (3, 10)


# ----------------------------------------------------------------------------- options -> command line

# flag-like values included; not exactly '--', which argparse drops from any option's value (and
# which no option accepts: it is no folder name, duration or KEY=VALUE)
_text = st.one_of(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12),
                  st.text("-= x", min_size=1, max_size=4)).filter(lambda text: text != "--")


@settings(max_examples=150, deadline=None)
@hypothesis_given(num_samples=st.integers(-5, 500), cpus=st.floats(0.01, 64, allow_nan=False),
                  seed=st.integers(-10, 10**6), budget=st.one_of(st.none(), _text), name=st.one_of(st.none(), _text),
                  sets=st.lists(_text, max_size=3), overwrite=st.booleans(),
                  stop_at=st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)))
def test_to_argv_rebuilds_the_same_tune_options(num_samples, cpus, seed, budget, name, sets, overwrite, stop_at):
    """compare --parallel starts each search as `tunelab tune ARGV`: parsing ARGV must give back
    exactly the options it came from (values starting with '-', spaces and floats included)."""
    opts = TuneOptions(method="arcface", num_samples=num_samples, cpus_per_trial=cpus, seed=seed, time_budget=budget,
                        name=name, sets=sets, overwrite=overwrite, stop_at=stop_at)
    args = build_parser().parse_args(["tune", "arcface", *to_argv(opts)])
    assert from_args(TuneOptions, args) == opts


def test_to_argv_leaves_defaults_out():
    assert to_argv(TuneOptions(method="classifier")) == []
    assert to_argv(TuneOptions(method="classifier", num_samples=3, overwrite=True, sets=["a=1", "b=2"])) == [
        "--num-samples=3", "--set=a=1", "--set=b=2", "--overwrite"]
    opts = TuneOptions(method="classifier", sets=["-x=1", "--y"], time_budget="-5m", name="--json")
    assert from_args(TuneOptions, build_parser().parse_args(["tune", "classifier", *to_argv(opts)])) == opts
