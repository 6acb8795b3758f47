"""compare --replicates without Ray: what each replicate's searches train and are tested on, the
source backbone's images against every replicate's, the layout, the state, the dry run."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from tunelab.trainables import METHOD_CLASSES
from tunelab.trainables.config import build_config
from tunelab.trainables.data import load_dataset
from tunelab.core.errors import ConfigError
from tunelab.cli import main
from tunelab.compare_plan import method_options
from tunelab.compare_options import CompareOptions
from tunelab.tune_options import fixed_values

OUT = Path("/nonexistent/cmp")  # only named, never written
BACKBONE = Path("/nonexistent/cmp/source-backbone.pt")


def _data(opts: CompareOptions, method: str, replicate: int):
    """The data every trial of one search loads: the search's fixed values, as the driver builds them."""
    search = method_options(opts, method, OUT, BACKBONE, None, replicate=replicate)
    config = build_config(METHOD_CLASSES[method].config_class, fixed_values(search))
    return load_dataset(config.data_options())


def _rows(split) -> set[bytes]:
    return {image.numpy().tobytes() for image in split.images}


def test_methods_of_one_replicate_train_on_the_same_images_and_replicates_draw_others():
    opts = CompareOptions(methods=("classifier", "finetune"), replicates=3)
    data = {(r, m): _data(opts, m, r) for r in range(3) for m in opts.methods}
    for r in range(3):
        a, b = data[(r, "classifier")], data[(r, "finetune")]
        for split in ("train", "val", "test"):
            first, second = getattr(a, split), getattr(b, split)
            assert np.array_equal(first.images.numpy(), second.images.numpy()), (r, split)
            assert np.array_equal(first.labels.numpy(), second.labels.numpy()), (r, split)
        assert len(a.train) == 5 * opts.train_per_class
    for r, s in ((0, 1), (0, 2), (1, 2)):
        one, other = data[(r, "classifier")], data[(s, "classifier")]
        assert _rows(one.train) != _rows(other.train) and _rows(one.val) != _rows(other.val)
        assert np.array_equal(one.test.images.numpy(), other.test.images.numpy())  # the test split never moves


def test_one_replicate_searches_exactly_as_compare_did_before_replicates():
    opts = CompareOptions(methods=("finetune",), seed=7, replicates=1)
    search = method_options(opts, "finetune", OUT, BACKBONE, None)
    assert search.storage == (OUT / "runs").resolve().as_uri() and search.name == "finetune" and search.seed == 7
    assert search.sets == ["train_per_class=10", "classes=5-9", f"pretrained={BACKBONE}"]


def test_replicates_get_their_own_folder_data_draw_and_seeds():
    opts = CompareOptions(methods=("finetune",), replicates=3, seed=7, seeds=4)
    searches = [method_options(opts, "finetune", OUT, BACKBONE, None, replicate=r) for r in range(3)]
    assert [s.storage for s in searches] == [(OUT / "runs" / f"replicate-{r}").resolve().as_uri() for r in range(3)]
    assert [s.seed for s in searches] == [7, 11, 15]  # confirmation seeds 7-10, 11-14, 15-18: none shared
    assert [s.sets[-1] for s in searches] == ["split_seed=0", "split_seed=1", "split_seed=2"]


def test_the_source_backbone_sees_no_image_of_any_replicate():
    """The backbone pretrains on source classes 0-4 (train and val of split_seed 0); no image of it,
    by content, is among any replicate's target train, val or test images (digits has no duplicate
    images at all, so this is disjointness by index too)."""
    from tunelab.compare import source_backbone_config

    opts = CompareOptions(replicates=4)
    source = load_dataset(source_backbone_config(opts).data_options())
    seen = _rows(source.train) | _rows(source.val) | _rows(source.test)
    assert len(seen) == len(source.train) + len(source.val) + len(source.test)
    for r in range(opts.replicates):
        target = _data(opts, "finetune", r)
        for split in ("train", "val", "test"):
            assert not seen & _rows(getattr(target, split)), (r, split)


@pytest.mark.parametrize("value", [0, -1, 101, 10**10, 1.5, "2", True])
def test_replicates_built_in_python_are_checked_too(value, tmp_path):
    from tunelab.compare import run_compare

    with pytest.raises(ConfigError, match=f"--replicates {value!r} is out of range; allowed: a whole number from 1 to 100"):
        run_compare(CompareOptions(replicates=value, out=str(tmp_path / "c")))


def test_a_compare_made_before_the_option_continues_and_another_count_is_refused(tmp_path):
    from tunelab.compare_state import STATE_FILE, open_state, options_record

    out = tmp_path / "c"
    out.mkdir()
    old = {k: v for k, v in options_record(CompareOptions()).items() if k != "replicates"}
    (out / STATE_FILE).write_text(json.dumps({"format": 1, "options": old, "searches": {}}))
    assert open_state(out, CompareOptions(replicates=1))["options"] == old  # counts as --replicates 1
    with pytest.raises(ConfigError, match="holds a compare made with --replicates 1, not 2"):
        open_state(out, CompareOptions(replicates=2))
    with pytest.raises(ConfigError, match="holds a compare made with --replicates 1, not 2"):
        open_state(out, CompareOptions())  # the default is 2 now: the old folder says which it was


def test_dry_run_checks_every_replicate_s_searches_and_writes_nothing(tmp_path, capsys, ray_must_not_start):
    out = tmp_path / "cmp"
    code = main(["compare", "--out", str(out), "--methods", "classifier,finetune", "--replicates", "2",
                 "--dry-run", "--json"])
    printed = capsys.readouterr().out
    plan = json.loads(printed.strip().splitlines()[-1])
    assert code == 0 and plan["replicates"] == 2 and not out.exists()
    assert set(plan["searches"]) == {f"replicate-{r}/{m}" for r in (0, 1) for m in ("classifier", "finetune")}
    for r in (0, 1):
        search = plan["searches"][f"replicate-{r}/finetune"]
        assert search["experiment"] == (out.resolve() / "runs" / f"replicate-{r}" / "finetune").as_uri()
        assert int(search["fixed"]["split_seed"]) == r and search["seed"] == r * CompareOptions().seeds
        assert search["fixed"]["pretrained"] == plan["source_backbone"]  # one backbone for both
    assert "all of it 2 times, once per replicate" in printed


def test_the_time_budget_covers_every_replicate(capsys):
    from tunelab.compare import budget_share

    opts = CompareOptions(methods=("classifier", "finetune"), replicates=3, total_time_budget="60m")
    assert budget_share(opts) == pytest.approx(600.0)
    assert "10m for each of the 6 searches (3 replicates x 2 methods" in capsys.readouterr().err
    assert budget_share(dataclasses.replace(opts, parallel=True)) == pytest.approx(1200.0)


def test_a_dry_run_of_an_existing_compare_is_not_refused_as_other_options(tmp_path, capsys, ray_must_not_start):
    """--dry-run says how a run would go; it is not one of the options that decide the results, so
    a dry run of a folder made without it plans the continuation instead of refusing."""
    from tunelab.compare_state import open_state, save_state

    out = tmp_path / "cmp"
    argv = ["compare", "--out", str(out), "--methods", "classifier,finetune", "--replicates", "1"]
    save_state(out, open_state(out, CompareOptions(methods=("classifier", "finetune"), replicates=1)))
    before = sorted(p.name for p in out.rglob("*"))
    assert main([*argv, "--dry-run"]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == before
