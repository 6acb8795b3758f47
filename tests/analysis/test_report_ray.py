"""report / best / reproduce on a real (tiny) experiment, and compare through the command line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from tunelab.analysis.reproduce import best_record, load_best, reproduce, write_best
from tunelab.cli import main
from tunelab.driver import run_tune
from tunelab.tune_options import TuneOptions

pytestmark = pytest.mark.ray


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()}


@pytest.fixture(scope="module")
def experiment(ray_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    run_tune(TuneOptions(method="classifier", num_samples=4, max_epochs=3, reduction_factor=2,
                         storage=f"file://{root}", name="acc", sets=["image_size=8", "width=8", "batch_size=128"]))
    return root / "acc"


def test_report_writes_tables_plots_and_markdown_without_touching_the_experiment(experiment, tmp_path, capsys):
    before = _snapshot(experiment)
    out = tmp_path / "R"
    assert main(["report", str(experiment), "--out", str(out)]) == 0
    assert _snapshot(experiment) == before
    import pandas as pd

    trials = pd.read_csv(out / "trials.csv")
    assert trials.groupby("trial_id")["epoch"].apply(lambda e: e.is_unique).all()
    assert set(trials["status"]) <= {"finished", "stopped"} and trials["trial_id"].nunique() == 4
    comparison = pd.read_csv(out / "comparison.csv")
    assert list(comparison["method"]) == ["classifier"] and comparison.loc[0, "trials"] == 4
    assert pd.read_parquet(out / "comparison.parquet").shape == comparison.shape
    report = (out / "report.md").read_text()
    pngs = sorted((out / "plots").glob("*.png"))
    assert len(pngs) >= 3
    for png in pngs:
        with Image.open(png) as image:
            image.verify()
        assert f"plots/{png.name}" in report
    assert "classifier" in capsys.readouterr().out


def test_report_refuses_to_write_inside_an_experiment(experiment, capsys):
    before = _snapshot(experiment)
    assert main(["report", str(experiment), "--out", str(experiment / "report")]) == 2
    assert "never write into an experiment folder" in capsys.readouterr().err
    assert _snapshot(experiment) == before


def test_best_then_reproduce_repeats_the_recorded_metric_exactly(experiment, tmp_path):
    record = best_record(experiment)
    write_best(record, tmp_path / "b.yaml")
    loaded = load_best(tmp_path / "b.yaml")
    p = loaded["provenance"]
    assert p["trial_id"] and p["epoch"] >= 1 and p["git_commit"] and p["packages"]["torch"] and p["threads"] == 1
    said = []
    result = reproduce(loaded, seeds=2, say=said.append)
    assert result["reproduced_exactly"], (result["seeds"][0], p["value"])
    seed = loaded["config"]["seed"]
    assert said[0] == f"seed {seed} (1/2)" and said[1].startswith(f"seed {seed + 1} (2/2), about ")
    assert [s["seed"] for s in result["seeds"]] == [loaded["config"]["seed"], loaded["config"]["seed"] + 1]
    assert 0 <= result["test_acc_mean"] <= 1 and result["test_acc_std"] >= 0
    with pytest.raises(Exception, match="already exists"):
        write_best(record, tmp_path / "b.yaml")


def _compare(tmp_path, *args):
    # A process with its own local Ray: --parallel starts each search as a driver process of its own
    # and shares the private instance's slots (this machine's CPUs) among them, which the test checks.
    # (The one-after-another compare below runs in-process on the shared test cluster.)
    env = {**os.environ, "TUNELAB_CACHE_DIR": str(tmp_path / "cache"), "RAY_ADDRESS": "local"}
    result = subprocess.run([sys.executable, "-m", "tunelab", "compare", "--num-samples", "2", "--max-epochs", "2",
                             "--replicates", "1", "--grace-period", "1", "--source-epochs", "1", "--out", str(tmp_path / "c"), "--json",
                             *args], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    return result, {r["method"]: r for r in summary["rows"]}


@pytest.mark.heavy  # a whole compare
def test_compare_command_tiny_transfer_task_searches_in_parallel(tmp_path):
    """The default task: finetune from a backbone pretrained on digits 0-4, the classifier from
    scratch, both on digits 5-9 with 10 images per class; the two searches at the same time, each
    its own driver, study and experiment, under one time budget."""
    result, rows = _compare(tmp_path, "--methods", "classifier,finetune", "--seeds", "3", "--time-budget", "10m",
                            "--parallel")
    assert "time budget 10m: all 2 searches run in it at the same time" in result.stderr
    assert "at most 1 trial(s) at once each (an equal share of the cluster's 2 slots)" in result.stderr
    assert set(rows) == {"classifier", "finetune"}
    for row in rows.values():
        assert row["n_seeds"] == 3 and 0 <= row["test_acc_mean"] <= 1 and row["test_acc_std"] is not None
    backbone = torch.load(tmp_path / "c" / "source-backbone.pt", weights_only=True)
    assert backbone["source"]["classes"] == "0-4" and backbone["source"]["task"] == "supervised"
    stderr_lines = result.stderr.splitlines()
    for method in ("classifier", "finetune"):
        record = json.loads((tmp_path / "c" / "runs" / method / "tunelab.json").read_text())
        fixed, options = record["fixed"], record["options"]
        assert (fixed["classes"], int(fixed["train_per_class"])) == ("5-9", 10)
        assert ("pretrained" in fixed) == (method == "finetune")
        assert float(options["time_budget"]) == 600.0 and options["max_concurrent"] == 1  # whole window, half the slots
        assert record["command"][:3] == ["tunelab", "tune", method]  # its own driver, a command a user could run
        assert len(record["final_statuses"]) == 2
        assert set(record["final_statuses"].values()) <= {"finished", "stopped"}
        # each driver's progress, relayed with its method and kept in its log
        relayed = [line for line in stderr_lines if line.startswith(f"[{method}] [tunelab] trial ")]
        assert len(relayed) == 2, stderr_lines
        assert relayed[0].removeprefix(f"[{method}] ") in (tmp_path / "c" / "logs" / f"{method}.log").read_text()
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["parallel"] is True and 0 < summary["searches_s"] < summary["wall_s"]
    report = (tmp_path / "c" / "report" / "report.md").read_text()
    assert "classifier** vs finetune" in report and "would be detected with 80% power" in report
    assert "digits, classes 5-9, 10 training images per class, backbone source-backbone.pt" in report
    assert "resolved" in result.stdout.splitlines()[1] or "no interval" in report


@pytest.mark.heavy  # a whole compare
def test_compare_preset_transfer_cifar_on_the_cifar_fixture(ray_cluster, tmp_path):
    from tests.conftest import write_cifar10
    from tests.in_process import tunelab

    write_cifar10(tmp_path / "data" / "cifar-10-batches-py", n_train_per_batch=40, n_test=40)
    result = tunelab("compare", "--replicates", "1", "--num-samples", "2", "--max-epochs", "2", "--grace-period", "1",
                     "--source-epochs", "1", "--out", str(tmp_path / "c"), "--json", "--preset", "transfer-cifar", "--data-dir",
                     str(tmp_path / "data"), "--methods", "finetune,adarand", "--train-per-class", "4", "--seeds", "2",
                     env={"TUNELAB_CACHE_DIR": str(tmp_path / "cache")}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["method"]: r for r in json.loads(result.stdout.strip().splitlines()[-1])["rows"]}
    assert "tuning finetune (1/2)" in result.stderr and "tuning adarand (2/2)" in result.stderr  # one after another
    assert "one after another" in result.stdout
    assert set(rows) == {"finetune", "adarand"} and {r["dataset"] for r in rows.values()} == {"cifar10"}
    backbone = torch.load(tmp_path / "c" / "source-backbone.pt", weights_only=True)
    assert (backbone["source"]["dataset"], backbone["source"]["classes"]) == ("cifar10", "0-4")
    record = json.loads((tmp_path / "c" / "runs" / "adarand" / "tunelab.json").read_text())
    assert record["dataset"] == "cifar10" and record["fixed"]["classes"] == "5-9"  # from the preset
    assert int(record["fixed"]["train_per_class"]) == 4 and record["options"]["num_samples"] == 2  # given wins


def _trial_folders(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in (out / "runs").glob("**/*_*/progress.csv")}


@pytest.mark.heavy  # a whole compare, twice
def test_compare_replicates_pairs_methods_within_a_replicate_and_a_rerun_continues_it(tmp_path):
    """Two replicates of the tiny transfer task: the headline columns equal the paired t recomputed
    from the confirmation runs; the same compare, run again after losing a search's record and a
    replicate's confirmations (as a kill leaves them), continues without starting a trial again."""
    import pandas as pd
    from scipy import stats

    argv = ("--methods", "classifier,finetune", "--seeds", "2", "--replicates", "2")
    result, rows = _compare(tmp_path, *argv)
    out = tmp_path / "c"
    table = pd.read_csv(out / "report" / "comparison.csv").set_index("method")
    confirmations = pd.read_csv(out / "report" / "confirmations.csv")
    assert sorted(zip(confirmations["replicate"], confirmations["seed"])) == sorted(
        (r, s) for r in (0, 1) for s in (2 * r, 2 * r + 1) for _ in range(2))  # its own seeds, each replicate
    means = confirmations.groupby(["method", "replicate"])["test/acc"].mean()
    reference = stats.ttest_rel(means["classifier"], means["finetune"])
    row = table.loc["classifier"]
    assert row["diff_vs_baseline"] == pytest.approx((means["classifier"] - means["finetune"]).mean())
    assert (row["diff_ci95_low"], row["diff_ci95_high"]) == pytest.approx(reference.confidence_interval(0.95))
    assert row["diff_p_value"] == pytest.approx(reference.pvalue) == row["diff_p_holm"]  # one comparison
    assert (row["replicates"], row["diff_test"], row["n_seeds"]) == (2, "paired-replicates", 4)
    assert row["seed_diff_ci95_low"] <= row["diff_vs_baseline"] <= row["seed_diff_ci95_high"]
    json_row = rows["classifier"]
    for column in ("diff_ci95_low", "diff_ci95_high", "seed_diff_ci95_low", "seed_diff_ci95_high", "replicates"):
        assert json_row[column] == pytest.approx(row[column]), column
    assert "seeds only" in result.stdout and "across 2 replicates of the whole pipeline" in result.stdout
    report = (out / "report" / "report.md").read_text()
    assert "across 2 replicates" in report and "### Replicates" in report and "split_seed 1" in report
    assert len(pd.read_csv(out / "report" / "comparison_by_replicate.csv")) == 4
    for replicate in (0, 1):
        for method in ("classifier", "finetune"):
            record = json.loads((out / "runs" / f"replicate-{replicate}" / method / "tunelab.json").read_text())
            assert int(record["fixed"]["split_seed"]) == replicate and record["search"]["seed"] == 2 * replicate
            assert record["fixed"].get("pretrained") == (str((out / "source-backbone.pt").resolve())
                                                         if method == "finetune" else None)  # one backbone
    assert not (out / "runs" / "classifier").exists()

    state = json.loads((out / "compare.json").read_text())
    del state["searches"]["replicate-1/finetune"]
    (out / "compare.json").write_text(json.dumps(state))
    kept = [line for line in (out / "confirmations.jsonl").read_text().splitlines()
            if json.loads(line)["replicate"] == 0]
    (out / "confirmations.jsonl").write_text("".join(line + "\n" for line in kept))
    trials = _trial_folders(out)
    again, _ = _compare(tmp_path, *argv)
    for key in ("replicate-0/classifier", "replicate-0/finetune", "replicate-1/classifier"):
        assert f"{key}: search finished in an earlier run, kept" in again.stderr
    assert "finetune: continuing the search an earlier run left unfinished" in again.stderr
    assert "4 confirmation run(s) finished in an earlier run, kept; 0 to run" in again.stderr
    assert _trial_folders(out) == trials  # no trial was started again
    assert (out / "confirmations.jsonl").read_text().splitlines()[:4] == kept
    assert len(pd.read_csv(out / "report" / "confirmations.csv")) == 8


@pytest.mark.parametrize("damaged", ["progress.csv", "params.json"])
def test_report_warns_about_a_damaged_trial_and_reports_the_others(experiment, tmp_path, capsys, damaged):
    import shutil

    import pandas as pd

    copy = tmp_path / "acc"
    shutil.copytree(experiment, copy)
    victim = sorted(p.parent for p in copy.glob("*/progress.csv"))[0]
    text = (victim / damaged).read_text()
    (victim / damaged).write_text(text[: len(text) * 2 // 3])  # cut off mid-write
    assert main(["report", str(copy), "--out", str(tmp_path / "R")]) == 0
    err = capsys.readouterr().err
    (warning,) = [line for line in err.splitlines() if line.startswith("tunelab: warning:")]
    assert f"trial {victim.name}" in warning and damaged in warning
    trials = pd.read_csv(tmp_path / "R" / "trial_summary.csv", dtype={"trial_id": str})
    assert len(trials) == 3 and victim.name not in set(trials["trial_dir"])


def test_report_best_and_reproduce_read_an_experiment_given_as_a_file_uri(experiment, tmp_path, capsys):
    uri = experiment.resolve().as_uri()
    assert uri.startswith("file:///")
    assert main(["report", uri, "--out", str(tmp_path / "R")]) == 0
    assert (tmp_path / "R" / "report.md").is_file()
    assert main(["best", uri, "--out", str(tmp_path / "best.yaml")]) == 0
    assert load_best(tmp_path / "best.yaml")["provenance"]["experiment"] == str(experiment.resolve())


def test_report_and_best_end_stdout_with_one_json_line(experiment, tmp_path, capsys):
    assert main(["report", str(experiment), "--out", str(tmp_path / "R"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["out"] == str(tmp_path / "R") and summary["rows"][0]["method"] == "classifier"
    assert main(["best", str(experiment), "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["method"] == "classifier" and record["provenance"]["trial_id"]


def test_trials_csv_has_every_trial_full_config_and_no_ray_bookkeeping_unless_raw(experiment, tmp_path):
    import pandas as pd

    from tunelab.analysis.report import RAY_COLUMNS
    from tunelab.trainables import get_method
    from tunelab.trainables.config import build_config, to_dict

    assert main(["report", str(experiment), "--out", str(tmp_path / "R")]) == 0
    trials = pd.read_csv(tmp_path / "R" / "trials.csv")
    every_key = to_dict(build_config(get_method("classifier").config_class, {}))
    assert {f"config/{k}" for k in every_key} <= set(trials.columns)  # model, width, ... too
    assert (trials["config/model"] == "small_cnn").all() and (trials["config/width"] == 8).all()
    assert not set(RAY_COLUMNS) & set(trials.columns)
    assert main(["report", str(experiment), "--out", str(tmp_path / "raw"), "--raw"]) == 0
    assert {"pid", "hostname", "time_total_s"} <= set(pd.read_csv(tmp_path / "raw" / "trials.csv").columns)


def test_report_with_confirmations_opens_with_the_forest_plot(experiment, tmp_path):
    import pandas as pd

    from tunelab.analysis.report import write_report

    confirmations = pd.DataFrame({"method": ["classifier"] * 3, "dataset": ["digits"] * 3, "seed": [0, 1, 2],
                                  "test/acc": [0.80, 0.82, 0.85]})
    result = write_report([experiment], tmp_path / "R", confirmations)
    forest = tmp_path / "R" / "plots" / "forest.png"
    with Image.open(forest) as image:
        image.verify()
    lines = (tmp_path / "R" / "report.md").read_text().splitlines()
    assert lines[2] == "![test accuracy and difference to the baseline, 95% intervals](plots/forest.png)"
    assert str(forest) in result["plots"]


def test_report_and_best_read_an_experiment_at_a_pyarrow_uri(experiment, tmp_path):
    # local:// is resolved by pyarrow's filesystem layer, not by tunelab's local-path shortcut:
    # the remote branch (fetching the files analysis reads, no checkpoints) runs for real.
    import pandas as pd

    from tunelab.analysis.load import local_path

    uri = "local://" + str(experiment.resolve())
    fetched = local_path(uri)
    assert fetched != experiment.resolve() and (fetched / "tunelab.json").is_file()
    assert not list(fetched.glob("*/checkpoint_*")) and list(fetched.glob("*/progress.csv"))
    assert main(["report", uri, "--out", str(tmp_path / "R")]) == 0
    trials = pd.read_csv(tmp_path / "R" / "trials.csv")
    assert set(trials["experiment"]) == {uri}
    assert main(["best", uri, "--out", str(tmp_path / "best.yaml")]) == 0
    assert load_best(tmp_path / "best.yaml")["provenance"]["experiment"] == uri
    assert main(["report", "local:///nonexistent/exp", "--out", str(tmp_path / "R2")]) == 2
